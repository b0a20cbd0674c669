"""Assembling an ONNX graph: nodes, constants and unique value names.

:class:`GraphBuilder` is the converter's scratch pad. Values are plain names; nodes are
``onnx.NodeProto`` kept in emission order (Caffe's layer order is topological);
constants become initializers. Names are unique across values, initializers and the
Caffe blob names reserved up front, so a helper value never takes a blob's name::

    >>> b = GraphBuilder(reserved=["conv1"])
    >>> b.fresh("conv1"), b.fresh("conv1/relu")
    ('conv1_1', 'conv1/relu')
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

#: Small int64 vectors (shapes, axes) are shared between nodes instead of repeated.
_SHARED_CONSTANT_MAX = 16


class GraphBuilder:
    """Nodes, initializers and names of one ONNX graph under construction."""

    def __init__(self, reserved: Iterable[str] = ()):
        self.nodes: list = []
        #: initializer name -> its array (written into the graph once, at the end)
        self.initializers: dict[str, np.ndarray] = {}
        self._reserved = set(reserved)
        self._used: set[str] = set()
        self._shared: dict[tuple, str] = {}
        self._node_names: set[str] = set()
        #: (id of a Gluon Parameter, shape) -> its initializer (shared blobs written once)
        self.parameter_constants: dict[tuple, str] = {}

    # ---- names -------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A value name not used and not reserved: ``hint``, else ``hint_1``, ``hint_2``..."""
        name, i = hint, 0
        while name in self._used or name in self._reserved:
            i += 1
            name = f"{hint}_{i}"
        self._used.add(name)
        return name

    def claim(self, name: str) -> None:
        """Use a reserved name (a Caffe blob's) for a value."""
        if name in self._used:
            raise ValueError(f"value name {name!r} is already used")
        self._used.add(name)

    def is_used(self, name: str) -> bool:
        return name in self._used

    def _node_name(self, hint: str) -> str:
        name, i = hint, 0
        while name in self._node_names:
            i += 1
            name = f"{hint}_{i}"
        self._node_names.add(name)
        return name

    # ---- nodes and constants --------------------------------------------------------------
    def node(self, op_type: str, inputs: Sequence[Optional[str]], hint: str,
             num_outputs: int = 1, **attrs) -> list[str]:
        """Append a node; returns its fresh output names (``hint``-based)."""
        outputs = [self.fresh(hint if num_outputs == 1 else f"{hint}:{i}")
                   for i in range(num_outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, ["" if i is None else i for i in inputs],
                                           outputs, name=self._node_name(hint), **attrs))
        return outputs

    def constant(self, array: np.ndarray, hint: str) -> str:
        """An initializer holding ``array`` (its dtype kept); small int64 vectors shared."""
        array = np.asarray(array)
        key = None
        if array.dtype == np.int64 and array.size <= _SHARED_CONSTANT_MAX:
            key = (array.shape, tuple(array.ravel().tolist()))
            if key in self._shared:
                return self._shared[key]
        name = self.fresh(hint)
        self.initializers[name] = array
        if key is not None:
            self._shared[key] = name
        return name

    # ---- rewriting ------------------------------------------------------------------------
    def rename(self, old: str, new: str) -> None:
        """Rename value ``old`` to ``new`` (a name from :meth:`fresh` or :meth:`claim`) in
        every node and initializer."""
        self._used.discard(old)
        self._used.add(new)
        for node in self.nodes:
            for seq in (node.input, node.output):
                for i, v in enumerate(seq):
                    if v == old:
                        seq[i] = new
        if old in self.initializers:
            self.initializers[new] = self.initializers.pop(old)
        for key, value in list(self._shared.items()):
            if value == old:
                self._shared[key] = new

    def write_initializers(self, graph: onnx.GraphProto, names: Iterable[str]) -> None:
        """Append the named constants to ``graph`` as initializers (one copy of the data)."""
        for name in names:
            array = np.ascontiguousarray(self.initializers[name])
            tensor = graph.initializer.add()
            tensor.name = name
            tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            tensor.dims.extend(array.shape)
            tensor.raw_data = array.tobytes()

    def producers(self) -> dict[str, int]:
        """Value name -> index of the node producing it."""
        return {out: i for i, node in enumerate(self.nodes) for out in node.output if out}

    def prune(self, keep: Iterable[str]) -> set[str]:
        """Drop nodes and initializers nothing in ``keep`` depends on; returns the values
        still read by the kept nodes (plus ``keep``)."""
        live = set(keep)
        kept = []
        for node in reversed(self.nodes):
            if any(out in live for out in node.output):
                kept.append(node)
                live.update(i for i in node.input if i)
        self.nodes = kept[::-1]
        for name in [n for n in self.initializers if n not in live]:
            del self.initializers[name]
        return live
