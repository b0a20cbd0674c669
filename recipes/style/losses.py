"""The three terms of Gatys et al.'s objective, as MXNet ops (autograd runs through them).

Normalisation (Gatys, Ecker & Bethge 2015, "A Neural Algorithm of Artistic Style",
eqs. 1, 3-5, and fzliu/style-transfer, the classic Caffe implementation):

* content, per layer:  ``0.5 * sum((F - P) ** 2)``  (F, P: C x HW feature maps);
* style, per layer:    ``E = sum((G - A) ** 2) / (4 * N**2 * M**2)`` with ``G = F F^T``,
  N = channels, M = H*W. Here the Gram matrices are divided by their own M,
  ``G = F F^T / M``, and ``E = sum((G - A) ** 2) / (4 * N**2)``: the same number when
  the style image has the picture's size, and still well defined when it has not;
* total variation (Mahendran & Vedaldi's beta = 2 regulariser, as in jcjohnson's
  neural-style): ``sum of squared differences of vertically and horizontally
  neighbouring pixels``, over all channels.

>>> import mxnet as mx
>>> f = mx.nd.ones((1, 2, 3, 3))
>>> gram(f).asnumpy()
array([[1., 1.],
       [1., 1.]], dtype=float32)
>>> float(tv_loss(f).asscalar())
0.0
"""
from __future__ import annotations

import mxnet as mx


def gram(features: mx.nd.NDArray) -> mx.nd.NDArray:
    """C x C Gram matrix of one (1, C, H, W) feature map, divided by M = H * W."""
    c = features.shape[1]
    m = features.size // c
    f = features.reshape((c, m))
    return mx.nd.dot(f, f, transpose_b=True) / float(m)


def style_layer_loss(features: mx.nd.NDArray, target_gram: mx.nd.NDArray) -> mx.nd.NDArray:
    """Gatys's E_l: ``sum((G - A)^2) / (4 N^2)`` with M-normalised Gram matrices."""
    n = features.shape[1]
    diff = gram(features) - target_gram
    return mx.nd.sum(diff * diff) / (4.0 * n * n)


def content_layer_loss(features: mx.nd.NDArray, target: mx.nd.NDArray) -> mx.nd.NDArray:
    """Gatys's content loss: ``0.5 * sum((F - P)^2)``."""
    diff = features - target
    return 0.5 * mx.nd.sum(diff * diff)


def tv_loss(x: mx.nd.NDArray) -> mx.nd.NDArray:
    """Squared total variation of a (1, C, H, W) image."""
    h, w = x.shape[2], x.shape[3]
    dy = mx.nd.slice_axis(x, axis=2, begin=1, end=h) - mx.nd.slice_axis(x, axis=2, begin=0, end=h - 1)
    dx = mx.nd.slice_axis(x, axis=3, begin=1, end=w) - mx.nd.slice_axis(x, axis=3, begin=0, end=w - 1)
    return mx.nd.sum(dy * dy) + mx.nd.sum(dx * dx)


def relative_distance(a: mx.nd.NDArray, b: mx.nd.NDArray) -> float:
    """``|a - b| / |b|`` (Frobenius norms)."""
    num = float(mx.nd.norm(a - b).asscalar())
    den = float(mx.nd.norm(b).asscalar())
    return num / den if den else num
