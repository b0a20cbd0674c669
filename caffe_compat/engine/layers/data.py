"""Caffe's data layers: Data (LMDB/LevelDB), ImageData, HDF5Data, HDF5Output,
WindowData, MemoryData and DummyData.

A data layer is a *source layer*: it has no bottoms and the net feeds its tops from
the host. Each layer here follows Caffe's ``DataLayerSetUp`` in :meth:`setup` (open the
source, read the first record, declare the top shapes) and produces batches with
``next_batch() -> [numpy float32 array per top]``, which pycaffe's ``Net.forward``
calls before running the layers above. Called on its own, ``layer(*fed)`` passes the
fed arrays through (like ``Input``), so a hybridized net takes the batches as inputs.

Data, ImageData and WindowData load in a background thread
(:class:`caffe_compat.engine.prefetch.Prefetcher`, ``data_param.prefetch`` batches
ahead, default 4) like Caffe's BasePrefetchingDataLayer; HDF5Data, MemoryData and
DummyData run in the caller as in Caffe. Randomness (shuffles, crops, mirrors, window
sampling, ``rand_skip``) is seeded from ``caffe.set_random_seed``.

>>> import caffe_compat as caffe                                      # doctest: +SKIP
>>> net = caffe.Net("train_val.prototxt", caffe.TRAIN)               # doctest: +SKIP
>>> net.forward()            # reads the next batch from the LMDB     # doctest: +SKIP

Every error names the layer and, for data problems, the file and line (list files,
window files, HDF5 source lists) or the database and record key.
"""
from __future__ import annotations

import functools
import warnings
from typing import Optional, Sequence

import numpy as np

from caffe_compat.engine.data_transformer import DataTransformer, TransformError
from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.engine.layers.data_records import (ErrorFactory, LoopingCursor, SharedDB,
                                                     parse_datum, show_key)
from caffe_compat.engine.prefetch import Prefetcher
from caffe_compat.errors import LayerError


def _seeded_rng() -> np.random.RandomState:
    """A generator of its own, seeded from the shared one (Caffe: ``caffe_rng_rand()``
    seeds each layer's prefetch_rng_)."""
    from caffe_compat.engine.fillers import rng
    return np.random.RandomState(rng().randint(0, 2 ** 32, dtype=np.uint64))


def _caffe_rng_rand() -> int:
    """One draw of Caffe's ``caffe_rng_rand()`` (an unsigned 32-bit value)."""
    from caffe_compat.engine.fillers import rng
    return int(rng().randint(0, 2 ** 32, dtype=np.uint64))


# ---- the shared base -------------------------------------------------------------------
class HostDataLayer(Layer):
    """Base of the data layers: no bottoms, tops fed from the host.

    Subclasses implement :meth:`setup` (validate, open the source, return nothing) and
    set ``self.declared_tops`` (Caffe's top shapes after DataLayerSetUp), plus
    :meth:`next_batch`.
    """

    host_source = True
    #: (exactly, at_least, at_most) number of tops, Caffe's Exact/Min/MaxTopBlobs.
    top_counts: tuple = (None, 1, None)

    def __init__(self, param, phase: int):
        super().__init__(param, phase)
        self.declared_tops: list[Shape] = []

    def error_factory(self) -> ErrorFactory:
        """A callable making this layer's LayerError that keeps no reference to the
        layer (safe to hand to a worker thread)."""
        path, line = self.source
        return functools.partial(_layer_error, self.param.name, self.param.type, path, line)

    def check_tops(self) -> int:
        exactly, at_least, at_most = self.top_counts
        n = len(self.param.top)
        if exactly is not None and n != exactly:
            raise self.error(f"takes exactly {exactly} top blob(s), got {n}")
        if at_least is not None and n < at_least:
            raise self.error(f"takes at least {at_least} top blob(s), got {n}")
        if at_most is not None and n > at_most:
            raise self.error(f"takes at most {at_most} top blob(s), got {n}")
        return n

    def setup_source(self, bottom_shapes: Sequence[Shape]) -> None:
        """The checks every data layer makes before its own setup."""
        if bottom_shapes:
            raise self.error(f"takes no bottom blobs, got {len(bottom_shapes)}")
        self.check_tops()

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        """The declared top shapes; with one shape per top (arrays fed directly, as
        for ``Input``) those shapes."""
        if not bottom_shapes:
            return list(self.declared_tops)
        if len(bottom_shapes) != len(self.param.top):
            raise self.error(f"fed {len(bottom_shapes)} array(s) for {len(self.param.top)} top(s)")
        return [tuple(s) for s in bottom_shapes]

    def next_batch(self) -> list[np.ndarray]:
        raise NotImplementedError

    def hybrid_forward(self, F, *fed):
        return tuple(F.identity(x) for x in fed)

    def transformer(self) -> DataTransformer:
        """Caffe's data_transformer_ for ``transform_param`` and this phase."""
        tp = self.param.transform_param if self.param.HasField("transform_param") else None
        try:
            return DataTransformer(tp, self.phase)
        except TransformError as exc:
            raise self.error(f"transform_param: {exc}") from None

    def warn_deprecated(self, sub_param, fields: Sequence[str]) -> None:
        """Caffe ignores the old per-layer transformation fields in V2 layers."""
        for f in fields:
            if sub_param.HasField(f):
                warnings.warn(f'layer "{self.name}" (type {self.type}): {f} inside '
                              f"{sub_param.DESCRIPTOR.name} is ignored by Caffe for this "
                              f"layer; set it in transform_param", stacklevel=4)


