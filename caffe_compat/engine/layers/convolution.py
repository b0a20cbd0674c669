"""Convolution, Deconvolution and Im2col: Caffe's ``BaseConvolutionLayer`` family.

Geometry follows base_conv_layer.cpp: ``kernel_size``/``stride``/``pad``/``dilation`` given
once (shared by every spatial axis) or once per spatial axis, or the 2-D-only
``kernel_h/w``, ``stride_h/w``, ``pad_h/w``; ``axis`` is the channel axis (the axes before
it are batch axes, merged for the convolution and split again afterwards).

Blob shapes are Caffe's, so a .caffemodel copies in unchanged:

* Convolution: weight ``(num_output, C / group, *kernel)``, bias ``(num_output,)``;
* Deconvolution: weight ``(C, num_output / group, *kernel)``, bias ``(num_output,)``.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "c" type: "Convolution" convolution_param '
...                       '{ num_output: 8 kernel_size: 3 pad: 1 group: 2 }',
...                       caffe_pb2.LayerParameter())
>>> conv = build_layer(p, [(1, 4, 13, 15)])
>>> conv.top_shapes, conv.weight.shape
([(1, 8, 13, 15)], (8, 2, 3, 3))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from caffe_compat.engine.fillers import default_filler
from caffe_compat.engine.layer import Layer, canonical_axis, register_layer

#: MXNet's Convolution/Deconvolution handle 1, 2 or 3 spatial axes.
_MAX_SPATIAL_AXES = 3


@dataclass(frozen=True)
class ConvGeometry:
    """Per-spatial-axis kernel, stride, pad and dilation of one conv-like layer."""
    kernel: tuple
    stride: tuple
    pad: tuple
    dilation: tuple

    def conv_out(self, in_sizes: Sequence[int]) -> tuple:
        """Caffe's compute_output_shape for Convolution/Im2col (floor division)."""
        return tuple((i + 2 * p - (d * (k - 1) + 1)) // s + 1 for i, k, s, p, d in
                     zip(in_sizes, self.kernel, self.stride, self.pad, self.dilation))

    def deconv_out(self, in_sizes: Sequence[int]) -> tuple:
        """Caffe's Deconvolution output size: ``s*(in-1) + d*(k-1) + 1 - 2p``."""
        return tuple(s * (i - 1) + d * (k - 1) + 1 - 2 * p for i, k, s, p, d in
                     zip(in_sizes, self.kernel, self.stride, self.pad, self.dilation))


def conv_geometry(layer: Layer, num_spatial: int) -> ConvGeometry:
    """Read kernel/stride/pad/dilation as base_conv_layer.cpp's LayerSetUp does.

    Raises the same errors Caffe CHECKs for (via ``layer.error``).
    """
    cp = layer.param.convolution_param
    n = num_spatial

    def repeated(values, name: str, default: int) -> tuple:
        values = list(values)
        if len(values) not in (0, 1, n):
            raise layer.error(f"{name} must be specified once, or once per spatial dimension "
                              f"({name} specified {len(values)} times; {n} spatial dims)")
        if not values:
            return (default,) * n
        return tuple(int(values[0 if len(values) == 1 else i]) for i in range(n))

    def two_d(name: str, field: str, has_hw: bool):
        if has_hw and n != 2:
            raise layer.error(f"{name}_h & {name}_w can only be used for 2D convolution")
        if has_hw and len(getattr(cp, field)):
            raise layer.error(f"Either {name} or {name}_h/w should be specified; not both")
        return has_hw

    if two_d("kernel", "kernel_size", cp.HasField("kernel_h") or cp.HasField("kernel_w")):
        kernel = (int(cp.kernel_h), int(cp.kernel_w))
    else:
        if len(cp.kernel_size) == 0:
            raise layer.error("kernel_size (or kernel_h and kernel_w) is required")
        kernel = repeated(cp.kernel_size, "kernel_size", 0)
    if any(k <= 0 for k in kernel):
        raise layer.error("Filter dimensions must be nonzero")
    if two_d("stride", "stride", cp.HasField("stride_h") or cp.HasField("stride_w")):
        stride = (int(cp.stride_h), int(cp.stride_w))
    else:
        stride = repeated(cp.stride, "stride", 1)
    if any(s <= 0 for s in stride):
        raise layer.error("stride must be positive")
    if two_d("pad", "pad", cp.HasField("pad_h") or cp.HasField("pad_w")):
        pad = (int(cp.pad_h), int(cp.pad_w))
    else:
        pad = repeated(cp.pad, "pad", 0)
    dilation = repeated(cp.dilation, "dilation", 1)
    if any(d <= 0 for d in dilation):
        raise layer.error("dilation must be positive")
    return ConvGeometry(kernel, stride, pad, dilation)


