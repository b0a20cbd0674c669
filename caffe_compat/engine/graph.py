"""Caffe's view of a net: layers in order, blobs by name, Split layers inserted.

:func:`build_graph` takes a (filtered, upgraded) ``NetParameter`` and reproduces what
``Net::Init`` decides before any number is computed:

* ``InsertSplits`` (insert_splits.cpp): a top consumed by several bottoms (or by a
  bottom and a loss) gets a ``Split`` layer named ``<blob>_<layer>_<j>_split`` with tops
  ``<blob>_<layer>_<j>_split_<k>``, so gradients are summed exactly where Caffe sums;
* blob creation order, in-place tops (top name == bottom name at the same index), the
  net inputs (tops of ``Input`` layers) and outputs (blobs nobody consumes, in Caffe's
  ``std::set`` order, i.e. sorted by name);
* which layers and bottoms need backward (``layer_need_backward_``,
  ``bottom_need_backward_``), including ``propagate_down`` and ``force_backward``.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> net = text_format.Parse('''
... layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
... layer { name: "a" type: "ReLU" bottom: "x" top: "a" }
... layer { name: "b" type: "Sigmoid" bottom: "x" top: "b" }''', caffe_pb2.NetParameter())
>>> [l.name for l in build_graph(net).layers]
['in', 'x_in_0_split', 'a', 'b']
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional, Sequence

from caffe_compat.errors import LayerError

#: Layer types whose tops are fed from the host (inputs and data layers).
SOURCE_TYPES = {"Input", "Data", "ImageData", "HDF5Data", "MemoryData", "WindowData",
                "DummyData", "AnnotatedData", "VideoData"}


#: Caffe's name for the anonymous top of a loss layer given none (Net::AppendTop).
AUTOMATIC_TOP = "(automatic)"


@dataclass
class LayerNode:
    """One layer of the graph with its resolved bottoms and tops."""
    index: int
    param: object               # caffe_pb2.LayerParameter (after InsertSplits)
    bottoms: list
    tops: list
    source: tuple = (None, None)  # (prototxt path, line) for error messages
    need_backward: bool = False
    bottom_need_backward: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type

    def in_place(self, top_index: int) -> bool:
        """Caffe's in-place test: top j has the same name as bottom j."""
        return top_index < len(self.bottoms) and self.bottoms[top_index] == self.tops[top_index]


@dataclass
class NetGraph:
    name: str
    layers: list
    blob_names: list            # in creation order (Caffe's blob_names_)
    inputs: list                # tops of Input layers (Caffe's net inputs)
    outputs: list               # blobs never consumed, sorted by name like Caffe's std::set
    force_backward: bool
    path: Optional[str] = None

    def layer_index(self, name: str) -> int:
        for node in self.layers:
            if node.name == name:
                return node.index
        raise KeyError(f"no layer named {name!r} in net {self.name!r}")


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(net_param, layer_lines: Optional[Sequence[int]] = None,
                  path: Optional[str] = None):
    """Caffe's InsertSplits: returns (new NetParameter, lines parallel to its layers).

    An unknown bottom blob is a :class:`~caffe_compat.errors.LayerError` naming ``path``
    (the prototxt) and the layer's line.
    """
    from caffe_compat.proto import caffe_pb2

    layers = list(net_param.layer)
    lines = list(layer_lines) if layer_lines is not None else [None] * len(layers)
    last_top: dict[str, tuple] = {}
    source_of: dict[tuple, tuple] = {}
    consumers: dict[tuple, int] = defaultdict(int)
    loss_weight: dict[tuple, float] = {}
    for i, lp in enumerate(layers):
        for j, blob in enumerate(lp.bottom):
            if blob not in last_top:
                raise LayerError(lp.name, lp.type, f"unknown bottom blob '{blob}' (bottom index {j})",
                                 path=path, line=lines[i])
            source_of[(i, j)] = last_top[blob]
            consumers[last_top[blob]] += 1
        for j, blob in enumerate(lp.top):
            last_top[blob] = (i, j)
        for j in range(min(len(lp.loss_weight), len(lp.top))):
            top = last_top[lp.top[j]]
            loss_weight[top] = lp.loss_weight[j]
            if loss_weight[top]:
                consumers[top] += 1

    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    out_lines = []
    next_split: dict[tuple, int] = defaultdict(int)
    for i, src in enumerate(layers):
        lp = out.layer.add()
        lp.CopyFrom(src)
        out_lines.append(lines[i])
        for j in range(len(lp.bottom)):
            top = source_of[(i, j)]
            if consumers[top] > 1:
                producer = layers[top[0]].name
                lp.bottom[j] = split_blob_name(producer, lp.bottom[j], top[1], next_split[top])
                next_split[top] += 1
        for j, blob in enumerate(list(lp.top)):
            top = (i, j)
            n = consumers[top]
            if n > 1:
                split = out.layer.add()
                split.name = split_layer_name(lp.name, blob, j)
                split.type = "Split"
                split.bottom.append(blob)
                for k in range(n):
                    split.top.append(split_blob_name(lp.name, blob, j, k))
                w = loss_weight.get(top, 0.0)
                if w:
                    split.loss_weight.append(w)
                    split.loss_weight.extend([0.0] * (n - 1))
                    del lp.loss_weight[:]
                    next_split[top] += 1
                out_lines.append(lines[i])
    return out, out_lines


