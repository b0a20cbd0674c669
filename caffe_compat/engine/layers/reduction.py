"""Caffe's Reduction and ArgMax layers.

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "am" type: "ArgMax" argmax_param { top_k: 2 }',
    ...                       caffe_pb2.LayerParameter())
    >>> layer = build_layer(p, [(1, 4)])
    >>> layer.top_shapes
    [(1, 1, 2)]
    >>> run_layer(layer, mx.nd.array([[1, 5, 5, 2]]))[0].asnumpy()   # ties: higher index first
    array([[[2., 1.]]], dtype=float32)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from caffe_compat.engine.layer import Layer, Shape, canonical_axis, count, register_layer
from caffe_compat.proto import caffe_pb2

_OP = caffe_pb2.ReductionParameter


@register_layer("Reduction", origin="BVLC")
class Reduction(Layer):
    """reduction_layer.cpp: reduces all axes from ``axis`` (default 0) on with SUM, ASUM
    (sum of |x|), SUMSQ (sum of x^2) or MEAN, times ``coeff``. Top shape = bottom
    shape[:axis] (a 0-d Caffe blob for axis 0, held as (1,) in MXNet).

    Gradients as Caffe: coeff, coeff * sign(x) (0 at 0), 2 * coeff * x, coeff / dim.
    """

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = list(bottom_shapes[0])
        p = self.param.reduction_param
        if p.operation not in (_OP.SUM, _OP.ASUM, _OP.SUMSQ, _OP.MEAN):
            raise self.error(f"unknown reduction operation {p.operation}")
        self.axis = canonical_axis(p.axis, len(shape))
        coeff = np.float32(p.coeff)
        if p.operation == _OP.MEAN:
            coeff = coeff / np.float32(count(shape, self.axis))  # Caffe: coeff_ /= dim_
        self.coeff = float(coeff)
        return [tuple(shape[:self.axis])]

    def hybrid_forward(self, F, x):
        op = self.param.reduction_param.operation
        rows = F.reshape(x, shape=(0,) * self.axis + (-1,))
        if op == _OP.ASUM:
            rows = F.abs(rows)
        elif op == _OP.SUMSQ:
            rows = F.square(rows)
        top = F.sum(rows, axis=self.axis)
        if self.coeff != 1.0:
            top = top * self.coeff
        return (top,)


@register_layer("ArgMax", origin="BVLC")
class ArgMax(Layer):
    """argmax_layer.cpp: the ``top_k`` largest entries per item.

    * without ``axis``: over all dims after the first; top (N, 1, top_k) holding the
      indices, or (N, 2, top_k) with ``out_max_val`` (indices, then values); padded with
      trailing 1s to the bottom's number of axes when it has more than 3;
    * with ``axis``: along that axis; top = bottom shape with that dim set to top_k,
      holding the values if ``out_max_val``, else the indices.

    Order as Caffe's ``std::partial_sort`` of (value, index) pairs with
    ``std::greater``: larger value first, equal values by DEcreasing index. Caffe has no
    Backward for ArgMax: the top carries no gradient.
    """

    has_backward = False    # Caffe has no Backward: pycaffe skips the layer

    def allow_backward(self, bottom_index: int) -> bool:
        return False

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = list(bottom_shapes[0])
        p = self.param.argmax_param
        k = int(p.top_k)
        if k < 1:
            raise self.error("top_k must not be less than 1")
        if p.HasField("axis"):
            self.axis = canonical_axis(p.axis, len(shape))
            if k > shape[self.axis]:
                raise self.error(f"top_k {k} exceeds dimension {shape[self.axis]} of axis "
                                 f"{self.axis}")
            self.work_shape = tuple(shape)
            top = list(shape)
            top[self.axis] = k
            return [tuple(top)]
        if k > count(shape, 1):
            raise self.error(f"top_k {k} exceeds the {count(shape, 1)} values per item")
        self.axis = 1
        self.work_shape = (shape[0], count(shape, 1))
        top = [1] * max(len(shape), 3)
        top[0], top[2] = shape[0], k
        if p.out_max_val:
            top[1] = 2
        self.top_shape = tuple(top)
        return [tuple(top)]

    def hybrid_forward(self, F, x):
        p = self.param.argmax_param
        x = F.BlockGrad(x)        # stop first: no op of ours between x and the cut
        if not p.HasField("axis"):
            x = F.reshape(x, shape=(0, -1))
        indices, values = self._top_k(F, x)
        if p.HasField("axis"):
            return (values if p.out_max_val else indices,)
        out = F.concat(indices, values, dim=1) if p.out_max_val else indices
        return (F.reshape(out, shape=self.top_shape),)

    def _top_k(self, F, x):
        """(indices, values) of the top_k entries along self.axis, each with that axis of
        size top_k, in Caffe's (value, index)-descending order."""
        axis, shape = self.axis, self.work_shape
        dim = shape[axis]
        position = F.reshape(F.arange(0, dim), shape=tuple(dim if d == axis else 1
                                                           for d in range(len(shape))))
        position = F.broadcast_like(position, x)
        taken = F.zeros_like(x)
        minus_inf = F.ones_like(x) * float("-inf")
        indices, values = [], []
        for _ in range(int(self.param.argmax_param.top_k)):
            free = F.where(taken, minus_inf, x)
            best = F.max(free, axis=axis, keepdims=True)
            is_best = F.broadcast_equal(free, best) * (1 - taken)
            # The highest index among the (untaken) maxima: candidates score index + 1.
            index = F.max(is_best * (position + 1), axis=axis, keepdims=True) - 1
            taken = taken + F.broadcast_equal(position, index)
            indices.append(index)
            values.append(best)
        if len(indices) == 1:
            return indices[0], values[0]
        return F.concat(*indices, dim=axis), F.concat(*values, dim=axis)
