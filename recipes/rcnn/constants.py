"""R-CNN's settings as Caffe's detection example and R-CNN's code use them, and the error
the detector raises for bad input."""
from __future__ import annotations

from caffe_compat.errors import CaffeCompatError

DEFAULT_MODEL = "bvlc_reference_rcnn_ilsvrc13"
#: BVLC detect.py's mean: ilsvrc_2012_mean.npy averaged over pixels (B, G, R).
ILSVRC_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
CONTEXT_PAD = 16
NMS_OVERLAP = 0.3
MIN_PROPOSAL_SIZE = 20   # R-CNN's selective_search_boxes.m
SCORE_BLOB = "fc-rcnn"
FEATURE_BLOB = "pool5"


class DetectionError(CaffeCompatError):
    """Bad detector input: a window outside its image, proposals of the wrong shape, ..."""
