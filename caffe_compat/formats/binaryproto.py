"""Caffe ``BlobProto`` encoding: ``.binaryproto`` mean files and the blobs inside models.

A ``BlobProto`` (caffe.proto) holds one n-d array: ``shape`` (field 7, a ``BlobShape``
of int64 dims) or the legacy 4-d ``num``/``channels``/``height``/``width`` (fields
1-4), float ``data`` (5) and ``diff`` (6), or ``double_data`` (8) / ``double_diff``
(9). This module decodes one straight from a file region into a numpy array (the
float payload is copied once, from the file into the final array) and encodes one
as header bytes + the array's raw bytes, so no protobuf message ever holds the floats.
:mod:`~caffe_compat.formats.caffemodel` and :mod:`~caffe_compat.formats.solverstate`
reuse it.

Mean files::

    mean = read_binaryproto("imagenet_mean.binaryproto")   # (1, 3, 256, 256) float32
    write_binaryproto("mean.binaryproto", mean)
    means = read_blob_proto_vector("means.binaryproto")   # BlobProtoVector: list of arrays
"""
from __future__ import annotations

import os
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.wire import (FIXED32, FIXED64, LEN, VARINT, WireReader, expect_wire_type,
                                       len_field, len_header, open_buffer, packed_varints,
                                       atomic_write, read_into, to_int32, to_int64, varint_field)

PathLike = Union[str, os.PathLike]

# BlobProto field numbers (caffe.proto).
_NUM, _CHANNELS, _HEIGHT, _WIDTH = 1, 2, 3, 4
_DATA, _DIFF, _SHAPE, _DOUBLE_DATA, _DOUBLE_DIFF = 5, 6, 7, 8, 9
_LEGACY_NAMES = {_NUM: "num", _CHANNELS: "channels", _HEIGHT: "height", _WIDTH: "width"}
_BLOBSHAPE_DIM = 1
_BLOBPROTOVECTOR_BLOBS = 1
_MAX_AXES = 32               # Caffe's kMaxBlobAxes
_INT_MAX = (1 << 31) - 1     # Caffe's blob dimensions are C ints

_FLOAT = np.dtype("<f4")
_DOUBLE = np.dtype("<f8")

Chunk = Union[bytes, np.ndarray]


class DecodedBlob(NamedTuple):
    """One decoded ``BlobProto``.

    ``data`` has the blob's shape: ``shape.dim`` or, when ``legacy`` is true, the
    4-d ``(num, channels, height, width)`` exactly as stored (Caffe matches those
    against the last 4 axes of the target blob; see ``legacy_shape_matches`` in
    :mod:`caffe_compat.formats.caffemodel`). ``data`` is float32, or float64 when
    the blob stored ``double_data``. ``diff`` is ``None`` unless asked for and present.
    """
    data: np.ndarray
    legacy: bool
    diff: Optional[np.ndarray]
    offset: int


