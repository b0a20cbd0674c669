"""Caffe's element-wise "neuron" layers: one bottom, one top of the same shape.

Each forward reproduces the Caffe formula; the backward is MXNet's autograd of it, which
equals Caffe's Backward, including the value at kinks (noted per layer):

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "r" type: "ReLU" relu_param { negative_slope: 0.1 }',
    ...                       caffe_pb2.LayerParameter())
    >>> run_layer(build_layer(p, [(1, 3)]), mx.nd.array([[-1, 0, 2]]))[0].asnumpy()
    array([[-0.1,  0. ,  2. ]], dtype=float32)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from caffe_compat.engine.fillers import filler_or_default
from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.proto import caffe_pb2


class NeuronLayer(Layer):
    """Caffe's NeuronLayer: exactly one bottom, top shaped like it."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        return [tuple(bottom_shapes[0])]


@register_layer("ReLU", origin="BVLC")
class ReLU(NeuronLayer):
    """max(x, 0) + negative_slope * min(x, 0); gradient at x == 0 is negative_slope
    (relu_layer.cpp: ``(x > 0) + negative_slope * (x <= 0)``)."""

    def hybrid_forward(self, F, x):
        slope = float(self.param.relu_param.negative_slope)
        if slope == 0.0:
            # Activation(relu) is the oneDNN kernel (F.relu is not): same values, and
            # the gradient is Caffe's top_diff * (x > 0).
            return (F.Activation(x, act_type="relu"),)
        return (F.LeakyReLU(x, act_type="leaky", slope=slope),)


@register_layer("Sigmoid", origin="BVLC")
class Sigmoid(NeuronLayer):
    """1 / (1 + exp(-x)); gradient y * (1 - y) (sigmoid_layer.cpp)."""

    def hybrid_forward(self, F, x):
        return (F.sigmoid(x),)


@register_layer("TanH", origin="BVLC")
class TanH(NeuronLayer):
    """tanh(x); gradient 1 - y^2 (tanh_layer.cpp)."""

    def hybrid_forward(self, F, x):
        return (F.tanh(x),)


@register_layer("AbsVal", origin="BVLC")
class AbsVal(NeuronLayer):
    """|x|; gradient sign(x), 0 at x == 0 (absval_layer.cpp's caffe_cpu_sign)."""

    def hybrid_forward(self, F, x):
        return (F.abs(x),)


@register_layer("BNLL", origin="BVLC")
class BNLL(NeuronLayer):
    """log(1 + exp(x)), as bnll_layer.cpp evaluates it: ``x + log(1 + exp(-x))`` for
    x > 0, ``log(1 + exp(x))`` otherwise; gradient sigmoid(x) (0.5 at x == 0)."""

    def hybrid_forward(self, F, x):
        positive = F.relu(x)
        # x - 2*relu(x) == -|x| with derivative 1 at x == 0, so autograd gives 0.5 there.
        return (positive + F.log1p(F.exp(x - 2 * positive)),)


@register_layer("ELU", origin="BVLC")
class ELU(NeuronLayer):
    """max(x, 0) + alpha * (exp(min(x, 0)) - 1); gradient 1 for x > 0 else y + alpha
    (elu_layer.cpp; alpha at x == 0)."""

    def hybrid_forward(self, F, x):
        alpha = float(self.param.elu_param.alpha)
        positive = F.relu(x)
        return (positive + alpha * F.expm1(x - positive),)


@register_layer("Exp", origin="BVLC")
class Exp(NeuronLayer):
    """base^(shift + scale * x), base -1 meaning e (exp_layer.cpp: computed as
    ``outer_scale * exp(inner_scale * x)`` with inner = ln(base) * scale,
    outer = base^shift, both in float)."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        p = self.param.exp_param
        base = np.float32(p.base)
        if not (base > 0 or base == -1):
            raise self.error(f"exp_param.base must be positive or -1 (for e), got {p.base}")
        log_base = np.float32(1.0) if base == -1 else np.float32(math.log(base))
        self.inner_scale = float(log_base * np.float32(p.scale))
        if p.shift == 0:
            self.outer_scale = 1.0
        elif base == -1:
            self.outer_scale = float(np.float32(math.exp(p.shift)))
        else:
            self.outer_scale = float(np.float32(math.pow(base, p.shift)))

    def hybrid_forward(self, F, x):
        y = F.exp(x) if self.inner_scale == 1.0 else F.exp(self.inner_scale * x)
        if self.outer_scale != 1.0:
            y = self.outer_scale * y
        return (y,)


@register_layer("Log", origin="BVLC")
class Log(NeuronLayer):
    """log_base(shift + scale * x), base -1 meaning e (log_layer.cpp: natural log times
    1 / ln(base))."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        p = self.param.log_param
        base = np.float32(p.base)
        if not (base > 0 or base == -1):
            raise self.error(f"log_param.base must be positive or -1 (for e), got {p.base}")
        self.base_scale = 1.0 if base == -1 else float(np.float32(1.0 / math.log(base)))

    def hybrid_forward(self, F, x):
        p = self.param.log_param
        if p.scale != 1.0:
            x = float(p.scale) * x
        if p.shift != 0.0:
            x = x + float(p.shift)
        y = F.log(x)
        if self.base_scale != 1.0:
            y = self.base_scale * y
        return (y,)


