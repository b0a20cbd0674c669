"""Softmax (softmax_layer.cpp): ``exp(x - max) / sum exp(x - max)`` along ``axis``."""
from __future__ import annotations

from caffe_compat.onnx_export.registry import emits


@emits("Softmax")
def softmax(ctx):
    """Opset 13's Softmax normalizes along one axis, as Caffe does."""
    return [ctx.op("Softmax", ctx.inputs[0], axis=ctx.layer.axis)]
