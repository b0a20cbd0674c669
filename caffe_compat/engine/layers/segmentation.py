"""Layers of the segmentation forks: SegNet's Upsample (max-unpooling) and BN, and the
Interp layer of DeepLab-v2 / PSPNet.

* ``Upsample`` puts each value at the position a MAX ``Pooling`` layer's second top
  (the mask: index ``h * W + w`` into the pooling bottom) recorded; caffe-compat's
  Pooling emits that mask with Caffe's indices, so SegNet's
  ``pool -> (pool, pool_mask) -> ... -> Upsample(x, pool_mask)`` runs as written.
* ``BN`` is SegNet's (and ENet's) batch normalisation with its own scale and shift.
* ``Interp`` is George Papandreou's align-corners bilinear resize (``caffe_cpu_interp2``);
  MXNet's ``BilinearResize2D`` computes it bit for bit.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "i" type: "Interp" interp_param { zoom_factor: 2 }',
...                       caffe_pb2.LayerParameter())
>>> build_layer(p, [(1, 3, 6, 9)]).top_shapes      # (H - 1) * zoom + 1
[(1, 3, 11, 17)]
"""
from __future__ import annotations

from typing import Sequence

import mxnet as mx
import numpy as np

from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.proto import caffe_pb2

_BN = caffe_pb2.BNParameter
#: SegNet's BN adds this to the batch variance (bn_layer.cpp, ``var_eps_``).
SEGNET_BN_VAR_EPS = 1e-9