class _ConvLike(Layer):
    """Shared set-up of the BaseConvolutionLayer family: channel axis, geometry, shapes."""

    def _setup_axes(self, bottom_shapes: Sequence[tuple]) -> None:
        shape = bottom_shapes[0]
        try:
            self.channel_axis = canonical_axis(self.param.convolution_param.axis, len(shape))
        except IndexError as exc:
            raise self.error(str(exc)) from exc
        self.num_spatial = len(shape) - self.channel_axis - 1
        if not 1 <= self.num_spatial <= _MAX_SPATIAL_AXES:
            raise self.error(f"needs 1 to {_MAX_SPATIAL_AXES} spatial axes after the channel "
                             f"axis {self.channel_axis}; bottom has shape {tuple(shape)}")
        self.channels = int(shape[self.channel_axis])
        self.num_axes = len(shape)
        self.geometry = conv_geometry(self, self.num_spatial)

    def _check_bottom(self, shape: tuple) -> None:
        if len(shape) != self.num_axes:
            raise self.error(f"bottom num_axes may not change (was {self.num_axes}, "
                             f"now {len(shape)})")
        if shape[self.channel_axis] != self.channels:
            raise self.error(f"Input size incompatible with convolution kernel: "
                             f"{shape[self.channel_axis]} channels, expected {self.channels}")

    def _check_same_shapes(self, bottom_shapes: Sequence[tuple]) -> None:
        for i, s in enumerate(bottom_shapes[1:], start=1):
            if tuple(s) != tuple(bottom_shapes[0]):
                raise self.error(f"shape mismatch - bottom[0]: {tuple(bottom_shapes[0])} "
                                 f"vs. bottom[{i}]: {tuple(s)}")

    def _merge_batch_axes(self, F, x):
        """Merge the axes before the channel axis into one batch axis (Caffe's num_)."""
        if self.channel_axis == 0:
            return F.expand_dims(x, axis=0)
        for _ in range(self.channel_axis - 1):
            x = F.reshape(x, shape=(-3, -2))
        return x

    def _split_batch_axes(self, F, y, x):
        """Undo :meth:`_merge_batch_axes`, taking the batch axes from the bottom ``x``."""
        if self.channel_axis == 0:
            return F.squeeze(y, axis=0)
        if self.channel_axis == 1:
            return y
        return F.reshape_like(y, x, lhs_begin=0, lhs_end=1, rhs_begin=0,
                              rhs_end=self.channel_axis)


class _WeightedConv(_ConvLike):
    """Convolution/Deconvolution: num_output, group, bias_term and the two blobs."""

    def _setup_blobs(self, bottom_shapes: Sequence[tuple], reverse: bool) -> None:
        self._setup_axes(bottom_shapes)
        cp = self.param.convolution_param
        if not cp.HasField("num_output") or cp.num_output <= 0:
            raise self.error("num_output must be positive")
        self.num_output = int(cp.num_output)
        self.group = int(cp.group)
        if self.group <= 0:
            raise self.error("group must be positive")
        if self.channels % self.group:
            raise self.error(f"channels ({self.channels}) must be a multiple of group "
                             f"({self.group})")
        if self.num_output % self.group:
            raise self.error("Number of output should be multiples of group.")
        if reverse:     # Deconvolution: weight (C, num_output / group, *kernel)
            weight_shape = (self.channels, self.num_output // self.group)
        else:           # Convolution: weight (num_output, C / group, *kernel)
            weight_shape = (self.num_output, self.channels // self.group)
        self.bias_term = bool(cp.bias_term)
        self.add_blob("weight", weight_shape + self.geometry.kernel,
                      cp.weight_filler if cp.HasField("weight_filler") else default_filler())
        if self.bias_term:
            self.add_blob("bias", (self.num_output,),
                          cp.bias_filler if cp.HasField("bias_filler") else default_filler())

    def _op_kwargs(self) -> dict:
        g = self.geometry
        return dict(kernel=g.kernel, stride=g.stride, pad=g.pad, dilate=g.dilation,
                    num_filter=self.num_output, num_group=self.group,
                    no_bias=not self.bias_term)


@register_layer("Convolution", origin="BVLC")
class Convolution(_WeightedConv):
    """Caffe's ConvolutionLayer (groups, dilation, N-d up to 3 spatial axes).

    Several bottoms are allowed; each gives the top at the same index, sharing weights.
    """

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, at_least=1)
        self._setup_blobs(bottom_shapes, reverse=False)

    def reshape(self, bottom_shapes):
        self._check_same_shapes(bottom_shapes)
        shape = tuple(bottom_shapes[0])
        self._check_bottom(shape)
        out = self.geometry.conv_out(shape[self.channel_axis + 1:])
        if any(o <= 0 for o in out):
            raise self.error(f"kernel extent exceeds the padded input: output size {out}")
        top = shape[:self.channel_axis] + (self.num_output,) + out
        return [top] * len(bottom_shapes)

    def hybrid_forward(self, F, *bottoms, weight, bias=None):
        kwargs = self._op_kwargs()
        tops = []
        for x in bottoms:
            y = F.Convolution(self._merge_batch_axes(F, x), weight, bias, **kwargs)
            tops.append(self._split_batch_axes(F, y, x))
        return tuple(tops)


@register_layer("Deconvolution", origin="BVLC")
class Deconvolution(_WeightedConv):
    """Caffe's DeconvolutionLayer: the transpose of Convolution (FCN's upsampling).

    Output size ``s*(in-1) + d*(k-1) + 1 - 2p``; weight blob ``(C, num_output/group, *k)``.
    """

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, at_least=1)
        self._setup_blobs(bottom_shapes, reverse=True)

    def reshape(self, bottom_shapes):
        self._check_same_shapes(bottom_shapes)
        shape = tuple(bottom_shapes[0])
        self._check_bottom(shape)
        out = self.geometry.deconv_out(shape[self.channel_axis + 1:])
        if any(o <= 0 for o in out):
            raise self.error(f"padding exceeds the deconvolution output: output size {out}")
        top = shape[:self.channel_axis] + (self.num_output,) + out
        return [top] * len(bottom_shapes)

    def hybrid_forward(self, F, *bottoms, weight, bias=None):
        kwargs = self._op_kwargs()
        kwargs["adj"] = (0,) * self.num_spatial
        tops = []
        for x in bottoms:
            y = F.Deconvolution(self._merge_batch_axes(F, x), weight, bias, **kwargs)
            tops.append(self._split_batch_axes(F, y, x))
        return tuple(tops)


