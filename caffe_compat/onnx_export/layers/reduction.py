"""Reduction and ArgMax (reduction_layer.cpp, argmax_layer.cpp)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from caffe_compat.onnx_export.registry import emits
from caffe_compat.proto import caffe_pb2

_OP = caffe_pb2.ReductionParameter


@emits("Reduction")
def reduction(ctx):
    """SUM, ASUM, SUMSQ or MEAN over all axes from ``axis`` on, times ``coeff`` (for
    MEAN the engine's coeff already holds Caffe's ``coeff / dim``). Reduced with kept
    dims, then reshaped to Caffe's top shape (OpenCV 4.11 mis-broadcasts a Mul after a
    Reduce that drops dims)."""
    layer, shape = ctx.layer, tuple(ctx.bottom_shapes[0])
    rows = ctx.reshape(ctx.inputs[0], shape[:layer.axis] + (-1,))
    op = layer.param.reduction_param.operation
    axis = [layer.axis]
    if op == _OP.ASUM:
        top = ctx.op("ReduceL1", rows, axes=axis, keepdims=1)
    elif op == _OP.SUMSQ:
        top = ctx.op("ReduceSumSquare", rows, axes=axis, keepdims=1)
    else:
        top = ctx.op("ReduceSum", rows, ctx.ints(axis, "axes"), keepdims=1)
    if layer.coeff != 1.0:
        top = ctx.op("Mul", top, ctx.const(layer.coeff, "coeff"))
    return [ctx.reshape(top, ctx.top_shapes[0])]


@emits("ArgMax")
def argmax(ctx):
    """The ``top_k`` largest per item in Caffe's order: larger value first, equal values
    by DEcreasing index (std::partial_sort with std::greater on (value, index) pairs).

    ONNX TopK breaks ties by increasing index, so it runs on the axis reversed (a Gather;
    runtimes disagree on Slice with negative steps) and the indices are mapped back
    (``dim - 1 - i``): exact, ties included. Indices are float, as Caffe stores them.
    """
    layer = ctx.layer
    p = layer.param.argmax_param
    x = ctx.inputs[0]
    axis, dim = layer.axis, layer.work_shape[layer.axis]
    if not p.HasField("axis"):
        x = ctx.reshape(x, layer.work_shape)
    backwards = np.arange(dim - 1, -1, -1, dtype=np.int64)
    reversed_x = ctx.op("Gather", x, ctx.const(backwards, "backwards", np.int64), axis=axis)
    values, rev_index = ctx.op("TopK", reversed_x, ctx.ints([int(p.top_k)], "k"), axis=axis,
                               largest=1, sorted=1, num_outputs=2)
    index = ctx.op("Sub", ctx.const(dim - 1, "last", np.int64), rev_index)
    index = ctx.op("Cast", index, to=TensorProto.FLOAT)
    if p.HasField("axis"):
        return [values if p.out_max_val else index]
    out = ctx.op("Concat", index, values, axis=1) if p.out_max_val else index
    return [ctx.reshape(out, ctx.top_shapes[0])]
