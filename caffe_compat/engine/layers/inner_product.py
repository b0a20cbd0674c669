"""InnerProduct and Embed (inner_product_layer.cpp, embed_layer.cpp).

InnerProduct flattens every axis from ``axis`` (default 1) on into K inputs and keeps
the axes before it: top shape ``bottom.shape[:axis] + (num_output,)``. Blobs: weight
``(num_output, K)`` (``(K, num_output)`` with ``transpose: true``), bias ``(num_output,)``.

Embed looks rows of its ``(input_dim, num_output)`` weight up by the (float-stored,
truncated to int) indices of its bottom: top shape ``bottom.shape + (num_output,)``.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "fc" type: "InnerProduct" inner_product_param '
...                       '{ num_output: 7 axis: 2 }', caffe_pb2.LayerParameter())
>>> fc = build_layer(p, [(2, 24, 9, 9)])
>>> fc.top_shapes, fc.weight.shape
([(2, 24, 7)], (7, 81))
"""
from __future__ import annotations

from caffe_compat.engine.fillers import default_filler
from caffe_compat.engine.layer import Layer, canonical_axis, count, register_layer


@register_layer("InnerProduct", origin="BVLC")
class InnerProduct(Layer):
    """Caffe's InnerProductLayer (``axis``, ``transpose``, ``bias_term``)."""

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        ip = self.param.inner_product_param
        if not ip.HasField("num_output") or ip.num_output <= 0:
            raise self.error("num_output must be positive")
        self.num_output = int(ip.num_output)
        self.transpose = bool(ip.transpose)
        self.bias_term = bool(ip.bias_term)
        shape = bottom_shapes[0]
        try:
            self.axis = canonical_axis(ip.axis, len(shape))
        except IndexError as exc:
            raise self.error(str(exc)) from exc
        self.k = count(shape, self.axis)
        weight_shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.add_blob("weight", weight_shape,
                      ip.weight_filler if ip.HasField("weight_filler") else default_filler())
        if self.bias_term:
            self.add_blob("bias", (self.num_output,),
                          ip.bias_filler if ip.HasField("bias_filler") else default_filler())

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        try:
            axis = canonical_axis(self.param.inner_product_param.axis, len(shape))
        except IndexError as exc:
            raise self.error(str(exc)) from exc
        if axis != self.axis or count(shape, axis) != self.k:
            raise self.error(f"Input size incompatible with inner product parameters: "
                             f"{count(shape, axis)} inputs from axis {axis}, "
                             f"weights expect {self.k}")
        self.num_axes = len(shape)
        return [shape[:axis] + (self.num_output,)]

    def hybrid_forward(self, F, x, weight, bias=None):
        if self.transpose:
            weight = F.transpose(weight)
        kwargs = dict(num_hidden=self.num_output, no_bias=bias is None)
        if self.axis == 0:
            y = F.FullyConnected(F.reshape(x, shape=(1, -1)), weight, bias, flatten=True, **kwargs)
            return (F.reshape(y, shape=(-1,)),)
        if self.axis == 1:
            return (F.FullyConnected(x, weight, bias, flatten=True, **kwargs),)
        if self.axis < self.num_axes - 1:
            # keep the leading axes (0 = copy that dim), merge the rest into K
            x = F.reshape(x, shape=(0,) * self.axis + (-1,))
        return (F.FullyConnected(x, weight, bias, flatten=False, **kwargs),)


@register_layer("Embed", origin="BVLC")
class Embed(Layer):
    """Caffe's EmbedLayer: a learned lookup table (gradient to the table only)."""

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        ep = self.param.embed_param
        if not ep.HasField("num_output") or ep.num_output <= 0:
            raise self.error("EmbedLayer num_output must be positive.")
        if not ep.HasField("input_dim") or ep.input_dim <= 0:
            raise self.error("EmbedLayer input_dim must be positive.")
        self.num_output, self.input_dim = int(ep.num_output), int(ep.input_dim)
        self.bias_term = bool(ep.bias_term)
        self.add_blob("weight", (self.input_dim, self.num_output),
                      ep.weight_filler if ep.HasField("weight_filler") else default_filler())
        if self.bias_term:
            self.add_blob("bias", (self.num_output,),
                          ep.bias_filler if ep.HasField("bias_filler") else default_filler())

    def allow_backward(self, bottom_index: int) -> bool:
        # Caffe: "Can't backpropagate to EmbedLayer input."
        return False

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.num_axes = len(shape)
        return [shape + (self.num_output,)]

    def hybrid_forward(self, F, x, weight, bias=None):
        # Indices are floats holding integers; MXNet's Embedding truncates them like
        # Caffe's static_cast<int> (out-of-range indices, undefined in Caffe, are clipped).
        y = F.Embedding(F.BlockGrad(x), weight, input_dim=self.input_dim,
                        output_dim=self.num_output)
        if bias is not None:
            y = F.broadcast_add(y, F.reshape(bias, shape=(1,) * self.num_axes + (-1,)))
        return (y,)
