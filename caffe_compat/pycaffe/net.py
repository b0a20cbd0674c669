"""pycaffe's ``Net`` and ``Blob`` on the Gluon engine.

Layers run one at a time in prototxt order (so ``forward(start=, end=)`` and
``backward(start=, end=)`` behave as in Caffe); when the net needs backward, each layer's
forward is recorded by MXNet autograd and its backward replays it with the top diffs,
writing bottom diffs and accumulating parameter diffs exactly where Caffe does.

>>> import caffe_compat as caffe
>>> net = caffe.Net("deploy.prototxt", "weights.caffemodel", caffe.TEST)  # doctest: +SKIP
>>> net.blobs["data"].data[...] = image                                   # doctest: +SKIP
>>> prob = net.forward()["prob"]                                          # doctest: +SKIP
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Optional, Sequence

import mxnet as mx
import numpy as np

from caffe_compat.context import current_context
from caffe_compat.engine.build import shape_layer
from caffe_compat.engine.graph import build_graph
from caffe_compat.engine.network import CaffeNet, _as_list
from caffe_compat.pycaffe.fast_path import Segment, plan, restore_grads, snapshot_grads
from caffe_compat.pycaffe.synced import GradArray, ParamArray, SyncedArray


class _LayerTape:
    """One layer's recorded forward: its bottoms as leaves, its tops."""

    def __init__(self, valid: tuple, leaves: list, tops: list):
        self.valid, self.leaves, self.tops = valid, leaves, tops


class _SegmentTape:
    """One segment's recorded forward; ``valid`` is the part later forwards left intact."""

    def __init__(self, valid: tuple, graph, leaves: list, outputs: list, lazy: bool):
        self.valid, self.graph, self.leaves, self.outputs = valid, graph, leaves, outputs
        self.lazy = lazy            # diffs the graph does not tap may be computed on read
        self.lent: dict = {}        # blob -> leaf gradient buffer serving as its diff


def _leaves(arrays: list) -> list:
    """Detached copies of ``arrays`` (same memory) whose gradients autograd records."""
    leaves = []
    for x in arrays:
        leaf = x.detach()
        leaf.attach_grad()
        leaves.append(leaf)
    return leaves


def _run_backward(outputs: list, heads: list) -> None:
    if not outputs:
        return
    try:
        mx.autograd.backward(outputs, head_grads=heads, retain_graph=True)
    except mx.base.MXNetError as exc:
        if "not in a computational graph" not in str(exc):
            raise


class Blob:
    """pycaffe's Blob: ``data`` and ``diff`` are float32 numpy arrays over live memory."""

    def __init__(self, data: SyncedArray, diff: SyncedArray):
        self._data, self._diff = data, diff

    @property
    def data(self) -> np.ndarray:
        return self._data.host()

    @data.setter
    def data(self, value) -> None:
        self._data.host()[...] = value

    @property
    def diff(self) -> np.ndarray:
        return self._diff.host()

    @diff.setter
    def diff(self, value) -> None:
        self._diff.host()[...] = value

    @property
    def shape(self) -> tuple:
        return self._data.shape

    def _legacy(self, i: int) -> int:
        # Caffe's LegacyShape: axes beyond a blob's rank (up to 4) count as 1.
        s = self._data.shape
        return s[i] if i < len(s) else 1

    @property
    def num(self) -> int:
        return self._legacy(0)

    @property
    def channels(self) -> int:
        return self._legacy(1)

    @property
    def height(self) -> int:
        return self._legacy(2)

    @property
    def width(self) -> int:
        return self._legacy(3)

    @property
    def count(self) -> int:
        return int(np.prod(self._data.shape)) if self._data.shape else 1

    def reshape(self, *dims: int) -> None:
        """New shape (numpy views taken before no longer track the blob)."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        self._data.reshape(dims)
        self._diff.reshape(dims)

    def __repr__(self) -> str:
        return f"Blob(shape={self.shape})"


class LayerView:
    """pycaffe's Layer as seen from ``net.layers``: ``type``, ``blobs``."""

    def __init__(self, layer, blobs: list):
        self._layer = layer
        self.blobs = blobs

    @property
    def type(self) -> str:
        return self._layer.type

    @property
    def name(self) -> str:
        return self._layer.name

    def __repr__(self) -> str:
        return f"<Layer {self.name!r} type {self.type}>"


