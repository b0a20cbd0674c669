"""Caffe's Eltwise layer: element-wise SUM (with coefficients), PROD or MAX of bottoms.

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "e" type: "Eltwise" '
    ...     'eltwise_param { operation: SUM coeff: 1 coeff: -1 }', caffe_pb2.LayerParameter())
    >>> a, b = mx.nd.array([3, 4]), mx.nd.array([1, 1])
    >>> run_layer(build_layer(p, [(2,), (2,)]), a, b)[0].asnumpy()
    array([2., 3.], dtype=float32)
"""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.proto import caffe_pb2

_OP = caffe_pb2.EltwiseParameter


@register_layer("Eltwise", origin="BVLC")
class Eltwise(Layer):
    """eltwise_layer.cpp semantics:

    * SUM: ``sum_i coeff_i * bottom_i`` accumulated in bottom order; gradient
      ``coeff_i * top_diff``.
    * PROD: ``bottom_0 * bottom_1 * ...``; gradient to bottom i is top_diff times the
      product of the other bottoms (Caffe's default ``stable_prod_grad``; with
      ``stable_prod_grad: false`` Caffe divides top by bottom, which is NaN where a
      bottom is exactly 0; autograd gives the product of the others there too).
    * MAX: the gradient goes to exactly one bottom per element, the one Caffe's forward
      records: bottom 0 only if strictly greater than bottom 1 (a 0/1 tie goes to
      bottom 1), then bottom k >= 2 only if strictly greater than the running max (later
      ties keep the earlier bottom).
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        p = self.param.eltwise_param
        if len(bottom_shapes) < 2:
            raise self.error(f"takes at least 2 bottom blobs, got {len(bottom_shapes)}")
        if len(p.coeff) not in (0, len(bottom_shapes)):
            raise self.error(f"takes one coefficient per bottom blob ({len(bottom_shapes)}), "
                             f"got {len(p.coeff)}")
        if p.operation != _OP.SUM and len(p.coeff):
            raise self.error("coefficients are only allowed for SUM")

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        first = tuple(bottom_shapes[0])
        for i, s in enumerate(bottom_shapes[1:], start=1):
            if tuple(s) != first:
                raise self.error(f"bottom {i} has shape {tuple(s)} but bottom 0 has {first}")
        return [first]

    def hybrid_forward(self, F, *bottoms):
        op = self.param.eltwise_param.operation
        if op == _OP.SUM:
            coeffs = list(self.param.eltwise_param.coeff) or [1.0] * len(bottoms)
            terms = [b if float(c) == 1.0 else float(c) * b for c, b in zip(coeffs, bottoms)]
            if len(terms) > 1 and all(float(c) == 1.0 for c in coeffs):
                return (F.add_n(*terms),)   # Caffe's sum of the bottoms, in one pass
            top = terms[0]
            for t in terms[1:]:
                top = top + t
            return (top,)
        if op == _OP.PROD:
            top = bottoms[0] * bottoms[1]
            for b in bottoms[2:]:
                top = top * b
            return (top,)
        if op == _OP.MAX:
            return (self._max(F, bottoms),)
        raise self.error(f"unknown eltwise operation {op}")

    @staticmethod
    def _max(F, bottoms):
        # The winner of each element as eltwise_layer.cpp records it in max_idx_,
        # computed on gradient-free copies; pick() then sends the top diff to the winner
        # only. (Not F.where on the live bottoms: MXNet 1.9's imperative backward
        # crashes when a zero gradient reaches where/concat through another op.)
        values = [F.BlockGrad(b) for b in bottoms]
        winner = 1 - (values[0] > values[1])  # bottom 0 wins only if strictly greater
        running = F.maximum(values[0], values[1])
        for k in range(2, len(bottoms)):
            better = values[k] > running      # later bottoms win only if strictly greater
            winner = F.where(better, F.ones_like(winner) * k, winner)
            running = F.maximum(running, values[k])
        return F.pick(F.stack(*bottoms, axis=0), winner, axis=0)
