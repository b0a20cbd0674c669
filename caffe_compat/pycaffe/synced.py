"""Host/device synchronisation for pycaffe's numpy views (Caffe's SyncedMemory).

A blob's value lives on the MXNet device while the engine runs and in a numpy buffer
once a user has asked for it. numpy writes cannot be observed, so a buffer handed out
to the user is treated as possibly modified at every API entry (forward, backward,
solver step) while the user still holds it (or a view of it): it is uploaded before use,
and the device result is copied back INTO THE SAME numpy buffer afterwards, so references
taken earlier stay live until a reshape. Once no reference but ours is left, the buffer is
uploaded one last time and then no longer (Caffe's SyncedMemory in GPU mode does the same
upload for every ``mutable_cpu_data`` a script takes).
"""
from __future__ import annotations

import sys
from typing import Optional

import mxnet as mx
import numpy as np

_HOST, _DEVICE, _SYNCED = "host", "device", "synced"


class SyncedArray:
    """One float32 array with a numpy face (``host()``) and an MXNet face (``device()``)."""

    __slots__ = ("shape", "ctx", "_host", "_dev", "_head", "exported", "fill", "watch", "_lazy")

    def __init__(self, shape, ctx: mx.Context, fill: float = 0.0, watch: Optional[set] = None):
        self.shape = tuple(int(d) for d in shape)
        self.ctx = ctx
        self.fill = fill
        self._host: Optional[np.ndarray] = None
        self._dev: Optional[mx.nd.NDArray] = None
        self._head = _HOST
        self.exported = False
        # the owner's set of exported arrays: API entries and exits visit only those
        self.watch = watch
        self._lazy = None       # a callable computing the value, not yet run

    def set_lazy(self, compute) -> None:
        """The value is not computed yet: ``compute()`` will set it (set_device) on
        first use."""
        self._lazy = compute
        self._head = _DEVICE

    def is_lazy(self) -> bool:
        """The value is left for first use (:meth:`set_lazy`)."""
        return self._lazy is not None

    def host_is_newer(self) -> bool:
        """The numpy side holds a value the device has not seen (a user write)."""
        return self._head == _HOST

    def _materialize(self) -> None:
        compute = self._lazy
        compute()                   # sets this array (and the others it computes)
        if self._lazy is compute:   # pragma: no cover - compute() always sets it
            raise RuntimeError("a lazy blob's computation did not set it")

    def _export(self, exported: bool) -> None:
        self.exported = exported
        if self.watch is not None:
            if exported:
                self.watch.add(self)
            else:
                self.watch.discard(self)

    # -- user side --------------------------------------------------------------
    def host(self) -> np.ndarray:
        """The numpy buffer (allocated, and refreshed from the device, on demand)."""
        if self._lazy is not None:
            self._materialize()
        if self._host is None or self._host.shape != self.shape:
            self._host = np.full(self.shape, self.fill, dtype=np.float32)
            if self._head == _HOST:
                self._head = _SYNCED if self._dev is None else _DEVICE
        if self._head == _DEVICE:
            self._download()
        self._export(True)
        return self._host

    def reshape(self, shape) -> None:
        """New shape: a fresh zero buffer (old numpy references no longer track it)."""
        shape = tuple(int(d) for d in shape)
        if shape == self.shape:
            return
        self.shape = shape
        self._host, self._dev, self._head, self._lazy = None, None, _HOST, None
        self._export(False)

    # -- engine side ------------------------------------------------------------
    def begin_call(self) -> None:
        """An API entry: an exported buffer may have been written by the user."""
        if self.exported and self._head == _SYNCED:
            self._head = _HOST
            # No one else holds the buffer: after this upload it is no longer re-uploaded.
            self._export(self._held())

    def _held(self) -> bool:
        """Someone besides us holds the numpy buffer or a view of it (our attribute and
        getrefcount's argument are the two references we account for)."""
        return sys.getrefcount(self._host) > 2

    def sync_to_device(self) -> None:
        """Upload now if the numpy side is newer (what device() does on demand)."""
        if self._head == _HOST:
            self.device()

    def device(self) -> mx.nd.NDArray:
        """The value on the device (uploaded from numpy when the host copy is newer)."""
        if self._lazy is not None:
            self._materialize()
        if self._head == _HOST:
            if self._host is None:
                self._dev = mx.nd.full(self.shape_for_device(), self.fill, ctx=self.ctx,
                                       dtype="float32")
            else:
                self._dev = mx.nd.array(self._host.reshape(self.shape_for_device()),
                                        ctx=self.ctx, dtype="float32")
            self._head = _SYNCED
        return self._dev

    def shape_for_device(self) -> tuple:
        # MXNet 1.x has no 0-d arrays: a Caffe scalar blob (shape ()) is (1,) on the device.
        return self.shape if self.shape else (1,)

    def set_device(self, value: mx.nd.NDArray) -> None:
        """The engine produced a new value (shape must keep the element count)."""
        if tuple(value.shape) != self.shape_for_device():
            self.reshape(value.shape)
        self._dev, self._lazy = value, None
        self._head = _DEVICE

    def set_device_of_shape(self, value: mx.nd.NDArray, shape: tuple) -> None:
        """:meth:`set_device` for a value whose Caffe shape the caller knows (a cached
        graph's output): no shape query to MXNet when it is the current shape."""
        if shape != self.shape:
            self.set_device(value)
            return
        self._dev, self._lazy = value, None
        self._head = _DEVICE

    def device_value_is(self, array: mx.nd.NDArray) -> bool:
        """The value is ``array`` (not superseded by a numpy write)."""
        return self._dev is array and self._head != _HOST and self._lazy is None

    def end_call(self) -> None:
        """An API exit: refresh exported numpy buffers in place (a buffer no one holds
        any more is refreshed when next asked for instead)."""
        if self.exported and self._head == _DEVICE:
            if self._held():
                self._download()
            else:
                self._export(False)

    def _download(self) -> None:
        if self._lazy is not None:
            self._materialize()
        value = self._dev.asnumpy()
        if self._host is None or self._host.shape != self.shape:
            self._host = np.empty(self.shape, dtype=np.float32)
        self._host[...] = value.reshape(self.shape)
        self._head = _SYNCED


