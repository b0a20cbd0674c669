"""Read and write Caffe's HDF5 weights (``*.caffemodel.h5``, ``Net::ToHDF5`` layout).

Layout written by Caffe's ``Net::ToHDF5`` (net.cpp) and read by
``Net::CopyTrainedLayersFromHDF5``::

    /data/<layer_name>/<i>     float32 dataset of blob i's shape (every layer gets a
                               group, blob-less layers an empty one; a weight-shared
                               blob is saved only by the layer that owns it)
    /diff/<layer_name>/<i>     the same for the gradients, only when written with diffs

HDF5 keeps neither the layers' order nor their types: Caffe walks ``data`` by name
(``H5_INDEX_NAME``) and matches layers by name, and so do we; ``LayerWeights.type``
is ``""``. A layer name containing ``/`` becomes nested groups (h5py creates the
intermediate groups; Caffe's own ``ToHDF5`` cannot write such names); the reader
joins nested groups back into ``a/b`` names.

A damaged file raises :class:`WeightsFormatError`: h5py's errors are wrapped (naming
the file), a dataset must fit in the file before it is read (uncompressed: its bytes;
compressed: DEFLATE's most extreme ratio), and a group reached twice (a link cycle) is
an error, not endless recursion.

Usage::

    if is_hdf5(path):
        layers = read_hdf5_weights(path)       # list of LayerWeights, by name order
    write_hdf5_weights("net.caffemodel.h5", layers)
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.caffemodel import LayerWeights

PathLike = Union[str, os.PathLike]

# HDF5 format signature; the superblock sits at 0 or at 512 * 2**k (after a user block).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: PathLike) -> bool:
    """True if the file carries the HDF5 signature (at 0, 512, 1024, 2048, ...).

    Caffe itself decides by the ``.h5`` suffix; the signature also catches renamed files.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset + len(_HDF5_SIGNATURE) <= size:
                f.seek(offset)
                if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def _h5py():
    import h5py  # imported lazily: only HDF5 users pay for it
    return h5py


#: What h5py raises for a damaged file (it maps HDF5's error stack onto these).
_H5PY_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError,
                NotImplementedError)
#: The most zlib's DEFLATE expands (a run of one byte value): bounds a compressed dataset.
_DEFLATE_MAX_RATIO = 1032


@contextlib.contextmanager
def hdf5_errors(path: str, what: str) -> Iterator[None]:
    """Turn h5py's errors inside the block into :class:`WeightsFormatError` naming ``path``.

    >>> with hdf5_errors("w.caffemodel.h5", "a readable HDF5 weights file"):  # doctest: +SKIP
    ...     layers = read_layers(h5py.File("w.caffemodel.h5", "r"))
    """
    try:
        yield
    except _H5PY_ERRORS as exc:
        raise WeightsFormatError(path, None, f"{what} ({type(exc).__name__}: {exc})") from None


def read_dataset(item, path: str) -> np.ndarray:
    """All values of an h5py dataset, once its size is known to fit the file.

    A damaged header can claim any shape; reading it would allocate that much.
    Uncompressed data must lie in the file; compressed data can expand at most
    ``_DEFLATE_MAX_RATIO`` times.
    """
    if not isinstance(item, _h5py().Dataset):
        raise WeightsFormatError(path, None, f"a dataset at {item.name} (found a group)")
    nbytes = math.prod(item.shape or ()) * item.dtype.itemsize
    if item.id.get_create_plist().get_nfilters():
        limit, room = _DEFLATE_MAX_RATIO * item.id.get_storage_size(), "compressed storage"
    else:
        limit, room = item.file.id.get_filesize(), "file"
    if nbytes > limit:
        raise WeightsFormatError(path, None, f"dataset {item.name} of shape {item.shape} "
                                             f"({nbytes} bytes) to fit in its {room} of "
                                             f"{limit} bytes")
    return item[()]


def dataset_to_array(dataset, path: str) -> np.ndarray:
    """A dataset's values: float dtypes as stored, integer ones as float32 (like Caffe)."""
    kind = dataset.dtype.kind
    if kind == "f":
        return read_dataset(dataset, path)
    if kind in "iub":
        # Caffe's hdf5_load_nd_dataset accepts integer datasets, converted by HDF5.
        return read_dataset(dataset, path).astype(np.float32)
    raise WeightsFormatError(path, None, f"a float dataset at {dataset.name} "
                                         f"(got dtype {dataset.dtype})")


