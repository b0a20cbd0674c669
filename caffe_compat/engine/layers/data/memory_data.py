"""Caffe's MemoryData layer (memory_data_layer.cpp): batches from arrays the host
hands in with ``net.set_input_arrays``."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from caffe_compat.engine.layer import Shape, register_layer
from caffe_compat.engine.layers.data.base import HostDataLayer


@register_layer("MemoryData", origin="BVLC")
class MemoryDataLayer(HostDataLayer):
    """Caffe's MemoryDataLayer: batches of ``batch_size`` from arrays the host hands in
    with :meth:`set_input_arrays` (pycaffe's ``net.set_input_arrays``), in order and
    looping. Like Caffe it keeps a reference to the arrays, not a copy.

    >>> layer.set_input_arrays(data, labels)   # data N x C x H x W, labels N  # doctest: +SKIP
    """

    top_counts = (2, 2, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.setup_source(bottom_shapes)
        p = self.param.memory_data_param
        self.batch_size = int(p.batch_size)
        self.item_shape = (int(p.channels), int(p.height), int(p.width))
        if self.batch_size * int(np.prod(self.item_shape)) <= 0:
            raise self.error("batch_size, channels, height, and width must be specified and "
                             "positive in memory_data_param")
        self.declared_tops = [(self.batch_size,) + self.item_shape, (self.batch_size,)]
        self._data: Optional[np.ndarray] = None
        self._labels: Optional[np.ndarray] = None
        self._pos = 0

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Caffe's MemoryDataLayer::Reset with pycaffe's checks: ``data`` a C-contiguous
        float32 N x C x H x W array, ``labels`` float32 with N entries (N or N x 1 x 1 x 1),
        N a multiple of batch_size."""
        if not isinstance(data, np.ndarray) or not isinstance(labels, np.ndarray):
            raise self.error("set_input_arrays takes numpy arrays")
        if labels.ndim == 1:  # pycaffe reshapes 1-d labels to N x 1 x 1 x 1 (contiguous)
            labels = np.ascontiguousarray(labels[:, None, None, None])
        for what, arr, dims in (("data array", data, self.item_shape),
                                ("labels array", labels, (1, 1, 1))):
            if not arr.flags["C_CONTIGUOUS"]:
                raise self.error(f"{what} must be C contiguous")
            if arr.ndim != 4:
                raise self.error(f"{what} must be 4-d, got shape {arr.shape}")
            if arr.dtype != np.float32:
                raise self.error(f"{what} must be float32, got {arr.dtype}")
            if tuple(arr.shape[1:]) != dims:
                raise self.error(f"{what} has wrong dimensions {arr.shape[1:]}; expected {dims}")
        if data.shape[0] != labels.shape[0]:
            raise self.error("data and labels must have the same first dimension")
        if data.shape[0] % self.batch_size:
            raise self.error(f"first dimensions of input arrays must be a multiple of batch "
                             f"size {self.batch_size}, got {data.shape[0]}")
        self._data, self._labels, self._pos = data, labels.reshape(-1), 0

    def next_batch(self) -> list[np.ndarray]:
        if self._data is None:
            raise self.error("MemoryData needs input: call net.set_input_arrays(data, labels) "
                             "first")
        s = slice(self._pos, self._pos + self.batch_size)
        batch = [self._data[s].copy(), self._labels[s].copy()]
        self._pos = (self._pos + self.batch_size) % self._data.shape[0]
        return batch

