"""Build one layer from its LayerParameter: look up the type, set up, reshape, fill.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> p = text_format.Parse('name: "r" type: "ReLU"', caffe_pb2.LayerParameter())
>>> layer = build_layer(p, [(1, 3, 4, 4)])
>>> layer.top_shapes
[(1, 3, 4, 4)]
"""
from __future__ import annotations

from typing import Optional, Sequence

import mxnet as mx

from caffe_compat.context import current_context
from caffe_compat.engine.layer import Layer, layer_class, supported_types
from caffe_compat.engine.refused_layers import why_refused
from caffe_compat.errors import LayerError


def instantiate_layer(param, phase: int, source: tuple = (None, None)) -> Layer:
    """A Layer object for ``param.type`` (not yet set up); unknown types raise LayerError."""
    cls = layer_class(param.type)
    if cls is None:
        path, line = source
        refused = why_refused(param.type)
        reason = (f"not supported: {refused}" if refused else
                  "unknown layer type; supported types: " + ", ".join(supported_types()))
        raise LayerError(param.name, param.type or "<none>", reason, path=path, line=line)
    layer = cls(param, phase)
    layer.source = source
    return layer


def shape_layer(layer: Layer, bottom_shapes: Sequence[tuple], first: bool) -> list[tuple]:
    """Run setup (first time only) and reshape, storing bottom/top shapes on the layer."""
    bottom_shapes = [tuple(int(d) for d in s) for s in bottom_shapes]
    try:
        if first:
            layer.setup(bottom_shapes)
        tops = layer.reshape(bottom_shapes)
    except LayerError:
        raise
    except (ValueError, IndexError, AssertionError, ZeroDivisionError) as exc:
        raise layer.error(f"{exc} (bottom shapes {bottom_shapes})") from exc
    layer.bottom_shapes = bottom_shapes
    layer.top_shapes = [tuple(int(d) for d in s) for s in tops]
    return layer.top_shapes


def build_layer(param, bottom_shapes: Sequence[tuple], phase: int = 1,
                ctx: Optional[mx.Context] = None, source: tuple = (None, None)) -> Layer:
    """A ready layer: instantiated, set up for ``bottom_shapes``, blobs filled on ``ctx``."""
    layer = instantiate_layer(param, phase, source)
    shape_layer(layer, bottom_shapes, first=True)
    layer.initialize(ctx=ctx or current_context())
    layer.fill_blobs()
    return layer


def run_layer(layer: Layer, *bottoms: mx.nd.NDArray) -> list[mx.nd.NDArray]:
    """Call a layer and always get a list of tops back."""
    out = layer(*bottoms)
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]
