"""Pooling and SPP with Caffe's output sizes and divisors (pooling_layer.cpp).

The engine's :class:`~caffe_compat.engine.layers.pooling.PoolPlan` (built at reshape)
gives Caffe's pooled size per axis, ceil mode with the padding clip or FLOOR, and
whether a window overhangs ``H + pad``. ONNX pooling is then written with explicit,
possibly asymmetric pads and ``ceil_mode = 0``, so every runtime computes exactly
Caffe's number of windows, with no reliance on how a runtime rounds in ceil mode:

* MAX: ``MaxPool`` with pads ``(pad, end)``, ``end = (out - 1) * stride + kernel - H -
  pad`` (at least 0): padding is never picked, as in Caffe (a window always starts
  inside the input, Caffe's clip guarantees it).
* AVE without overhang: zero ``Pad`` then ``AveragePool`` without pads: every divisor
  is ``kh * kw``, as in Caffe (``count_include_pad`` would say the same, but some
  runtimes ignore it: OpenCV 4.11 divides by the valid cells only).
* AVE with an overhang (ceil mode): Caffe divides by ``(min(hstart + k, H + pad) -
  hstart) * (...)``, counting padding but not the overhang, which no ONNX pooling
  attribute says; it is written as a sum (a depthwise ``Conv`` with a ones kernel and
  zero padding) divided by that divisor map, a constant.
* STOCHASTIC at TEST: ``sum(x^2) / (FLT_MIN + sum(x))`` per window (StoPoolForwardTest);
  at TRAIN it samples, which ONNX cannot do reproducibly: refused.
* The MAX mask top (SegNet) is Caffe's ``h * W + w`` of each window's FIRST maximum:
  the windows' cells stacked on a new axis (padding holding -FLT_MAX) and ONNX
  ``ArgMax`` with ``select_last_index = 0``, which the standard defines as the first
  occurrence, then the window offset added (MaxPool's own Indices output leaves ties
  to the runtime).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from caffe_compat.engine.layers.pooling import AVE, MAX, PoolPlan
from caffe_compat.onnx_export.registry import emits

_FLT_MIN = float(np.finfo(np.float32).tiny)
_FLT_MAX = float(np.finfo(np.float32).max)
_TRAIN = 0


def end_pads(plan: PoolPlan) -> tuple:
    """Bottom/right pads that make ONNX's floor-mode output exactly Caffe's size."""
    return tuple(max(0, (o - 1) * s + k - i - p) for i, k, s, p, o in
                 zip(plan.in_size, plan.kernel, plan.stride, plan.pad, plan.out))


def ave_divisor(plan: PoolPlan) -> np.ndarray:
    """Caffe's AVE divisor per output cell, (1, 1, out_h, out_w): padded cells count,
    the ceil overhang past ``H + pad`` does not (pooling_layer.cpp Forward_cpu)."""
    sizes = []
    for i, k, s, p, o in zip(plan.in_size, plan.kernel, plan.stride, plan.pad, plan.out):
        start = np.arange(o) * s - p
        sizes.append(np.minimum(start + k, i + p) - start)
    return np.outer(sizes[0], sizes[1]).astype(np.float32).reshape((1, 1) + plan.out)


def padded_average(ctx, x: str, kernel, stride, pad) -> str:
    """Average over windows of ``x`` zero-padded by ``pad`` on both sides, every divisor
    ``kh * kw`` (what ``count_include_pad`` means, written so no runtime can differ)."""
    if any(pad):
        pads = [0, 0, pad[0], pad[1], 0, 0, pad[0], pad[1]]
        x = ctx.op("Pad", x, ctx.ints(pads, "pads"), mode="constant")
    return ctx.op("AveragePool", x, kernel_shape=list(kernel), strides=list(stride))


def _window_sum(ctx, x: str, plan: PoolPlan, channels: int) -> str:
    """Sum over each Caffe window (zero padding): a depthwise Conv with a ones kernel."""
    ones = ctx.const(np.ones((channels, 1) + tuple(plan.kernel), np.float32), "ones_kernel")
    return ctx.op("Conv", x, ones, kernel_shape=list(plan.kernel), strides=list(plan.stride),
                  pads=list(plan.pad) + list(end_pads(plan)), group=channels)


def caffe_pool(ctx, x: str, plan: PoolPlan, method: int, phase: int, channels: int) -> str:
    """Caffe's pooling of ``x`` (N, C, H, W) as ONNX nodes (see the module docstring)."""
    if method == MAX:
        if plan.is_global:
            return ctx.op("GlobalMaxPool", x)
        return ctx.op("MaxPool", x, kernel_shape=list(plan.kernel), strides=list(plan.stride),
                      pads=list(plan.pad) + list(end_pads(plan)))
    if method == AVE:
        if plan.is_global:
            return ctx.op("GlobalAveragePool", x)
        if not plan.overhang:
            return padded_average(ctx, x, plan.kernel, plan.stride, plan.pad)
        return ctx.op("Div", _window_sum(ctx, x, plan, channels),
                      ctx.const(ave_divisor(plan), "ave_divisor"))
    if phase == _TRAIN:
        raise ctx.refuse("STOCHASTIC pooling in TRAIN phase samples at random; export the "
                         "TEST phase (a weighted average)")
    total = ctx.op("Add", _window_sum(ctx, x, plan, channels), ctx.const(_FLT_MIN))
    squares = _window_sum(ctx, ctx.op("Mul", x, x), plan, channels)
    return ctx.op("Div", squares, total)