def build_graph(net_param, path: Optional[str] = None,
                layer_lines: Optional[Sequence[int]] = None) -> NetGraph:
    """The graph Caffe's Net::Init would build for an already filtered NetParameter.

    Backward flags need each layer's blob count and loss weights, which only the layer
    objects know; :func:`mark_backward` fills them once the layers exist.
    """
    split_param, lines = insert_splits(net_param, layer_lines, path)
    nodes, blob_names, inputs = [], [], []
    available: set[str] = set()
    known: set[str] = set()
    for i, lp in enumerate(split_param.layer):
        node = LayerNode(i, lp, list(lp.bottom), list(lp.top), (path, lines[i]))
        # Net::Init's AutoTopBlobs: a loss layer given no top still gets one, named
        # "(automatic)", which no other layer can use and which is not a net output.
        anonymous = _automatic_tops(lp, known)
        for j, blob in enumerate(node.bottoms):
            if blob not in known:
                raise LayerError(lp.name, lp.type, f"unknown bottom blob '{blob}' (bottom index {j})",
                                 path=path, line=lines[i])
            available.discard(blob)
        if anonymous:
            node.tops = anonymous
            known.update(anonymous)
            blob_names.extend(anonymous)
            nodes.append(node)
            continue
        for j, blob in enumerate(node.tops):
            if node.in_place(j):
                pass
            elif blob in known:
                # Caffe reuses the name for a new blob only in place; otherwise it is an error.
                raise LayerError(lp.name, lp.type,
                                 f"top blob '{blob}' produced by multiple sources",
                                 path=path, line=lines[i])
            else:
                known.add(blob)
                blob_names.append(blob)
            available.add(blob)
            if lp.type == "Input":
                inputs.append(blob)
        nodes.append(node)
    return NetGraph(net_param.name, nodes, blob_names, inputs, sorted(available),
                    bool(net_param.force_backward), path)


def _automatic_tops(lp, known: set) -> list:
    """Names for the anonymous tops Caffe gives a top-less layer whose type has
    ``AutoTopBlobs()`` (every LossLayer): Caffe names each "(automatic)"; a second one
    in the same net is told apart here by its layer name."""
    from caffe_compat.engine.layer import layer_class
    if len(lp.top):
        return []
    cls = layer_class(lp.type)
    count = getattr(cls, "auto_top_blobs", 0) if cls is not None else 0
    names = []
    for j in range(count):
        name = AUTOMATIC_TOP if j == 0 else f"{AUTOMATIC_TOP}_{j}"
        if name in known:
            name = f"{AUTOMATIC_TOP}[{lp.name}]" + (f"_{j}" if j else "")
        names.append(name)
    return names


def mark_backward(graph: NetGraph, param_lr_mults: Sequence[Sequence[float]],
                  loss_weights: Sequence[Sequence[float]],
                  allow_force_backward: Sequence[Sequence[bool]]) -> None:
    """Net::Init's backward analysis, per layer (needs each layer's blob lr_mults,
    top loss weights and AllowForceBackward answers)."""
    blob_need: dict[str, bool] = defaultdict(bool)
    for node in graph.layers:
        need = False
        node.bottom_need_backward = []
        for j, blob in enumerate(node.bottoms):
            b = blob_need[blob]
            if len(node.param.propagate_down):
                b = bool(node.param.propagate_down[j])
            node.bottom_need_backward.append(b)
            need |= blob_need[blob]
        if any(m != 0 for m in param_lr_mults[node.index]):
            need = True
        node.need_backward = need
        if need:
            for blob in node.tops:
                blob_need[blob] = True

    under_loss: set[str] = set()
    skip_backprop: set[str] = set()
    for node in reversed(graph.layers):
        contributes = False
        skip_down = True
        for j, blob in enumerate(node.tops):
            if loss_weights[node.index][j] or blob in under_loss:
                contributes = True
            if blob not in skip_backprop:
                skip_down = False
            if contributes and not skip_down:
                break
        if node.need_backward and skip_down:
            node.need_backward = False
            node.bottom_need_backward = [False] * len(node.bottoms)
        if not contributes:
            node.need_backward = False
        for j, blob in enumerate(node.bottoms):
            if contributes:
                under_loss.add(blob)
            else:
                node.bottom_need_backward[j] = False
            if not node.bottom_need_backward[j]:
                skip_backprop.add(blob)

    if graph.force_backward:
        for node in graph.layers:
            node.need_backward = True
            for j in range(len(node.bottoms)):
                node.bottom_need_backward[j] = (node.bottom_need_backward[j]
                                                or allow_force_backward[node.index][j])