class _Values:
    """The pieces of one repeated float/double field, gathered before copying."""

    __slots__ = ("dtype", "tag_byte", "pieces", "count")

    def __init__(self, dtype: np.dtype, tag_byte: int):
        self.dtype, self.tag_byte = dtype, tag_byte
        self.pieces: List[Union[Tuple[int, int], np.ndarray]] = []  # (file offset, count) or values
        self.count = 0

    def add_packed(self, reader: WireReader, field, name: str) -> None:
        size = field.end - field.start
        if size % self.dtype.itemsize:
            raise reader.error(field.start, f"packed {name} of a whole number of "
                                            f"{self.dtype.itemsize}-byte values "
                                            f"(got {size} bytes)")
        n = size // self.dtype.itemsize
        if n:
            self.pieces.append((field.start, n))
            self.count += n

    def add_unpacked_run(self, reader: WireReader, field) -> None:
        """Take ``field`` and every directly following field with the same tag byte.

        Unpacked repeated floats are a tag byte + a value per element; the run is
        decoded with numpy in chunks instead of one Python step per value.
        """
        item = self.dtype.itemsize
        record = np.dtype([("tag", "u1"), ("value", self.dtype)])
        first = np.frombuffer(reader.buf, dtype=self.dtype, count=1, offset=field.start).copy()
        runs = [first]
        chunk = 1 << 20
        while True:
            available = min((reader.end - reader.pos) // (1 + item), chunk)
            if available <= 0:
                break
            view = np.frombuffer(reader.buf, dtype=record, count=available, offset=reader.pos)
            mismatch = np.flatnonzero(view["tag"] != self.tag_byte)
            taken = int(mismatch[0]) if mismatch.size else available
            if taken:
                runs.append(view["value"][:taken].copy())
            del view
            reader.pos += taken * (1 + item)
            if taken < available:
                break
        values = np.concatenate(runs)
        self.pieces.append(values)
        self.count += values.size

    def assemble(self, buf, raw, path: str) -> np.ndarray:
        out = np.empty(self.count, dtype=self.dtype)
        at = 0
        for piece in self.pieces:
            if isinstance(piece, np.ndarray):
                out[at:at + piece.size] = piece
                at += piece.size
                continue
            start, n = piece
            if raw is not None:
                read_into(raw, start, out[at:at + n], path)
            else:
                out[at:at + n] = np.frombuffer(buf, dtype=self.dtype, count=n, offset=start)
            at += n
        return out


def _read_blob_shape(reader: WireReader) -> List[int]:
    dims: List[int] = []
    for field in reader.fields():
        if field.number != _BLOBSHAPE_DIM:
            continue
        if field.wire_type == LEN:
            dims.extend(to_int64(v) for v in reader.sub(field).read_packed_varints("a packed dim"))
        elif field.wire_type == VARINT:
            dims.append(to_int64(field.value))
        else:
            expect_wire_type(reader, field, LEN, "BlobShape.dim")
    return dims


def decode_blob(buf, path: str, start: int, end: int, *, raw=None,
                with_diff: bool = False) -> DecodedBlob:
    """Decode the ``BlobProto`` in ``buf[start:end]`` (``raw``: the open file, for payload reads).

    Follows Caffe's ``Blob::FromProto``: legacy num/channels/height/width win over
    ``shape`` when any is present; ``double_data`` wins over ``data`` when non-empty;
    the value count must equal the shape's count (Caffe CHECKs the same). Raises
    :class:`WeightsFormatError` on any truncation or inconsistency.
    """
    reader = WireReader(buf, path, start, end)
    legacy = {}
    shape: Optional[List[int]] = None
    data, double_data = _Values(_FLOAT, 0x2D), _Values(_DOUBLE, 0x41)
    diff, double_diff = _Values(_FLOAT, 0x35), _Values(_DOUBLE, 0x49)
    float_fields = {_DATA: ("data", data, FIXED32), _DIFF: ("diff", diff, FIXED32),
                    _DOUBLE_DATA: ("double_data", double_data, FIXED64),
                    _DOUBLE_DIFF: ("double_diff", double_diff, FIXED64)}
    for field in reader.fields():
        number = field.number
        if number in _LEGACY_NAMES:
            expect_wire_type(reader, field, VARINT, f"BlobProto.{_LEGACY_NAMES[number]}")
            legacy[number] = to_int32(field.value)
        elif number == _SHAPE:
            expect_wire_type(reader, field, LEN, "BlobProto.shape")
            shape = (shape or []) + _read_blob_shape(reader.sub(field))
        elif number in float_fields:
            name, values, unpacked_type = float_fields[number]
            if field.wire_type == LEN:
                values.add_packed(reader, field, f"BlobProto.{name}")
            elif field.wire_type == unpacked_type:
                values.add_unpacked_run(reader, field)
            else:
                expect_wire_type(reader, field, LEN, f"BlobProto.{name}")
        # any other field number: unknown to Caffe, skipped like protobuf does

    if legacy:
        dims = [legacy.get(n, 0) for n in (_NUM, _CHANNELS, _HEIGHT, _WIDTH)]
    else:
        dims = shape or []
    # Caffe's Blob::Reshape: at most kMaxBlobAxes axes, each an int >= 0.
    if len(dims) > _MAX_AXES:
        raise reader.error(start, f"a blob of at most {_MAX_AXES} axes (got {len(dims)})")
    if any(not 0 <= d <= _INT_MAX for d in dims):
        raise reader.error(start, f"blob dimensions in 0..{_INT_MAX} (got {dims})")
    count = int(np.prod(dims, dtype=object)) if dims else 1

    def build(single: _Values, double: _Values, name: str, required: bool):
        chosen = double if double.count else single
        if not chosen.count and not required:
            return None
        if chosen.count != count:
            raise reader.error(start, f"a blob whose {name} has {count} values for its shape "
                                      f"{tuple(dims)} (found {chosen.count})")
        values = chosen.assemble(buf, raw, path)
        try:
            return values.reshape(dims)
        except ValueError as exc:   # no values, but dimensions too large for numpy
            raise reader.error(start, f"a blob shape numpy can hold (got {dims}: {exc})") from None

    values = build(data, double_data, "data", True)
    diff_values = build(diff, double_diff, "diff", False) if with_diff else None
    return DecodedBlob(values, bool(legacy), diff_values, start)


def encode_blob(array, *, legacy: bool = False, diff=None) -> List[Chunk]:
    """Encode an array as a ``BlobProto`` laid out like Caffe's ``Blob::ToProto`` output.

    Returns the message as a list of chunks: ``bytes`` (field headers) and
    contiguous little-endian float32 arrays whose raw bytes follow. Fields come in
    field-number order, as Caffe's own files have them: ``data`` (5), ``diff`` (6),
    then ``shape`` (7). With ``legacy=True`` a 4-d array is written with
    num/channels/height/width (fields 1-4) instead of ``shape``.

    >>> chunks = encode_blob(np.zeros((2, 3), np.float32))
    >>> [c.hex() if isinstance(c, bytes) else c.shape for c in chunks]
    ['2a18', (2, 3), '3a040a020203']
    """
    data = np.asarray(array, dtype=_FLOAT, order="C")
    chunks: List[Chunk] = []
    if legacy:
        if data.ndim != 4:
            raise ValueError(f"a legacy (num, channels, height, width) blob must be 4-d, "
                             f"got shape {data.shape}")
        chunks.append(b"".join(varint_field(n, d) for n, d in
                               zip((_NUM, _CHANNELS, _HEIGHT, _WIDTH), data.shape)))
    if data.size:
        chunks += [len_header(_DATA, data.nbytes), data]
    if diff is not None:
        diff = np.asarray(diff, dtype=_FLOAT, order="C")
        if diff.shape != data.shape:
            raise ValueError(f"diff shape {diff.shape} differs from data shape {data.shape}")
        if diff.size:
            chunks += [len_header(_DIFF, diff.nbytes), diff]
    if not legacy:
        chunks.append(len_field(_SHAPE, packed_varints(_BLOBSHAPE_DIM, data.shape)))
    return chunks


def chunks_size(chunks: Sequence[Chunk]) -> int:
    """Byte length of encoded chunks."""
    return sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)


