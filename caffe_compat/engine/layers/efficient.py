"""Layers of the mobile/efficient-net forks: ShuffleChannel (ShuffleNet), the depthwise
convolutions of the MobileNet ports, ReLU6, and SENet's Axpy.

Each forward reproduces the fork's C++ code; the backward is MXNet's autograd of it,
equal to the fork's Backward (the kinks are noted per layer):

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "s" type: "ShuffleChannel" '
    ...                       'shuffle_channel_param { group: 2 }', caffe_pb2.LayerParameter())
    >>> x = mx.nd.arange(6).reshape((1, 6, 1, 1))
    >>> run_layer(build_layer(p, [(1, 6, 1, 1)]), x)[0].asnumpy().ravel()
    array([0., 3., 1., 4., 2., 5.], dtype=float32)
"""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.fillers import default_filler
from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.engine.layers.convolution import Convolution, conv_geometry


@register_layer("ShuffleChannel", origin="ShuffleNet (farmingyard/ShuffleNet)")
class ShuffleChannel(Layer):
    """shuffle_channel_layer.cpp: channels viewed as (group, C / group), transposed to
    (C / group, group) and flattened back, so output channel ``j * group + i`` is input
    channel ``i * (C / group) + j``. Its backward is the inverse permutation."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        self.group = int(self.param.shuffle_channel_param.group)
        if self.group <= 0:
            raise self.error("group must be greater than 0")

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) < 2:
            raise self.error(f"the bottom needs a channel axis; got shape {shape}")
        if shape[1] % self.group:
            raise self.error(f"Wrong group size: {shape[1]} channels are not a multiple of "
                             f"group {self.group}")
        return [shape]

    def hybrid_forward(self, F, x):
        y = F.reshape(x, shape=(0, -4, self.group, -1, -2))    # (N, g, C/g, ...)
        y = F.swapaxes(y, dim1=1, dim2=2)                      # (N, C/g, g, ...)
        return (F.reshape(y, shape=(0, -3, -2)),)


@register_layer("ConvolutionDepthwise", origin="MobileNet (farmingyard/caffe-mobilenet)")
class ConvolutionDepthwise(Layer):
    """conv_dw_layer.cpp: one kernel per input channel, whatever ``num_output`` and
    ``group`` say. Weight ``(C, 1, kh, kw)``, bias ``(C,)``, top ``(N, C, oh, ow)``;
    kernel/stride/pad/dilation are read like Convolution's (2-D only). It is
    Convolution with ``group = num_output = C``.
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error(f"needs a 4-D (N, C, H, W) bottom; got shape {shape}")
        self.channels = int(shape[1])
        self.geometry = conv_geometry(self, 2)
        cp = self.param.convolution_param
        self.bias_term = bool(cp.bias_term)
        self.add_blob("weight", (self.channels, 1) + self.geometry.kernel,
                      cp.weight_filler if cp.HasField("weight_filler") else default_filler())
        if self.bias_term:
            self.add_blob("bias", (self.channels,),
                          cp.bias_filler if cp.HasField("bias_filler") else default_filler())

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4 or shape[1] != self.channels:
            raise self.error(f"bottom must be (N, {self.channels}, H, W); got {shape}")
        out = self.geometry.conv_out(shape[2:])
        if min(out) <= 0:
            raise self.error(f"kernel extent exceeds the padded input: output size {out}")
        return [shape[:2] + out]

    def hybrid_forward(self, F, x, weight, bias=None):
        g = self.geometry
        return (F.Convolution(x, weight, bias, kernel=g.kernel, stride=g.stride, pad=g.pad,
                              dilate=g.dilation, num_filter=self.channels,
                              num_group=self.channels, no_bias=not self.bias_term),)


@register_layer("DepthwiseConvolution", origin="MobileNet (yonghenglh6/DepthwiseConvolution)")
class DepthwiseConvolution(Convolution):
    """depthwise_conv_layer.cpp: a faster ConvolutionLayer for ``group == channels``;
    blobs, shapes and numbers are Convolution's (``num_output`` a multiple of C)."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        super().setup(bottom_shapes)
        if self.group != self.channels:
            raise self.error(f"is depthwise: group ({self.group}) must equal the bottom's "
                             f"channels ({self.channels})")


@register_layer("ReLU6", origin="MobileNet (ReLU6 of the MobileNet-v2 Caffe ports)")
class ReLU6(Layer):
    """relu6_layer.cpp: ``min(max(x, 0), 6)``; gradient where ``0 < x < 6`` only (both
    kinks get 0, where MXNet's clip would pass the gradient)."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        return [tuple(bottom_shapes[0])]

    def hybrid_forward(self, F, x):
        x0 = F.BlockGrad(x)          # masks from a cut copy (no zero gradient flows back)
        inside = (x0 > 0) * (x0 < 6)
        return (x * inside + 6.0 * (x0 >= 6),)


@register_layer("Axpy", origin="SENet (hujie-frank/SENet)")
class Axpy(Layer):
    """axpy_layer.cpp: ``top = a * x + y`` with bottoms ``a`` (N, C) or (N, C, 1, 1), ``x``
    and ``y`` of one shape (N, C, ...): SENet's channel reweighting plus the residual.
    Gradients: ``a``: sum over space of ``x * top_diff``; ``x``: ``a * top_diff``;
    ``y``: ``top_diff``."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=3)

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        a, x, y = (tuple(s) for s in bottom_shapes)
        if len(x) < 2 or a[:2] != x[:2]:
            raise self.error(f"scale {a} must share (N, C) with the input {x}")
        if any(d != 1 for d in a[2:]) or len(a) > len(x):
            raise self.error(f"scale must be (N, C) or (N, C, 1, 1); got {a}")
        if x != y:
            raise self.error(f"the two blobs must have one shape: {x} vs {y}")
        self.scale_shape = (0, 0) + (1,) * (len(x) - 2)
        return [x]

    def hybrid_forward(self, F, a, x, y):
        return (F.broadcast_mul(F.reshape(a, shape=self.scale_shape), x) + y,)
