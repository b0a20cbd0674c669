"""A built CaffeNet as an ONNX model, layer by layer, with Caffe's exact semantics.

The converter walks caffe-compat's own graph (``net.graph``: Caffe's layer order after
InsertSplits, in-place tops resolved by name) next to the engine's layer objects, which
already hold what each layer computed at set-up for the current input shapes (pooling
plans with Caffe's ceil/clip sizes, crop offsets, slice bounds, ...) and the weights
as Gluon Parameters. Each layer's emitter (``layers/<family>.py``) writes its nodes.

* Graph inputs are the net's input blobs (Input and data-layer tops) with their current
  shapes; graph outputs are ``net.output_names`` (Caffe's net outputs unless
  ``set_outputs`` chose others), named after the blobs and holding the blob's value
  after the whole forward, as pycaffe shows it. Only layers those outputs need are
  exported, so a train/val net exports up to the blobs you name.
* In-place layers write a new ONNX value each time (``conv1`` then ``conv1@relu1``);
  the final value of an output blob is renamed to the blob's name.
* Every exported top's ONNX shape (from ONNX shape inference) is checked against
  Caffe's before the model is returned: a mismatch is an exporter bug and says so.

>>> from caffe_compat.engine.network import CaffeNet          # doctest: +SKIP
>>> net = CaffeNet.from_prototxt("deploy.prototxt", weights="w.caffemodel")  # doctest: +SKIP
>>> model = onnx_model(net)                                    # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from caffe_compat.engine.graph import LayerNode
from caffe_compat.engine.layer import Layer
from caffe_compat.engine.network import CaffeNet, is_source_layer
from caffe_compat.onnx_export.builder import GraphBuilder
from caffe_compat.onnx_export.registry import (OnnxExportError, OnnxLayerError, emitter_for,
                                               exported_types, refusal_for)

#: The ONNX opset written: run by onnxruntime >= 1.8, OpenCV >= 4.5, TensorRT >= 8.
OPSET = 13


@dataclass
class LayerContext:
    """What an emitter sees of one Caffe layer, and the builder it writes into.

    ``layer`` is the engine's layer object, set up and reshaped for the export's input
    shapes (its attributes are the Caffe geometry); ``inputs`` are the ONNX values of
    the bottoms, in order.
    """
    layer: Layer
    node: LayerNode
    inputs: list
    builder: GraphBuilder

    @property
    def bottom_shapes(self) -> list:
        return self.layer.bottom_shapes

    @property
    def top_shapes(self) -> list:
        return self.layer.top_shapes

    def op(self, op_type: str, *inputs: Optional[str], num_outputs: int = 1, **attrs):
        """Add a node; returns its output value (a list when ``num_outputs > 1``)."""
        out = self.builder.node(op_type, inputs, f"{self.layer.name}/{op_type}",
                                num_outputs=num_outputs, **attrs)
        return out if num_outputs > 1 else out[0]

    def const(self, array, hint: str = "const", dtype=np.float32) -> str:
        """A constant (float32 unless ``dtype`` says otherwise)."""
        return self.builder.constant(np.asarray(array, dtype=dtype), f"{self.layer.name}/{hint}")

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        """An int64 vector constant (shapes, axes, starts)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1), hint, np.int64)

    def blob_array(self, name: str) -> np.ndarray:
        """The layer's learnable blob ``name`` as float32 numpy (its Gluon Parameter)."""
        return getattr(self.layer, name).data().asnumpy().astype(np.float32)

    def blob(self, name: str, shape: Optional[Sequence[int]] = None) -> str:
        """The blob as an initializer named after its Gluon Parameter (shared blobs are
        written once), reshaped to ``shape`` if given."""
        param = getattr(self.layer, name)
        key = (id(param), None if shape is None else tuple(shape))
        cache = self.builder.parameter_constants
        if key not in cache:
            array = self.blob_array(name)
            hint = param.name if shape is None else f"{param.name}/reshaped"
            if shape is not None:
                array = array.reshape(shape)
            cache[key] = self.builder.constant(array, hint)
        return cache[key]

    def shape_only_tops(self) -> list:
        """The tops of a layer whose output depends only on its bottoms' shapes
        (PriorBox), computed by the engine's own layer, as numpy arrays."""
        import mxnet as mx
        from caffe_compat.context import current_context
        zeros = [mx.nd.zeros(s, ctx=current_context()) for s in self.bottom_shapes]
        out = self.layer(*zeros)
        return [t.asnumpy() for t in (out if isinstance(out, (list, tuple)) else [out])]

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        return self.op("Reshape", x, self.ints(shape, "shape"))

    def refuse(self, reason: str) -> OnnxLayerError:
        path, line = self.layer.source
        return OnnxLayerError(self.layer.name, self.layer.type,
                              f"cannot be exported to ONNX exactly: {reason}", path=path,
                              line=line)


