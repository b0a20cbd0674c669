"""Eltwise, Scale, Bias and SENet's Axpy: element-wise arithmetic between blobs.

Scale/Bias operands span bottom[0]'s axes ``[axis, axis + operand.ndim)``; ONNX
broadcasting aligns shapes from the right, so the operand is given trailing unit axes
(the engine's layer holds ``axis``, the operand rank and the trailing count it checked
at reshape).
"""
from __future__ import annotations

from caffe_compat.onnx_export.registry import emits
from caffe_compat.proto import caffe_pb2

_OP = caffe_pb2.EltwiseParameter


@emits("Eltwise")
def eltwise(ctx):
    """eltwise_layer.cpp: SUM ``top += coeff_i * bottom_i`` in bottom order, PROD, MAX;
    as chains of two-input ops (OpenCV 4.11 computes a three-input Max wrongly)."""
    p, bottoms = ctx.layer.param.eltwise_param, ctx.inputs
    if p.operation in (_OP.MAX, _OP.PROD):
        op = "Max" if p.operation == _OP.MAX else "Mul"
        top = bottoms[0]
        for b in bottoms[1:]:
            top = ctx.op(op, top, b)
        return [top]
    coeffs = [float(c) for c in p.coeff] or [1.0] * len(bottoms)
    terms = [b if c == 1.0 else ctx.op("Mul", b, ctx.const(c, "coeff"))
             for c, b in zip(coeffs, bottoms)]
    top = terms[0]
    for t in terms[1:]:
        top = ctx.op("Add", top, t)
    return [top]


def _operand(ctx, blob_name: str) -> str:
    """The Scale/Bias operand shaped to broadcast against bottom[0]."""
    layer = ctx.layer
    if layer.two_bottoms:
        shape = tuple(ctx.bottom_shapes[1])
        value = ctx.inputs[1]
        if layer.trailing:
            value = ctx.reshape(value, shape + (1,) * layer.trailing)
        return value
    if layer.operand_ndim == 0:
        return ctx.blob(blob_name, ())
    shape = tuple(getattr(layer, blob_name).shape) + (1,) * layer.trailing
    return ctx.blob(blob_name, shape)


@emits("Scale")
def scale(ctx):
    """scale_layer.cpp: ``bottom[0] * scale`` (a blob or bottom[1]), then its internal
    Bias layer's ``+ bias`` with ``bias_term``."""
    y = ctx.op("Mul", ctx.inputs[0], _operand(ctx, "scale"))
    if ctx.layer.bias_term:
        layer = ctx.layer
        shape = () if layer.operand_ndim == 0 else (
            tuple(layer.bias.shape) + (1,) * layer.trailing)
        y = ctx.op("Add", y, ctx.blob("bias", shape))
    return [y]


@emits("Bias")
def bias(ctx):
    """bias_layer.cpp: ``bottom[0] + bias`` (a blob or bottom[1])."""
    return [ctx.op("Add", ctx.inputs[0], _operand(ctx, "bias"))]


@emits("Axpy")
def axpy(ctx):
    """axpy_layer.cpp (SENet): ``a * x + y`` with ``a`` of shape (N, C) or (N, C, 1, 1)."""
    a, x, y = ctx.inputs
    shape = tuple(ctx.bottom_shapes[1])
    a = ctx.reshape(a, shape[:2] + (1,) * (len(shape) - 2))
    return [ctx.op("Add", ctx.op("Mul", a, x), y)]
