"""A whole Caffe net as one Gluon ``HybridBlock``.

:class:`CaffeNet` owns one layer block per Caffe layer (after InsertSplits) and runs them
in prototxt order over a blob-name -> value map, so in-place layers simply rebind the
name. Shapes are inferred like Caffe's ``Net::Reshape`` when the net is built and again
whenever an input shape changes (the cached graph is dropped then), so one object runs a
227x227 and a 500x375 image, imperatively or hybridized.

>>> import mxnet as mx
>>> net = CaffeNet.from_prototxt("deploy.prototxt", weights="w.caffemodel")  # doctest: +SKIP
>>> net.hybridize(static_alloc=True)                                           # doctest: +SKIP
>>> prob = net(mx.nd.zeros((1, 3, 227, 227)))                                 # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterable, Mapping, Optional, Sequence

import mxnet as mx
import numpy as np

from caffe_compat.context import current_context
from caffe_compat.engine.build import instantiate_layer, shape_layer
from caffe_compat.engine.graph import SOURCE_TYPES, NetGraph, build_graph, mark_backward
from caffe_compat.engine.layer import Layer
from caffe_compat.engine.onednn import gradient_guards
from caffe_compat.errors import WeightsMatchWarning, WeightsMismatchError


def _as_list(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


@contextmanager
def _quiet_unused_params():
    """Gluon warns about Parameters a traced graph does not use; a net cut with
    ``set_outputs(end=...)`` or with fused BatchNorm+Scale legitimately leaves some."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Parameter .* is not used by any computation")
        yield


def is_source_layer(layer: Layer) -> bool:
    """Layers whose tops come from the host (Input and data layers), not from bottoms."""
    return getattr(layer, "host_source", False) or layer.param.type in SOURCE_TYPES


