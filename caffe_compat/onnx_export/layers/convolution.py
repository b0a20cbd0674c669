"""Convolution, Deconvolution, the depthwise forks and Im2col (base_conv_layer.cpp family).

Caffe's blob layouts are ONNX's: Convolution's weight ``(num_output, C / group, *k)`` is
Conv's ``W``, Deconvolution's ``(C, num_output / group, *k)`` is ConvTranspose's, so the
weights are written unchanged. Geometry (kernel, stride, pad, dilation, group) comes
from the engine's layer, which read it as base_conv_layer.cpp does; Caffe pads
symmetrically and its output sizes are ONNX's with ``output_padding`` 0.
"""
from __future__ import annotations

from caffe_compat.engine.layer import count
from caffe_compat.onnx_export.registry import emits


def _conv_attrs(geometry, group: int) -> dict:
    return dict(kernel_shape=list(geometry.kernel), strides=list(geometry.stride),
                pads=list(geometry.pad) * 2, dilations=list(geometry.dilation), group=group)


def _on_channel_axis(ctx, x: str, shape: tuple, top: tuple, apply) -> str:
    """Run ``apply`` (an N, C, *spatial op) with Caffe's channel ``axis``: the axes before
    it are merged into one batch axis (Caffe's ``num_``) and split again afterwards."""
    axis = ctx.layer.channel_axis
    if axis == 1:
        return apply(x)
    merged = ctx.reshape(x, (count(shape, 0, axis),) + tuple(shape[axis:]))
    return ctx.reshape(apply(merged), top)


@emits("Convolution", "DepthwiseConvolution")
def convolution(ctx):
    """conv_layer.cpp: each bottom convolved with the shared weights (one top each)."""
    layer = ctx.layer
    inputs = [ctx.blob("weight")] + ([ctx.blob("bias")] if layer.bias_term else [])
    attrs = _conv_attrs(layer.geometry, layer.group)
    return [_on_channel_axis(ctx, x, shape, top, lambda v: ctx.op("Conv", v, *inputs, **attrs))
            for x, shape, top in zip(ctx.inputs, ctx.bottom_shapes, ctx.top_shapes)]


@emits("Deconvolution")
def deconvolution(ctx):
    """deconv_layer.cpp: the transpose of Convolution, output ``s*(in-1) + d*(k-1) + 1 - 2p``."""
    layer = ctx.layer
    inputs = [ctx.blob("weight")] + ([ctx.blob("bias")] if layer.bias_term else [])
    attrs = _conv_attrs(layer.geometry, layer.group)
    return [_on_channel_axis(ctx, x, shape, top,
                             lambda v: ctx.op("ConvTranspose", v, *inputs, **attrs))
            for x, shape, top in zip(ctx.inputs, ctx.bottom_shapes, ctx.top_shapes)]


@emits("ConvolutionDepthwise")
def convolution_depthwise(ctx):
    """conv_dw_layer.cpp (caffe-mobilenet): one kernel per input channel, i.e. a
    Convolution with ``group = num_output = C``."""
    layer = ctx.layer
    inputs = [ctx.blob("weight")] + ([ctx.blob("bias")] if layer.bias_term else [])
    return [ctx.op("Conv", ctx.inputs[0], *inputs, **_conv_attrs(layer.geometry, layer.channels))]
