"""Caffe's ``type: "Python"`` layers: user classes subclassing ``caffe.Layer``.

As in Caffe's PythonLayer (python_layer.hpp): the module named by
``python_param.module`` is imported from ``sys.path``, the class
``python_param.layer`` is instantiated, ``param_str`` and ``phase`` are set before
``setup(bottom, top)``, ``reshape(bottom, top)`` runs at set-up and before EVERY
forward, then ``forward(bottom, top)``; ``backward(top, propagate_down, bottom)`` runs
in backward. ``bottom`` and ``top`` are lists of blobs with numpy ``data``/``diff``
and ``reshape(*dims)``, so FCN's ``voc_layers.py`` and py-faster-rcnn's layers run as
written::

    import caffe_compat as caffe

    class Doubler(caffe.Layer):
        def setup(self, bottom, top): pass
        def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top): top[0].data[...] = 2 * bottom[0].data
        def backward(self, top, propagate_down, bottom): bottom[0].diff[...] = 2 * top[0].diff

Python layers run imperatively (``caffe.Net``, solvers, an un-hybridized block);
gradients go through ``mx.autograd.Function``. A hybridized graph or a symbol export
cannot contain them, and says so.
"""
from __future__ import annotations

import importlib
from typing import Sequence

import mxnet as mx
import numpy as np

from caffe_compat.context import current_context
from caffe_compat.engine.layer import Layer, Shape, register_layer


class PyBlob:
    """A host blob handed to Python layers: ``data``, ``diff``, ``reshape``, ``shape``."""

    def __init__(self, data: np.ndarray | None = None, shape: Sequence[int] = ()):
        self.data = np.zeros(tuple(shape), np.float32) if data is None else data
        self.diff = np.zeros_like(self.data)

    def reshape(self, *dims) -> None:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        dims = tuple(int(d) for d in dims)
        if self.data.shape != dims:
            self.data = np.zeros(dims, np.float32)
            self.diff = np.zeros(dims, np.float32)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def count(self) -> int:
        return int(self.data.size)

    def _legacy(self, i: int) -> int:
        return self.data.shape[i] if i < self.data.ndim else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))


class _BlobVec(list):
    """``self.blobs`` of a Python layer: ``add_blob(*shape)`` like pycaffe's BlobVec."""

    def add_blob(self, *shape) -> None:
        self.append(PyBlob(shape=shape))


class PyLayer:
    """``caffe.Layer``: subclass it and define setup/reshape/forward/backward."""

    param_str: str = ""
    phase: int = 1

    def __init__(self):
        self.blobs = _BlobVec()

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


def _instantiate(param, phase: int) -> PyLayer:
    pp = param.python_param
    if not pp.module or not pp.layer:
        raise ValueError("python_param needs both 'module' and 'layer'")
    try:
        module = importlib.import_module(pp.module)
    except ImportError as exc:
        raise ValueError(f"cannot import Python layer module '{pp.module}' from sys.path: {exc}") from exc
    cls = getattr(module, pp.layer, None)
    if cls is None:
        raise ValueError(f"module '{pp.module}' has no class '{pp.layer}'")
    obj = cls.__new__(cls)
    try:
        cls.__init__(obj)
    except TypeError:
        PyLayer.__init__(obj)
    if not hasattr(obj, "blobs"):
        obj.blobs = _BlobVec()
    # Caffe sets these before setup (python_layer.hpp LayerSetUp).
    obj.param_str = pp.param_str
    obj.phase = phase
    return obj


class _PythonFunction(mx.autograd.Function):
    """One forward/backward of a Python layer as an autograd node."""

    def __init__(self, layer: "PythonLayer"):
        super().__init__()
        self.layer = layer

    def forward(self, *bottoms):
        return tuple(self.layer.run_forward(bottoms))

    def backward(self, *top_grads):
        return tuple(self.layer.run_backward(top_grads))


@register_layer("Python", origin="BVLC")
class PythonLayer(Layer):
    """Bridges a user ``caffe.Layer`` into the engine (see the module docstring)."""

    def __init__(self, param, phase: int):
        super().__init__(param, phase)
        self.user = None
        self._bottom: list[PyBlob] = []
        self._top: list[PyBlob] = []

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.user = _instantiate(self.param, self.phase)
        self._bottom = [PyBlob(shape=s) for s in bottom_shapes]
        self._top = [PyBlob() for _ in self.param.top]
        self._call_user("setup", self._bottom, self._top)

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        for blob, shape in zip(self._bottom, bottom_shapes):
            blob.reshape(*shape)
        self._call_user("reshape", self._bottom, self._top)
        return [t.shape for t in self._top]

    def _call_user(self, method: str, *args) -> None:
        """Call the user's ``setup``/``reshape``/``forward``/``backward``; an exception of
        the user's code comes back as a LayerError naming this layer and its class (as
        Caffe's log names the layer whose Python code raised), the original chained."""
        try:
            getattr(self.user, method)(*args)
        except Exception as exc:
            pp = self.param.python_param
            raise self.error(f"{pp.module}.{pp.layer}.{method} raised "
                             f"{type(exc).__name__}: {exc}") from exc

    # -- the imperative bridge ----------------------------------------------------------
    def run_forward(self, bottoms) -> list:
        ctx = bottoms[0].context if bottoms else current_context()
        self._bottom = [PyBlob(b.asnumpy().astype(np.float32)) for b in bottoms]
        self._call_user("reshape", self._bottom, self._top)
        self._call_user("forward", self._bottom, self._top)
        self.top_shapes = [t.shape for t in self._top]
        return [mx.nd.array(t.data, ctx=ctx, dtype="float32") for t in self._top]

    def run_backward(self, top_grads) -> list:
        for t, g in zip(self._top, top_grads):
            t.diff = g.asnumpy().reshape(t.data.shape).astype(np.float32)
        for b in self._bottom:
            b.diff = np.zeros_like(b.data)
        self._call_user("backward", self._top, [True] * len(self._bottom), self._bottom)
        ctx = top_grads[0].context if top_grads else current_context()
        return [mx.nd.array(b.diff, ctx=ctx, dtype="float32") for b in self._bottom]

    def forward(self, *args):
        if any(isinstance(a, mx.sym.Symbol) for a in args):
            raise self.error("Python layers run imperatively only (caffe.Net, solvers, an "
                             "un-hybridized block); they cannot be hybridized or exported")
        if not self.param.bottom:
            tops = self.run_forward([])
        elif mx.autograd.is_recording():
            tops = _PythonFunction(self)(*args)
        else:
            tops = self.run_forward(list(args))
        return tuple(tops) if isinstance(tops, (list, tuple)) else (tops,)

    def hybrid_forward(self, F, *bottoms):  # pragma: no cover - forward() handles every call
        raise self.error("Python layers cannot run inside a symbolic graph")
