"""pycaffe's ``forward``/``backward`` as cached, hybridized MXNet graphs.

Caffe runs a net layer by layer and pycaffe shows every blob's data and diff after a call.
Running each layer as its own MXNet call costs a Python dispatch per layer; this module
runs each maximal run of *traceable* layers (a :class:`Segment`) as one ``HybridBlock``
(:class:`SegmentGraph`, ``static_alloc``) whose outputs are the blob values pycaffe shows,
so the view stays exact while MXNet runs one graph. Layers that cannot be traced (Python
layers, host-side detection/proposal layers, recurrent layers carrying state, BatchNorm
computing batch statistics, data layers) run one at a time between segments, as before.
One graph is cached per (segment, input shapes, recording, exposed blobs).

**Exposed blobs.** Returning every blob costs (each output leaves oneDNN's blocked layout
and keeps its own memory: GoogLeNet's 120 outputs add ~40 % at batch 1), so outside
recording a deterministic segment returns only the blobs this call needs later, the
call's outputs and the blobs the user has read before; the others are *lazy*: the first
read of one (``blob.data``, or a later layer) runs the segment's every-blob graph once on
the same inputs and fills them all, and the blob joins the exposed set for later calls.

**Versions.** A blob written in place has several values over a forward (a Convolution's
output, then the ReLU's in place): each (layer, top) is a *version*. Outside recording the
graph returns each blob's last version in the segment (what Caffe's blob then holds).
When a backward may follow, the graph returns every version, and each version whose
gradient Caffe stores as a ``diff`` gets a *gradient tap*: ``value + tap`` with ``tap`` an
extra all-zero input. The value is unchanged, and the gradient MXNet returns for ``tap`` is
the gradient with respect to that version, i.e. the bottom diff its consumer's Backward
writes (a Split's bottom diff is the sum over its tops, which autograd sums the same way).

**Lean recordings and lazy diffs.** Taps and returned blobs each cost about as much as
the graph itself at batch 1 (every one leaves oneDNN's layout and breaks MXNet's bulked
execution), so a deterministic segment is recorded *lean*: it returns the blobs the call
needs plus the ones no layer in it reads (a backward's heads), and taps only the diffs the
user has read before. The other blobs are lazy as above; the other diffs are *lazy
diffs*: on first read the same backward runs again, through a private graph that taps
every version, from the recording's own inputs and saved heads, and the parameter diffs
it adds are taken back. What that replay depends on cannot change before it runs: inputs
and heads are kept; a reshape, new weights or a parameter write (a numpy buffer whose
values changed, not one merely held) compute pending values first; a script that keeps
writing parameters gets eager recordings from its second write on, and so does a
solver's net, whose update rewrites the weights in place.

**Backward over part of a recording.** Caffe's ``Backward`` of layers ``lo..hi`` reads the
diff of every top that no layer in ``lo..hi`` consumes (what later layers, a loss weight or
the user left there) and writes the bottom diffs of ``lo..hi``. So the recorded graph is
differentiated with those stored diffs as head gradients on the versions ``lo..hi`` produce
and no head elsewhere (the layers above ``hi`` then contribute exactly zero); the diffs read
back are the taps of the versions ``lo..hi`` consume; and the parameter gradients of layers
below ``lo`` (which MXNet would also accumulate) are restored afterwards. Where Caffe's
backward analysis stops a gradient (``bottom_need_backward`` false, a layer without
Backward) the graph has ``BlockGrad`` there, so the same paths carry gradient.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Sequence

import mxnet as mx

from caffe_compat.engine.build import shape_layer
from caffe_compat.engine.network import CaffeNet, _quiet_unused_params, is_source_layer
from caffe_compat.engine.onednn import gradient_guards

#: Layer types that never run inside a segment: they carry state from one call to the next.
_STATEFUL_TYPES = {"RNN", "LSTM"}
#: Cached graphs kept per segment (input-shape sets x recording), least recently used dropped.
GRAPHS_PER_SEGMENT = 4


def _deterministic(layer) -> bool:
    """The layer gives the same tops for the same bottoms (no random draw)."""
    if layer.type in ("Dropout", "SeLuDropout"):
        return layer.passes_bottom_through()
    if layer.type == "Pooling":
        return layer.param.pooling_param.pool != 2        # STOCHASTIC draws in TRAIN
    return True


def traceable(layer) -> bool:
    """Whether a (non-source) layer can run inside a traced, symbolic graph."""
    if layer.type == "Python" or layer.type in _STATEFUL_TYPES:
        return False
    if type(layer).forward is not mx.gluon.HybridBlock.forward:
        return False        # a host-side layer (DetectionOutput, Proposal): imperative only
    if layer.type == "BatchNorm" and not getattr(layer, "use_global_stats", True):
        return False        # updates its statistics blobs during the forward
    return True


@dataclass
class Segment:
    """Static analysis of layers ``start..end`` run as one graph (see the module doc)."""

    net: CaffeNet
    start: int
    end: int
    layers: list = field(default_factory=list)        # its layer indices (data layers left out)
    input_names: list = field(default_factory=list)   # blobs read from outside, in order
    versions: list = field(default_factory=list)      # (layer index, blob) per produced top
    consumed: dict = field(default_factory=dict)      # (layer, bottom j) -> version or input name
    final_version: dict = field(default_factory=dict)  # blob -> its last version in the segment
    tapped: list = field(default_factory=list)        # versions whose gradient is read back
    unconsumed: frozenset = frozenset()                # blobs whose last version no layer here reads
    blocked: dict = field(default_factory=dict)       # layer -> bottom indices without gradient

    def __post_init__(self) -> None:
        graph = self.net.graph
        current: dict = {}
        self.layers = [i for i in range(self.start, self.end + 1)
                       if not is_source_layer(self.net.caffe_layers[i])]
        for i in self.layers:       # a data layer's tops come in as inputs (run before)
            node = graph.layers[i]
            for j, b in enumerate(node.bottoms):
                if b not in current:
                    current[b] = ("input", b)
                    self.input_names.append(b)
                self.consumed[(i, j)] = current[b]
            for t in node.tops:
                current[t] = len(self.versions)
                self.versions.append((i, t))
        self.final_version = {b: v for b, v in current.items() if not isinstance(v, tuple)}
        read = set(self.consumed.values())
        self.unconsumed = frozenset(b for b, v in self.final_version.items() if v not in read)
        for i in self.layers:
            node, layer = graph.layers[i], self.net.caffe_layers[i]
            if not node.need_backward or not getattr(layer, "has_backward", True):
                blocked = tuple(range(len(node.bottoms)))
            else:
                blocked = tuple(j for j, need in enumerate(node.bottom_need_backward) if not need)
            if blocked:
                self.blocked[i] = blocked
        tapped = {v for (i, j), v in self.consumed.items()
                  if not isinstance(v, tuple) and self.carries_gradient(i, j)}
        self.tapped = sorted(tapped)
        # What a backward of the whole segment reads: each blob's diff at its first
        # version (the lowest consumer writes it last) and heads at final versions.
        first: dict = {}
        for v, (i, blob) in enumerate(self.versions):
            first.setdefault(blob, v)
        self.first_tapped = sorted(v for v in tapped if first[self.versions[v][1]] == v)
        self.any_need_backward = any(graph.layers[i].need_backward for i in self.layers)
        self.deterministic = all(_deterministic(self.net.caffe_layers[i]) for i in self.layers)
        self._graphs: "OrderedDict[tuple, SegmentGraph]" = OrderedDict()

    def carries_gradient(self, layer: int, bottom: int) -> bool:
        """Caffe's Backward of ``layer`` writes the diff of its bottom ``bottom``."""
        return bottom not in self.blocked.get(layer, ())

    def graph(self, shapes: Sequence[tuple], recording: bool,
              exposed: Optional[frozenset] = None, every_version: bool = True,
              tapped: Optional[frozenset] = None, private: bool = False) -> "SegmentGraph":
        """The cached graph for these input shapes (layers re-shaped when new).

        ``exposed`` limits the blobs it returns (None: every blob); recording,
        ``every_version=False`` returns final versions only and taps the first versions
        in ``tapped`` (None: every first version), enough for a backward of the whole
        segment. ``private`` gives a graph of its own (the lazy diffs' recomputation
        must not overwrite the static memory a recording still needs)."""
        key = (tuple(shapes), recording, exposed, every_version, tapped, private)
        g = self._graphs.get(key)
        if g is None:
            self._reshape_layers(dict(zip(self.input_names, shapes)))
            g = SegmentGraph(self, recording, exposed, every_version, tapped)
            self._graphs[key] = g
            if len(self._graphs) > GRAPHS_PER_SEGMENT:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return g

    def first_versions_of(self, blobs) -> frozenset:
        """The tapped first versions of ``blobs`` (the diffs a lean recording returns)."""
        return frozenset(v for v in self.first_tapped if self.versions[v][1] in blobs)

    def _reshape_layers(self, shapes: dict) -> None:
        """Caffe's Reshape of the segment's layers for new input shapes."""
        graph = self.net.graph
        for i in self.layers:
            node, layer = graph.layers[i], self.net.caffe_layers[i]
            bottoms = [shapes[b] for b in node.bottoms]
            if bottoms != [tuple(s) for s in layer.bottom_shapes]:
                shape_layer(layer, bottoms, first=False)
            for t, s in zip(node.tops, layer.top_shapes):
                shapes[t] = tuple(s)

    def clear(self) -> None:
        self._graphs.clear()


