"""Caffe's Softmax layer.

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "prob" type: "Softmax"', caffe_pb2.LayerParameter())
    >>> run_layer(build_layer(p, [(1, 2)]), mx.nd.array([[0, 0]]))[0].asnumpy()
    array([[0.5, 0.5]], dtype=float32)
"""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.layer import Layer, Shape, canonical_axis, register_layer


@register_layer("Softmax", origin="BVLC")
class Softmax(Layer):
    """softmax_layer.cpp: exp(x - max) / sum exp(x - max) along ``softmax_param.axis``
    (default 1); gradient ``(top_diff - sum(top_diff * y)) * y`` along that axis."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = tuple(bottom_shapes[0])
        self.axis = canonical_axis(self.param.softmax_param.axis, len(shape))
        return [shape]

    def hybrid_forward(self, F, x):
        return (F.softmax(x, axis=self.axis),)
