"""InnerProduct and Embed (inner_product_layer.cpp, embed_layer.cpp)."""
from __future__ import annotations

from onnx import TensorProto

from caffe_compat.onnx_export.registry import emits


@emits("InnerProduct")
def inner_product(ctx):
    """``x W^T + b`` on the bottom flattened from ``axis`` on (the axes before it kept):
    ONNX Flatten at ``axis``, Gemm with Caffe's ``(num_output, K)`` weight as ``B^T``
    (``(K, num_output)`` as is with ``transpose: true``), then Caffe's top shape."""
    layer, top = ctx.layer, tuple(ctx.top_shapes[0])
    rows = ctx.op("Flatten", ctx.inputs[0], axis=layer.axis)
    inputs = [rows, ctx.blob("weight")] + ([ctx.blob("bias")] if layer.bias_term else [])
    y = ctx.op("Gemm", *inputs, transB=0 if layer.transpose else 1)
    return [y if len(top) == 2 else ctx.reshape(y, top)]


@emits("Embed")
def embed(ctx):
    """Rows of the ``(input_dim, num_output)`` weight picked by ``int(x)`` (+ bias)."""
    index = ctx.op("Cast", ctx.inputs[0], to=TensorProto.INT64)     # truncates, as C++
    y = ctx.op("Gather", ctx.blob("weight"), index, axis=0)
    if ctx.layer.bias_term:
        y = ctx.op("Add", y, ctx.blob("bias"))
    return [y]