class SegmentGraph(mx.gluon.HybridBlock):
    """One segment for one input-shape set, hybridized with static memory.

    Call with the segment's inputs (then, recording, one zero array per tapped version:
    :attr:`taps`). ``slot_of_version[v]`` / ``slot_of_blob[b]`` index the outputs.
    """

    def __init__(self, segment: Segment, recording: bool, exposed: Optional[frozenset] = None,
                 every_version: bool = True, tapped: Optional[frozenset] = None):
        super().__init__(prefix=f"segment{segment.start}_{segment.end}_")
        # a proxy: the segment owns its graphs (no cycle keeping static memory alive)
        self.segment, self.recording = weakref.proxy(segment), recording
        self.every_version = every_version or not recording
        self.exposed = None if recording and self.every_version else exposed
        if not recording:
            self.tapped = []
        elif self.every_version:
            self.tapped = segment.tapped
        else:
            self.tapped = segment.first_tapped if tapped is None else sorted(tapped)
        self.lent: dict = {}        # blob -> tap gradient buffer serving as its diff (net.py)
        for i in segment.layers:
            self.register_child(segment.net.caffe_layers[i], f"layer{i}")
        self.slot_of_version: dict = {}
        self.slot_of_blob: dict = {}
        # Caffe shapes of the blobs it writes (the layers are shaped for this graph now)
        layers, nodes = segment.net.caffe_layers, segment.net.graph.layers
        self.blob_shape = {blob: tuple(layers[i].top_shapes[nodes[i].tops.index(blob)])
                           for blob, (i, _) in ((b, segment.versions[v])
                                                for b, v in segment.final_version.items())}
        self.taps: list = []
        # Trace this block only: the layers stay imperative for the layer-by-layer path.
        self._active = True
        self._flags = [("static_alloc", True), ("static_shape", True)]

    def serves(self, heads: Sequence[int], readouts: Sequence[int]) -> bool:
        """This recording has outputs at ``heads`` and taps at ``readouts`` (versions)."""
        tapped = set(self.tapped)
        return (all(v in self.slot_of_version for v in heads)
                and all(v in tapped for v in readouts))

    def make_taps(self, ctx: mx.Context) -> list:
        """Zero tap inputs (reused across calls; their grads are read after backward)."""
        if not self.taps:
            layers = self.segment.net.caffe_layers
            for v in self.tapped:
                i, blob = self.segment.versions[v]
                node = self.segment.net.graph.layers[i]
                shape = layers[i].top_shapes[node.tops.index(blob)] or (1,)
                tap = mx.nd.zeros(shape, ctx=ctx)
                tap.attach_grad()
                self.taps.append(tap)
        return self.taps

    def __call__(self, *args):
        with gradient_guards(self.recording), _quiet_unused_params():
            return super().__call__(*args)

    def hybrid_forward(self, F, *args):
        seg = self.segment
        n = len(seg.input_names)
        values = dict(zip(seg.input_names, args[:n]))
        tap_of = dict(zip(self.tapped, args[n:])) if self.recording else {}
        version_values: list = []

        def on_top(i, name, value):
            v = len(version_values)
            if v in tap_of:
                value = value + tap_of[v]
            version_values.append(value)
            return value

        blocked = seg.blocked if self.recording else {}
        seg.net.run_layers(F, values, seg.start, seg.end, args[0], on_top=on_top,
                           blocked=lambda i: blocked.get(i, ()), fuse=False)
        # One output per distinct symbol; a graph input or parameter passed through
        # (Dropout at TEST, a Parameter layer) is copied, as a cached graph cannot return
        # its own inputs.
        outputs: list = []
        slot_by_id: dict = {}

        def slot(sym) -> int:
            if id(sym) not in slot_by_id:
                if sym.get_children() is None:          # a variable
                    sym = F.identity(sym)
                slot_by_id[id(sym)] = len(outputs)
                outputs.append(sym)
            return slot_by_id[id(sym)]

        final = {b: v for b, v in seg.final_version.items()
                 if self.exposed is None or b in self.exposed}
        wanted = (range(len(version_values)) if self.recording and self.every_version
                  else final.values())
        for v in wanted:
            self.slot_of_version[v] = slot(version_values[v])
        self.slot_of_blob = {b: self.slot_of_version[v] for b, v in final.items()}
        return tuple(outputs)


