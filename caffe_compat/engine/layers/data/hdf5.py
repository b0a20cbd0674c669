"""Caffe's HDF5Data (hdf5_data_layer.cpp) and HDF5Output (hdf5_output_layer.cpp)
layers: rows of .h5 datasets in, batches of data and labels out."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.engine.layers.data.base import (ErrorFactory, HostDataLayer, seeded_rng,
                                                  source_tokens)
from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.hdf5_weights import hdf5_errors, read_dataset


def _read_hdf5_list(path: str, error: ErrorFactory) -> list[tuple[str, int]]:
    """The .h5 file names of an HDF5Data source (whitespace-separated, as Caffe reads
    them with ``>>``) with their line numbers."""
    names = source_tokens(path, "source file", error)
    if not names:
        raise error(f"must have at least 1 HDF5 filename listed in {path!r}")
    return names


@register_layer("HDF5Data", origin="BVLC")
class HDF5DataLayer(HostDataLayer):
    """Caffe's HDF5DataLayer: ``source`` lists .h5 files; each top reads the dataset of
    its own name; batches of ``batch_size`` rows, file after file, looping. ``shuffle``
    permutes the files (at each pass) and the rows (at each file). No transform_param.
    """

    top_counts = (None, 1, None)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.setup_source(bottom_shapes)
        if self.param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data: remove transform_param")
        p = self.param.hdf5_data_param
        if p.batch_size <= 0:
            raise self.error("hdf5_data_param.batch_size must be positive")
        if not p.source:
            raise self.error("hdf5_data_param.source is required")
        self._error = self.error_factory()
        self._files = _read_hdf5_list(p.source, self._error)
        self._shuffle = bool(p.shuffle)
        self._rng = seeded_rng() if self._shuffle else None
        self._file_order = np.arange(len(self._files))
        if self._shuffle:
            self._rng.shuffle(self._file_order)
        self._current_file = 0
        self._load(self._file_order[0])
        self._row = 0
        batch = int(p.batch_size)
        self.declared_tops = [(batch,) + a.shape[1:] for a in self._arrays]
        self._row_shapes = [a.shape[1:] for a in self._arrays]

    def _load(self, index: int) -> None:
        """Caffe's LoadHDF5FileData: every top's dataset, rows permuted if shuffling."""
        import h5py
        name, line = self._files[index]
        where = f"{self.param.hdf5_data_param.source}:{line}: {name!r}"
        try:
            f = h5py.File(name, "r")
        except OSError as exc:
            raise self._error(f"{where}: failed opening HDF5 file ({exc})") from None
        try:
            with hdf5_errors(name, "a readable HDF5 file"), f:
                arrays = [self._read_top(f, top, where) for top in self.param.top]
        except WeightsFormatError as exc:  # a damaged file
            raise self._error(f"{where}: {exc.expected}") from None
        num = arrays[0].shape[0]
        for top, a in zip(self.param.top, arrays):
            if a.shape[0] != num:
                raise self._error(f"{where}: dataset {top!r} has {a.shape[0]} rows but "
                                  f"{self.param.top[0]!r} has {num}")
            if hasattr(self, "_row_shapes"):
                expected = self._row_shapes[list(self.param.top).index(top)]
                if a.shape[1:] != expected:
                    raise self._error(f"{where}: dataset {top!r} rows have shape {a.shape[1:]} "
                                      f"but the first file's have {expected}")
        if num == 0:
            raise self._error(f"{where}: datasets have no rows")
        self._arrays = arrays
        self._rows = np.arange(num)
        if self._shuffle:
            self._rng.shuffle(self._rows)

    def _read_top(self, f, top: str, where: str) -> np.ndarray:
        import h5py
        if top not in f or not isinstance(f[top], h5py.Dataset):
            raise self._error(f"{where}: no dataset named {top!r} (HDF5Data reads one "
                              f"dataset per top, named as the top); it has {sorted(f.keys())}")
        ds = f[top]
        if ds.dtype.kind not in "fiub":
            raise self._error(f"{where}: dataset {top!r} has type {ds.dtype}, not numbers")
        if ds.ndim < 1:
            raise self._error(f"{where}: dataset {top!r} must have at least 1 axis")
        return np.asarray(read_dataset(ds, f.filename), dtype=np.float32)

    def _next_row(self) -> None:
        # Caffe's HDF5DataLayer::Next
        self._row += 1
        if self._row == len(self._rows):
            if len(self._files) > 1:
                self._current_file += 1
                if self._current_file == len(self._files):
                    self._current_file = 0
                    if self._shuffle:
                        self._rng.shuffle(self._file_order)
                self._load(self._file_order[self._current_file])
            self._row = 0
            if self._shuffle:
                self._rng.shuffle(self._rows)

    def next_batch(self) -> list[np.ndarray]:
        batch = int(self.param.hdf5_data_param.batch_size)
        out = [np.empty((batch,) + s, dtype=np.float32) for s in self._row_shapes]
        for i in range(batch):
            for j, a in enumerate(self._arrays):
                out[j][i] = a[self._rows[self._row]]
            self._next_row()
        return out


def _legacy_4d(shape: Sequence[int]) -> tuple:
    """Caffe's num/channels/height/width of a blob (missing axes are 1)."""
    return tuple(shape) + (1,) * (4 - len(shape))


