"""YOLOv2's Reorg layer as the Intel branch of Caffe has it (BVLC/caffe ``intel``
3f494b44, reorg_layer.cpp / reorg_layer.hpp).

The layer is darknet's ``reorg_cpu`` run on Caffe blobs, which is not a plain
space-to-depth: with ``reverse: false`` (the default) the C x H x W input is *read* as if
it were (C / s^2) x (H s) x (W s) and written back in C x H x W order, then the top is
declared (C s^2) x (H / s) x (W / s). Element (c, h, w) of the output, in the input's
C x H x W order, is input element (c mod C/s^2, h s + k div s, w s + k mod s) of that
reinterpreted view, with k = c div (C / s^2). ``reverse: true`` is the inverse permutation
and declares (C / s^2) x (H s) x (W s).

Its backward in the fork reads an internal buffer that is never written (so it is
not a gradient); the gradient here is the exact adjoint of the permutation.

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "r" type: "Reorg" reorg_param { stride: 2 }',
    ...                       caffe_pb2.LayerParameter())
    >>> layer = build_layer(p, [(1, 4, 2, 2)])
    >>> layer.top_shapes
    [(1, 16, 1, 1)]
"""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.layer import Layer, Shape, register_layer


@register_layer("Reorg", origin="YOLOv2 (BVLC/caffe intel branch)")
class Reorg(Layer):
    """reorg_layer.cpp: ``stride`` s (required), ``reverse``; one bottom, one top,
    not in place."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        rp = self.param.reorg_param
        if not rp.HasField("stride") or rp.stride <= 0:
            raise self.error("Reorg Layer needs stride param.")
        if self.param.top and list(self.param.top) == list(self.param.bottom):
            raise self.error("Reorg Layer does not allow in-place computation.")
        self.stride, self.reverse = int(rp.stride), bool(rp.reverse)

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error(f"needs a 4-D bottom (N, C, H, W), got {shape}")
        n, c, h, w = shape
        s = self.stride
        if c % (s * s):
            raise self.error(f"channels ({c}) must be a multiple of stride^2 ({s * s})")
        self.shape = shape
        if self.reverse:
            return [(n, c // (s * s), h * s, w * s)]
        if h % s or w % s:
            raise self.error(f"height and width ({h}, {w}) must be multiples of the stride {s}")
        return [(n, c * s * s, h // s, w // s)]

    def hybrid_forward(self, F, x):
        n, c, h, w = self.shape
        s, cs = self.stride, c // (self.stride * self.stride)
        if not self.reverse:
            # out[n, (oy, ox, c2), h, w] = view[n, c2, h*s + oy, w*s + ox],
            # view = x read as (N, C/s^2, H*s, W*s) = (N, C/s^2, H, s, W, s)
            v = F.reshape(x, shape=(n, cs, h, s, w, s))
            y = F.transpose(v, axes=(0, 3, 5, 1, 2, 4))          # (N, s, s, C/s^2, H, W)
            return (F.reshape(y, shape=(n, c * s * s, h // s, w // s)),)
        # top viewed (N, C/s^2, H*s, W*s) gets top[n, c2, h*s+oy, w*s+ox] = x[n, (oy,ox,c2), h, w]
        v = F.reshape(x, shape=(n, s, s, cs, h, w))
        y = F.transpose(v, axes=(0, 3, 4, 1, 5, 2))              # (N, C/s^2, H, s, W, s)
        return (F.reshape(y, shape=(n, cs, h * s, w * s)),)
