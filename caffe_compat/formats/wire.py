"""A small, bounds-checked reader and writer of the protobuf wire format.

Caffe's binary files (``.caffemodel``, ``.binaryproto``, ``.solverstate``) are
protobuf messages. Decoding them with a protobuf library materialises every float
of every blob as part of one message object (and the C++ library refuses messages
over 64 MB / 2 GB unless told otherwise). This module walks the raw bytes instead:
it yields one :class:`Field` at a time with absolute byte offsets, so callers can
decode structure field by field and copy large packed payloads straight into numpy
arrays. Every read is checked against the end of the enclosing message; a truncated
or corrupt file raises :class:`~caffe_compat.errors.WeightsFormatError` naming the
byte offset and what was expected there. There is no size limit.

Reading::

    with open_buffer("w.caffemodel") as (buf, raw):
        for field in WireReader(buf, "w.caffemodel").fields():
            if field.number == 100 and field.wire_type == LEN:
                layer = WireReader(buf, "w.caffemodel", field.start, field.end)

Writing::

    header = tag(7, LEN) + varint(len(payload))
"""
from __future__ import annotations

import contextlib
import mmap
import os
from typing import Iterator, List, NamedTuple, Optional, Union

from caffe_compat.errors import WeightsFormatError

# Wire types (https://protobuf.dev/programming-guides/encoding/).
VARINT = 0
FIXED64 = 1
LEN = 2
START_GROUP = 3
END_GROUP = 4
FIXED32 = 5

WIRE_TYPE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LEN: "length-delimited",
                   START_GROUP: "start-group", END_GROUP: "end-group", FIXED32: "fixed32"}

_MAX_VARINT_BYTES = 10
_MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_GROUP_DEPTH = 100   # protobuf's default recursion limit (CodedInputStream)

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]


class Field(NamedTuple):
    """One decoded field.

    ``offset`` is where the field's tag starts. For ``LEN`` fields (and groups)
    ``start``/``end`` delimit the payload; for ``VARINT``/``FIXED32``/``FIXED64``
    ``value`` is the unsigned integer and ``start``/``end`` delimit its bytes.
    All offsets are absolute positions in the buffer.
    """
    number: int
    wire_type: int
    offset: int
    start: int
    end: int
    value: int


class WireReader:
    """Cursor over ``buf[start:end]``, one protobuf message (or packed payload).

    >>> r = WireReader(bytes([0x08, 0x96, 0x01]), "x.bin")
    >>> [(f.number, f.value) for f in r.fields()]
    [(1, 150)]
    """

    __slots__ = ("buf", "path", "pos", "end")

    def __init__(self, buf: Buffer, path: str, start: int = 0, end: Optional[int] = None):
        self.buf = buf
        self.path = str(path)
        self.pos = start
        self.end = len(buf) if end is None else end
        if not 0 <= start <= self.end <= len(buf):
            raise self.error(start, f"a message within bytes {start}..{self.end} "
                                    f"of a {len(buf)}-byte buffer")

    def error(self, offset: int, expected: str) -> WeightsFormatError:
        return WeightsFormatError(self.path, offset, expected)

    def at_end(self) -> bool:
        return self.pos >= self.end

    def read_varint(self, what: str = "a varint") -> int:
        """Read one base-128 varint (unsigned, at most 10 bytes)."""
        buf, pos, end = self.buf, self.pos, self.end
        begin = pos
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise self.error(begin, f"{what} (ran past the end of the enclosing "
                                        f"message at byte {end})")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if pos - begin >= _MAX_VARINT_BYTES:
                raise self.error(begin, f"{what} of at most {_MAX_VARINT_BYTES} bytes")
        if result >> 64:
            raise self.error(begin, f"{what} that fits in 64 bits")
        self.pos = pos
        return result

    def read_tag(self) -> tuple:
        """Read a field key; returns ``(field_number, wire_type)``."""
        offset = self.pos
        key = self.read_varint("a field tag")
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            raise self.error(offset, f"a field tag with a field number in 1..{_MAX_FIELD_NUMBER} "
                                     f"(got {number})")
        if wire_type not in WIRE_TYPE_NAMES:
            raise self.error(offset, f"a field tag with a valid wire type (got {wire_type} "
                                     f"for field {number})")
        return number, wire_type

    def _take(self, size: int, what: str) -> int:
        start = self.pos
        if size > self.end - start:
            raise self.error(start, f"{what} of {size} bytes (only {max(self.end - start, 0)} "
                                    f"left in the enclosing message)")
        self.pos = start + size
        return start

    def read_field(self) -> Field:
        """Read one whole field (tag and value) and return it."""
        offset = self.pos
        number, wire_type = self.read_tag()
        if wire_type == START_GROUP:
            return self._read_group(number, offset)
        if wire_type == END_GROUP:
            # Outside of a group: fields() reports it.
            return Field(number, wire_type, offset, self.pos, self.pos, 0)
        return self._read_value(number, wire_type, offset)

    def _read_value(self, number: int, wire_type: int, offset: int) -> Field:
        """The value of a varint, fixed or length-delimited field whose tag was read."""
        if wire_type == VARINT:
            start = self.pos
            value = self.read_varint(f"the varint value of field {number}")
            return Field(number, wire_type, offset, start, self.pos, value)
        if wire_type == LEN:
            length_at = self.pos
            length = self.read_varint(f"the length of field {number}")
            if length > self.end - self.pos:
                raise self.error(length_at, f"field {number} of {length} bytes (only "
                                            f"{self.end - self.pos} left in the enclosing "
                                            f"message ending at byte {self.end})")
            start = self.pos
            self.pos = start + length
            return Field(number, wire_type, offset, start, self.pos, length)
        size = 4 if wire_type == FIXED32 else 8
        start = self._take(size, f"the {WIRE_TYPE_NAMES[wire_type]} value of field {number}")
        return Field(number, wire_type, offset, start, self.pos,
                     int.from_bytes(self.buf[start:start + size], "little"))

    def _read_group(self, number: int, offset: int) -> Field:
        """Skip a (deprecated) group up to its end-group tag, nested groups included.

        Iterative, and nesting is limited like protobuf's parser (recursion limit 100),
        so a run of start-group tags is an error, not a stack overflow.
        """
        start = self.pos
        open_groups = [number]
        while True:
            if self.at_end():
                raise self.error(offset, f"an end-group tag closing group field {open_groups[-1]}")
            inner_at = self.pos
            inner, wire_type = self.read_tag()
            if wire_type == START_GROUP:
                if len(open_groups) >= _MAX_GROUP_DEPTH:
                    raise self.error(inner_at, f"groups nested at most {_MAX_GROUP_DEPTH} deep "
                                               f"(protobuf's recursion limit)")
                open_groups.append(inner)
            elif wire_type == END_GROUP:
                if inner != open_groups[-1]:
                    raise self.error(inner_at, f"the end-group tag of field {open_groups[-1]} "
                                               f"(got one for field {inner})")
                open_groups.pop()
                if not open_groups:
                    return Field(number, START_GROUP, offset, start, inner_at, 0)
            else:
                self._read_value(inner, wire_type, inner_at)

    def fields(self) -> Iterator[Field]:
        """Yield the fields of the message until its end; a stray end-group tag is an error."""
        while self.pos < self.end:
            field = self.read_field()
            if field.wire_type == END_GROUP:
                raise self.error(field.offset, f"a field tag (got an end-group tag for field "
                                               f"{field.number} outside any group)")
            yield field

    def sub(self, field: Field) -> "WireReader":
        """A reader over the payload of a length-delimited field."""
        return WireReader(self.buf, self.path, field.start, field.end)

    def read_packed_varints(self, what: str = "packed varints") -> List[int]:
        """Decode the rest of this reader as packed varints (e.g. ``BlobShape.dim``)."""
        values = []
        while self.pos < self.end:
            values.append(self.read_varint(what))
        return values