@register_layer("HDF5Output", origin="BVLC")
class HDF5OutputLayer(Layer):
    """Caffe's HDF5OutputLayer: writes bottom 0 as dataset ``data`` and bottom 1 as
    ``label`` (float32, Caffe's 4-D num x channels x height x width layout) to
    ``hdf5_output_param.file_name``, created (truncated) at setup.

    Each forward appends its rows along axis 0 (Caffe's own layer can only write the
    first batch: its second forward fails because the datasets exist). The write is a
    host side effect of ``forward``: the layer cannot run inside a hybridized graph,
    and its bottoms get no gradient (Caffe's Backward does nothing).
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        import h5py
        self.check_bottoms(bottom_shapes, exactly=2)
        if len(self.param.top):
            raise self.error(f"takes no top blobs, got {len(self.param.top)}")
        self.file_name = self.param.hdf5_output_param.file_name
        if not self.file_name:
            raise self.error("hdf5_output_param.file_name is required")
        try:
            h5py.File(self.file_name, "w").close()
        except OSError as exc:
            raise self.error(f"failed to create HDF5 file {self.file_name!r} ({exc})") from None

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=2)
        for j, s in enumerate(bottom_shapes):
            if len(s) > 4:
                raise self.error(f"bottom {j} has {len(s)} axes; Caffe's HDF5Output writes "
                                 "at most 4 (num, channels, height, width)")
        if _legacy_4d(bottom_shapes[0])[0] != _legacy_4d(bottom_shapes[1])[0]:
            raise self.error(f"data and label must have the same num: {bottom_shapes[0]} vs "
                             f"{bottom_shapes[1]}")
        return []

    def forward(self, *bottoms):
        import mxnet as mx
        if any(not isinstance(b, mx.nd.NDArray) for b in bottoms):
            raise self.error("HDF5Output writes a file on the host and cannot run inside a "
                             "hybridized (symbolic) graph; run the net imperatively")
        self.write(bottoms[0].asnumpy(), bottoms[1].asnumpy())
        return ()

    def write(self, data: np.ndarray, label: np.ndarray) -> None:
        """Append one batch to the file's ``data`` and ``label`` datasets."""
        import h5py
        try:
            with h5py.File(self.file_name, "a") as f:
                for name, arr in (("data", data), ("label", label)):
                    arr = np.asarray(arr, dtype=np.float32).reshape(_legacy_4d(arr.shape))
                    if name not in f:
                        f.create_dataset(name, data=arr, maxshape=(None,) + arr.shape[1:],
                                         chunks=True)
                        continue
                    ds = f[name]
                    if ds.shape[1:] != arr.shape[1:]:
                        raise self.error(f"{self.file_name!r}: {name} rows of shape "
                                         f"{arr.shape[1:]} cannot be appended to rows of "
                                         f"shape {ds.shape[1:]}")
                    old = ds.shape[0]
                    ds.resize(old + arr.shape[0], axis=0)
                    ds[old:] = arr
        except OSError as exc:
            raise self.error(f"failed writing HDF5 file {self.file_name!r} ({exc})") from None

    def hybrid_forward(self, F, *bottoms):
        raise self.error("HDF5Output cannot run inside a hybridized (symbolic) graph")