@register_layer("Upsample", origin="SegNet (alexgkendall/caffe-segnet)")
class Upsample(Layer):
    """upsample_layer.cpp with two bottoms ``(x, mask)`` of one shape: a zero top of size
    ``upsample_h x upsample_w`` (else ``H * scale_h - pad_out_h`` by
    ``W * scale_w - pad_out_w``) with ``top[mask[i]] = x[i]`` per (n, c); backward
    ``x_diff[i] = top_diff[mask[i]]``. Indices are checked against the top size on
    imperative runs (Caffe's LOG(FATAL)). Where two pooled cells share one argmax
    (overlapping pooling windows) Caffe keeps the later cell; MXNet's scatter keeps one
    of them unspecified -- SegNet/ENet pool 2x2 with stride 2, where it cannot happen.

    With one bottom it is the nearest-neighbour ``Upsample`` of the YOLOv3 Caffe ports
    (same type name and ``upsample_param { scale }``): each value repeated
    ``scale_h x scale_w`` times; backward sums each block.
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, at_least=1, at_most=2)
        up = self.param.upsample_param
        self.unpool = len(bottom_shapes) == 2
        has_hw = up.HasField("upsample_h") and up.HasField("upsample_w")
        if not (has_hw or (not up.HasField("scale") and up.HasField("scale_h")
                           and up.HasField("scale_w"))
                or (not up.HasField("scale_h") and not up.HasField("scale_w"))):
            raise self.error("upsample_h & upsample_w are required, else (DEPRECATED) "
                             "scale OR scale_h & scale_w are required.")
        if has_hw:
            if not self.unpool:
                raise self.error("the one-bottom (nearest) Upsample takes scale, not "
                                 "upsample_h/upsample_w")
            self.fixed_size = (int(up.upsample_h), int(up.upsample_w))
            if min(self.fixed_size) <= 1:
                raise self.error("upsample_h and upsample_w must be greater than 1")
            self.scale = None
            return
        self.fixed_size = None
        self.scale = ((int(up.scale_h), int(up.scale_w)) if up.HasField("scale_h")
                      else (int(up.scale), int(up.scale)))
        if min(self.scale) <= 1 and self.unpool:
            raise self.error(f"scale must be greater than 1; got {self.scale}")
        if min(self.scale) <= 0:
            raise self.error(f"scale must be positive; got {self.scale}")
        self.pad_out = (int(up.pad_out_h), int(up.pad_out_w))
        for axis, (pad, s) in enumerate(zip(self.pad_out, self.scale)):
            if pad and s != 2:
                raise self.error(f"Output {'height' if axis == 0 else 'width'} padding "
                                 "compensation requires scale == 2")

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error("Input must have 4 axes, corresponding to (num, channels, "
                             f"height, width); got {shape}")
        if self.unpool and tuple(bottom_shapes[1]) != shape:
            raise self.error(f"the mask {tuple(bottom_shapes[1])} must have the input's "
                             f"shape {shape}")
        if self.fixed_size is not None:
            out = self.fixed_size
        else:
            out = tuple(d * s - p for d, s, p in zip(shape[2:], self.scale, self.pad_out))
        if getattr(self, "out_size", out) != out or getattr(self, "in_shape", shape) != shape:
            self._clear_cached_op()
        self.out_size, self.in_shape = out, shape
        return [shape[:2] + out]

    def hybrid_forward(self, F, x, mask=None):
        if not self.unpool:
            (sh, sw) = self.scale
            return (F.repeat(F.repeat(x, repeats=sh, axis=2), repeats=sw, axis=3),)
        n, c = self.in_shape[:2]
        plane = self.out_size[0] * self.out_size[1]
        mask = F.BlockGrad(mask)
        if F is mx.nd:
            top = float(mask.max().asscalar()) if mask.size else 0.0
            if top >= plane:
                raise self.error(f"upsample top index {int(top)} out of range - check scale "
                                 "settings match input pooling layer's downsample setup")
        base = F.reshape(F.arange(0, n * c) * plane, shape=(n, c, 1, 1))
        index = F.reshape(F.broadcast_add(base, F.floor(mask)), shape=(1, -1))
        flat = F.scatter_nd(F.reshape(x, shape=(-1,)), F.cast(index, dtype="int64"),
                            shape=(n * c * plane,))
        return (F.reshape(flat, shape=(n, c) + self.out_size),)


@register_layer("BN", origin="SegNet (alexgkendall/caffe-segnet)")
class BN(Layer):
    """SegNet/ENet bn_layer.cpp. Blobs ``scale`` and ``shift``, each ``(1, C, 1, 1)``
    (fillers ``scale_filler``/``shift_filler``; unset = constant 0 as in the fork).

    * ``bn_mode: LEARN``: batch statistics over (N, H, W), variance as
      ``E[x^2] - E[x]^2`` plus 1e-9, ``y = scale * (x - mean) / sqrt(var) + shift`` --
      in every phase (the fork keeps no running averages: SegNet's
      compute_bn_statistics.py folds the statistics into scale/shift and switches the
      layer to INFERENCE). Optional tops 2 and 3: the batch mean and variance
      (``(1, C, 1, 1)``, before the epsilon), without gradient.
    * ``bn_mode: INFERENCE``: ``y = scale * x + shift`` (tops 2 and 3 stay zero).
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error(f"needs a 4-D (N, C, H, W) bottom; got {shape}")
        if len(self.param.top) > 3:
            raise self.error(f"takes at most 3 tops, got {len(self.param.top)}")
        bp = self.param.bn_param
        self.mode = int(bp.bn_mode)
        if self.mode not in (_BN.LEARN, _BN.INFERENCE):
            raise self.error(f"Unknown BN mode {self.mode}")
        self.channels = int(shape[1])
        blob = (1, self.channels, 1, 1)
        self.add_blob("scale", blob, bp.scale_filler)
        self.add_blob("shift", blob, bp.shift_filler)

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4 or shape[1] != self.channels:
            raise self.error(f"bottom must be (N, {self.channels}, H, W); got {shape}")
        stats = (1, self.channels, 1, 1)
        return [shape] + [stats] * (len(self.param.top) - 1)

    def hybrid_forward(self, F, x, scale, shift):
        extra = len(self.param.top) - 1
        if self.mode == _BN.INFERENCE:
            y = F.broadcast_add(F.broadcast_mul(x, scale), shift)
            zeros = F.zeros_like(F.BlockGrad(scale))
            return (y,) + (zeros,) * extra
        mean, var = _batch_stats(F, x)
        norm = F.broadcast_div(F.broadcast_sub(x, mean), F.sqrt(var + SEGNET_BN_VAR_EPS))
        y = F.broadcast_add(F.broadcast_mul(norm, scale), shift)
        if not extra:
            return (y,)
        # The statistics tops carry no gradient: computed again from a cut copy of x.
        return (y,) + _batch_stats(F, F.BlockGrad(x))[:extra]


def _batch_stats(F, x) -> tuple:
    """Per-channel batch mean and ``E[x^2] - E[x]^2`` over (N, H, W), as bn_layer.cpp."""
    mean = F.mean(x, axis=(0, 2, 3), keepdims=True)
    return mean, F.mean(F.square(x), axis=(0, 2, 3), keepdims=True) - F.square(mean)


