"""Pooling (MAX / AVE / STOCHASTIC) and SPP, with Caffe's exact output sizes and numbers.

What Caffe does (pooling_layer.cpp, pooling_layer.cu) and how it is reproduced here:

* Output size: ``ceil((H + 2p - k) / s) + 1`` (``round_mode: FLOOR`` uses floor), then
  Caffe's clip: with padding, a last window starting at or past ``H + p`` is dropped.
  The clipped size always equals MXNet's ``valid`` (floor) size, so each axis maps to
  MXNet's ``full`` or ``valid`` convention; only when the two axes need different ones
  is MXNet's ``full`` output sliced.
* MAX never picks padding and sends the gradient to the FIRST maximum of a window in
  row-major order. MXNet's pooling (oneDNN build) does the same when its forward ran
  in training mode (measured on windows full of exact ties; checked against Caffe's
  golden data in the tests). After an inference-mode forward (``autograd.record(
  train_mode=False)``) oneDNN's max-pooling backward is wrong (it reads an argmax
  workspace only a training forward writes): an imperative call switches the op to
  training mode itself (no layer here depends on MXNet's train flag); a hybridized
  graph cannot, so record backward passes with ``train_mode=True`` (the default).
* AVE divides by ``(min(hstart+k, H+p) - hstart) * (min(wstart+k, W+p) - wstart)``:
  padded cells count, the ceil overhang past ``H + p`` does not. MXNet's avg pooling
  (``count_include_pad``) is exact whenever no window overhangs; with an overhang the
  oneDNN backward uses another divisor, so the layer then computes sum pooling divided
  by Caffe's divisor map (itself sum pooling of a ones map padded with ones).
* STOCHASTIC (Caffe implements it on GPU only): at TRAIN one element per window, drawn
  with probability proportional to its value (the first whose running window sum
  reaches ``u * sum``, ``u ~ U[0, 1)``; MXNet's RNG, so draws differ from Caffe's);
  the gradient goes to the drawn element. At TEST the weighted average
  ``sum(x^2) / sum(x)`` (Caffe's StoPoolForwardTest, FLT_MIN-guarded), whose backward
  (undefined in Caffe) is the gradient of that average.
* A second top (MAX only) is Caffe's mask: the index ``h * W + w`` of each window's
  first maximum, as a float.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "p" type: "Pooling" pooling_param '
...                       '{ pool: MAX kernel_size: 2 stride: 2 pad: 1 }',
...                       caffe_pb2.LayerParameter())
>>> build_layer(p, [(2, 8, 7, 8)]).top_shapes     # ceil gives 5x5; Caffe's clip drops a row
[(2, 8, 4, 5)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import mxnet as mx

from caffe_compat.engine.layer import Layer, register_layer

MAX, AVE, STOCHASTIC = 0, 1, 2
_METHOD_NAMES = {MAX: "MAX", AVE: "AVE", STOCHASTIC: "STOCHASTIC"}
_FLT_MIN = 1.1754943508222875e-38   # Caffe's StoPoolForwardTest starts its sum at FLT_MIN
_FLT_MAX = 3.4028234663852886e+38
_TRAIN = 0


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool,
                      padded: bool) -> int:
    """Caffe's pooled size along one axis (pooling_layer.cpp Reshape).

    ``padded`` is whether the layer has any padding (``pad_h || pad_w``): only then does
    Caffe drop a last window that would start inside the padding.

    >>> caffe_pooled_size(7, 2, 2, 1, True, True)   # ceil 5, clipped to 4
    4
    """
    rounding = math.ceil if ceil_mode else math.floor
    out = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if padded and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolPlan:
    """How one Caffe pooling maps onto MXNet ops for one input size (built in reshape)."""
    in_size: tuple          # (H, W)
    kernel: tuple
    stride: tuple
    pad: tuple
    out: tuple              # Caffe's (pooled_h, pooled_w)
    is_global: bool
    convention: str         # MXNet pooling_convention giving out (or more, then sliced)
    needs_slice: bool       # MXNet's output is larger than Caffe's: slice to ``out``
    overhang: bool          # some window runs past H + pad (ceil mode)

    @classmethod
    def build(cls, in_size, kernel, stride, pad, ceil_mode: bool, is_global: bool = False):
        padded = any(pad)
        out = tuple(caffe_pooled_size(i, k, s, p, ceil_mode, padded)
                    for i, k, s, p in zip(in_size, kernel, stride, pad))
        valid = tuple((i + 2 * p - k) // s + 1 for i, k, s, p in zip(in_size, kernel, stride, pad))
        if out == valid:
            convention, needs_slice = "valid", False
        else:
            full = tuple(-(-(i + 2 * p - k) // s) + 1
                         for i, k, s, p in zip(in_size, kernel, stride, pad))
            convention, needs_slice = "full", out != full
        overhang = any((o - 1) * s - p + k > i + p
                       for i, k, s, p, o in zip(in_size, kernel, stride, pad, out))
        return cls(tuple(in_size), tuple(kernel), tuple(stride), tuple(pad), out, is_global,
                   convention, needs_slice, overhang)

    def empty_window_axis(self):
        """An axis whose last window lies wholly outside the input, or None.

        Happens only without padding and with kernel < stride in ceil mode; Caffe then
        outputs -FLT_MAX and its backward writes out of bounds, so it is refused.
        """
        for axis, (i, s, p, o) in enumerate(zip(self.in_size, self.stride, self.pad, self.out)):
            if (o - 1) * s - p >= i:
                return axis
        return None

    # ---- forward pieces (F = mx.nd or mx.sym) ---------------------------------------
    def _mx_pool(self, F, x, pool_type: str, pad=None, convention=None):
        y = F.Pooling(x, kernel=self.kernel, stride=self.stride,
                      pad=self.pad if pad is None else pad, pool_type=pool_type,
                      pooling_convention=convention or self.convention,
                      count_include_pad=True)
        return self._slice(F, y)

    def _slice(self, F, y):
        if self.needs_slice:
            y = F.slice(y, begin=(None, None, 0, 0), end=(None, None) + self.out)
        return y

    def max(self, F, x):
        if F is mx.nd and mx.autograd.is_recording() and not mx.autograd.is_training():
            # oneDNN's max-pooling backward is only right after a training-mode forward
            # (it reads the argmax workspace that forward writes); see the module doc.
            with mx.autograd.train_mode():
                return self._max(F, x)
        return self._max(F, x)

    def _max(self, F, x):
        if self.is_global:
            return F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="max")
        return self._mx_pool(F, x, "max")

    def ave(self, F, x):
        if self.is_global:
            return F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
        if not self.overhang:
            return self._mx_pool(F, x, "avg")
        # Sum pooling over Caffe's divisor map (exact with an overhang, see module doc).
        total = self._mx_pool(F, x, "sum", convention="full")
        # slice_axis, not slice: MXNet 1.9.1's slice of a channel range of a oneDNN
        # blocked-layout array (a Convolution's output) dies with SIGFPE
        first = F.slice_axis(F.slice_axis(x, axis=0, begin=0, end=1), axis=1, begin=0, end=1)
        ones = F.ones_like(first)
        (ph, pw) = self.pad
        padded_ones = F.pad(ones, mode="constant", constant_value=1,
                            pad_width=(0, 0, 0, 0, ph, ph, pw, pw))
        divisor = self._mx_pool(F, padded_ones, "sum", pad=(0, 0), convention="full")
        return F.broadcast_div(total, divisor)

    def window_cells(self, F, x, fill: float, pad_before: bool) -> list:
        """kh*kw arrays (N, C, out_h, out_w), one per window offset in row-major order.

        Cells outside the input (padding, ceil overhang) hold ``fill``.
        """
        before = self.pad if pad_before else (0, 0)
        after = tuple(max(0, (o - 1) * s + k - b - i) for i, k, s, b, o in
                      zip(self.in_size, self.kernel, self.stride, before, self.out))
        if any(before) or any(after):
            x = F.pad(x, mode="constant", constant_value=fill,
                      pad_width=(0, 0, 0, 0, before[0], after[0], before[1], after[1]))
        (kh, kw), (sh, sw), (oh, ow) = self.kernel, self.stride, self.out
        return [F.slice(x, begin=(None, None, i, j),
                        end=(None, None, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1),
                        step=(None, None, sh, sw))
                for i in range(kh) for j in range(kw)]

    def stochastic_train(self, F, x):
        cells = self.window_cells(F, x, 0.0, pad_before=False)
        running = [cells[0]]
        for c in cells[1:]:
            running.append(running[-1] + c)
        threshold = F.BlockGrad(F.random.uniform_like(running[-1]) * running[-1])
        picked, found = None, None
        for c, r in zip(cells, running):
            reached = F.BlockGrad(r >= threshold)
            take = reached if found is None else reached * (1 - found)
            picked = c * take if picked is None else picked + c * take
            found = reached if found is None else F.maximum(found, reached)
        return picked

    def stochastic_test(self, F, x):
        total = self._mx_pool(F, x, "sum")
        squares = self._mx_pool(F, F.square(x), "sum")
        denominator = F.BlockGrad(total + _FLT_MIN)
        y = squares / denominator
        # Caffe defines no TEST-phase backward (it reuses stale TRAIN samples); this one
        # is the gradient of the weighted average, (2 x - y) / sum(x) per window cell,
        # written with zero-valued terms so an all-zero window gives 0 instead of NaN.
        y_const = F.BlockGrad(y)
        return (y_const + (squares - F.BlockGrad(squares)) / denominator
                - y_const * (total - F.BlockGrad(total)) / denominator)

    def max_mask(self, F, x):
        """Caffe's top mask: float index h * W + w of each window's first maximum."""
        # The mask carries no gradient; blocking it at the input also keeps MXNet from
        # building (and crashing in) a backward graph through pad/stack/argmax.
        x = F.BlockGrad(x)
        W = self.in_size[1]
        if self.is_global:
            index = F.argmax(F.reshape(x, shape=(0, 0, -1)), axis=2)
            return F.BlockGrad(F.expand_dims(F.expand_dims(index, axis=2), axis=3))
        # padding cells hold -FLT_MAX, Caffe's initial maximum (never picked over data)
        cells = self.window_cells(F, x, -_FLT_MAX, pad_before=True)
        kidx = F.argmax(F.stack(*cells, axis=2), axis=2)    # first maximum, row-major
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = self.kernel, self.stride, self.pad, self.out
        krow = F.floor(kidx / kw)
        kcol = kidx - krow * kw
        row0 = F.reshape(F.arange(start=-ph, stop=-ph + oh * sh, step=sh), shape=(1, 1, oh, 1))
        col0 = F.reshape(F.arange(start=-pw, stop=-pw + ow * sw, step=sw), shape=(1, 1, 1, ow))
        index = F.broadcast_add(krow, row0) * W + F.broadcast_add(kcol, col0)
        return F.BlockGrad(index)


def pool(F, x, plan: PoolPlan, method: int, phase: int):
    """Caffe's pooling forward of ``x`` with ``plan`` (MAX, AVE or STOCHASTIC)."""
    if method == MAX:
        return plan.max(F, x)
    if method == AVE:
        return plan.ave(F, x)
    if phase == _TRAIN:
        return plan.stochastic_train(F, x)
    return plan.stochastic_test(F, x)


