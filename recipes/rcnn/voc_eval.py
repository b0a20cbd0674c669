"""PASCAL VOC detection average precision, computed by GluonCV's metrics.

:func:`evaluate_detections` feeds every image's detections and ground truth to
``gluoncv.utils.metrics.voc_detection.VOC07MApMetric`` (the VOC2007 11-point AP,
``use_07_metric=True``, what R-CNN reported on VOC 2007) or ``VOCMApMetric`` (the
area under the interpolated precision/recall curve of VOC2010 and later).

Conventions (GluonCV's, which are the VOC devkit's):

* boxes are ``(xmin, ymin, xmax, ymax)`` in pixels with the max INCLUSIVE: GluonCV adds 1
  to ``xmax``/``ymax`` before its IoU, so overlaps use +1 pixel widths as the devkit's
  ``VOCevaldet.m`` and R-CNN's ``boxoverlap.m``. The detector's boxes (0-based, inclusive)
  are passed as they are; the devkit's 1-based coordinates give the same IoU. Boxes with
  an EXCLUSIVE max (continuous coordinates) would need 1 subtracted from xmax/ymax first;
  their overlaps would otherwise be slightly too large.
* labels are 0-based class indices; a detection matches the unclaimed ground truth of its
  class with the highest IoU if that is at least ``iou_thresh`` (0.5); "difficult"
  ground truths neither count as positives nor make a matching detection a false
  positive;
* detections are ranked by score over all images; ties keep no particular order (the
  devkit's MATLAB sort keeps input order).

>>> import numpy as np
>>> dets = [Detections(np.array([[0, 0, 9, 9]]), np.array([0]), np.array([0.9]))]
>>> gts = [GroundTruth(np.array([[0, 0, 9, 9]]), np.array([0]))]
>>> round(evaluate_detections(dets, gts, ["cat"]).mean_ap, 6)
1.0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError


@dataclass
class Detections:
    """One image's detections: boxes (M, 4), 0-based labels (M,), scores (M,)."""
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


@dataclass
class GroundTruth:
    """One image's annotations: boxes (G, 4), 0-based labels (G,), difficult flags (G,)."""
    boxes: np.ndarray
    labels: np.ndarray
    difficult: Optional[np.ndarray] = None


@dataclass
class VOCEvaluation:
    """Average precision per class (NaN for a class without ground truth) and their mean
    over the classes that have a value."""
    ap: Dict[str, float]
    mean_ap: float
    use_07_metric: bool

    def table(self) -> str:
        rows = [f"{name:24s} {value:.4f}" for name, value in self.ap.items()]
        metric = "VOC07 11-point" if self.use_07_metric else "VOC area"
        return "\n".join(rows + [f"{'mAP (' + metric + ')':24s} {self.mean_ap:.4f}"])


def _boxes(a, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise CaffeCompatError(f"{what} must be (N, 4) xmin, ymin, xmax, ymax, got {arr.shape}")
    return arr


def evaluate_detections(detections: Sequence[Detections], ground_truth: Sequence[GroundTruth],
                        class_names: Sequence[str], *, iou_thresh: float = 0.5,
                        use_07_metric: bool = True) -> VOCEvaluation:
    """VOC AP of ``detections[i]`` against ``ground_truth[i]`` for every image ``i``."""
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
    if len(detections) != len(ground_truth):
        raise CaffeCompatError(f"{len(detections)} images of detections but "
                               f"{len(ground_truth)} of ground truth")
    names = [str(n) for n in class_names]
    metric = (VOC07MApMetric if use_07_metric else VOCMApMetric)(iou_thresh=iou_thresh,
                                                                  class_names=names)
    for i, (det, gt) in enumerate(zip(detections, ground_truth)):
        p_boxes = _boxes(det.boxes, f"image {i} detections")
        g_boxes = _boxes(gt.boxes, f"image {i} ground truth")
        p_labels = np.asarray(det.labels, dtype=np.float64).reshape(-1)
        g_labels = np.asarray(gt.labels, dtype=np.float64).reshape(-1)
        scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        if not len(p_boxes) == len(p_labels) == len(scores) or len(g_boxes) != len(g_labels):
            raise CaffeCompatError(f"image {i}: boxes, labels and scores differ in length")
        for labels, what in ((p_labels, "detection"), (g_labels, "ground truth")):
            if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
                raise CaffeCompatError(f"image {i}: {what} label outside 0..{len(names) - 1}")
        difficult = (np.zeros(len(g_labels)) if gt.difficult is None
                     else np.asarray(gt.difficult, dtype=np.float64).reshape(-1))
        metric.update(p_boxes[None], p_labels[None], scores[None], g_boxes[None], g_labels[None],
                      difficult[None])
    if not any(len(np.asarray(g.labels).reshape(-1)) for g in ground_truth) and \
            not any(len(np.asarray(d.labels).reshape(-1)) for d in detections):
        return VOCEvaluation({n: float("nan") for n in names}, float("nan"), use_07_metric)
    got_names, values = metric.get()
    ap = {n: float(v) for n, v in zip(got_names[:-1], values[:-1])}
    return VOCEvaluation(ap, float(values[-1]), use_07_metric)


__all__ = ["Detections", "GroundTruth", "VOCEvaluation", "evaluate_detections"]
