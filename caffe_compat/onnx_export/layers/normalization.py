"""BatchNorm, LRN, MVN, SSD's Normalize and SegNet's BN, each in Caffe's arithmetic.

BatchNorm is not ONNX's BatchNormalization: Caffe subtracts ``blobs[0] / blobs[2]``
and divides by ``sqrt(blobs[1] / blobs[2] + eps)`` (the scale-factor blob, 0 meaning
"no statistics"), so it is written as that Sub and Div with the effective mean and
standard deviation precomputed in float32 as batch_norm_layer.cpp computes them.
"""
from __future__ import annotations

import numpy as np

from caffe_compat.engine.layers.lrn import ACROSS_CHANNELS
from caffe_compat.engine.layers.segmentation import SEGNET_BN_VAR_EPS
from caffe_compat.onnx_export.layers.pooling import padded_average
from caffe_compat.onnx_export.registry import emits
from caffe_compat.proto import caffe_pb2

_F32 = np.float32


def channel_shape(rank: int, channels: int) -> tuple:
    """Shape broadcasting a per-channel (axis 1) vector over a ``rank``-D blob."""
    return (channels,) + (1,) * max(rank - 2, 0)


def batchnorm_statistics(mean: np.ndarray, variance: np.ndarray, scale_factor: np.ndarray,
                         eps: float) -> tuple:
    """(mean, std) that batch_norm_layer.cpp Forward_cpu uses with global statistics:
    ``f = blobs[2] == 0 ? 0 : 1 / blobs[2]``, mean ``blobs[0] * f``, std
    ``sqrt(blobs[1] * f + eps)``, every step in float32."""
    sf = _F32(scale_factor.reshape(-1)[0])
    factor = _F32(0) if sf == 0 else _F32(1) / sf
    mean = (mean.astype(_F32) * factor).astype(_F32)
    std = np.sqrt((variance.astype(_F32) * factor).astype(_F32) + _F32(eps)).astype(_F32)
    return mean, std


def _batch_statistics(ctx, x: str, axes: list) -> tuple:
    """(x - mean, biased variance) over ``axes``: Caffe's TRAIN-phase forward."""
    centred = ctx.op("Sub", x, ctx.op("ReduceMean", x, axes=axes, keepdims=1))
    return centred, ctx.op("ReduceMean", ctx.op("Mul", centred, centred), axes=axes, keepdims=1)


@emits("BatchNorm")
def batchnorm(ctx):
    """batch_norm_layer.cpp: ``(x - mean) / sqrt(var + eps)`` per channel (axis 1)."""
    layer, x = ctx.layer, ctx.inputs[0]
    rank = len(ctx.bottom_shapes[0])
    if not layer.use_global_stats:
        # this phase normalizes with the batch's own statistics (Caffe's TRAIN forward)
        centred, var = _batch_statistics(ctx, x, [0] + list(range(2, rank)))
        return [ctx.op("Div", centred, ctx.op("Sqrt", ctx.op("Add", var, ctx.const(layer.eps))))]
    mean, std = batchnorm_statistics(ctx.blob_array("mean"), ctx.blob_array("variance"),
                                     ctx.blob_array("scale_factor"), layer.eps)
    shape = channel_shape(rank, layer.channels) if rank > 1 else (1,)
    centred = ctx.op("Sub", x, ctx.const(mean.reshape(shape), "mean"))
    return [ctx.op("Div", centred, ctx.const(std.reshape(shape), "std"))]