def plan(net: CaffeNet, start: int, end: int, enabled: bool = True) -> list:
    """The steps of a forward over ``start..end``: ``("source", i)`` for data layers (run
    first: their tops depend on nothing), then ``("layer", i)`` or ``("segment", (a, b))``
    (a run of traceable layers reading at least one blob from outside) in layer order."""
    sources, steps, run = [], [], []

    def reads_from_outside() -> bool:
        produced: set = set()
        for i in run:
            node = net.graph.layers[i]
            if any(b not in produced for b in node.bottoms):
                return True
            produced.update(node.tops)
        return False

    def close_run():
        if reads_from_outside():
            steps.append(("segment", (run[0], run[-1])))
        else:
            steps.extend(("layer", i) for i in run)
        run.clear()

    for i in range(start, end + 1):
        node, layer = net.graph.layers[i], net.caffe_layers[i]
        if is_source_layer(layer):
            sources.append(("source", i))
        elif enabled and traceable(layer) and node.tops:
            run.append(i)
        else:
            close_run()
            steps.append(("layer", i))
    close_run()
    return sources + steps


def snapshot_grads(params: Sequence[mx.gluon.Parameter], ctx: mx.Context) -> list:
    """Copies of accumulating parameter gradients, to restore after a partial backward."""
    return [(p, p.grad(ctx).copy()) for p in params if p.grad_req == "add"]


def restore_grads(saved: list, ctx: mx.Context) -> None:
    for p, value in saved:
        p.grad(ctx)[:] = value