def check_plan(layer: Layer, plan: PoolPlan, method: int) -> None:
    """Caffe's CHECKs on one pooling geometry, raised as layer errors."""
    kernel, pad = plan.kernel, plan.pad
    if any(p != 0 for p in pad):
        if method not in (MAX, AVE):
            raise layer.error("Padding implemented only for average and max pooling.")
        if any(p >= k for p, k in zip(pad, kernel)):
            raise layer.error(f"pad {pad} must be smaller than kernel {kernel}")
    if any(o <= 0 for o in plan.out):
        raise layer.error(f"kernel {kernel} larger than the padded input {plan.in_size}")
    axis = plan.empty_window_axis()
    if axis is not None:
        raise layer.error(
            f"the last pooling window along {'HW'[axis]} starts outside the input "
            f"(size {plan.in_size[axis]}, kernel {kernel[axis]} < stride "
            f"{plan.stride[axis]}, no padding): Caffe reads undefined memory there; "
            f"use round_mode: FLOOR")


@register_layer("Pooling", origin="BVLC")
class Pooling(Layer):
    """Caffe's PoolingLayer on 4-D (N, C, H, W) blobs."""

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        pp = self.param.pooling_param
        self.method = int(pp.pool)
        if self.method not in _METHOD_NAMES:
            raise self.error(f"unknown pooling method {self.method}")
        self.is_global = bool(pp.global_pooling)
        has_ksize = pp.HasField("kernel_size")
        has_khw = pp.HasField("kernel_h") or pp.HasField("kernel_w")
        if self.is_global:
            if has_ksize or has_khw:
                raise self.error("With Global_pooling: true Filter size cannot specified")
        else:
            if has_ksize == (pp.HasField("kernel_h") and pp.HasField("kernel_w")):
                raise self.error("Filter size is kernel_size OR kernel_h and kernel_w; not both"
                                 if has_ksize else
                                 "For non-square filters both kernel_h and kernel_w are required.")
            self.kernel = ((pp.kernel_size, pp.kernel_size) if has_ksize
                           else (pp.kernel_h, pp.kernel_w))
            if min(self.kernel) <= 0:
                raise self.error("Filter dimensions cannot be zero.")
        if pp.HasField("pad_h") != pp.HasField("pad_w") or (
                pp.HasField("pad") and pp.HasField("pad_h")):
            raise self.error("pad is pad OR pad_h and pad_w are required.")
        if pp.HasField("stride_h") != pp.HasField("stride_w") or (
                pp.HasField("stride") and pp.HasField("stride_h")):
            raise self.error("Stride is stride OR stride_h and stride_w are required.")
        self.pad = (pp.pad_h, pp.pad_w) if pp.HasField("pad_h") else (pp.pad, pp.pad)
        self.stride = ((pp.stride_h, pp.stride_w) if pp.HasField("stride_h")
                       else (pp.stride, pp.stride))
        if min(self.stride) <= 0:
            raise self.error("stride must be positive")
        if self.is_global and (any(self.pad) or self.stride != (1, 1)):
            raise self.error("With Global_pooling: true; only pad = 0 and stride = 1")
        self.ceil_mode = int(pp.round_mode) == 0
        if len(self.param.top) > 1 and self.method != MAX:
            raise self.error("only MAX pooling has a second (mask) top")

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error("Input must have 4 axes, corresponding to (num, channels, "
                             f"height, width); got shape {shape}")
        in_size = shape[2:]
        kernel = in_size if self.is_global else self.kernel
        plan = PoolPlan.build(in_size, kernel, self.stride, self.pad, self.ceil_mode,
                              self.is_global)
        check_plan(self, plan, self.method)
        if getattr(self, "plan", plan) != plan:
            self._clear_cached_op()     # the graph depends on the plan: rebuild it
        self.plan = plan
        top = shape[:2] + self.plan.out
        return [top] * max(1, len(self.param.top))

    def hybrid_forward(self, F, x):
        y = pool(F, x, self.plan, self.method, self.phase)
        if len(self.param.top) > 1:
            return (y, self.plan.max_mask(F, x))
        return (y,)


