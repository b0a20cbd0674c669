"""The SSD fork's PriorBox (Permute and Normalize live with their families).

PriorBox depends only on the feature-map and image sizes, which the export fixes: its
top is computed by the engine's layer (prior_box_layer.cpp's float/double arithmetic)
and written as a constant.
"""
from __future__ import annotations

from caffe_compat.onnx_export.registry import emits, refuses


@emits("PriorBox")
def prior_box(ctx):
    """prior_box_layer.cpp: ``(1, 2, H * W * P * 4)`` boxes and variances (a constant)."""
    return [ctx.const(top, "priors") for top in ctx.shape_only_tops()]


refuses("SSD's decoding, per-class NMS (with eta) and keep_top_k across classes have no "
        "exact ONNX counterpart (NonMaxSuppression selects and orders differently) and its "
        "output size depends on the detections; export the blobs before it "
        "(e.g. --outputs mbox_loc,mbox_conf_flatten,mbox_priorbox) and decode on the host "
        "(caffe_compat.engine.layers.ssd.DetectionOutput.detect does it as the fork)",
        "DetectionOutput")
