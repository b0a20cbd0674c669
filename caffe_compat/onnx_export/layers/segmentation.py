"""The segmentation forks' resampling layers: Interp (DeepLab-v2/PSPNet) and Upsample
(SegNet's max-unpooling, and the nearest-neighbour Upsample of the YOLOv3 ports).

Index maps are computed once, here, with the engine's own rules, and applied with
Gather/ScatterElements, so no runtime's resize rounding is involved where Caffe picks
pixels; the bilinear Interp is ONNX Resize in ``align_corners`` mode, the same formula
as caffe_cpu_interp2.
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from onnx import TensorProto

from caffe_compat.engine.layers.segmentation import _nearest_index
from caffe_compat.onnx_export.registry import emits


def _gather_axis(ctx, x: str, index: np.ndarray, axis: int) -> str:
    return ctx.op("Gather", x, ctx.const(index.astype(np.int64), "index", np.int64), axis=axis)


@emits("Interp")
def interp(ctx):
    """interp_layer.cpp: crop ``-pad_beg`` / ``-pad_end``, then align-corners bilinear
    resize (or the fork's nearest neighbour: ``floor(pos * ratio + 0.5)``)."""
    layer, x = ctx.layer, ctx.inputs[0]
    shape, eff, out = layer.plan
    offset = -layer.pad_beg
    if offset or eff != tuple(shape[2:]):
        x = ctx.op("Slice", x, ctx.ints([offset, offset], "starts"),
                   ctx.ints([offset + eff[0], offset + eff[1]], "ends"), ctx.ints([2, 3], "axes"))
    if tuple(eff) == tuple(out):
        return [x]
    if layer.nearest:
        for axis, (size_in, size_out) in zip((2, 3), zip(eff, out)):
            index = _nearest_index(mx.nd, size_in, size_out).asnumpy()
            x = _gather_axis(ctx, x, index, axis)
        return [x]
    sizes = ctx.ints(list(shape[:2]) + list(out), "sizes")
    return [ctx.op("Resize", x, None, None, sizes, mode="linear",
                   coordinate_transformation_mode="align_corners")]


@emits("Upsample")
def upsample(ctx):
    """upsample_layer.cpp. With a mask (SegNet): a zero top with ``top[mask[i]] = x[i]``
    per (n, c) plane (ScatterElements; the mask's float index truncated as Caffe's
    static_cast). With one bottom (YOLOv3 ports): each value repeated scale_h x scale_w."""
    layer, x = ctx.layer, ctx.inputs[0]
    if not layer.unpool:
        for axis, (size_out, s) in zip((2, 3), zip(layer.out_size, layer.scale)):
            x = _gather_axis(ctx, x, np.arange(size_out) // s, axis)
        return [x]
    n, c = layer.in_shape[:2]
    plane = layer.out_size[0] * layer.out_size[1]
    zeros = ctx.op("ConstantOfShape", ctx.ints([n, c, plane], "shape"))
    index = ctx.op("Cast", ctx.reshape(ctx.inputs[1], (n, c, -1)), to=TensorProto.INT64)
    flat = ctx.op("ScatterElements", zeros, index, ctx.reshape(x, (n, c, -1)), axis=2)
    return [ctx.reshape(flat, (n, c) + tuple(layer.out_size))]