def spp_level_plan(level: int, in_size: Sequence[int]) -> PoolPlan:
    """The pooling of SPP pyramid ``level`` (spp_layer.cpp GetPoolingParam).

    ``bins = 2**level``; kernel ``ceil(H / bins)``, stride = kernel, pad
    ``(kernel * bins - H + 1) // 2``, Caffe's ceil-mode pooling.
    """
    bins = 2 ** level
    kernel, pad = [], []
    for size in in_size:
        k = int(math.ceil(size / float(bins)))
        kernel.append(k)
        pad.append((k * bins - size + 1) // 2)
    return PoolPlan.build(tuple(in_size), tuple(kernel), tuple(kernel), tuple(pad), True)


@register_layer("SPP", origin="BVLC")
class SPP(Layer):
    """Caffe's SPPLayer: ``pyramid_height`` poolings (1, 2x2, 4x4 ... bins), each
    flattened, concatenated along axis 1. With ``pyramid_height: 1`` the single pooling's
    4-D output is the top, as in spp_layer.cpp.
    """

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        sp = self.param.spp_param
        if not sp.HasField("pyramid_height") or sp.pyramid_height <= 0:
            raise self.error("pyramid_height must be positive")
        self.pyramid_height = int(sp.pyramid_height)
        self.method = int(sp.pool)
        if self.method not in _METHOD_NAMES:
            raise self.error(f"unknown pooling method {self.method}")

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error("Input must have 4 axes, corresponding to (num, channels, "
                             f"height, width); got shape {shape}")
        if min(shape[2:]) <= 0:
            raise self.error("Input dimensions cannot be zero.")
        plans = [spp_level_plan(level, shape[2:]) for level in range(self.pyramid_height)]
        for plan in plans:
            check_plan(self, plan, self.method)
        if getattr(self, "plans", plans) != plans:
            self._clear_cached_op()     # the graph depends on the plans: rebuild it
        self.plans = plans
        if self.pyramid_height == 1:
            return [shape[:2] + self.plans[0].out]
        total = sum(shape[1] * p.out[0] * p.out[1] for p in self.plans)
        return [(shape[0], total)]

    def hybrid_forward(self, F, x):
        outs = [pool(F, x, plan, self.method, self.phase) for plan in self.plans]
        if self.pyramid_height == 1:
            return (outs[0],)
        return (F.concat(*[F.flatten(o) for o in outs], dim=1),)
