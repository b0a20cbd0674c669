"""py-faster-rcnn's ``fast_rcnn/bbox_transform.py`` (inverse transform and clipping)."""
from caffe_compat.engine.layers.rcnn import bbox_transform_inv, clip_boxes

__all__ = ["bbox_transform_inv", "clip_boxes"]
