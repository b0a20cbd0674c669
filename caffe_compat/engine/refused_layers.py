"""Layer types of Caffe forks that caffe-compat knows but does not build, with why.

Building a net that uses one raises a :class:`~caffe_compat.errors.LayerError` naming the
layer, its file and line, the fork and the reason, instead of the generic "unknown layer
type". All of them are training, evaluation or input layers of their forks, except
CRF-RNN's MultiStageMeanfield; the README's fork table lists them.

>>> why_refused("MultiBoxLoss").split(":")[0]
"SSD's training loss (weiliu89/caffe ssd)"
"""
from __future__ import annotations

from typing import Optional

_TRAINING = "it only trains, and its target matching, hard-negative mining and sampling are not implemented"

REFUSED_LAYERS: dict[str, str] = {
    # SSD (weiliu89/caffe ssd; also the Intel branch)
    "MultiBoxLoss": f"SSD's training loss (weiliu89/caffe ssd): {_TRAINING}",
    "AnnotatedData": "SSD's training/evaluation data layer (weiliu89/caffe ssd): reading "
                     "AnnotatedDatum LMDBs with SSD's batch sampling and distortions is "
                     "not implemented; deploy nets start from an Input layer",
    "DetectionEvaluate": "SSD's mAP evaluation layer (weiliu89/caffe ssd): needs "
                         "AnnotatedData labels; score DetectionOutput rows with GluonCV's "
                         "VOC metric instead",
    # Intel branch (BVLC/caffe intel) YOLO and video
    "RegionLoss": f"YOLOv2's training loss (BVLC/caffe intel): {_TRAINING}",
    "EvalDetection": "YOLOv2's evaluation layer (BVLC/caffe intel): it matches detections "
                     "to ground-truth labels fed by AnnotatedData",
    "VideoData": "the Intel branch's camera/video input layer (BVLC/caffe intel): feed "
                 "frames through an Input layer instead",
    # R-FCN online hard example mining (py-R-FCN / daijifeng001 caffe-rfcn)
    "SmoothL1LossOHEM": f"R-FCN's OHEM box loss (py-R-FCN Caffe): {_TRAINING}",
    "SoftmaxWithLossOHEM": f"R-FCN's OHEM class loss (py-R-FCN Caffe): {_TRAINING}",
    "BoxAnnotatorOHEM": f"R-FCN's OHEM example selection (py-R-FCN Caffe): {_TRAINING}",
    # Data layers of segmentation/edge forks
    "DenseImageData": "SegNet/ENet's training data layer (alexgkendall/caffe-segnet): "
                      "image + label-image lists are not implemented; feed an Input layer",
    "ImageLabelmapData": "HED's training data layer (s9xie/hed): image + edge-map lists "
                         "are not implemented; feed an Input layer",
    # CRF-RNN
    "MultiStageMeanfield": "CRF-RNN's mean-field CRF (torrvision/caffe): its permutohedral-"
                           "lattice bilateral filtering is not implemented",
}


def why_refused(type_name: str) -> Optional[str]:
    """The reason a known fork layer type is not built, or None."""
    return REFUSED_LAYERS.get(type_name)
