"""LRN: Caffe's local response normalization (lrn_layer.cpp).

* ACROSS_CHANNELS: ``x * (k + alpha/n * sum_{n neighbouring channels} x^2) ^ -beta``,
  zero-padded across channels. MXNet's LRN op computes the same formula (its ``knorm``
  is Caffe's ``k``, passed explicitly since MXNet's default is 2); its oneDNN kernel
  agrees with Caffe's formula to ~5e-8 relative for AlexNet/GoogLeNet parameters
  (worst seen 3.4e-6 with alpha = 10), within the 1e-5 budget, and is ~25x faster
  than composing the op from elementwise ops, so the op is used as is.
* WITHIN_CHANNEL: ``x * (1 + alpha * avg_{n x n window} x^2) ^ -beta`` (``k`` ignored).
  Caffe builds it from Power, AVE Pooling (pad (n-1)/2, stride 1, divisor always n*n,
  no ceil overhang) and Eltwise PROD; composed the same way here.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "n" type: "LRN" '
...                       'lrn_param { local_size: 5 alpha: 1e-4 beta: 0.75 }',
...                       caffe_pb2.LayerParameter())
>>> build_layer(p, [(1, 16, 8, 8)]).top_shapes
[(1, 16, 8, 8)]
"""
from __future__ import annotations

from caffe_compat.engine.onednn import plain_layout_grad
from caffe_compat.engine.layer import Layer, register_layer

ACROSS_CHANNELS, WITHIN_CHANNEL = 0, 1


@register_layer("LRN", origin="BVLC")
class LRN(Layer):
    """Caffe's LRNLayer on 4-D blobs."""

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        lp = self.param.lrn_param
        self.size = int(lp.local_size)
        if self.size % 2 != 1:
            raise self.error("LRN only supports odd values for local_size")
        self.alpha, self.beta, self.k = float(lp.alpha), float(lp.beta), float(lp.k)
        self.region = int(lp.norm_region)
        if self.region not in (ACROSS_CHANNELS, WITHIN_CHANNEL):
            raise self.error(f"Unknown normalization region {self.region}")

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error("Input must have 4 axes, corresponding to (num, channels, "
                             f"height, width); got shape {shape}")
        return [shape]

    def hybrid_forward(self, F, x):
        n = self.size
        if self.region == ACROSS_CHANNELS:
            # oneDNN's LRN backward misreads blocked-layout gradients (engine/onednn.py)
            y = F.LRN(x, alpha=self.alpha, beta=self.beta, knorm=self.k, nsize=n)
            return (plain_layout_grad(F, y),)
        pad = (n - 1) // 2
        mean_sq = F.Pooling(F.square(x), kernel=(n, n), stride=(1, 1), pad=(pad, pad),
                            pool_type="avg", pooling_convention="full",
                            count_include_pad=True)
        return (x * ((mean_sq * self.alpha + 1.0) ** (-self.beta)),)