@emits("LRN")
def lrn(ctx):
    """lrn_layer.cpp. ACROSS_CHANNELS: ``x * (k + alpha/n * sum x^2)^-beta`` over n
    channels, ONNX LRN's definition (its ``bias`` is Caffe's ``k``). WITHIN_CHANNEL:
    ``x * (1 + alpha * avg_{n x n} x^2)^-beta``, the average over a zero-padded window
    with divisor n*n (Caffe's Power -> AVE Pooling -> Power -> Eltwise PROD)."""
    layer, x = ctx.layer, ctx.inputs[0]
    if layer.region == ACROSS_CHANNELS:
        return [ctx.op("LRN", x, size=layer.size, alpha=layer.alpha, beta=layer.beta,
                       bias=layer.k)]
    n, pad = layer.size, (layer.size - 1) // 2
    mean_sq = padded_average(ctx, ctx.op("Mul", x, x), (n, n), (1, 1), (pad, pad))
    scale = ctx.op("Add", ctx.op("Mul", mean_sq, ctx.const(layer.alpha)), ctx.const(1.0))
    return [ctx.op("Mul", x, ctx.op("Pow", scale, ctx.const(-layer.beta)))]


@emits("MVN")
def mvn(ctx):
    """mvn_layer.cpp: per (n, c), or per n ``across_channels``: ``x - mean``, divided by
    ``sqrt(var) + eps`` (eps after the square root) with ``normalize_variance``."""
    layer, x, shape = ctx.layer, ctx.inputs[0], ctx.bottom_shapes[0]
    grouped = ctx.reshape(x, layer.grouping)
    if layer.normalize_variance:
        centred, var = _batch_statistics(ctx, grouped, [-1])
        y = ctx.op("Div", centred, ctx.op("Add", ctx.op("Sqrt", var), ctx.const(layer.eps)))
    else:
        y = ctx.op("Sub", grouped, ctx.op("ReduceMean", grouped, axes=[-1], keepdims=1))
    return [ctx.reshape(y, shape)]


@emits("Normalize")
def normalize(ctx):
    """normalize_layer.cpp (SSD): ``x / sqrt(sum x^2 + eps)`` over (C, H, W) per image
    (``across_spatial``; Caffe scales by ``1 / norm``) or over C per position (Caffe
    divides), then times the learned scale (per channel or shared)."""
    layer, x = ctx.layer, ctx.inputs[0]
    rank = len(ctx.bottom_shapes[0])
    axes = list(range(1, rank)) if layer.across_spatial else [1]
    norm = ctx.op("Sqrt", ctx.op("Add", ctx.op("ReduceSumSquare", x, axes=axes, keepdims=1),
                                 ctx.const(layer.eps)))
    if layer.across_spatial:
        y = ctx.op("Mul", x, ctx.op("Reciprocal", norm))
    else:
        y = ctx.op("Div", x, norm)
    shape = (1,) if layer.channel_shared else channel_shape(rank, layer.channels)
    return [ctx.op("Mul", y, ctx.blob("scale", shape))]


@emits("BN")
def segnet_bn(ctx):
    """bn_layer.cpp (SegNet/ENet). INFERENCE: ``scale * x + shift``. LEARN: batch
    statistics over (N, H, W), variance ``E[x^2] - E[x]^2`` plus 1e-9; optional tops 2
    and 3 are the batch mean and variance (zeros in INFERENCE)."""
    layer, x = ctx.layer, ctx.inputs[0]
    scale, shift = ctx.blob("scale"), ctx.blob("shift")
    extra = len(ctx.node.tops) - 1
    if layer.mode == caffe_pb2.BNParameter.INFERENCE:
        y = ctx.op("Add", ctx.op("Mul", x, scale), shift)
        zeros = ctx.const(np.zeros((1, layer.channels, 1, 1), _F32), "zeros")
        return [y] + [ctx.op("Identity", zeros) for _ in range(extra)]
    axes = [0, 2, 3]
    mean = ctx.op("ReduceMean", x, axes=axes, keepdims=1)
    var = ctx.op("Sub", ctx.op("ReduceMean", ctx.op("Mul", x, x), axes=axes, keepdims=1),
                 ctx.op("Mul", mean, mean))
    std = ctx.op("Sqrt", ctx.op("Add", var, ctx.const(SEGNET_BN_VAR_EPS)))
    y = ctx.op("Add", ctx.op("Mul", ctx.op("Div", ctx.op("Sub", x, mean), std), scale), shift)
    return [y, mean, var][:1 + extra]