@register_layer("Power", origin="BVLC")
class Power(NeuronLayer):
    """(shift + scale * x)^power (power_layer.cpp). When power * scale == 0 the top is the
    constant ``1`` (power 0) or ``shift^power`` and the gradient is 0.

    Caffe's Backward divides ``y / (shift + scale * x)`` for powers other than 1 and 2,
    which is NaN where the base is exactly 0; autograd gives the analytic value there.
    """

    def hybrid_forward(self, F, x):
        p = self.param.power_param
        power, scale, shift = float(p.power), float(p.scale), float(p.shift)
        if power * scale == 0.0:
            value = 1.0 if power == 0.0 else math.pow(shift, power)
            return (F.zeros_like(x) + value,)
        y = x
        if scale != 1.0:
            y = scale * y
        if shift != 0.0:
            y = y + shift
        if power != 1.0:
            y = y ** power
        return (y,)


@register_layer("Threshold", origin="BVLC")
class Threshold(NeuronLayer):
    """1 where x > threshold (strictly), else 0 (threshold_layer.cpp).

    Caffe has no Backward for it; here the top carries no gradient (BlockGrad).
    """

    has_backward = False    # Caffe has no Backward: pycaffe skips the layer

    def allow_backward(self, bottom_index: int) -> bool:
        return False

    def hybrid_forward(self, F, x):
        return (F.BlockGrad(x) > float(self.param.threshold_param.threshold),)


@register_layer("Clip", origin="BVLC")
class Clip(NeuronLayer):
    """max(min, min(x, max)); gradient passes where min <= x <= max, bounds included
    (clip_layer.cpp; MXNet's clip backward uses the same closed interval)."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        p = self.param.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise self.error("clip_param needs both min and max")
        if p.min > p.max:
            raise self.error(f"clip_param.min ({p.min}) is greater than max ({p.max})")

    def hybrid_forward(self, F, x):
        p = self.param.clip_param
        return (F.clip(x, float(p.min), float(p.max)),)


@register_layer("Swish", origin="BVLC")
class Swish(NeuronLayer):
    """x * sigmoid(beta * x) (swish_layer.cpp); gradient
    ``beta * y + sigmoid(beta x) * (1 - beta * y)``."""

    def hybrid_forward(self, F, x):
        beta = float(self.param.swish_param.beta)
        return (x * F.sigmoid(beta * x),)


@register_layer("PReLU", origin="BVLC")
class PReLU(NeuronLayer):
    """max(x, 0) + slope_c * min(x, 0), one learnable slope per channel (axis 1) or one
    shared (prelu_layer.cpp). Blob 0: shape (C,), or (1,) when channel_shared (Caffe's
    shared blob is 0-d with count 1: ``caffe_blob_shapes`` says so for writers of
    .caffemodel files). Default filler: constant 0.25.

    Gradients as Caffe: slope where x <= 0 (x == 0 included) for the bottom;
    ``sum top_diff * x * (x <= 0)`` over batch and space for the slope.
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = bottom_shapes[0]
        if len(shape) < 2:
            raise self.error("the bottom must have at least 2 axes (N, C, ...)")
        p = self.param.prelu_param
        filler = filler_or_default(p.filler, p.HasField("filler"), 0.25)
        self.add_blob("slope", (1,) if p.channel_shared else (shape[1],), filler)
        #: Caffe's own blob shapes, where they differ from the MXNet ones (0-d shared slope).
        self.caffe_blob_shapes = [() if p.channel_shared else (shape[1],)]

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        tops = super().reshape(bottom_shapes)
        shape = bottom_shapes[0]
        if len(shape) < 2:
            raise self.error("the bottom must have at least 2 axes (N, C, ...)")
        if not self.param.prelu_param.channel_shared and self.slope.shape[0] != shape[1]:
            raise self.error(f"has {self.slope.shape[0]} slopes but the bottom has "
                             f"{shape[1]} channels")
        self.slope_shape = (1, -1) + (1,) * (len(shape) - 2)
        return tops

    def hybrid_forward(self, F, x, slope):
        positive = F.relu(x)
        # x - relu(x) == min(x, 0), with derivative 1 at x == 0 (Caffe's x <= 0 rule).
        return (positive + F.broadcast_mul(F.reshape(slope, shape=self.slope_shape),
                                           x - positive),)


@register_layer("Dropout", origin="BVLC")
class Dropout(NeuronLayer):
    """Caffe's inverted dropout (dropout_layer.cpp): in TRAIN each element is kept with
    probability 1 - dropout_ratio and scaled by 1 / (1 - dropout_ratio); TEST copies.

    Two forks' fields (dropout_layer.cpp of each):

    * ``scale_train: false`` (rbgirshick/caffe-fast-rcnn, py-faster-rcnn's ZF/VGG_CNN_M
      nets): kept elements are not scaled at TRAIN, and TEST multiplies by
      1 - dropout_ratio instead;
    * ``sample_weights_test: true`` (SegNet's Bayesian SegNet): TEST drops too, as TRAIN
      (Monte-Carlo dropout: every forward samples a new mask).

    The layer's phase decides, not MXNet's ``autograd.is_training()``. Masks come from
    MXNet's random generator (``mx.random.seed``), so they differ from Caffe's.
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        dp = self.param.dropout_param
        self.ratio = float(dp.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.samples = self.phase == caffe_pb2.TRAIN or dp.sample_weights_test
        self.scale_train = dp.scale_train

    def passes_bottom_through(self) -> bool:
        return self.ratio == 0.0 or (not self.samples and self.scale_train)

    def hybrid_forward(self, F, x):
        if self.ratio == 0.0:
            return (F.identity(x),)
        if not self.samples:
            return (F.identity(x) if self.scale_train else x * (1.0 - self.ratio),)
        y = F.Dropout(x, p=self.ratio, mode="always")      # x * mask / (1 - ratio)
        return (y if self.scale_train else y * (1.0 - self.ratio),)