def write_chunks(out, chunks: Sequence[Chunk]) -> None:
    """Write encoded chunks to a binary file object (arrays without an extra copy)."""
    for chunk in chunks:
        out.write(chunk if isinstance(chunk, bytes) else memoryview(chunk).cast("B"))


def blob_field_chunks(number: int, array, *, legacy: bool = False, diff=None) -> List[Chunk]:
    """``array`` as a length-delimited ``BlobProto`` field ``number`` of some message."""
    body = encode_blob(array, legacy=legacy, diff=diff)
    return [len_header(number, chunks_size(body))] + body


# --------------------------------------------------------------------------- files

def read_binaryproto(path: PathLike) -> np.ndarray:
    """Read a ``BlobProto`` file (e.g. a mean image) as an array of the blob's shape.

    Legacy blobs (num/channels/height/width, as ``compute_image_mean`` writes them)
    come back 4-d ``(num, channels, height, width)``.
    """
    path = os.fspath(path)
    with open_buffer(path) as (buf, raw):
        if not len(buf):
            raise WeightsFormatError(path, 0, "a BlobProto message (the file is empty)")
        first = WireReader(buf, path)
        number, wire_type = first.read_tag()
        if number == _BLOBPROTOVECTOR_BLOBS and wire_type == LEN:
            raise WeightsFormatError(path, 0, "a single BlobProto (this file holds a "
                                              "BlobProtoVector: use read_blob_proto_vector)")
        return decode_blob(buf, path, 0, len(buf), raw=raw).data


def read_blob_proto_vector(path: PathLike) -> List[np.ndarray]:
    """Read a ``BlobProtoVector`` file (field 1: repeated ``BlobProto``) as a list of arrays."""
    path = os.fspath(path)
    with open_buffer(path) as (buf, raw):
        reader = WireReader(buf, path)
        arrays = []
        for field in reader.fields():
            if field.number == _BLOBPROTOVECTOR_BLOBS:
                expect_wire_type(reader, field, LEN, "BlobProtoVector.blobs")
                arrays.append(decode_blob(buf, path, field.start, field.end, raw=raw).data)
        return arrays


def write_binaryproto(path: PathLike, array, *, legacy: bool = False) -> None:
    """Write one array as a ``BlobProto`` file (float32 ``data`` + ``shape``).

    ``legacy=True`` writes a 4-d array with num/channels/height/width instead of
    ``shape``, like Caffe's ``compute_image_mean`` (both load in every Caffe version
    that has ``shape``; only pre-2015 Caffe needs the legacy form).
    """
    def write(out):
        write_chunks(out, encode_blob(array, legacy=legacy))
    atomic_write(path, write)


def write_blob_proto_vector(path: PathLike, arrays: Sequence, *, legacy: bool = False) -> None:
    """Write arrays as a ``BlobProtoVector`` file."""
    def write(out):
        for array in arrays:
            write_chunks(out, blob_field_chunks(_BLOBPROTOVECTOR_BLOBS, array, legacy=legacy))
    atomic_write(path, write)