def _layer_error(name: str, type_: str, path, line, message: str) -> LayerError:
    return LayerError(name, type_, message, path=path, line=line)


class PrefetchingDataLayer(HostDataLayer):
    """A data layer whose batches are made by a loader in a background thread."""

    def start_loader(self, loader) -> None:
        depth = int(self.param.data_param.prefetch)  # Caffe: every prefetching layer reads it
        if depth < 1:
            raise self.error(f"data_param.prefetch must be at least 1, got {depth}")
        self._prefetcher = Prefetcher(loader, depth=depth, name=f'layer "{self.name}"')

    def next_batch(self) -> list[np.ndarray]:
        """The next batch (one float32 array per top), prepared in the background."""
        prefetcher = getattr(self, "_prefetcher", None)
        if prefetcher is None:
            raise self.error("the layer is not set up (call setup first)")
        return prefetcher.next()

    def close(self) -> None:
        """Stop the background loader (it also stops when the layer is collected)."""
        prefetcher = getattr(self, "_prefetcher", None)
        if prefetcher is not None:
            prefetcher.stop()


class _DatumBatchLoader:
    """Caffe's DataLayer::load_batch: batch_size Datums in key order, transformed."""

    def __init__(self, cursor: LoopingCursor, transformer: DataTransformer, batch_size: int,
                 labels: bool, where: str, error: ErrorFactory):
        self.cursor, self.transformer = cursor, transformer
        self.batch_size, self.labels, self.where, self.error = batch_size, labels, where, error

    def read(self):
        """The current record as (key, C x H x W array, label)."""
        key, value = self.cursor.current()
        datum = parse_datum(key, value, self.where, self.error)
        try:
            pixels = self.transformer.datum_array(datum)
        except TransformError as exc:
            raise self.error(f"{self.where}: record {show_key(key)}: {exc}") from None
        return key, pixels, datum.label

    def load_batch(self) -> list[np.ndarray]:
        data = labels = None
        for item in range(self.batch_size):
            key, pixels, label = self.read()
            try:
                if item == 0:  # Caffe reshapes the batch to its first datum
                    shape = self.transformer.output_shape(pixels.shape)
                    data = np.empty((self.batch_size,) + shape, dtype=np.float32)
                    labels = np.empty((self.batch_size,), dtype=np.float32)
                out = self.transformer.transform_array(pixels)
            except TransformError as exc:
                raise self.error(f"{self.where}: record {show_key(key)}: {exc}") from None
            if out.shape != data.shape[1:]:
                raise self.error(f"{self.where}: record {show_key(key)} gives shape {out.shape} "
                                 f"but the batch's first record gives {data.shape[1:]} "
                                 "(records of one batch must have equal sizes)")
            data[item] = out
            labels[item] = label
            self.cursor.advance()
        return [data, labels] if self.labels else [data]