def window_cells(ctx, x: str, plan: PoolPlan, fill: float) -> list:
    """``kh * kw`` values (N, C, out_h, out_w), one per window offset in row-major order;
    cells outside the input (padding, ceil overhang) hold ``fill`` (as the engine's
    ``PoolPlan.window_cells``)."""
    (kh, kw), (sh, sw), (oh, ow) = plan.kernel, plan.stride, plan.out
    after = end_pads(plan)
    if any(plan.pad) or any(after):
        pads = [0, 0, plan.pad[0], plan.pad[1], 0, 0, after[0], after[1]]
        x = ctx.op("Pad", x, ctx.ints(pads, "pads"), ctx.const(fill), mode="constant")
    return [ctx.op("Slice", x, ctx.ints([i, j], "starts"),
                   ctx.ints([i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1], "ends"),
                   ctx.ints([2, 3], "axes"), ctx.ints([sh, sw], "steps"))
            for i in range(kh) for j in range(kw)]


def max_mask(ctx, x: str, plan: PoolPlan, shape: tuple) -> str:
    """Caffe's mask top: float ``h * W + w`` of each window's first maximum."""
    width = shape[3]
    if plan.is_global:
        flat = ctx.reshape(x, tuple(shape[:2]) + (-1,))
        index = ctx.op("ArgMax", flat, axis=2, keepdims=1, select_last_index=0)
        return ctx.reshape(ctx.op("Cast", index, to=TensorProto.FLOAT), tuple(shape[:2]) + (1, 1))
    cells = window_cells(ctx, x, plan, -_FLT_MAX)
    stacked = ctx.op("Concat", *[ctx.op("Unsqueeze", c, ctx.ints([2], "axes")) for c in cells],
                     axis=2)
    k = ctx.op("ArgMax", stacked, axis=2, keepdims=0, select_last_index=0)
    # float arithmetic (exact for these small integers; OpenCV 4.11 divides int64 as float)
    k = ctx.op("Cast", k, to=TensorProto.FLOAT)
    kw = ctx.const(plan.kernel[1], "kernel_w")
    krow = ctx.op("Floor", ctx.op("Div", k, kw))
    kcol = ctx.op("Sub", k, ctx.op("Mul", krow, kw))
    (oh, ow), (sh, sw), (ph, pw) = plan.out, plan.stride, plan.pad
    row0 = (np.arange(oh) * sh - ph).reshape(1, 1, oh, 1)
    col0 = (np.arange(ow) * sw - pw).reshape(1, 1, 1, ow)
    rows = ctx.op("Add", krow, ctx.const(row0, "window_rows"))
    cols = ctx.op("Add", kcol, ctx.const(col0, "window_cols"))
    return ctx.op("Add", ctx.op("Mul", rows, ctx.const(width, "width")), cols)


@emits("Pooling")
def pooling(ctx):
    """pooling_layer.cpp: the pooled top, and for MAX an optional mask top."""
    layer, x, shape = ctx.layer, ctx.inputs[0], ctx.bottom_shapes[0]
    tops = [caffe_pool(ctx, x, layer.plan, layer.method, layer.phase, shape[1])]
    if len(ctx.node.tops) > 1:
        tops.append(max_mask(ctx, x, layer.plan, shape))
    return tops


@emits("SPP")
def spp(ctx):
    """spp_layer.cpp: one pooling per pyramid level, each flattened, concatenated."""
    layer, x, shape = ctx.layer, ctx.inputs[0], ctx.bottom_shapes[0]
    pooled = [caffe_pool(ctx, x, plan, layer.method, layer.phase, shape[1])
              for plan in layer.plans]
    if len(pooled) == 1:
        return pooled
    return [ctx.op("Concat", *[ctx.op("Flatten", p, axis=1) for p in pooled], axis=1)]