class ParamArray(SyncedArray):
    """A learnable blob: the device side is the Gluon Parameter itself."""

    __slots__ = ("param",)

    def __init__(self, param: mx.gluon.Parameter, ctx: mx.Context, watch: Optional[set] = None):
        super().__init__(param.shape, ctx, watch=watch)
        self.param = param
        self._head = _DEVICE

    def device(self) -> mx.nd.NDArray:
        if self._head == _HOST:
            self._upload()
        return self.param.data(self.ctx)

    def _upload(self) -> None:
        self.param.set_data(mx.nd.array(self._host, dtype="float32"))
        self._head = _SYNCED

    def host_differs_from_device(self) -> bool:
        """The numpy buffer holds other values than the Parameter (a real write, not a
        buffer merely still held)."""
        return not np.array_equal(self._host, self.param.data(self.ctx).asnumpy())

    def device_changed(self) -> None:
        """The Parameter changed on the device (solver step, copy_from, BN statistics)."""
        self._head = _DEVICE

    def _download(self) -> None:
        if self._host is None or self._host.shape != self.shape:
            self._host = np.empty(self.shape, dtype=np.float32)
        self._host[...] = self.param.data(self.ctx).asnumpy()
        self._head = _SYNCED

    def reshape(self, shape) -> None:
        raise ValueError("a learnable blob cannot be reshaped through pycaffe")


class GradArray(SyncedArray):
    """A learnable blob's diff: the device side is the Parameter's gradient buffer."""

    __slots__ = ("param",)

    def __init__(self, param: mx.gluon.Parameter, ctx: mx.Context, watch: Optional[set] = None):
        super().__init__(param.shape, ctx, watch=watch)
        self.param = param
        self._head = _DEVICE

    def has_grad(self) -> bool:
        return self.param.grad_req != "null"

    def sync_to_device(self) -> None:
        if self.has_grad():         # without a gradient the numpy side is the only copy
            super().sync_to_device()

    def device(self) -> mx.nd.NDArray:
        if not self.has_grad():
            return mx.nd.zeros(self.shape, ctx=self.ctx)
        grad = self.param.grad(self.ctx)
        if self._head == _HOST:
            grad[:] = mx.nd.array(self._host, ctx=self.ctx, dtype="float32")
            self._head = _SYNCED
        return grad

    def device_changed(self) -> None:
        self._head = _DEVICE

    def _download(self) -> None:
        if self._host is None or self._host.shape != self.shape:
            self._host = np.zeros(self.shape, dtype=np.float32)
        if self.has_grad():
            self._host[...] = self.param.grad(self.ctx).asnumpy()
        self._head = _SYNCED

    def reshape(self, shape) -> None:
        raise ValueError("a learnable blob cannot be reshaped through pycaffe")