def needed_layers(net: CaffeNet, outputs: Sequence[str]) -> set:
    """Indices of the layers whose tops the outputs depend on (backwards from the end)."""
    wanted, needed = set(outputs), set()
    for node in reversed(net.graph.layers):
        if any(t in wanted for t in node.tops):
            needed.add(node.index)
            wanted.difference_update(t for j, t in enumerate(node.tops) if not node.in_place(j))
            wanted.update(node.bottoms)
    return needed


def _unsupported(layer: Layer) -> OnnxLayerError:
    path, line = layer.source
    reason = refusal_for(layer.type)
    if reason is not None:
        message = f"cannot be exported to ONNX exactly: {reason}"
    else:
        message = ("no ONNX exporter for this layer type; exported types: "
                   + ", ".join(exported_types()))
    return OnnxLayerError(layer.name, layer.type, message, path=path, line=line)


class _Conversion:
    """One run of the converter over one net (see the module docstring)."""

    def __init__(self, net: CaffeNet, outputs: Sequence[str]):
        self.net = net
        self.outputs = list(outputs)
        self.builder = GraphBuilder(reserved=net.graph.blob_names)
        self.values: dict[str, Optional[str]] = {}     # blob -> its current ONNX value
        self.inputs: list[str] = []
        self.expected: dict[str, tuple] = {}          # ONNX value -> (layer, top, shape)

    def run(self) -> tuple:
        """(graph without initializers, names of its initializers)."""
        needed = needed_layers(self.net, self.outputs)
        for node, layer in zip(self.net.graph.layers, self.net.caffe_layers):
            if node.index not in needed:
                continue
            if is_source_layer(layer):
                for top in node.tops:
                    self.builder.claim(top)
                    self.values[top] = top
                    self.inputs.append(top)
                continue
            self._emit(node, layer)
        out_values = self._name_outputs()
        live = self.builder.prune(out_values)
        shapes = self.net.blob_shapes
        graph_inputs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                      list(shapes[name]))
                        for name in self.inputs if name in live]
        graph_outputs = [helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT,
                                                       list(shapes[blob]))
                         for value, blob in zip(out_values, self.outputs)]
        graph = helper.make_graph(self.builder.nodes, self.net.graph.name or "caffe_net",
                                  graph_inputs, graph_outputs)
        return graph, list(self.builder.initializers)

    def _emit(self, node: LayerNode, layer: Layer) -> None:
        emitter = emitter_for(layer.type)
        if emitter is None:
            raise _unsupported(layer)
        inputs = []
        for j, blob in enumerate(node.bottoms):
            value = self.values.get(blob)
            if value is None:
                raise OnnxLayerError(layer.name, layer.type,
                                     f"bottom {j} ('{blob}') is a top the exporter does not "
                                     "write (see the layer that produces it)",
                                     path=layer.source[0], line=layer.source[1])
            inputs.append(value)
        first_node = len(self.builder.nodes)
        constants_before = set(self.builder.initializers)
        tops = list(emitter(LayerContext(layer, node, inputs, self.builder)))
        if len(tops) != len(node.tops):
            raise RuntimeError(f"ONNX emitter for {layer.type} returned {len(tops)} value(s) "
                               f"for {len(node.tops)} top(s) of layer '{layer.name}'")
        made = {out for n in self.builder.nodes[first_node:] for out in n.output}
        new_constants = set(self.builder.initializers) - constants_before
        named: dict[str, str] = {}
        for j, (blob, value) in enumerate(zip(node.tops, tops)):
            if value in new_constants:      # a top that is a constant: give it a node
                value = self.builder.node("Identity", [value], f"{layer.name}/Identity")[0]
                made.add(value)
            if value is not None and value in made and value not in named:
                target = self._top_name(blob, layer.name)
                self.builder.rename(value, target)
                named[value] = target
                self.expected[target] = (layer, j, tuple(layer.top_shapes[j]))
                value = target
            self.values[blob] = named.get(value, value)

    def _top_name(self, blob: str, layer_name: str) -> str:
        """The blob's own name for its first value, ``blob@layer`` for in-place rewrites."""
        if not self.builder.is_used(blob):
            self.builder.claim(blob)
            return blob
        return self.builder.fresh(f"{blob}@{layer_name}")

    def _rename(self, old: str, new: str) -> None:
        self.builder.rename(old, new)
        self.values = {k: (new if v == old else v) for k, v in self.values.items()}
        self.inputs = [new if v == old else v for v in self.inputs]
        if old in self.expected:
            self.expected[new] = self.expected.pop(old)

    def _name_outputs(self) -> list[str]:
        """Give each output blob's final value the blob's name (renaming an in-place
        chain's values, or adding an Identity for a value another name holds); returns
        the output value names (the blob names, but for an input rewritten in place)."""
        blob_names = set(self.net.graph.blob_names)
        names = []
        for blob in self.outputs:
            value = self.values.get(blob)
            if value is None:
                raise OnnxExportError(f"output blob '{blob}' is a top the exporter does not write")
            if value == blob:
                names.append(blob)
                continue
            if blob in self.inputs:
                # an input blob rewritten in place: the input keeps the name
                name = self.builder.fresh(f"{blob}@output")
                self.builder.nodes.append(helper.make_node("Identity", [value], [name],
                                                           name=f"{name}/output"))
                names.append(name)
                continue
            if self.builder.is_used(blob):
                # an earlier value of an in-place chain holds the name: move it aside
                self._rename(blob, self.builder.fresh(f"{blob}@before"))
                value = self.values[blob]
            if value not in blob_names and value not in self.inputs:
                self._rename(value, blob)
            else:
                self.builder.claim(blob)
                self.builder.nodes.append(helper.make_node("Identity", [value], [blob],
                                                           name=f"{blob}/output"))
            names.append(blob)
        return names