def expect_wire_type(reader: WireReader, field: Field, wire_type: int, name: str) -> None:
    """Raise unless ``field`` has ``wire_type`` (a known field with a wrong type is corrupt)."""
    if field.wire_type != wire_type:
        raise reader.error(field.offset, f"{name} (field {field.number}) encoded as "
                                         f"{WIRE_TYPE_NAMES[wire_type]}, got "
                                         f"{WIRE_TYPE_NAMES[field.wire_type]}")


def to_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as a signed int64 (protobuf int64/int32)."""
    return value - (1 << 64) if value >= (1 << 63) else value


def to_int32(value: int) -> int:
    """Protobuf int32: sign-extended to 64 bits on the wire; keep the low 32 bits, signed."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


# --------------------------------------------------------------------------- writing

def varint(value: int) -> bytes:
    """Encode an integer as a varint; negatives use 64-bit two's complement like protobuf.

    >>> varint(150).hex()
    '9601'
    """
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """Encode a field key."""
    return varint((number << 3) | wire_type)


def len_header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field whose payload is ``length`` bytes."""
    return tag(number, LEN) + varint(length)


def len_field(number: int, payload: bytes) -> bytes:
    """A whole length-delimited field."""
    return len_header(number, len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    """A whole varint field."""
    return tag(number, VARINT) + varint(value)


def packed_varints(number: int, values) -> bytes:
    """A packed repeated varint field; empty input writes nothing (as protobuf does)."""
    values = list(values)
    if not values:
        return b""
    return len_field(number, b"".join(varint(int(v)) for v in values))


# --------------------------------------------------------------------------- files

@contextlib.contextmanager
def open_buffer(path: Union[str, os.PathLike]):
    """Map a file read-only for :class:`WireReader`; yields ``(buffer, raw_file)``.

    The raw (unbuffered) file is handed out too so large payloads can be read with
    :func:`read_into` straight into their final arrays. An empty file yields ``b""``
    (mmap cannot map zero bytes). Both are closed on exit; do not keep views of the
    buffer past the ``with`` block.
    """
    with open(path, "rb", buffering=0) as raw:
        size = os.fstat(raw.fileno()).st_size
        if size == 0:
            yield b"", raw
            return
        mapped = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield mapped, raw
        finally:
            mapped.close()


def read_into(raw, offset: int, target, path: str) -> None:
    """Fill the writable buffer ``target`` with the file's bytes at ``offset``.

    Reads go from the page cache straight into ``target`` (one copy, no mmap pages
    faulted into this process), looping over short reads.
    """
    view = memoryview(target).cast("B")
    raw.seek(offset)
    done = 0
    total = len(view)
    while done < total:
        got = raw.readinto(view[done:])
        if not got:
            raise WeightsFormatError(path, offset + done,
                                     f"{total - done} more payload bytes (file ended)")
        done += got


def atomic_write(path: Union[str, os.PathLike], write) -> None:
    """Write via ``path + '.tmp'`` and rename, so a failure never leaves a partial file."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