def _blob_list(group, path: str) -> List[Optional[np.ndarray]]:
    h5py = _h5py()
    indexed = {}
    for key, item in group.items():
        if not isinstance(item, h5py.Dataset):
            continue
        if not key.isdigit():
            raise WeightsFormatError(path, None, f"blob datasets named 0, 1, ... in "
                                                 f"{group.name} (got {key!r})")
        indexed[int(key)] = dataset_to_array(item, path)
    blobs: List[Optional[np.ndarray]] = [None] * (max(indexed) + 1 if indexed else 0)
    for index, array in indexed.items():
        blobs[index] = array
    return blobs


def _layer_groups(group, path: str, prefix: str = "", seen: Optional[set] = None):
    """Yield ``(layer_name, group)`` for a group and its nested groups, in name order."""
    h5py = _h5py()
    seen = {group.id} if seen is None else seen
    for key in sorted(group.keys()):
        item = group[key]
        if isinstance(item, h5py.Group):
            if item.id in seen:
                raise WeightsFormatError(path, None, f"groups forming a tree ({item.name} "
                                                     f"links back to a group it is in)")
            seen.add(item.id)
            name = prefix + key
            children = [item[k] for k in item.keys()]
            has_blobs = any(isinstance(c, h5py.Dataset) for c in children)
            has_groups = any(isinstance(c, h5py.Group) for c in children)
            # A group holding only groups is the intermediate of a "a/b" name, not a layer.
            if has_blobs or not has_groups:
                yield name, item
            yield from _layer_groups(item, path, name + "/", seen)


def read_hdf5_weights(path: PathLike, *, with_diff: bool = False) -> List[LayerWeights]:
    """Read ``data/<layer>/<i>`` (and ``diff/...`` when asked) into :class:`LayerWeights`.

    Layers come in name order (as Caffe walks them); ``type`` is ``""`` (HDF5 does not
    record it). Missing blob indices (weight-shared blobs Caffe did not save) are ``None``.
    """
    path = os.fspath(path)
    h5py = _h5py()
    if not is_hdf5(path):
        raise WeightsFormatError(path, 0, "an HDF5 file (no HDF5 signature)")
    with hdf5_errors(path, "a readable HDF5 weights file"), h5py.File(path, "r") as f:
        if "data" not in f or not isinstance(f["data"], h5py.Group):
            raise WeightsFormatError(path, None, "a 'data' group (Caffe's Net::ToHDF5 "
                                                 "layout: data/<layer>/<blob index>)")
        layers = [LayerWeights(name, "", _blob_list(group, path))
                  for name, group in _layer_groups(f["data"], path)]
        if with_diff:
            diffs = {}
            if "diff" in f:
                diffs = {name: _blob_list(group, path)
                         for name, group in _layer_groups(f["diff"], path)}
            for layer in layers:
                found = diffs.get(layer.name, [])
                layer.diffs = found + [None] * (len(layer.blobs) - len(found))
        return layers


def write_hdf5_weights(path: PathLike, layers: Sequence[LayerWeights], *,
                       write_diff: bool = False) -> None:
    """Write weights in Caffe's ``Net::ToHDF5`` layout (float32 datasets, no compression).

    Every layer gets a ``data/<name>`` group; ``None`` blobs are skipped (as Caffe
    skips weight-shared blobs). ``write_diff=True`` also writes ``diff/<name>/<i>``
    from ``layer.diffs``.
    """
    h5py = _h5py()
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            diff = f.create_group("diff") if write_diff else None
            for layer in layers:
                group = data.require_group(layer.name)
                for index, array in enumerate(layer.blobs):
                    if array is not None:
                        group.create_dataset(str(index), data=np.asarray(array, "<f4", order="C"))
                if diff is not None:
                    diff_group = diff.require_group(layer.name)
                    for index, array in enumerate(layer.diffs or []):
                        if array is not None:
                            diff_group.create_dataset(str(index),
                                                      data=np.asarray(array, "<f4", order="C"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