#: Constants with more elements than this are left out of the model the checks read
#: (weights: the checker and shape inference need their shapes only).
_CHECKED_CONSTANT_MAX = 4096


def _make_model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(graph, producer_name="caffe-compat",
                              opset_imports=[helper.make_opsetid("", OPSET)], doc_string=doc)
    model.ir_version = 7      # the IR of opset 13: readable by older runtimes too
    return model


def _check(graph: onnx.GraphProto, builder: GraphBuilder, constants: list,
           expected: dict) -> None:
    """The ONNX checker, then every exported top's inferred shape against Caffe's (an
    exporter self-check), on a copy of the graph whose large constants are declared
    inputs (same shapes, no data to serialize)."""
    skeleton = onnx.GraphProto()
    skeleton.CopyFrom(graph)
    small = [n for n in constants if builder.initializers[n].size <= _CHECKED_CONSTANT_MAX]
    builder.write_initializers(skeleton, small)
    for name in constants:
        array = builder.initializers[name]
        if array.size > _CHECKED_CONSTANT_MAX:
            skeleton.input.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape)))
    model = _make_model(skeleton, "")
    try:
        onnx.checker.check_model(model)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"exporter bug: ONNX rejects the graph written: {exc}") from exc
    found = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            found[info.name] = tuple(d.dim_value for d in dims)
    for value, (layer, j, shape) in expected.items():
        if value in found and found[value] != shape:
            raise OnnxLayerError(layer.name, layer.type,
                                 f"exporter bug: ONNX gives top {j} ('{value}') shape "
                                 f"{found[value]}, Caffe's is {shape}",
                                 path=layer.source[0], line=layer.source[1])


def onnx_model(net: CaffeNet, outputs: Optional[Sequence[str]] = None,
               doc: str = "") -> onnx.ModelProto:
    """The net (its current input shapes and weights) as a checked ONNX model.

    ``outputs``: blob names (default ``net.output_names``). Raises
    :class:`OnnxExportError` naming the first layer that cannot be exported exactly.
    """
    outputs = list(outputs) if outputs is not None else list(net.output_names)
    if not outputs:
        raise OnnxExportError(f"net '{net.graph.name}' has no output blobs to export")
    for name in outputs:
        if name not in net.blob_shapes:
            raise OnnxExportError(f"no blob named {name!r} in net '{net.graph.name}'")
    conversion = _Conversion(net, outputs)
    graph, constants = conversion.run()
    _check(graph, conversion.builder, constants, conversion.expected)
    conversion.builder.write_initializers(graph, constants)
    return _make_model(graph, doc or f"Caffe net '{net.graph.name}' exported by caffe-compat")