def _interp_out_size(layer: Layer, eff: tuple, second: tuple | None) -> tuple:
    """Output (H, W) of Interp for the cropped input size ``eff`` (interp_layer.cpp).

    DeepLab-v2 accepts shrink_factor and zoom_factor together (shrink first); PSPNet
    adds the second bottom as a size source.
    """
    ip = layer.param.interp_param
    zoom, shrink = ip.HasField("zoom_factor"), ip.HasField("shrink_factor")
    if zoom and ip.zoom_factor < 1:
        raise layer.error("Zoom factor must be positive")
    if shrink and ip.shrink_factor < 1:
        raise layer.error("Shrink factor must be positive")
    if shrink:
        eff = tuple((d - 1) // int(ip.shrink_factor) + 1 for d in eff)
    if zoom:
        return tuple(d + (d - 1) * (int(ip.zoom_factor) - 1) for d in eff)
    if shrink:
        return eff
    if ip.HasField("height") and ip.HasField("width"):
        return (int(ip.height), int(ip.width))
    return tuple(second)


@register_layer("Interp", origin="PSPNet/DeepLab (hszhao/PSPNet, DeepLab-v2)")
class Interp(Layer):
    """interp_layer.cpp + caffe_cpu_interp2: crop ``-pad_beg`` from the top-left (on both
    axes) and ``-pad_end`` from the bottom-right (pads must be <= 0), then resize with
    align-corners bilinear interpolation (``rheight = (h_in - 1) / (h_out - 1)``,
    same size = copy). ``interp_type: "nearest_neighbor"`` picks
    ``floor(h_out_pos * rheight + 0.5)``. Backward: the adjoint (Caffe's
    interp2_backward accumulation), via autograd.
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, at_least=1, at_most=2)
        ip = self.param.interp_param
        specs = (ip.HasField("zoom_factor") or ip.HasField("shrink_factor")) + (
            ip.HasField("height") and ip.HasField("width")) + (len(bottom_shapes) == 2)
        if specs != 1:
            raise self.error("Output dimension specified either by zoom factor or shrink "
                             "factor or the 2nd bottom or explicitly")
        self.pad_beg, self.pad_end = int(ip.pad_beg), int(ip.pad_end)
        if self.pad_beg > 0 or self.pad_end > 0:
            raise self.error("Only supports non-pos padding (cropping) for now")
        if ip.interp_type not in ("bilinear", "nearest_neighbor"):
            raise self.error(f"Interp type error! bilinear or nearest_neighbor; got "
                             f"{ip.interp_type!r}")
        self.nearest = ip.interp_type == "nearest_neighbor"

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error(f"needs a 4-D (N, C, H, W) bottom; got {shape}")
        eff = tuple(d + self.pad_beg + self.pad_end for d in shape[2:])
        if min(eff) <= 0:
            raise self.error(f"the crop (pad_beg {self.pad_beg}, pad_end {self.pad_end}) "
                             f"leaves nothing of a {shape[2]}x{shape[3]} input")
        second = tuple(bottom_shapes[1])[2:4] if len(bottom_shapes) == 2 else None
        out = _interp_out_size(self, eff, second)
        if min(out) <= 0:
            raise self.error(f"output size must be positive; got {out}")
        plan = (shape, eff, out)
        if getattr(self, "plan", plan) != plan:
            self._clear_cached_op()
        self.plan = plan
        return [shape[:2] + out]

    def hybrid_forward(self, F, x, size_like=None):
        _, eff, out = self.plan
        offset = -self.pad_beg
        if offset or eff != self.plan[0][2:]:
            x = F.slice(x, begin=(None, None, offset, offset),
                        end=(None, None, offset + eff[0], offset + eff[1]))
        if eff == out:
            return (F.identity(x),)
        if self.nearest:
            x = F.take(x, _nearest_index(F, eff[0], out[0]), axis=2)
            return (F.take(x, _nearest_index(F, eff[1], out[1]), axis=3),)
        return (F.contrib.BilinearResize2D(x, height=out[0], width=out[1],
                                           align_corners=True),)


def _nearest_index(F, size_in: int, size_out: int):
    """caffe_cpu_nninterp2's source index per output position: ``floor(pos * ratio +
    0.5)`` with Caffe's float ratio and product and the double addition."""
    ratio = (float(np.float32(size_in - 1) / np.float32(size_out - 1)) if size_out > 1
             else 0.0)
    pos = F.arange(0, size_out, dtype="float32") * ratio
    return F.BlockGrad(F.floor(F.cast(pos, dtype="float64") + 0.5))