@register_layer("Data", origin="BVLC")
class DataLayer(PrefetchingDataLayer):
    """Caffe's DataLayer: Datums from an LMDB (``backend: LMDB``) or LevelDB (the
    default backend, read with ``plyvel``) in key order, ``batch_size`` per batch,
    through ``transform_param``; starts over after the last record. One top (data) or
    two (data, label). ``rand_skip`` skips ``rand() % rand_skip`` records at start.
    """

    top_counts = (None, 1, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        from caffe_compat.proto import caffe_pb2
        self.setup_source(bottom_shapes)
        dp = self.param.data_param
        self.warn_deprecated(dp, ("scale", "mean_file", "crop_size", "mirror"))
        if not dp.source:
            raise self.error("data_param.source is required")
        if dp.batch_size <= 0:
            raise self.error("data_param.batch_size must be positive")
        backend = "LMDB" if dp.backend == caffe_pb2.DataParameter.LMDB else "LEVELDB"
        error = self.error_factory()
        cursor = LoopingCursor(SharedDB.get(backend, dp.source, error), error)
        if dp.rand_skip:
            for _ in range(_caffe_rng_rand() % dp.rand_skip):
                cursor.advance()
        transformer = self.transformer()
        loader = _DatumBatchLoader(cursor, transformer, int(dp.batch_size),
                                   len(self.param.top) == 2, f"{backend} {dp.source!r}", error)
        _, pixels, _ = loader.read()
        try:
            shape = transformer.output_shape(pixels.shape)
        except TransformError as exc:
            raise self.error(f"{dp.source!r}: first record: {exc}") from None
        self.declared_tops = [(int(dp.batch_size),) + shape]
        if len(self.param.top) == 2:
            self.declared_tops.append((int(dp.batch_size),))
        self.start_loader(loader)


# ---- ImageData -------------------------------------------------------------------------
def parse_image_list(path: str, error: ErrorFactory) -> list[tuple[str, int, int]]:
    """Caffe's ImageData list file as (filename, label, line number) entries.

    Caffe splits each line at its *last* space: the filename is what comes before it
    (it may contain spaces), the label the integer after it; a line without a space is
    a filename with label 0. A blank line or a label that is not an integer is an error
    naming the line.
    """
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise error(f"cannot open image list {path!r}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            if number == text.count("\n") + 1:
                continue  # the text after the final newline: no line at all
            raise error(f"{path}:{number}: blank line in the image list")
        pos = line.rfind(" ")
        if pos < 0:
            entries.append((line, 0, number))
            continue
        try:
            label = int(line[pos + 1:])
        except ValueError:
            raise error(f"{path}:{number}: label {line[pos + 1:]!r} is not an integer "
                        "(expected 'path label')") from None
        entries.append((line[:pos], label, number))
    if not entries:
        raise error(f"image list {path!r} names no images")
    return entries


def read_image(path: str, new_height: int, new_width: int, is_color: bool) -> Optional[np.ndarray]:
    """Caffe's ReadImageToCVMat: cv2.imread (BGR, or gray), resized with INTER_LINEAR to
    exactly new_width x new_height when both are set; None if it cannot be read."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if new_height > 0 and new_width > 0:
        img = cv2.resize(img, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    return img


class _ImageListLoader:
    """Caffe's ImageDataLayer::load_batch: the next batch_size list entries, reshuffled
    at each pass when ``shuffle`` is set."""

    def __init__(self, entries, start: int, rng, shuffle: bool, transformer: DataTransformer,
                 param, list_path: str, error: ErrorFactory):
        self.entries, self.pos, self.rng, self.shuffle = entries, start, rng, shuffle
        self.transformer, self.list_path, self.error = transformer, list_path, error
        self.batch_size = int(param.batch_size)
        self.size = (int(param.new_height), int(param.new_width))
        self.is_color = bool(param.is_color)
        self.root = param.root_folder

    def read(self, entry) -> np.ndarray:
        filename, _, number = entry
        img = read_image(self.root + filename, self.size[0], self.size[1], self.is_color)
        if img is None:
            raise self.error(f"{self.list_path}:{number}: could not load image "
                             f"{self.root + filename!r} (missing, unreadable or not an image)")
        return img

    def load_batch(self) -> list[np.ndarray]:
        data = None
        labels = np.empty((self.batch_size,), dtype=np.float32)
        for item in range(self.batch_size):
            entry = self.entries[self.pos]
            img = self.read(entry)
            try:
                out = self.transformer.transform_image(img)
            except TransformError as exc:
                raise self.error(f"{self.list_path}:{entry[2]}: "
                                 f"{self.root + entry[0]!r}: {exc}") from None
            if data is None:  # Caffe shapes the batch from its first image
                data = np.empty((self.batch_size,) + out.shape, dtype=np.float32)
            elif out.shape != data.shape[1:]:
                raise self.error(f"{self.list_path}:{entry[2]}: image {self.root + entry[0]!r} "
                                 f"gives shape {out.shape} but the batch's first image gives "
                                 f"{data.shape[1:]} (set new_height/new_width or crop_size)")
            data[item] = out
            labels[item] = entry[1]
            self.pos += 1
            if self.pos >= len(self.entries):
                self.pos = 0
                if self.shuffle:
                    self.rng.shuffle(self.entries)
        return [data, labels]


@register_layer("ImageData", origin="BVLC")
class ImageDataLayer(PrefetchingDataLayer):
    """Caffe's ImageDataLayer: images named in a list file (``path label`` per line),
    read with OpenCV (BGR, C x H x W), optionally resized to new_height x new_width,
    transformed by ``transform_param``; tops data and label.

    ``shuffle`` shuffles the list at setup and again at each pass (as Caffe, in any
    phase); ``rand_skip`` starts ``rand() % rand_skip`` entries in.
    """

    top_counts = (2, 2, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.setup_source(bottom_shapes)
        p = self.param.image_data_param
        self.warn_deprecated(p, ("scale", "mean_file", "crop_size", "mirror"))
        if not ((p.new_height == 0 and p.new_width == 0) or (p.new_height > 0 and p.new_width > 0)):
            raise self.error("new_height and new_width must be set together")
        if p.batch_size <= 0:
            raise self.error("image_data_param.batch_size must be positive")
        if not p.source:
            raise self.error("image_data_param.source is required")
        error = self.error_factory()
        entries = parse_image_list(p.source, error)
        rng = None
        if p.shuffle:
            rng = _seeded_rng()
            rng.shuffle(entries)
        start = 0
        if p.rand_skip:
            start = _caffe_rng_rand() % p.rand_skip
            if start >= len(entries):
                raise self.error(f"not enough images to skip: rand_skip drew {start} but "
                                 f"{p.source!r} lists {len(entries)}")
        loader = _ImageListLoader(entries, start, rng, bool(p.shuffle), self.transformer(), p,
                                  p.source, error)
        first = loader.read(entries[start])
        try:
            shape = loader.transformer.output_shape(
                (first.shape[2] if first.ndim == 3 else 1,) + first.shape[:2])
        except TransformError as exc:
            raise self.error(f"{p.source}:{entries[start][2]}: {exc}") from None
        self.declared_tops = [(int(p.batch_size),) + shape, (int(p.batch_size),)]
        self.start_loader(loader)


# ---- HDF5Data / HDF5Output ---------------------------------------------------------------
def _read_hdf5_list(path: str, error: ErrorFactory) -> list[tuple[str, int]]:
    """The .h5 file names of an HDF5Data source (whitespace-separated, as Caffe reads
    them with ``>>``) with their line numbers."""
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().split("\n")
    except OSError as exc:
        raise error(f"failed to open source file {path!r}: {exc.strerror or exc}") from None
    names = [(tok, n) for n, line in enumerate(lines, start=1) for tok in line.split()]
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
        self._rng = _seeded_rng() if self._shuffle else None
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
        arrays = []
        with f:
            for top in self.param.top:
                if top not in f or not isinstance(f[top], h5py.Dataset):
                    raise self._error(f"{where}: no dataset named {top!r} (HDF5Data reads one "
                                      f"dataset per top, named as the top); it has "
                                      f"{sorted(f.keys())}")
                ds = f[top]
                if ds.dtype.kind not in "fiub":
                    raise self._error(f"{where}: dataset {top!r} has type {ds.dtype}, not numbers")
                if ds.ndim < 1:
                    raise self._error(f"{where}: dataset {top!r} must have at least 1 axis")
                arrays.append(np.asarray(ds[...], dtype=np.float32))
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


# ---- WindowData ----------------------------------------------------------------------------
class _Window:
    __slots__ = ("image", "label", "overlap", "x1", "y1", "x2", "y2", "line")

    def __init__(self, image, label, overlap, x1, y1, x2, y2, line):
        self.image, self.label, self.overlap = image, label, overlap
        self.x1, self.y1, self.x2, self.y2, self.line = x1, y1, x2, y2, line


def parse_window_file(path: str, root_folder: str, fg_threshold: float, bg_threshold: float,
                      error: ErrorFactory):
    """Caffe's R-CNN window file: repeated ``# image_index``, ``img_path``, ``channels``,
    ``height``, ``width``, ``num_windows``, then ``class_index overlap x1 y1 x2 y2`` per
    window. Returns (images [(path, (c, h, w), line)], fg windows, bg windows).

    A window is foreground when ``overlap >= fg_threshold`` (its label must be > 0),
    background (label and overlap forced to 0) when ``overlap < bg_threshold``, and
    dropped otherwise, as window_data_layer.cpp does.
    """
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().split("\n")
    except OSError as exc:
        raise error(f"failed to open window file {path!r}: {exc.strerror or exc}") from None
    tokens = [(tok, n) for n, line in enumerate(lines, start=1) for tok in line.split()]
    if not tokens:
        raise error(f"window file {path!r} is empty")
    pos = 0

    def take(kind, what):
        nonlocal pos
        if pos >= len(tokens):
            raise error(f"{path}:{tokens[-1][1]}: file ends where {what} was expected")
        tok, n = tokens[pos]
        pos += 1
        try:
            return kind(tok), n
        except ValueError:
            raise error(f"{path}:{n}: expected {what}, got {tok!r}") from None

    fg_t, bg_t = np.float32(fg_threshold), np.float32(bg_threshold)
    images, fg, bg, indices = [], [], [], []
    while pos < len(tokens):
        tag, n = take(str, "'#'")
        if tag != "#":
            raise error(f"{path}:{n}: expected '#' starting an image entry, got {tag!r}")
        image_index, n = take(int, "an image index")
        image_path, n = take(str, "an image path")
        c, _ = take(int, "channels")
        h, _ = take(int, "height")
        w, _ = take(int, "width")
        images.append((root_folder + image_path, (c, h, w), n))
        num_windows, n = take(int, "the number of windows")
        for _ in range(num_windows):
            label, n = take(int, "a class index")
            overlap, _ = take(np.float32, "an overlap")
            x1, _ = take(int, "x1")
            y1, _ = take(int, "y1")
            x2, _ = take(int, "x2")
            y2, _ = take(int, "y2")
            if overlap >= fg_t:
                if label <= 0:
                    raise error(f"{path}:{n}: foreground window (overlap {overlap} >= "
                                f"fg_threshold) must have a class index > 0, got {label}")
                fg.append(_Window(image_index, label, overlap, x1, y1, x2, y2, n))
            elif overlap < bg_t:
                bg.append(_Window(image_index, 0, np.float32(0), x1, y1, x2, y2, n))
            indices.append((image_index, n))
    for image_index, n in indices:
        if not 0 <= image_index < len(images):
            raise error(f"{path}:{n}: image index {image_index} does not name one of the "
                        f"{len(images)} images (Caffe indexes images by their order in the "
                        "file, from 0)")
    return images, fg, bg


def _c_round(x) -> int:
    """C's round(): halves away from zero."""
    x = float(x)
    return int(np.floor(x + 0.5)) if x >= 0 else -int(np.floor(-x + 0.5))


def window_geometry(x1: int, y1: int, x2: int, y2: int, img_w: int, img_h: int,
                    crop_size: int, context_pad: int, square: bool, mirror: bool) -> dict:
    """Where window_data_layer.cpp cuts a window and where it lands in the crop.

    Returns the clipped source box (x1, y1, x2, y2, inclusive), the size the box is
    warped to (``warp_w``, ``warp_h``) and its offset in the crop (``pad_w``,
    ``pad_h``). Computed in float32 with C rounding, as Caffe does for Dtype=float.
    """
    f = np.float32
    pad_w = pad_h = 0
    warp_w = warp_h = crop_size
    if context_pad > 0 or square:
        context_scale = f(crop_size) / f(crop_size - 2 * context_pad)
        half_height = f(y2 - y1 + 1) / f(2.0)
        half_width = f(x2 - x1 + 1) / f(2.0)
        center_x = f(x1) + half_width
        center_y = f(y1) + half_height
        if square:
            half_width = half_height = max(half_width, half_height)
        x1 = _c_round(center_x - half_width * context_scale)
        x2 = _c_round(center_x + half_width * context_scale)
        y1 = _c_round(center_y - half_height * context_scale)
        y2 = _c_round(center_y + half_height * context_scale)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - img_w + 1), max(0, y2 - img_h + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        clipped_h, clipped_w = y2 - y1 + 1, x2 - x1 + 1
        scale_x = f(crop_size) / f(unclipped_w)
        scale_y = f(crop_size) / f(unclipped_h)
        warp_w = _c_round(f(clipped_w) * scale_x)
        warp_h = _c_round(f(clipped_h) * scale_y)
        pad_x1 = _c_round(f(pad_x1) * scale_x)
        pad_x2 = _c_round(f(pad_x2) * scale_x)
        pad_y1 = _c_round(f(pad_y1) * scale_y)
        pad_h = pad_y1
        pad_w = pad_x2 if mirror else pad_x1  # the padding is mirrored too
        if pad_h + warp_h > crop_size:
            warp_h = crop_size - pad_h
        if pad_w + warp_w > crop_size:
            warp_w = crop_size - pad_w
    return dict(x1=x1, y1=y1, x2=x2, y2=y2, warp_w=warp_w, warp_h=warp_h,
                pad_w=pad_w, pad_h=pad_h)


class _WindowLoader:
    """Caffe's WindowDataLayer::load_batch: background windows first, then foreground,
    each picked uniformly at random, context-padded, warped to crop_size, mirrored at
    random, mean-subtracted and scaled; padding stays 0 (the mean, after subtraction)."""

    def __init__(self, images, fg, bg, cache, rng, channels, mean, mean_values, param,
                 crop_size, mirror, window_path, error):
        self.images, self.fg, self.bg, self.cache, self.rng = images, fg, bg, cache, rng
        self.channels, self.mean, self.mean_values = channels, mean, mean_values
        self.batch_size = int(param.batch_size)
        self.context_pad = int(param.context_pad)
        self.square = param.crop_mode == "square"
        self.scale = np.float32(param.scale)
        self.fg_fraction = np.float32(param.fg_fraction)
        self.crop_size, self.mirror = crop_size, mirror
        self.window_path, self.error = window_path, error

    def rand(self) -> int:
        return int(self.rng.randint(0, 2 ** 32, dtype=np.uint64))

    def image(self, window) -> np.ndarray:
        import cv2
        path, _, line = self.images[window.image]
        if self.cache is not None:
            img = cv2.imdecode(np.frombuffer(self.cache[window.image], np.uint8), cv2.IMREAD_COLOR)
        else:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise self.error(f"{self.window_path}:{line}: could not open or find image {path!r}")
        return img

    def load_batch(self) -> list[np.ndarray]:
        import cv2
        crop = self.crop_size
        data = np.zeros((self.batch_size, self.channels, crop, crop), dtype=np.float32)
        labels = np.empty((self.batch_size,), dtype=np.float32)
        num_fg = int(np.float32(self.batch_size) * self.fg_fraction)
        item = 0
        for is_fg, count in ((False, self.batch_size - num_fg), (True, num_fg)):
            pool = self.fg if is_fg else self.bg
            if count and not pool:
                raise self.error(f"{self.window_path}: no {'fore' if is_fg else 'back'}ground "
                                 f"windows to sample {count} from (check fg_threshold, "
                                 "bg_threshold and fg_fraction)")
            for _ in range(count):
                window = pool[self.rand() % len(pool)]
                do_mirror = self.mirror and self.rand() % 2 == 1
                img = self.image(window)
                g = window_geometry(window.x1, window.y1, window.x2, window.y2,
                                    img.shape[1], img.shape[0], crop, self.context_pad,
                                    self.square, do_mirror)
                x1, y1, x2, y2 = g["x1"], g["y1"], g["x2"], g["y2"]
                if not (0 <= x1 <= x2 < img.shape[1] and 0 <= y1 <= y2 < img.shape[0]):
                    raise self.error(f"{self.window_path}:{window.line}: window "
                                     f"({window.x1}, {window.y1}, {window.x2}, {window.y2}) "
                                     f"lies outside its {img.shape[1]} x {img.shape[0]} image")
                if g["warp_w"] <= 0 or g["warp_h"] <= 0:
                    raise self.error(f"{self.window_path}:{window.line}: window warps to an "
                                     f"empty {g['warp_w']} x {g['warp_h']} region")
                patch = cv2.resize(img[y1:y2 + 1, x1:x2 + 1], (g["warp_w"], g["warp_h"]),
                                   interpolation=cv2.INTER_LINEAR)
                if do_mirror:
                    patch = patch[:, ::-1]
                patch = patch.reshape(patch.shape[0], patch.shape[1], -1).transpose(2, 0, 1)
                if patch.shape[0] != self.channels:
                    raise self.error(f"{self.window_path}: images are read in colour "
                                     f"({patch.shape[0]} channels) but the top has "
                                     f"{self.channels}")
                ph, pw = g["pad_h"], g["pad_w"]
                rows = (slice(None), slice(ph, ph + patch.shape[1]), slice(pw, pw + patch.shape[2]))
                pixels = patch.astype(np.float32)
                if self.mean is not None:
                    off = (self.mean.shape[2] - crop) // 2
                    pixels = pixels - self.mean[:, off + ph:off + ph + patch.shape[1],
                                                off + pw:off + pw + patch.shape[2]]
                elif self.mean_values is not None:
                    pixels = pixels - self.mean_values[:, None, None]
                data[item][rows] = pixels * self.scale
                labels[item] = window.label
                item += 1
        return [data, labels]


@register_layer("WindowData", origin="BVLC")
class WindowDataLayer(PrefetchingDataLayer):
    """Caffe's WindowDataLayer (R-CNN fine-tuning): each batch samples
    ``batch_size * fg_fraction`` foreground and the rest background windows from the
    window file, cuts each with ``context_pad`` pixels of context (``crop_mode`` warp or
    square), warps it to transform_param.crop_size, mirrors at random
    (transform_param.mirror), subtracts transform_param's mean and multiplies by
    window_data_param.scale. Tops: data and label.
    """

    top_counts = (2, 2, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.setup_source(bottom_shapes)
        p = self.param.window_data_param
        tp = self.param.transform_param
        self.warn_deprecated(p, ("mean_file", "crop_size", "mirror"))
        if not p.source:
            raise self.error("window_data_param.source is required")
        if p.batch_size <= 0:
            raise self.error("window_data_param.batch_size must be positive")
        crop_size = int(tp.crop_size)
        if crop_size <= 0:
            raise self.error("transform_param.crop_size must be positive (the warped "
                             "window size)")
        if 2 * int(p.context_pad) >= crop_size:
            raise self.error(f"context_pad {p.context_pad} leaves no room in a "
                             f"{crop_size}-pixel crop")
        if p.crop_mode not in ("warp", "square"):
            raise self.error(f"crop_mode must be 'warp' or 'square', got {p.crop_mode!r}")
        error = self.error_factory()
        rng = _seeded_rng()  # Caffe's prefetch_rng_ (mirror or crop_size: always needed)
        images, fg, bg = parse_window_file(p.source, p.root_folder, p.fg_threshold,
                                           p.bg_threshold, error)
        cache = None
        if p.cache_images:
            cache = []
            for path, _, line in images:
                try:
                    with open(path, "rb") as f:
                        cache.append(f.read())
                except OSError as exc:
                    raise self.error(f"{p.source}:{line}: could not open or find file "
                                     f"{path!r} ({exc.strerror or exc})") from None
        channels = images[-1][1][0]  # Caffe shapes the top with the last entry's channels
        if channels != 3:
            raise self.error(f"{p.source}:{images[-1][2]}: WindowData reads images in colour "
                             f"(3 channels) but the window file says {channels}")
        mean = mean_values = None
        if tp.HasField("mean_file"):
            if len(tp.mean_value):
                raise self.error("cannot specify mean_file and mean_value at the same time")
            from caffe_compat.engine.data_transformer import load_mean_file
            mean = load_mean_file(tp.mean_file, self.error)
            off = (mean.shape[2] - crop_size) // 2
            if mean.shape[0] != channels or min(mean.shape[1], mean.shape[2]) < off + crop_size:
                raise self.error(f"mean_file {tp.mean_file!r} of shape {mean.shape} does not "
                                 f"cover a centred {channels} x {crop_size} x {crop_size} crop")
        elif len(tp.mean_value):
            if len(tp.mean_value) not in (1, channels):
                raise self.error(f"specify either 1 mean_value or as many as channels "
                                 f"({channels}), got {len(tp.mean_value)}")
            repeat = channels if len(tp.mean_value) == 1 else 1
            mean_values = np.asarray(list(tp.mean_value) * repeat, dtype=np.float32)
        batch = int(p.batch_size)
        self.declared_tops = [(batch, channels, crop_size, crop_size), (batch,)]
        self.start_loader(_WindowLoader(images, fg, bg, cache, rng, channels, mean, mean_values,
                                        p, crop_size, bool(tp.mirror), p.source, error))


# ---- MemoryData ------------------------------------------------------------------------------
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


# ---- DummyData -------------------------------------------------------------------------------
_FILLER_TYPES = {"constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra",
                 "bilinear"}


@register_layer("DummyData", origin="BVLC")
class DummyDataLayer(HostDataLayer):
    """Caffe's DummyDataLayer: tops of ``shape`` (or legacy num/channels/height/width,
    once or once per top) filled by ``data_filler`` (none = constant 0; one for all tops
    or one per top). Constant tops are filled once; the others are refilled at every
    forward (Caffe's refill rule), from ``caffe.set_random_seed``'s generator.
    """

    top_counts = (None, 1, None)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        from caffe_compat.engine.fillers import default_filler, fill
        self.setup_source(bottom_shapes)
        p = self.param.dummy_data_param
        tops = len(self.param.top)
        if len(p.data_filler) not in (0, 1, tops):
            raise self.error(f"number of data fillers must be 0, 1 or equal to the number "
                             f"of tops: {tops}; you specified {len(p.data_filler)} data fillers")
        legacy = bool(len(p.num) or len(p.channels) or len(p.height) or len(p.width))
        shapes = []
        if legacy:
            if len(p.shape):
                raise self.error("both shape and legacy fields were specified")
            for field in ("num", "channels", "height", "width"):
                if len(getattr(p, field)) not in (1, tops):
                    raise self.error(f"must specify '{field}' once, or once per top blob "
                                     f"({tops}); specified {len(getattr(p, field))}")
            for i in range(tops):
                shapes.append(tuple(int(v[0] if len(v) == 1 else v[i])
                                    for v in (p.num, p.channels, p.height, p.width)))
        else:
            if len(p.shape) not in (1, tops):
                raise self.error(f"must specify 'shape' once, or once per top blob ({tops}); "
                                 f"specified {len(p.shape)}")
            for i in range(tops):
                shapes.append(tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim))
        fillers = list(p.data_filler) or [default_filler(0.0)]
        for f in fillers:
            if f.type not in _FILLER_TYPES:
                raise self.error(f"unknown data_filler type {f.type!r}")
        self._fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(tops)]
        self.declared_tops = shapes
        self._fill = fill
        # Caffe fills the constant tops once, in LayerSetUp; the others at each Forward.
        self._constant = [fill(f, s) if f.type == "constant" else None
                          for f, s in zip(self._fillers, shapes)]

    def next_batch(self) -> list:
        """Random tops are refilled every forward; a constant top is produced once and
        then left alone (``None``), so writes into it persist as in Caffe."""
        first = not getattr(self, "_constant_fed", False)
        self._constant_fed = True
        return [(c if first else None) if c is not None else self._fill(f, s)
                for c, f, s in zip(self._constant, self._fillers, self.declared_tops)]