@register_layer("Im2col", origin="BVLC")
class Im2col(_ConvLike):
    """Caffe's Im2colLayer: every kernel window as a column, channels-major.

    Top ``(N, C*prod(kernel), *out)``; channel ``c*prod(kernel) + offset`` holds input
    channel ``c`` at kernel offset ``offset`` (row-major over the kernel), as im2col.cpp
    lays it out. Built from strided slices of the zero-padded input (an exact copy; its
    gradient is Caffe's col2im sum).
    """

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        self._setup_axes(bottom_shapes)
        if self.channel_axis != 1:
            raise self.error("Im2col supports only axis: 1")
        if self.num_spatial not in (1, 2, 3):
            raise self.error("Im2col supports 1 to 3 spatial axes")

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self._check_bottom(shape)
        out_sizes = self.geometry.conv_out(shape[2:])
        if any(o <= 0 for o in out_sizes):
            raise self.error(f"kernel extent exceeds the padded input: output size "
                             f"{out_sizes}")
        if getattr(self, "out_sizes", out_sizes) != out_sizes:
            self._clear_cached_op()     # the slices depend on the output size: rebuild
        self.out_sizes = out_sizes
        kcount = 1
        for k in self.geometry.kernel:
            kcount *= k
        return [(shape[0], self.channels * kcount) + self.out_sizes]

    def hybrid_forward(self, F, x):
        g, n = self.geometry, self.num_spatial
        # F.pad pads only 4-D/5-D arrays: view 1-D inputs as 2-D with a unit axis.
        squeeze = n == 1
        kernel, stride, pad, dil, out = g.kernel, g.stride, g.pad, g.dilation, self.out_sizes
        if squeeze:
            x = F.expand_dims(x, axis=2)
            kernel, stride, pad, dil, out = ((1,) + kernel, (1,) + stride, (0,) + pad,
                                             (1,) + dil, (1,) + out)
        if any(pad):
            width = (0, 0, 0, 0) + tuple(v for p in pad for v in (p, p))
            x = F.pad(x, mode="constant", constant_value=0, pad_width=width)
        offsets = [()]
        for k in kernel:
            offsets = [o + (i,) for o in offsets for i in range(k)]
        cols = []
        for off in offsets:
            begin = (None, None) + tuple(o * d for o, d in zip(off, dil))
            end = (None, None) + tuple(o * d + (m - 1) * s + 1
                                      for o, d, m, s in zip(off, dil, out, stride))
            cols.append(F.slice(x, begin=begin, end=end, step=(None, None) + stride))
        y = F.stack(*cols, axis=2)                # (N, C, K, *out)
        y = F.reshape(y, shape=(0, -3) + (-2,))   # (N, C*K, *out): Caffe's channel order
        if squeeze:
            y = F.squeeze(y, axis=2)
        return (y,)
