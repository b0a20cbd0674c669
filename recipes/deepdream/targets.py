"""Which blob a dream maximises: resolving ``end`` names to (layer, blob) like pycaffe.

The notebook writes ``net.forward(end=end)`` and ``net.blobs[end]``, so ``end`` names a
layer AND its top (true of every ``inception_*/output`` of bvlc_googlenet). Here a name
may also be a layer whose top is named differently (``conv1/relu_7x7`` -> blob
``conv1/7x7_s2`` after the ReLU) or a blob that no layer is named after (its last
writer, in-place layers included). Several names dream on the sum of their L2
objectives; each blob then counts with its value when the deepest of them has run.

>>> from caffe_compat.recipes.deepdream.targets import resolve_targets
>>> resolve_targets(net, "inception_4c/output")                    # doctest: +SKIP
DreamTargets(layer='inception_4c/output', blobs=[('inception_4c/output', 151)])
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence, Union

from caffe_compat.engine.graph import SOURCE_TYPES, NetGraph
from caffe_compat.errors import CaffeCompatError

EndSpec = Union[str, Sequence[str]]


class DreamTargetError(CaffeCompatError):
    """``end`` names no layer or blob of the net (the message lists nearby names)."""


@dataclass(frozen=True)
class DreamTargets:
    """The last layer to run and the blobs whose L2 is maximised.

    ``blobs`` holds ``(blob, writer)`` pairs: ``writer`` is the index of the last layer
    up to ``layer`` that writes the blob, i.e. where its gradient enters backward.
    """
    layer: str
    layer_index: int
    blobs: tuple

    @property
    def blob_names(self) -> list[str]:
        return [b for b, _ in self.blobs]

    @property
    def single(self) -> bool:
        return len(self.blobs) == 1


def graph_of(net) -> NetGraph:
    """The NetGraph behind a pycaffe ``Net``/``Classifier`` or an engine ``CaffeNet``."""
    if isinstance(net, NetGraph):
        return net
    graph = getattr(net, "graph", None)
    if isinstance(graph, NetGraph):
        return graph
    return net.block.graph


def dreamable_names(graph: NetGraph) -> list[str]:
    """Layer and blob names a user may dream on (no inputs, no Caffe-inserted Splits)."""
    names: dict[str, None] = {}
    for node in graph.layers:
        if node.type in SOURCE_TYPES or node.type == "Split":
            continue
        names[node.name] = None
        for top in node.tops:
            names[top] = None
    return list(names)


def _unknown(graph: NetGraph, name: str) -> DreamTargetError:
    names = dreamable_names(graph)
    close = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
    if close:
        hint = "nearby names: " + ", ".join(close)
    else:
        shown = [n for n in names if n.endswith("/output")] or names
        hint = "names include " + ", ".join(shown[:8]) + (" ..." if len(shown) > 8 else "")
    return DreamTargetError(f"--end {name!r} is no layer or blob of net {graph.name!r}; {hint}")


def _layer_of(graph: NetGraph, name: str) -> tuple[int, str]:
    """(layer index, blob) for one name: a layer (its top) or a blob (its last writer)."""
    for node in graph.layers:
        if node.name == name and node.type != "Split":
            if node.type in SOURCE_TYPES:
                names = dreamable_names(graph)
                example = ([n for n in names if n.endswith("/output")] or names)[-1:]
                raise DreamTargetError(f"--end {name!r} is the net's input layer; dream on a "
                                       f"layer after it, e.g. {example[0]!r}" if example else
                                       f"--end {name!r} is the net's input layer")
            if not node.tops:
                raise DreamTargetError(f"layer {name!r} has no top blob to dream on")
            return node.index, (name if name in node.tops else node.tops[0])
    writers = [node.index for node in graph.layers if name in node.tops]
    if not writers:
        raise _unknown(graph, name)
    if all(graph.layers[i].type in SOURCE_TYPES for i in writers):
        raise DreamTargetError(f"--end {name!r} is the net's input blob; dream on a "
                               f"layer after it")
    return writers[-1], name


def resolve_targets(net, end: EndSpec) -> DreamTargets:
    """Resolve ``end`` (a name or a list of names) against ``net``'s graph."""
    graph = graph_of(net)
    names = [end] if isinstance(end, str) else list(end)
    if not names:
        raise DreamTargetError("no --end layer given")
    found = [_layer_of(graph, n) for n in names]
    last = max(i for i, _ in found)
    blobs: dict[str, int] = {}
    for _, blob in found:
        writers = [node.index for node in graph.layers[:last + 1] if blob in node.tops]
        blobs[blob] = writers[-1]
    if len(found) == 1:           # the notebook's case: the blob as ``end`` left it
        blobs = {found[0][1]: last}
    return DreamTargets(graph.layers[last].name, last, tuple(blobs.items()))
