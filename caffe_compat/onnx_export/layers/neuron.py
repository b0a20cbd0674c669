"""Element-wise layers (neuron_layer family, ReLU6) as ONNX ops with Caffe's formulas.

Each emitter cites the Caffe forward it reproduces; where ONNX has the op with the same
definition it is used as is, otherwise the formula is composed from ONNX arithmetic.
The constants Caffe derives at set-up (Exp's inner/outer scale, Log's base scale) are
taken from the engine's layer, which computes them in Caffe's float arithmetic.
"""
from __future__ import annotations

import math

from onnx import TensorProto

from caffe_compat.onnx_export.registry import emits


@emits("ReLU")
def relu(ctx):
    """relu_layer.cpp: ``max(x, 0) + negative_slope * min(x, 0)`` (LeakyRelu's definition)."""
    slope = float(ctx.layer.param.relu_param.negative_slope)
    if slope == 0.0:
        return [ctx.op("Relu", ctx.inputs[0])]
    return [ctx.op("LeakyRelu", ctx.inputs[0], alpha=slope)]


@emits("Sigmoid", "TanH", "AbsVal")
def same_name_op(ctx):
    """sigmoid_layer.cpp, tanh_layer.cpp, absval_layer.cpp: ONNX's Sigmoid, Tanh, Abs."""
    op = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs"}[ctx.layer.type]
    return [ctx.op(op, ctx.inputs[0])]


@emits("ELU")
def elu(ctx):
    """elu_layer.cpp: ``max(x, 0) + alpha * (exp(min(x, 0)) - 1)`` (ONNX Elu)."""
    return [ctx.op("Elu", ctx.inputs[0], alpha=float(ctx.layer.param.elu_param.alpha))]


@emits("BNLL")
def bnll(ctx):
    """bnll_layer.cpp: ``x + log(1 + exp(-x))`` for x > 0, else ``log(1 + exp(x))``, i.e.
    ``relu(x) + log(1 + exp(-|x|))``: composed so that no runtime overflows exp."""
    x = ctx.inputs[0]
    tail = ctx.op("Exp", ctx.op("Neg", ctx.op("Abs", x)))
    return [ctx.op("Add", ctx.op("Relu", x), ctx.op("Log", ctx.op("Add", tail, ctx.const(1.0))))]


@emits("Exp")
def exp(ctx):
    """exp_layer.cpp: ``outer_scale * exp(inner_scale * x)``."""
    layer, y = ctx.layer, ctx.inputs[0]
    if layer.inner_scale != 1.0:
        y = ctx.op("Mul", y, ctx.const(layer.inner_scale))
    y = ctx.op("Exp", y)
    if layer.outer_scale != 1.0:
        y = ctx.op("Mul", y, ctx.const(layer.outer_scale))
    return [y]


@emits("Log")
def log(ctx):
    """log_layer.cpp: ``base_scale * ln(shift + scale * x)``."""
    p, y = ctx.layer.param.log_param, ctx.inputs[0]
    if p.scale != 1.0:
        y = ctx.op("Mul", y, ctx.const(p.scale))
    if p.shift != 0.0:
        y = ctx.op("Add", y, ctx.const(p.shift))
    y = ctx.op("Log", y)
    if ctx.layer.base_scale != 1.0:
        y = ctx.op("Mul", y, ctx.const(ctx.layer.base_scale))
    return [y]


@emits("Power")
def power(ctx):
    """power_layer.cpp: ``(shift + scale * x) ^ power``; a constant when power * scale = 0."""
    p, y = ctx.layer.param.power_param, ctx.inputs[0]
    pw, scale, shift = float(p.power), float(p.scale), float(p.shift)
    if pw * scale == 0.0:
        value = 1.0 if pw == 0.0 else math.pow(shift, pw)
        return [ctx.op("Expand", ctx.const(value), ctx.ints(ctx.top_shapes[0], "shape"))]
    if scale != 1.0:
        y = ctx.op("Mul", y, ctx.const(scale))
    if shift != 0.0:
        y = ctx.op("Add", y, ctx.const(shift))
    if pw != 1.0:
        y = ctx.op("Pow", y, ctx.const(pw))
    return [y]


@emits("Threshold")
def threshold(ctx):
    """threshold_layer.cpp: 1 where ``x > threshold`` (strictly), else 0."""
    t = float(ctx.layer.param.threshold_param.threshold)
    above = ctx.op("Greater", ctx.inputs[0], ctx.const(t))
    return [ctx.op("Cast", above, to=TensorProto.FLOAT)]


@emits("Clip")
def clip(ctx):
    """clip_layer.cpp: ``max(min, min(x, max))`` (ONNX Clip)."""
    p = ctx.layer.param.clip_param
    return [ctx.op("Clip", ctx.inputs[0], ctx.const(p.min), ctx.const(p.max))]


@emits("ReLU6")
def relu6(ctx):
    """relu6_layer.cpp (MobileNet-v2 ports): ``min(max(x, 0), 6)``."""
    return [ctx.op("Clip", ctx.inputs[0], ctx.const(0.0), ctx.const(6.0))]


@emits("Swish")
def swish(ctx):
    """swish_layer.cpp: ``x * sigmoid(beta * x)``."""
    x, beta = ctx.inputs[0], float(ctx.layer.param.swish_param.beta)
    z = x if beta == 1.0 else ctx.op("Mul", x, ctx.const(beta))
    return [ctx.op("Mul", x, ctx.op("Sigmoid", z))]


@emits("PReLU")
def prelu(ctx):
    """prelu_layer.cpp: ``max(x, 0) + slope_c * min(x, 0)``, one slope per channel (axis 1)
    or one shared (ONNX PRelu with the slope broadcast over the channel axis)."""
    rank = len(ctx.bottom_shapes[0])
    shared = ctx.layer.param.prelu_param.channel_shared
    channels = ctx.layer.slope.shape[0]
    shape = (1,) if shared else (channels,) + (1,) * (rank - 2)
    return [ctx.op("PRelu", ctx.inputs[0], ctx.blob("slope", shape))]


@emits("Dropout")
def dropout(ctx):
    """dropout_layer.cpp: TEST copies the bottom; TRAIN draws random masks."""
    layer = ctx.layer
    if layer.passes_bottom_through():
        return [ctx.inputs[0]]
    raise ctx.refuse("Dropout in TRAIN phase draws random masks; export the TEST phase")
