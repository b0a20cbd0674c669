"""SELU nets' layers (the SNN Caffe layers, HolmesShuan/SNNs-Self-Normalizing-Neural-
Networks-Caffe-Reimplementation, used by soeaver's PSPNet SELU deploys).

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "s" type: "SeLu"', caffe_pb2.LayerParameter())
    >>> y = run_layer(build_layer(p, [(1, 2)]), mx.nd.array([[-1.0, 2.0]]))[0].asnumpy()
    >>> [round(float(v), 5) for v in y[0]]
    [-1.11133, 2.1014]
"""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.layer import Shape, register_layer
from caffe_compat.engine.layers.neuron import NeuronLayer
from caffe_compat.proto import caffe_pb2

_ORIGIN = "SELU (HolmesShuan/SNNs Caffe layers; soeaver PSPNet)"


@register_layer("SeLu", origin=_ORIGIN)
class SeLu(NeuronLayer):
    """selu_layer.cpp: ``lambda * x`` for x > 0, ``lambda * alpha * (exp(x) - 1)``
    otherwise. Its Backward reads ``bottom_data``: in place that is the layer's own
    output y, so Caffe's gradient for x <= 0 is ``lambda * alpha * exp(y)`` there (not
    ``exp(x)``); reproduced, since the nets that use it run it in place."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        sp = self.param.selu_param
        self.lam, self.alpha = float(getattr(sp, "lambda")), float(sp.alpha)  # lambda: keyword
        self.in_place = bool(self.param.top) and self.param.top[0] == self.param.bottom[0]

    def hybrid_forward(self, F, x):
        positive = F.BlockGrad(x > 0)
        y = positive * (self.lam * x) + (1 - positive) * (self.lam * self.alpha * (F.exp(x) - 1))
        if not self.in_place:
            return (y,)
        # top_diff * (lambda if y > 0 else lambda * alpha * exp(y)), as selu_layer.cpp in place
        slope = F.BlockGrad(positive * self.lam
                            + (1 - positive) * self.lam * self.alpha * F.exp(F.BlockGrad(y)))
        return (F.BlockGrad(y) + slope * (x - F.BlockGrad(x)),)


@register_layer("SeLuDropout", origin=_ORIGIN)
class SeLuDropout(NeuronLayer):
    """selu_dropout_layer.cpp (alpha dropout): TRAIN keeps an element with probability
    q = 1 - dropout_ratio and gives ``a * (kept ? x : alpha) + b`` with
    ``a = (q (1 + alpha^2 (1 - q)))^-1/2``, ``b = -a (1 - q) alpha``; TEST copies."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        dp = self.param.selu_dropout_param
        self.ratio, self.alpha = float(dp.dropout_ratio), float(dp.alpha)
        if not 0.0 < self.ratio < 1.0:
            raise self.error(f"dropout_ratio must be in (0, 1), got {self.ratio}")
        q = 1.0 - self.ratio
        self.a = (q * (1.0 + self.alpha ** 2 * (1.0 - q))) ** -0.5
        self.b = -self.a * (1.0 - q) * self.alpha

    def passes_bottom_through(self) -> bool:
        return self.phase != caffe_pb2.TRAIN

    def hybrid_forward(self, F, x):
        if self.phase != caffe_pb2.TRAIN:
            return (F.identity(x),)
        kept = F.BlockGrad(F.random.uniform_like(x) >= self.ratio)
        return (self.a * (kept * x + (1 - kept) * self.alpha) + self.b,)