def _parse_net_args(args, kwargs) -> tuple:
    """Accept every pycaffe constructor form: (phase), (weights, phase), phase + weights=."""
    weights = kwargs.pop("weights", None)
    phase = kwargs.pop("phase", None)
    level = kwargs.pop("level", 0)
    stages = kwargs.pop("stages", None) or ()
    if kwargs:
        raise TypeError(f"unexpected arguments to Net: {sorted(kwargs)}")
    rest = list(args)
    if rest and (isinstance(rest[0], (str, bytes)) or hasattr(rest[0], "__fspath__")):
        weights = rest.pop(0)
    if rest:
        phase = rest.pop(0)
    if rest:
        raise TypeError("Net(network_file, [weights,] phase, level=0, stages=None, weights=None)")
    if phase is None:
        raise TypeError("Net needs a phase: caffe.TRAIN or caffe.TEST")
    return weights, int(phase), int(level), tuple(stages)


class Net:
    """``caffe.Net(prototxt, [weights,] phase, level=0, stages=None, weights=None)``.

    ``net.fast_path`` (default True) runs each run of traceable layers as one cached,
    hybridized graph (:mod:`caffe_compat.pycaffe.fast_path`); False runs every layer as
    its own call. Both give the same blobs, diffs and parameter diffs.
    """

    fast_path: bool = True
    #: Return only the blobs and diffs a call needs and compute the others on first read
    #: (see fast_path: exposed blobs, lazy diffs). A script that keeps writing parameters
    #: between calls turns it off for its net (pending values are computed at each write).
    lazy_blobs: bool = True

    def __init__(self, network_file, *args, **kwargs):
        from caffe_compat.formats.net_filter import filter_net
        from caffe_compat.formats.prototxt import read_net
        weights, phase, level, stages = _parse_net_args(args, kwargs)
        definition = filter_net(read_net(str(network_file)), phase, level=level, stages=stages)
        graph = build_graph(definition.param, definition.path, definition.layer_lines)
        self._init_from_block(CaffeNet(graph, phase, ctx=current_context(), fill=not weights))
        if weights:     # fillers only for what the weights leave out (same net as Caffe's)
            self._block.fill_blobs(skip_layers=self.copy_from(str(weights)))

    @classmethod
    def from_block(cls, block: CaffeNet) -> "Net":
        """A pycaffe view over an existing engine block (sharing its parameters)."""
        net = cls.__new__(cls)
        net._init_from_block(block)
        return net

    def _init_from_block(self, block: CaffeNet) -> None:
        self._block = block
        self._ctx = current_context()
        params = list(block.collect_params().values())
        ctx = params[0].list_ctx()[0] if params else self._ctx
        self._ctx = ctx
        graph = block.graph
        self._graph = graph
        self.phase = block.phase
        loss_diff = {}
        for node, layer in zip(graph.layers, block.caffe_layers):
            for top, w in zip(node.tops, layer.loss_weights(len(node.tops))):
                if w:
                    loss_diff[top] = w
        self._loss_weights = loss_diff
        self._exported: set = set()         # arrays whose numpy buffer a user may hold
        self._observed: set = set()         # blobs whose data the user has read
        self._observed_diffs: set = set()   # blobs whose diff the user has read
        self._weight_writes_while_pending = 0
        self._in_graph_memory: set = set()  # blobs whose value is a graph's static output
        watch = self._exported
        self._data = {b: SyncedArray(block.blob_shapes[b], ctx, watch=watch)
                      for b in graph.blob_names}
        self._diff = {b: SyncedArray(block.blob_shapes[b], ctx, fill=loss_diff.get(b, 0.0),
                                     watch=watch)
                      for b in graph.blob_names}
        self._data_names = {id(a): b for b, a in self._data.items()}
        self._diff_names = {id(a): b for b, a in self._diff.items()}
        self.blobs = OrderedDict((b, Blob(self._data[b], self._diff[b])) for b in graph.blob_names)
        self._set_grad_reqs()
        self._build_param_views()
        self._tapes: dict = {}
        self._plans: dict = {}
        self._segments: dict = {}
        self._record = any(node.need_backward for node in graph.layers)

    def _set_grad_reqs(self) -> None:
        """Caffe computes a parameter diff when its layer needs backward and the blob
        has lr_mult != 0 (or force_backward); diffs accumulate until cleared ('add')."""
        force = self._graph.force_backward
        wants: dict[int, tuple] = {}
        for node, layer in zip(self._graph.layers, self._block.caffe_layers):
            for p in layer.blobs():
                need = (layer.computes_param_diffs and node.need_backward
                        and (p.lr_mult != 0 or force))
                wants[id(p)] = (p, need or wants.get(id(p), (p, False))[1])
        for p, need in wants.values():
            p.grad_req = "add" if need else "null"
            if need:
                p.zero_grad()

    def _build_param_views(self) -> None:
        arrays: dict[int, Blob] = {}
        self.layers = []
        params = OrderedDict()
        for layer in self._block.caffe_layers:
            views = []
            for p in layer.blobs():
                if id(p) not in arrays:
                    arrays[id(p)] = Blob(ParamArray(p, self._ctx, self._exported),
                                         GradArray(p, self._ctx, self._exported))
                views.append(arrays[id(p)])
            self.layers.append(LayerView(layer, views))
            if views:
                params[layer.name] = views
        self.params = params
        self._param_blobs = list(arrays.values())

    # ---- pycaffe's read-only properties ------------------------------------------------
    @property
    def _layer_names(self) -> list[str]:
        return [n.name for n in self._graph.layers]

    @property
    def layer_dict(self) -> "OrderedDict[str, LayerView]":
        return OrderedDict(zip(self._layer_names, self.layers))

    @property
    def _blob_names(self) -> list[str]:
        return list(self._graph.blob_names)

    @property
    def inputs(self) -> list[str]:
        return list(self._graph.inputs)

    @property
    def outputs(self) -> list[str]:
        return list(self._graph.outputs)

    @property
    def top_names(self) -> "OrderedDict[str, list]":
        return OrderedDict((n.name, list(n.tops)) for n in self._graph.layers)

    @property
    def bottom_names(self) -> "OrderedDict[str, list]":
        return OrderedDict((n.name, list(n.bottoms)) for n in self._graph.layers)

    @property
    def blob_loss_weights(self) -> "OrderedDict[str, float]":
        return OrderedDict((b, float(self._loss_weights.get(b, 0.0))) for b in self._graph.blob_names)

    _blob_loss_weights = blob_loss_weights

    @property
    def block(self) -> CaffeNet:
        """The engine's HybridBlock (for hybridize/export/fast paths)."""
        return self._block

    # ---- synchronisation -------------------------------------------------------------
    def _begin_call(self) -> None:
        """An API entry: numpy buffers the user holds may have been written (only those
        are visited); layers read their Gluon Parameters directly, so parameter writes
        are pushed to them now. A blob whose data or diff the user read is remembered,
        so the fast path returns it from then on (fast_path: exposed blobs, lazy diffs)."""
        params = []
        for a in list(self._exported):
            name = self._data_names.get(id(a))
            if name is not None:
                self._observed.add(name)
            name = self._diff_names.get(id(a))
            if name is not None:
                self._observed_diffs.add(name)
            a.begin_call()
            if isinstance(a, (ParamArray, GradArray)):
                params.append(a)
        uploads = [a for a in params if isinstance(a, ParamArray) and a.host_is_newer()]
        if uploads and self._any_lazy() and any(a.host_differs_from_device() for a in uploads):
            # Values not computed yet depend on the parameters about to change: compute
            # them now. A script writing weights at every call (a training loop) would pay
            # that each time, so its second such write turns leaving values pending off.
            self._settle_lazy()
            self._weight_writes_while_pending += 1
            if self._weight_writes_while_pending >= 2:
                self.lazy_blobs = False
        for a in params:
            a.sync_to_device()
        self._sync_shapes()

    def _any_lazy(self) -> bool:
        return any(a.is_lazy() for arrays in (self._data, self._diff) for a in arrays.values())

    def _settle_lazy(self) -> None:
        """Compute every blob and diff left for first read, while what they depend on
        (parameters, shapes) is as the call that left them saw it."""
        for arrays in (self._data, self._diff):
            for a in arrays.values():
                if a.is_lazy():
                    a.device()

    def _end_call(self) -> None:
        for a in list(self._exported):
            a.end_call()

    def _sync_shapes(self) -> None:
        """Caffe reshapes on every forward: follow input blobs the user reshaped."""
        wanted = {b: self._data[b].shape for b in self._block.input_names if b in self._data}
        if wanted != {b: self._block.blob_shapes.get(b) for b in wanted}:
            self.reshape()

    def reshape(self) -> None:
        """Propagate input blob shapes through the net (pycaffe's ``net.reshape()``)."""
        self._settle_lazy()
        wanted = {b: self._data[b].shape for b in self._block.input_names if b in self._data}
        shapes = self._block.reshape(wanted)
        for b, s in shapes.items():
            self._data[b].reshape(s)
            self._diff[b].reshape(s)
            if b in self._loss_weights:
                self._diff[b].fill = self._loss_weights[b]

    # ---- forward / backward ----------------------------------------------------------
    def _steps(self, start: int, end: int) -> list:
        key = (start, end, self.fast_path)
        steps = self._plans.get(key)
        if steps is None:
            steps = self._plans[key] = plan(self._block, start, end, enabled=self.fast_path)
        return steps

    def _segment(self, bounds: tuple) -> Segment:
        segment = self._segments.get(bounds)
        if segment is None:
            segment = self._segments[bounds] = Segment(self._block, *bounds)
        return segment

    def _forward(self, start: int, end: int, returned: Sequence[str] = ()) -> float:
        """Layers ``start..end``; ``returned`` names the blobs the caller will read."""
        self._retire_tapes(start, end)
        steps = self._steps(start, end)
        for n, (kind, where) in enumerate(steps):
            if kind == "source":
                self._forward_source(where)
            elif kind == "layer":
                self._forward_layer(where)
            else:
                self._forward_segment(self._segment(where),
                                      self._read_after(start, end, n) | frozenset(returned))
        loss = 0.0
        for name, w in self._loss_tops(start, end):
            loss += w * float(self._data[name].device().sum().asscalar())
        return loss

    def _read_after(self, start: int, end: int, step: int) -> frozenset:
        """Blobs the steps after ``step`` of the forward ``start..end`` read, and its loss
        tops (the call sums them)."""
        key = ("read_after", start, end, step)
        names = self._plans.get(key)
        if names is None:
            later = set()
            for kind, where in self._steps(start, end)[step + 1:]:
                first, last = (where, where) if kind != "segment" else where
                for i in range(first, last + 1):
                    later.update(self._graph.layers[i].bottoms)
            later.update(name for name, _ in self._loss_tops(start, end))
            names = self._plans[key] = frozenset(later)
        return names

    def _loss_tops(self, start: int, end: int) -> list:
        """(top, loss weight) of the layers ``start..end`` with a non-zero weight."""
        key = ("loss", start, end)
        tops = self._plans.get(key)
        if tops is None:
            tops = self._plans[key] = [
                (name, w) for i in range(start, end + 1)
                for name, w in zip(self._graph.layers[i].tops,
                                   self._block.caffe_layers[i].loss_weights(
                                       len(self._graph.layers[i].tops))) if w]
        return tops

    def _retire_tapes(self, start: int, end: int) -> None:
        """A new forward of ``start..end`` replaces what earlier recordings hold there;
        the rest of an earlier recording stays valid (Caffe's blobs outside the range
        keep their values, so their Backward still uses them)."""
        for key, tape in list(self._tapes.items()):
            lo, hi = tape.valid
            if hi < start or lo > end:
                continue
            if lo < start:
                tape.valid = (lo, start - 1)
            elif hi > end:
                tape.valid = (end + 1, hi)
            else:
                del self._tapes[key]

    def _forward_source(self, i: int) -> None:
        produce = getattr(self._block.caffe_layers[i], "next_batch", None)
        if produce is not None:
            for top, arr in zip(self._graph.layers[i].tops, produce()):
                if arr is None:      # the layer keeps this top as it is (DummyData constant)
                    continue
                self._in_graph_memory.discard(top)
                self._data[top].set_device(mx.nd.array(arr, ctx=self._ctx, dtype="float32"))

    def _set_top(self, name: str, value: mx.nd.NDArray) -> None:
        self._in_graph_memory.discard(name)
        self._data[name].set_device(value)
        # a data-dependent top size (proposals, detections): the diff follows it
        if self._diff[name].shape_for_device() != tuple(value.shape):
            self._diff[name].reshape(self._data[name].shape)

    def _forward_layer(self, i: int) -> None:
        node, layer = self._graph.layers[i], self._block.caffe_layers[i]
        bottoms = [self._data[b].device() for b in node.bottoms]
        shapes = [tuple(x.shape) for x in bottoms]
        if shapes != [tuple(s) if s else (1,) for s in layer.bottom_shapes]:
            shape_layer(layer, [self._data[b].shape for b in node.bottoms], first=False)
        if self._record and node.need_backward:
            leaves = _leaves(bottoms)
            with mx.autograd.record():
                tops = _as_list(layer(*leaves))
            self._tapes[("layer", i)] = _LayerTape((i, i), leaves, tops)
        else:
            tops = _as_list(layer(*bottoms))
        for name, value in zip(node.tops, tops):
            self._set_top(name, value)

    def _forward_segment(self, segment: Segment, wanted: frozenset = frozenset()) -> None:
        inputs = [self._data[b].device() for b in segment.input_names]
        shapes = [tuple(x.shape) for x in inputs]
        recording = self._record and segment.any_need_backward
        # Lazy blobs and diffs need a deterministic segment, and inputs that stay as they
        # are: one held in another graph's static memory changes when that graph runs.
        lazy = (segment.deterministic and self.lazy_blobs
                and not any(b in self._in_graph_memory for b in segment.input_names))
        exposed = self._exposed(segment, wanted) if lazy else None
        if recording:
            # A deterministic segment is recorded lean (final versions out, taps on first
            # versions: a whole-segment backward); a backward from inside an in-place
            # chain records it again with every version (_rerecord_every_version).
            if lazy:
                graph = segment.graph(shapes, True, exposed | segment.unconsumed, False,
                                      self._tapped_diffs(segment))
            else:
                graph = segment.graph(shapes, True, every_version=not segment.deterministic)
            leaves = _leaves(inputs)
            with mx.autograd.record():
                outputs = _as_list(graph(*leaves, *graph.make_taps(self._ctx)))
            self._tapes[("segment", segment.start, segment.end)] = _SegmentTape(
                (segment.start, segment.end), graph, leaves, outputs, lazy)
        else:
            graph = segment.graph(shapes, False, exposed)
            outputs = _as_list(graph(*inputs))
        for name, slot in graph.slot_of_blob.items():
            self._store_top(graph, name, outputs[slot])
        left_out = [b for b in segment.final_version if b not in graph.slot_of_blob]
        if left_out:
            compute = self._lazy_blobs(segment, shapes, inputs, left_out)
            for name in left_out:
                self._data[name].set_lazy(compute)

    def _store_top(self, graph, name: str, value: mx.nd.NDArray) -> None:
        self._in_graph_memory.add(name)
        shape = graph.blob_shape[name]
        self._data[name].set_device_of_shape(value, shape)
        if self._diff[name].shape != shape:
            self._diff[name].reshape(shape)

    def _exposed(self, segment: Segment, wanted: frozenset) -> frozenset:
        """The segment's blobs this call must return: ``wanted`` (read later in the call,
        or returned by it) and every blob the user has read (see fast_path's doc)."""
        key = ("exposed", segment.start, segment.end, wanted, len(self._observed))
        exposed = self._plans.get(key)
        if exposed is None:     # (the observed set only grows: its size tells it apart)
            exposed = self._plans[key] = frozenset(
                b for b in segment.final_version if b in wanted or b in self._observed)
        return exposed

    def _tapped_diffs(self, segment: Segment) -> frozenset:
        """The versions a lean recording taps: those of the diffs the user has read."""
        key = ("tapped", segment.start, segment.end, len(self._observed_diffs))
        tapped = self._plans.get(key)
        if tapped is None:
            tapped = self._plans[key] = segment.first_versions_of(self._observed_diffs)
        return tapped

    def _lazy_blobs(self, segment: Segment, shapes: list, inputs: list, names: list):
        """The computation of the blobs a segment call left out: its every-blob graph
        on the same inputs, run once on the first read of any of them."""
        net = weakref.ref(self)     # no Net <-> blob cycle holding the net's arrays

        def compute():
            full = segment.graph(shapes, False, None)
            outputs = _as_list(full(*inputs))
            for name in names:
                if net()._data[name]._lazy is compute:
                    net()._store_top(full, name, outputs[full.slot_of_blob[name]])
        return compute

    def _backward(self, start: int, end: int) -> None:
        tapes = sorted(self._tapes.values(), key=lambda t: t.valid[0], reverse=True)
        for tape in tapes:
            lo, hi = max(tape.valid[0], end), min(tape.valid[1], start)
            if lo > hi:
                continue
            if isinstance(tape, _LayerTape):
                self._backward_layer(tape)
            else:
                self._backward_segment(tape, lo, hi)

    def _backward_layer(self, tape: "_LayerTape") -> None:
        i = tape.valid[0]
        node, layer = self._graph.layers[i], self._block.caffe_layers[i]
        if not getattr(layer, "has_backward", True):
            return
        leaves, tops = tape.leaves, tape.tops
        for leaf in leaves:
            leaf.grad[:] = 0
        heads, outs = [], []
        for name, top in zip(node.tops, tops):
            head = self._diff[name].device().reshape(top.shape)
            if any(top is leaf for leaf in leaves):
                for leaf in leaves:
                    if top is leaf:
                        leaf.grad[:] += head
                continue
            outs.append(top)
            heads.append(head)
        _run_backward(outs, heads)
        for j, b in enumerate(node.bottoms):
            if node.bottom_need_backward[j]:
                self._diff[b].set_device(leaves[j].grad.copy())
        for blob in self.layers[i].blobs:
            blob._diff.device_changed()

    def _backward_segment(self, tape: "_SegmentTape", lo: int, hi: int) -> None:
        """Caffe's Backward of layers ``lo..hi`` through one recorded segment graph."""
        segment = tape.graph.segment
        consumed_within = {v for (i, j), v in segment.consumed.items() if lo <= i <= hi}
        head_versions = [v for v, (i, _) in enumerate(segment.versions)
                         if lo <= i <= hi and v not in consumed_within]
        # Each bottom diff is written by its lowest consumer in lo..hi (Caffe's last write).
        written: dict = {}
        for (i, j), v in sorted(segment.consumed.items(), reverse=True):
            if lo <= i <= hi and segment.carries_gradient(i, j):
                written[self._graph.layers[i].bottoms[j]] = v
        readouts = [v for v in written.values() if not isinstance(v, tuple)]
        self._reclaim_lent(tape.graph.lent, written)
        self._reclaim_lent(tape.lent, written)
        if not tape.graph.serves(head_versions or [min(
                v for v, (i, _) in enumerate(segment.versions) if lo <= i <= hi)],
                [] if tape.lazy else readouts):
            self._rerecord_every_version(tape)
        graph = tape.graph
        # copies: a static graph's backward may hand a head's memory on as the gradient
        # of a tap, which the next backward zeroes; and a lazy diff replays them
        heads = {v: self._diff[segment.versions[v][1]].device().copy() for v in head_versions}
        below = [p for i in range(segment.start, lo) for p in self._block.caffe_layers[i].blobs()]
        saved = snapshot_grads(below, self._ctx)
        self._replay_backward(graph, tape.outputs, heads, lo, hi)
        restore_grads(saved, self._ctx)
        tap_grad = {v: tap.grad for v, tap in zip(graph.tapped, graph.taps)}
        leaf_grad = {name: leaf.grad for name, leaf in zip(segment.input_names, tape.leaves)}
        # The diffs are the gradient buffers themselves (no copy), lent until the next
        # backward through this graph or tape, which copies out what it will not rewrite.
        # A diff the recording does not tap is computed on first read (lazy diffs).
        untapped: dict = {}
        for blob, v in written.items():
            if isinstance(v, tuple):
                grad, lent = leaf_grad[v[1]], tape.lent
            elif v in tap_grad:
                grad, lent = tap_grad[v], graph.lent
            else:
                untapped[blob] = v
                continue
            self._diff[blob].set_device(grad)
            lent[blob] = grad
        if untapped:
            compute = self._lazy_diffs(tape, lo, hi, heads, untapped)
            for blob in untapped:
                self._diff[blob].set_lazy(compute)
        for i in range(lo, hi + 1):
            for blob in self.layers[i].blobs:
                blob._diff.device_changed()

    def _replay_backward(self, graph, outputs: list, heads: dict, lo: int, hi: int) -> None:
        """Differentiate a recorded segment graph with the diffs ``heads`` (version ->
        array) as head gradients at their versions' outputs."""
        by_slot: dict = {}
        for v, head in heads.items():
            slot = graph.slot_of_version[v]
            head = head.reshape(outputs[slot].shape)
            by_slot[slot] = by_slot[slot] + head if slot in by_slot else head
        if not by_slot:         # every head is zero: the diffs written are zeros
            segment = graph.segment
            v = min(v for v, (i, _) in enumerate(segment.versions) if lo <= i <= hi)
            slot = graph.slot_of_version[v]
            by_slot[slot] = mx.nd.zeros(outputs[slot].shape, ctx=self._ctx)
        # (no zeroing: a graph's backward writes every input gradient, zeros where no
        # gradient reaches)
        _run_backward([outputs[s] for s in by_slot], list(by_slot.values()))

    def _lazy_diffs(self, tape: "_SegmentTape", lo: int, hi: int, heads: dict,
                    untapped: dict):
        """The computation of the diffs a lean recording's backward left out: the same
        backward again through a graph tapping every version, on the same inputs and
        heads, run once on the first read of any of them. The parameters cannot change
        before (a parameter write computes pending diffs first: _begin_call), and their
        diffs are restored after, so it adds nothing to them."""
        segment = tape.graph.segment
        inputs = [leaf.detach() for leaf in tape.leaves]
        net = weakref.ref(self)     # no Net <-> diff cycle holding the net's arrays

        def compute():
            me = net()
            graph = segment.graph([tuple(x.shape) for x in inputs], True, private=True)
            leaves = _leaves(inputs)
            params = [p for i in segment.layers for p in me._block.caffe_layers[i].blobs()]
            saved = snapshot_grads(params, me._ctx)
            with mx.autograd.record():
                outputs = _as_list(graph(*leaves, *graph.make_taps(me._ctx)))
            me._replay_backward(graph, outputs, heads, lo, hi)
            restore_grads(saved, me._ctx)
            tap_grad = dict(zip(graph.tapped, graph.taps))
            for blob, v in untapped.items():
                if me._diff[blob]._lazy is compute:
                    me._diff[blob].set_device(tap_grad[v].grad.copy())
        return compute

    def _reclaim_lent(self, lent: dict, rewritten: dict) -> None:
        """Before a backward overwrites gradient buffers lent out as diffs, the diffs it
        will not rewrite get their own copy."""
        for blob, array in lent.items():
            if blob not in rewritten and self._diff[blob].device_value_is(array):
                self._diff[blob].set_device(array.copy())
        lent.clear()

    def _rerecord_every_version(self, tape: "_SegmentTape") -> None:
        """A backward starting inside an in-place chain needs heads and diffs at versions
        the lean recording does not keep: record the segment again from the same inputs
        with every version (it is deterministic, so the values are the same)."""
        segment = tape.graph.segment
        graph = segment.graph([tuple(x.shape) for x in tape.leaves], True, every_version=True)
        with mx.autograd.record():
            tape.outputs = _as_list(graph(*tape.leaves, *graph.make_taps(self._ctx)))
        tape.graph = graph

    def _layer_index(self, name: str) -> int:
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise KeyError(f"no layer named {name!r}; layers: {self._layer_names}") from None

    def forward(self, blobs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                end: Optional[str] = None, **kwargs) -> dict:
        """Run layers ``start``..``end`` (names, inclusive); returns {blob: data} for the
        outputs (or ``end``'s tops) plus ``blobs``. Keyword arguments set input blobs."""
        blobs = list(blobs or [])
        start_ind = self._layer_index(start) if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.top_names[end] + blobs)
        else:
            end_ind = len(self.layers) - 1
            outputs = set(self.outputs + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise ValueError("Input blob arguments do not match net inputs.")
            for name, value in kwargs.items():
                if np.shape(value)[0] != self.blobs[name].shape[0]:
                    raise ValueError("Input is not batch sized")
                self.blobs[name].data[...] = value
        self._begin_call()
        try:
            self._forward(start_ind, end_ind, returned=outputs)
        finally:
            self._end_call()
        return {out: self.blobs[out].data for out in outputs}

    def backward(self, diffs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                 end: Optional[str] = None, **kwargs) -> dict:
        """Backward from layer ``start`` down to ``end``; returns {blob: diff} for the
        inputs (or ``end``'s bottoms) plus ``diffs``. Keyword arguments set top diffs."""
        diffs = list(diffs or [])
        start_ind = self._layer_index(start) if start is not None else len(self.layers) - 1
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.bottom_names[end] + diffs)
        else:
            end_ind = 0
            outputs = set(self.inputs + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise ValueError("Top diff arguments do not match net outputs.")
            for name, value in kwargs.items():
                if np.shape(value)[0] != self.blobs[name].shape[0]:
                    raise ValueError("Diff is not batch sized")
                self.blobs[name].diff[...] = value
        self._begin_call()
        try:
            self._backward(start_ind, end_ind)
        finally:
            self._end_call()
        return {out: self.blobs[out].diff for out in outputs}

    def _batch(self, blobs: dict):
        num = len(next(iter(blobs.values())))
        batch_size = next(iter(self.blobs.values())).shape[0]
        remainder = num % batch_size
        for b in range(num // batch_size):
            i = b * batch_size
            yield {name: blobs[name][i:i + batch_size] for name in blobs}
        if remainder > 0:
            padded = {}
            for name in blobs:
                padding = np.zeros((batch_size - remainder,) + tuple(np.shape(blobs[name])[1:]))
                padded[name] = np.concatenate([blobs[name][-remainder:], padding])
            yield padded

    def forward_all(self, blobs: Optional[Sequence[str]] = None, **kwargs) -> dict:
        """Forward a whole set of inputs in batches (last batch zero-padded, then cut)."""
        all_outs = {out: [] for out in set(self.outputs + list(blobs or []))}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for out, value in outs.items():
                all_outs[out].extend(value.copy())
        for out in all_outs:
            all_outs[out] = np.asarray(all_outs[out])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for out in all_outs:
                all_outs[out] = all_outs[out][:-pad]
        return all_outs

    def forward_backward_all(self, blobs: Optional[Sequence[str]] = None,
                             diffs: Optional[Sequence[str]] = None, **kwargs) -> tuple:
        """Forward and backward a whole set in batches; kwargs hold inputs and output diffs."""
        all_outs = {out: [] for out in set(self.outputs + list(blobs or []))}
        all_diffs = {d: [] for d in set(self.inputs + list(diffs or []))}
        forward_in = {k: v for k, v in kwargs.items() if k in self.inputs}
        backward_in = {k: v for k, v in kwargs.items() if k not in self.inputs}
        for fb, bb in zip(self._batch(forward_in), self._batch(backward_in) if backward_in
                          else iter(lambda: {}, None)):
            outs = self.forward(blobs=blobs, **fb)
            grads = self.backward(diffs=diffs, **bb)
            for out, value in outs.items():
                all_outs[out].extend(value.copy())
            for d, value in grads.items():
                all_diffs[d].extend(value.copy())
        for d in (all_outs, all_diffs):
            for k in d:
                d[k] = np.asarray(d[k])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(forward_in.values())))
        if pad:
            for d in (all_outs, all_diffs):
                for k in d:
                    d[k] = d[k][:-pad]
        return all_outs, all_diffs

    def set_input_arrays(self, data, labels) -> None:
        """pycaffe's ``net.set_input_arrays(data, labels)``: feed the first MemoryData layer."""
        layer = next((l for l in self._block.caffe_layers if l.type == "MemoryData"), None)
        if layer is None:
            raise RuntimeError("set_input_arrays needs a net with a MemoryData layer")
        layer.set_input_arrays(data, labels)

    # ---- weights -----------------------------------------------------------------------
    def clear_param_diffs(self) -> None:
        """Zero every parameter diff (Caffe's Net::ClearParamDiffs)."""
        self._begin_call()
        for blob in self._param_blobs:
            if blob._diff.has_grad():
                blob._diff.param.zero_grad()
            blob._diff.device_changed()
        self._end_call()

    def copy_from(self, path: str) -> list:
        """Load weights by layer name from a .caffemodel or .caffemodel.h5; returns the
        names of the layers loaded."""
        self._begin_call()
        self._settle_lazy()         # what is left for first read uses the old weights
        for blob in self._param_blobs:
            blob._data.device()
        loaded = self._block.copy_from(path)
        for blob in self._param_blobs:
            blob._data.device_changed()
        self._end_call()
        return loaded

    def share_with(self, other: "Net") -> None:
        """Share learnable blobs with ``other`` by layer name (Caffe's ShareTrainedLayersWith)."""
        self._settle_lazy()         # what is left for first read uses our own weights
        theirs = {l.name: l for l in other._block.caffe_layers}
        for layer in self._block.caffe_layers:
            src = theirs.get(layer.name)
            if src is None or not layer.blob_names:
                continue
            if len(src.blob_names) != len(layer.blob_names):
                raise layer.error(f"has {len(layer.blob_names)} blobs but the source layer has "
                                  f"{len(src.blob_names)}")
            for mine, their in zip(layer.blob_names, src.blob_names):
                p = getattr(src, their)
                if p.shape != getattr(layer, mine).shape:
                    raise layer.error(f"blob {mine} shape {getattr(layer, mine).shape} differs from "
                                      f"the source's {p.shape}")
                layer.share_blob(mine, p)
        self._block._clear_cached_op()
        for segment in self._segments.values():
            segment.clear()
        self._build_param_views()

    def save(self, path: str) -> None:
        """Write the weights as a .caffemodel (V2), like pycaffe's ``net.save``."""
        self._begin_call()
        for blob in self._param_blobs:
            blob._data.device()
        self._block.save_caffemodel(path)
        self._end_call()

    def save_hdf5(self, path: str) -> None:
        """Write the weights in Caffe's HDF5 layout (``Net::ToHDF5``)."""
        from caffe_compat.formats.caffemodel import LayerWeights
        from caffe_compat.formats.hdf5_weights import write_hdf5_weights
        self._begin_call()
        for blob in self._param_blobs:
            blob._data.device()
        write_hdf5_weights(path, [LayerWeights(n, t, b) for n, t, b in self._block.layer_blobs()])
        self._end_call()

    def __repr__(self) -> str:
        return f"<caffe_compat Net {self._graph.name!r}: {len(self.layers)} layers>"