class CaffeNet(mx.gluon.HybridBlock):
    """A Caffe net (one phase) as a HybridBlock: inputs in, chosen blobs out.

    ``inputs`` are the tops of source layers (``Input`` and data layers), in layer
    order; ``outputs`` default to Caffe's net outputs (unconsumed blobs, sorted).
    """

    def __init__(self, graph: NetGraph, phase: int = 1,
                 input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
                 ctx: Optional[mx.Context] = None, fill: bool = True):
        super().__init__(prefix="")
        self.graph = graph
        self.phase = int(phase)
        self.caffe_layers: list[Layer] = []
        for node in graph.layers:
            layer = instantiate_layer(node.param, self.phase, node.source)
            self.register_child(layer, name=f"layer{node.index}")
            self.caffe_layers.append(layer)
        self.input_names = [t for node, layer in zip(graph.layers, self.caffe_layers)
                            if is_source_layer(layer) for t in node.tops]
        self.output_names = list(graph.outputs)
        self._range = (0, len(self.caffe_layers) - 1)
        self._fused: dict[int, int] = {}
        self.blob_shapes: dict[str, tuple] = {}
        self._input_shapes: dict[str, tuple] = {}
        self._set_up = False
        self.reshape(dict(input_shapes or {}))
        self._share_params()
        mark_backward(graph,
                      [[getattr(l, n).lr_mult for n in l.blob_names] for l in self.caffe_layers],
                      [l.loss_weights(len(node.tops)) for node, l in zip(graph.layers, self.caffe_layers)],
                      [[l.allow_backward(j) for j in range(len(node.bottoms))]
                       for node, l in zip(graph.layers, self.caffe_layers)])
        self.initialize(ctx=ctx or current_context())
        if fill:
            self.fill_blobs()
        for layer in self.caffe_layers:
            if not layer.computes_param_diffs:
                for p in layer.blobs():
                    p.grad_req = "null"

    # ---- construction ------------------------------------------------------------
    @classmethod
    def from_prototxt(cls, prototxt: str, phase: int = 1, weights: Optional[str] = None,
                      level: int = 0, stages: Sequence[str] = (),
                      ctx: Optional[mx.Context] = None,
                      input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
                      fill: bool = True) -> "CaffeNet":
        """Read, upgrade and filter a prototxt (file or text), build, optionally load weights.

        ``fill=False`` leaves the blobs at zero instead of drawing their fillers (for a
        caller that sets every weight itself)."""
        from caffe_compat.formats.net_filter import filter_net
        from caffe_compat.formats.prototxt import read_net
        definition = filter_net(read_net(prototxt), phase, level=level, stages=stages)
        graph = build_graph(definition.param, definition.path, definition.layer_lines)
        net = cls(graph, phase, input_shapes=input_shapes, ctx=ctx, fill=fill and not weights)
        if weights:
            loaded = net.copy_from(weights)
            if fill:
                net.fill_blobs(skip_layers=loaded)
        return net

    def fill_blobs(self, skip_layers: Iterable[str] = ()) -> None:
        """Fill the learnable blobs with their Caffe fillers, except the layers named in
        ``skip_layers`` (loaded from weights) and the blobs they share. Filling only what
        the weights left out gives the same net as Caffe's fill-then-CopyTrainedLayersFrom
        without drawing VGG-16's 138 M random numbers only to overwrite them."""
        skip_layers = set(skip_layers)
        loaded = {id(p) for layer in self.caffe_layers if layer.name in skip_layers
                  for p in layer.blobs()}
        for layer in self.caffe_layers:
            if layer.name not in skip_layers:
                layer.fill_blobs(skip=loaded)

    def _share_params(self) -> None:
        """Caffe's named ParamSpec sharing: later owners reuse the first owner's blob."""
        owners: dict[str, tuple] = {}
        for layer in self.caffe_layers:
            for i, blob in enumerate(layer.blob_names):
                if i >= len(layer.param.param) or not layer.param.param[i].name:
                    continue
                key = layer.param.param[i].name
                mine = getattr(layer, blob)
                if key not in owners:
                    owners[key] = (layer, mine)
                    continue
                owner_layer, shared = owners[key]
                if shared.shape != mine.shape:
                    raise layer.error(f"shared parameter '{key}' has shape {mine.shape} here but "
                                      f"{shared.shape} in layer '{owner_layer.name}'")
                layer.share_blob(blob, shared)

    # ---- shapes --------------------------------------------------------------------
    def reshape(self, input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> dict:
        """Caffe's Net::Reshape: infer every blob's shape from the input shapes.

        Inputs not named keep their current shape (or the shape their layer declares).
        Returns the blob -> shape map; drops the cached graph when anything changed.
        """
        given = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
        unknown = set(given) - set(self.input_names)
        if unknown:
            raise KeyError(f"not net inputs: {sorted(unknown)}; inputs are {self.input_names}")
        shapes: dict[str, tuple] = {}
        for node, layer in zip(self.graph.layers, self.caffe_layers):
            if is_source_layer(layer):
                if not self._set_up:
                    layer.declared_shapes = shape_layer(layer, [], first=True)
                for j, top in enumerate(node.tops):
                    shapes[top] = (given.get(top) or self.blob_shapes.get(top)
                                   or tuple(layer.declared_shapes[j]))
                layer.top_shapes = [shapes[t] for t in node.tops]
                continue
            bottoms = [shapes[b] for b in node.bottoms]
            if not self._set_up or bottoms != layer.bottom_shapes:
                tops = shape_layer(layer, bottoms, first=not self._set_up)
            else:
                tops = layer.top_shapes
            if len(tops) != len(node.tops):
                raise layer.error(f"produces {len(tops)} top(s) but the prototxt names "
                                  f"{len(node.tops)}")
            for top, s in zip(node.tops, tops):
                shapes[top] = tuple(s)
        changed = shapes != self.blob_shapes
        self.blob_shapes = shapes
        self._input_shapes = {k: shapes[k] for k in self.input_names}
        self._set_up = True
        if changed:
            self._clear_cached_op()
        return shapes

    # ---- running -------------------------------------------------------------------
    def set_outputs(self, outputs: Optional[Iterable[str]] = None, end: Optional[str] = None) -> None:
        """Choose which blobs the block returns and the last layer it runs.

        ``end`` is a layer name (inclusive, like pycaffe's ``forward(end=...)``); outputs
        default to ``end``'s tops, or to Caffe's net outputs when ``end`` is None.
        """
        last = len(self.caffe_layers) - 1 if end is None else self.graph.layer_index(end)
        if outputs is None:
            outputs = self.graph.outputs if end is None else self.graph.layers[last].tops
        outputs = list(outputs)
        for o in outputs:
            if o not in self.blob_shapes:
                raise KeyError(f"no blob named {o!r}")
        self._range = (0, last)
        self.output_names = outputs
        self._clear_cached_op()

    def fuse_batchnorm_scale(self, enabled: bool = True) -> int:
        """Inference speed-up: each BatchNorm (global statistics) and the per-channel
        Scale after it run as two passes over the data instead of three, with their
        per-channel coefficients folded once, here, instead of at every forward.

        Pass 1 is Caffe's ``x - mean`` (exact); pass 2 is ``centred * (scale / std) +
        bias`` where Caffe divides by std and then scales (within an ulp or two). The
        post-BatchNorm, pre-Scale value is never visible in the block (Caffe nets apply
        both in place); pycaffe's layer-by-layer path and training are not affected.
        The folded coefficients are refreshed by :meth:`copy_from`/`load_layer_blobs`;
        call this again after changing BatchNorm/Scale parameters any other way.
        Returns the number of fused pairs.
        """
        self._fused = {}
        if enabled:
            outputs = set(self.output_names)
            layers, nodes = self.caffe_layers, self.graph.layers
            for i in range(len(layers) - 1):
                bn, sc = layers[i], layers[i + 1]
                if (bn.type == "BatchNorm" and getattr(bn, "use_global_stats", False)
                        and getattr(bn, "num_axes", 0) >= 2 and sc.type == "Scale"
                        and getattr(sc, "per_channel", False) and not sc.two_bottoms
                        and sc.axis == 1 and nodes[i + 1].bottoms == nodes[i].tops
                        and (nodes[i].tops[0] == nodes[i + 1].tops[0]
                             or nodes[i].tops[0] not in outputs)):
                    self._fused[i] = i + 1
            self._fold_batchnorm_scale()
        self._clear_cached_op()
        return len(self._fused)

    def _fold_batchnorm_scale(self) -> None:
        """(Re)compute the fused pairs' per-channel shift, gain and bias constants."""
        for i, j in self._fused.items():
            bn, sc = self.caffe_layers[i], self.caffe_layers[j]
            ctx = bn.mean.list_ctx()[0]
            sf = bn.scale_factor.data(ctx)
            factor = mx.nd.where(sf == 0, mx.nd.zeros_like(sf), 1.0 / sf)
            mean = mx.nd.broadcast_mul(bn.mean.data(ctx), factor)
            inv_std = 1.0 / mx.nd.sqrt(mx.nd.broadcast_mul(bn.variance.data(ctx), factor) + bn.eps)
            gain = sc.scale.data(ctx) * inv_std
            bias = sc.bias.data(ctx) if "bias" in sc.blob_names else mx.nd.zeros_like(gain)
            for suffix, value in (("shift", -mean), ("gain", gain), ("bias", bias)):
                name = f"{bn.name}_folded_{suffix}"
                if name not in self.params._params:
                    p = self.params.get(name, shape=value.shape, init=mx.init.Zero(),
                                        grad_req="null", differentiable=False)
                    p.initialize(ctx=bn.mean.list_ctx())
                self.params._params[name].set_data(value)

    def _fused_batchnorm_scale(self, F, x, bn, sc):
        def value(suffix):
            p = self.params._params[f"{bn.name}_folded_{suffix}"]
            return p.var() if F is mx.sym else p.data(x.context)
        def const(p):
            return p.var() if F is mx.sym else p.data(x.context)
        zero, one = const(bn.affine_zero), const(bn.affine_one)
        centred = F.BatchNorm(x, one, value("shift"), zero, one, eps=0.0,
                              use_global_stats=True, fix_gamma=False, axis=1)
        return F.BatchNorm(centred, value("gain"), value("bias"), zero, one, eps=0.0,
                           use_global_stats=True, fix_gamma=False, axis=1)

    def forward(self, *args):
        if args and isinstance(args[0], mx.nd.NDArray):
            shapes = {n: tuple(a.shape) for n, a in zip(self.input_names, args)}
            if shapes != {n: self._input_shapes[n] for n in shapes}:
                self.reshape(shapes)
            # The oneDNN gradient routing (engine/onednn.py) is only needed when a
            # backward will follow: an inference call gets a graph without its copies.
            recording = mx.autograd.is_recording()
            if recording != getattr(self, "_traced_for_backward", None):
                self._traced_for_backward = recording
                self._clear_cached_op()
            with gradient_guards(recording), _quiet_unused_params():
                return super().forward(*args)
        with gradient_guards(False), _quiet_unused_params():   # symbolic tracing (export)
            return super().forward(*args)

    def hybrid_forward(self, F, *inputs):
        if len(inputs) != len(self.input_names):
            raise TypeError(f"net takes {len(self.input_names)} input(s) {self.input_names}, "
                            f"got {len(inputs)}")
        values = dict(zip(self.input_names, inputs))
        start, end = self._range
        self.run_layers(F, values, start, end, inputs[0])
        out = [values[o] for o in self.output_names]
        return out[0] if len(out) == 1 else tuple(out)

    def run_layers(self, F, values: dict, start: int, end: int, any_input,
                   on_top=None, blocked=None, fuse: bool = True) -> None:
        """Run layers ``start..end`` (inclusive) over the blob-name -> value map.

        ``on_top(i, name, value)`` may replace a top's value as it is produced (pycaffe's
        fast path adds its gradient taps there); ``blocked(i)`` names the bottom indices
        of layer i that must pass no gradient (Caffe's bottom_need_backward false).
        ``any_input`` is an array of the trace, for layers without bottoms. ``fuse=False``
        runs fused BatchNorm+Scale pairs as their two layers (every blob value kept).
        """
        fused = self._fused if fuse else {}
        fused_away = set(fused.values())
        for i in range(start, end + 1):
            node, layer = self.graph.layers[i], self.caffe_layers[i]
            if i in fused_away:
                continue
            if i in fused and fused[i] <= end:
                sc_node = self.graph.layers[fused[i]]
                y = self._fused_batchnorm_scale(F, values[node.bottoms[0]], layer,
                                                self.caffe_layers[fused[i]])
                values[node.tops[0]] = y
                values[sc_node.tops[0]] = y
                continue
            if is_source_layer(layer) or not node.tops:
                continue
            bottoms = [values[b] for b in node.bottoms]
            if F is mx.nd and bottoms:
                # After a data-dependent top size (Proposal, DetectionOutput) the layers
                # downstream re-shape, as Caffe's Net::Forward reshapes every layer.
                shapes = [tuple(x.shape) for x in bottoms]
                if shapes != [tuple(s) if s else (1,) for s in layer.bottom_shapes]:
                    shape_layer(layer, shapes, first=False)
            for j in (blocked(i) if blocked is not None else ()):
                bottoms[j] = F.BlockGrad(bottoms[j])
            if layer.passes_bottom_through():
                # Split / Dropout at TEST: the tops are the bottom (no copy); autograd
                # sums the consumers' gradients exactly as SplitLayer::Backward does.
                tops = [bottoms[0]] * len(node.tops)
            else:
                # A layer without bottoms (Parameter) still needs an array of the trace
                # to know whether it runs imperatively or symbolically; it ignores it.
                tops = _as_list(layer(*(bottoms or [any_input])))
            for name, value in zip(node.tops, tops):
                values[name] = on_top(i, name, value) if on_top is not None else value

    # ---- weights -------------------------------------------------------------------
    def layers_by_name(self) -> dict[str, Layer]:
        by_name: dict[str, Layer] = {}
        for layer in self.caffe_layers:
            by_name.setdefault(layer.name, layer)
        return by_name

    def copy_from(self, path: str) -> list[str]:
        """Caffe's CopyTrainedLayersFrom: load blobs by layer name (.caffemodel or .h5).

        Source layers the net lacks are ignored; a blob-count or shape mismatch is an
        error naming the layer. Returns the names of the layers that were loaded.
        """
        from caffe_compat.formats.weights import read_weights
        return self.load_layer_blobs(read_weights(path), source=path)

    def load_layer_blobs(self, layer_blobs: Iterable, source: str = "<weights>") -> list[str]:
        """Copy ``(layer_name, [arrays])`` pairs (or objects with .name/.blobs) into the net."""
        from caffe_compat.formats.caffemodel import legacy_shape_matches
        targets: dict[str, list] = {}
        for layer in self.caffe_layers:
            targets.setdefault(layer.name, []).append(layer)
        loaded = []
        for item in layer_blobs:
            name, blobs = (item.name, item.blobs) if hasattr(item, "blobs") else item
            for layer in targets.get(name, []):
                params = layer.blobs()
                if len(blobs) != len(params):
                    raise WeightsMismatchError(
                        f'{source}: layer "{name}" has {len(blobs)} blob(s) in the weights but '
                        f"{len(params)} in the net")
                for i, (arr, p) in enumerate(zip(blobs, params)):
                    arr = np.asarray(arr, dtype=np.float32)
                    if tuple(arr.shape) != tuple(p.shape):
                        # Caffe's 0-d blobs (PReLU channel_shared, scalar Scale) are (1,) in
                        # MXNet; legacy 4-D blobs reshape by Caffe's ShapeEquals rule.
                        scalar = arr.size == 1 and (arr.ndim == 0 or tuple(p.shape) == (1,))
                        if scalar or (arr.size == int(np.prod(p.shape))
                                      and legacy_shape_matches(arr.shape, p.shape)):
                            arr = arr.reshape(p.shape)
                        else:
                            raise WeightsMismatchError(
                                f'{source}: layer "{name}" blob {i} has shape {tuple(arr.shape)} in '
                                f"the weights but {tuple(p.shape)} in the net")
                    p.set_data(mx.nd.array(arr, dtype="float32"))
                loaded.append(name)
        if self._fused:
            self._fold_batchnorm_scale()
        learnable = [l.name for l in self.caffe_layers if l.blob_names]
        if learnable and not set(loaded) & set(learnable):
            # Caffe's CopyTrainedLayersFrom is silent here; a user is better told.
            warnings.warn(f"{source}: no layer of these weights matches a learnable layer of "
                          f"net '{self.graph.name}' (its learnable layers: "
                          f"{', '.join(learnable[:5])}{', ...' if len(learnable) > 5 else ''}); "
                          "the net keeps its filler values", WeightsMatchWarning, stacklevel=3)
        return loaded

    def layer_blobs(self) -> list[tuple[str, str, list[np.ndarray]]]:
        """(layer name, type, blobs as numpy, in Caffe's blob shapes) for every layer."""
        out = []
        for layer in self.caffe_layers:
            arrays = [p.data().asnumpy() for p in layer.blobs()]
            caffe_shapes = getattr(layer, "caffe_blob_shapes", None)
            if caffe_shapes:
                arrays = [a.reshape(s) if s is not None else a for a, s in zip(arrays, caffe_shapes)]
            out.append((layer.name, layer.type, arrays))
        return out

    def save_caffemodel(self, path: str) -> None:
        """Write a V2 .caffemodel as Caffe's Net::ToProto does: every layer (Split layers
        included) with its phase set, learnable blobs attached."""
        from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
        from caffe_compat.proto import caffe_pb2
        net_param = caffe_pb2.NetParameter()
        net_param.name = self.graph.name
        for node in self.graph.layers:
            lp = net_param.layer.add()
            lp.CopyFrom(node.param)
            lp.phase = self.phase
        weights = [LayerWeights(n, t, b) for n, t, b in self.layer_blobs() if b]
        write_caffemodel(path, weights, net_param=net_param)

    # ---- inspection ----------------------------------------------------------------
    def loss_blobs(self) -> list[tuple[str, float]]:
        """(blob name, loss weight) for every top with a non-zero loss weight."""
        out = []
        for node, layer in zip(self.graph.layers, self.caffe_layers):
            for top, w in zip(node.tops, layer.loss_weights(len(node.tops))):
                if w:
                    out.append((top, w))
        return out

    def __repr__(self) -> str:
        return (f"CaffeNet({self.graph.name!r}, {len(self.caffe_layers)} layers, "
                f"inputs={self.input_names}, outputs={self.output_names})")

