"""Layers without computation of their own: Input, Parameter and Silence.

* ``Input`` declares the shapes of blobs the host feeds (input_layer.cpp). The net does
  not run it: it binds the fed arrays to the tops directly. Called on its own, the layer
  passes the fed arrays through unchanged, one per top::

      >>> from google.protobuf import text_format
      >>> from caffe_compat.proto import caffe_pb2
      >>> from caffe_compat.engine.build import build_layer
      >>> p = text_format.Parse('name: "data" type: "Input" top: "data" '
      ...     'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }', caffe_pb2.LayerParameter())
      >>> build_layer(p, []).top_shapes
      [(1, 3, 8, 8)]

* ``Parameter`` exposes its one learnable blob as its top (parameter_layer.hpp): the top
  IS the blob, so the top's gradient is the blob's gradient.
* ``Silence`` consumes its bottoms and produces nothing (silence_layer.cpp); its bottoms
  get a zero gradient from it.
"""
from __future__ import annotations

from typing import Sequence

import mxnet as mx

from caffe_compat.engine.layer import Layer, Shape, register_layer


def _blob_shape(shape_proto) -> Shape:
    return tuple(int(d) for d in shape_proto.dim)


@register_layer("Input", origin="BVLC")
class InputLayer(Layer):
    """Caffe's InputLayer: ``input_param { shape }`` once for all tops or once per top.

    ``reshape([])`` gives the declared shapes (a top without a declared shape is ``()``,
    Caffe's empty blob, until the host reshapes it). ``reshape(fed_shapes)`` with one
    shape per top returns those shapes: the host may feed any shape, as pycaffe's
    ``net.blobs['data'].reshape(...)`` allows. ``hybrid_forward`` passes the fed arrays
    through, so ``layer(*fed)`` returns them.
    """

    host_source = True

    def shapes_from_param(self) -> list[Shape]:
        shapes = list(self.param.input_param.shape)
        tops = len(self.param.top)
        if len(shapes) not in (0, 1, tops):
            raise self.error(f"input_param must give one shape for all tops or one per top "
                             f"({tops} top(s)), got {len(shapes)}")
        if not shapes:
            return [()] * tops
        return [_blob_shape(shapes[0 if len(shapes) == 1 else i]) for i in range(tops)]

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        declared = self.shapes_from_param()
        if not bottom_shapes:
            return declared
        if len(bottom_shapes) != len(declared):
            raise self.error(f"fed {len(bottom_shapes)} array(s) for {len(declared)} top(s)")
        return [tuple(s) for s in bottom_shapes]

    def hybrid_forward(self, F, *fed):
        return tuple(F.identity(x) for x in fed)


@register_layer("Parameter", origin="BVLC")
class ParameterLayer(Layer):
    """Caffe's ParameterLayer: one learnable blob of ``parameter_param.shape``, shown as
    the layer's only top (Caffe shares data and diff between them).

    It has no bottoms: ``layer()`` returns the blob imperatively. Inside a symbolic
    trace pass any array/symbol of the trace (``layer(x)``); it only selects NDArray or
    Symbol and is otherwise ignored.
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=0)
        if len(self.param.top) != 1:
            raise self.error("takes exactly 1 top blob")
        self.add_blob("blob", _blob_shape(self.param.parameter_param.shape))

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        return [_blob_shape(self.param.parameter_param.shape)]

    def forward(self, *args):
        if not args:
            return self.hybrid_forward(mx.nd, blob=self.blob.data())
        return super().forward(*args)

    def hybrid_forward(self, F, *ignored, blob):
        return (F.identity(blob),)


@register_layer("Silence", origin="BVLC")
class SilenceLayer(Layer):
    """Caffe's SilenceLayer: swallows its bottoms (no tops, zero gradient to them)."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, at_least=1)
        return []

    def forward(self, *args):
        # No outputs: nothing to hybridize or cache (a CachedOp needs at least one).
        return ()

    def hybrid_forward(self, F, *bottoms):
        return ()
