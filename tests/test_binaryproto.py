"""BlobProto files (.binaryproto) and the wire-format reader/writer under them."""
import numpy as np
import pytest

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats import wire
from caffe_compat.formats.binaryproto import (encode_blob, read_binaryproto, read_blob_proto_vector,
                                              write_binaryproto, write_blob_proto_vector)
from caffe_compat.formats.wire import (END_GROUP, FIXED32, FIXED64, LEN, START_GROUP, VARINT,
                                       WireReader, len_field, tag, varint)
from caffe_compat.proto import caffe_pb2


# --------------------------------------------------------------------------- wire format

@pytest.mark.parametrize("value", [0, 1, 127, 128, 150, 300, 2**31 - 1, 2**32, 2**63 - 1, 2**64 - 1])
def test_varint_round_trip(value):
    encoded = varint(value)
    reader = WireReader(encoded, "v")
    assert reader.read_varint() == value and reader.at_end()


def test_negative_varints_are_ten_byte_twos_complement():
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    value = WireReader(varint(-5), "v").read_varint()
    assert wire.to_int64(value) == -5 and wire.to_int32(value) == -5
    # protobuf's own encoding of a negative int32 agrees
    blob = caffe_pb2.BlobProto(num=-3)
    assert blob.SerializeToString() == tag(1, VARINT) + varint(-3)


def test_varint_errors_name_the_offset():
    with pytest.raises(WeightsFormatError, match="at byte 2: expected a varint of at most 10 bytes"):
        WireReader(b"\x00\x00" + b"\x80" * 11, "v", 2).read_varint()
    with pytest.raises(WeightsFormatError, match="at byte 0: expected a varint .ran past the end"):
        WireReader(b"\x80\x80", "v").read_varint()
    with pytest.raises(WeightsFormatError, match="fits in 64 bits"):
        WireReader(b"\xff" * 9 + b"\x7f", "v").read_varint()


def test_fields_of_every_wire_type():
    payload = (tag(1, VARINT) + varint(300) + tag(2, LEN) + varint(3) + b"abc"
               + tag(3, FIXED32) + b"\x01\x00\x00\x00" + tag(4, FIXED64) + b"\x02" + b"\x00" * 7
               + tag(5, START_GROUP) + tag(1, VARINT) + varint(7) + tag(5, END_GROUP)
               + tag(6, VARINT) + varint(1))
    fields = list(WireReader(payload, "f").fields())
    assert [(f.number, f.wire_type) for f in fields] == [(1, VARINT), (2, LEN), (3, FIXED32),
                                                         (4, FIXED64), (5, START_GROUP), (6, VARINT)]
    assert fields[0].value == 300
    assert payload[fields[1].start:fields[1].end] == b"abc"
    assert fields[2].value == 1 and fields[3].value == 2
    assert fields[1].offset == 3 and fields[0].offset == 0


def test_structural_errors():
    with pytest.raises(WeightsFormatError, match="at byte 1: expected field 2 of 10 bytes"):
        list(WireReader(tag(2, LEN) + varint(10) + b"abc", "f").fields())
    with pytest.raises(WeightsFormatError, match="the fixed32 value of field 3 of 4 bytes"):
        list(WireReader(tag(3, FIXED32) + b"\x01\x02", "f").fields())
    with pytest.raises(WeightsFormatError, match="valid wire type .got 6"):
        list(WireReader(bytes([(1 << 3) | 6]), "f").fields())
    with pytest.raises(WeightsFormatError, match="field number in 1"):
        list(WireReader(b"\x00", "f").fields())
    with pytest.raises(WeightsFormatError, match="end-group tag for field 5 outside any group"):
        list(WireReader(tag(5, END_GROUP), "f").fields())
    with pytest.raises(WeightsFormatError, match="at byte 0: expected an end-group tag"):
        list(WireReader(tag(5, START_GROUP) + tag(1, VARINT) + varint(1), "f").fields())
    with pytest.raises(WeightsFormatError, match="end-group tag of field 5 .got one for field 6"):
        list(WireReader(tag(5, START_GROUP) + tag(6, END_GROUP), "f").fields())


def test_nested_groups_are_skipped_and_limited_like_protobuf():
    nested = (tag(5, START_GROUP) + tag(6, START_GROUP) + tag(1, LEN) + varint(2) + b"ab"
              + tag(6, END_GROUP) + tag(5, END_GROUP) + tag(2, VARINT) + varint(9))
    fields = list(WireReader(nested, "f").fields())
    assert [(f.number, f.wire_type) for f in fields] == [(5, START_GROUP), (2, VARINT)]
    assert fields[1].value == 9
    deep = tag(1, START_GROUP) * 100 + tag(1, END_GROUP) * 100
    assert len(list(WireReader(deep, "f").fields())) == 1
    # A run of start-group tags: an error at the 101st, not a RecursionError.
    with pytest.raises(WeightsFormatError, match="at byte 100: expected groups nested at most 100"):
        list(WireReader(tag(1, START_GROUP) * 5000, "f").fields())


def test_nested_reader_is_bounded_by_its_message():
    inner = tag(1, LEN) + varint(5) + b"ab"      # claims 5 bytes, has 2 in its message
    outer = len_field(7, inner) + b"xxxxxxxx"   # bytes after it must not be borrowed
    reader = WireReader(outer, "n")
    field = next(reader.fields())
    with pytest.raises(WeightsFormatError, match="only 2 left in the enclosing message"):
        list(reader.sub(field).fields())


def test_no_size_limit_in_lengths():
    # A 3 GB length is representable and checked against the buffer, not a fixed limit.
    header = tag(5, LEN) + varint(3 * 2**30)
    with pytest.raises(WeightsFormatError, match="field 5 of 3221225472 bytes"):
        list(WireReader(header, "big").fields())


# --------------------------------------------------------------------------- BlobProto files

def test_binaryproto_round_trip_and_protobuf_agreement(tmp_path):
    mean = np.random.default_rng(0).uniform(0, 255, (1, 3, 7, 5)).astype(np.float32)
    path = tmp_path / "mean.binaryproto"
    write_binaryproto(path, mean)
    back = read_binaryproto(path)
    assert back.dtype == np.float32 and back.shape == mean.shape and np.array_equal(back, mean)
    blob = caffe_pb2.BlobProto()
    blob.ParseFromString(path.read_bytes())
    assert list(blob.shape.dim) == [1, 3, 7, 5]
    assert np.array_equal(np.array(blob.data, np.float32), mean.ravel())
    # identical bytes to what the protobuf library writes for the same blob
    assert path.read_bytes() == blob.SerializeToString()


def test_legacy_mean_file_like_compute_image_mean(tmp_path):
    # compute_image_mean writes num/channels/height/width and float data.
    blob = caffe_pb2.BlobProto(num=1, channels=3, height=4, width=2)
    values = np.arange(24, dtype=np.float32) / 7
    blob.data.extend(values)
    path = tmp_path / "legacy.binaryproto"
    path.write_bytes(blob.SerializeToString())
    back = read_binaryproto(path)
    assert back.shape == (1, 3, 4, 2) and np.array_equal(back.ravel(), values)
    write_binaryproto(tmp_path / "again.binaryproto", back, legacy=True)
    assert (tmp_path / "again.binaryproto").read_bytes() == blob.SerializeToString()
    with pytest.raises(ValueError, match="must be 4-d"):
        write_binaryproto(tmp_path / "x.binaryproto", values, legacy=True)


def test_double_data_binaryproto(tmp_path):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([3])
    blob.double_data.extend([0.1, 0.2, 0.3])
    path = tmp_path / "d.binaryproto"
    path.write_bytes(blob.SerializeToString())
    back = read_binaryproto(path)
    assert back.dtype == np.float64 and list(back) == [0.1, 0.2, 0.3]


def test_blob_proto_vector_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32), np.zeros((0,), np.float32),
              rng.standard_normal((1, 1, 2, 2)).astype(np.float32)]
    path = tmp_path / "v.binaryproto"
    write_blob_proto_vector(path, arrays)
    back = read_blob_proto_vector(path)
    assert [a.shape for a in back] == [(2, 3), (0,), (1, 1, 2, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(back, arrays))
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(path.read_bytes())
    assert [list(b.shape.dim) for b in vec.blobs] == [[2, 3], [0], [1, 1, 2, 2]]
    with pytest.raises(WeightsFormatError, match="use read_blob_proto_vector"):
        read_binaryproto(path)


def test_encode_blob_layout_matches_caffe_field_order():
    data = np.arange(4, dtype=np.float32).reshape(2, 2)
    diff = -data
    chunks = encode_blob(data, diff=diff)
    encoded = b"".join(c if isinstance(c, bytes) else c.tobytes() for c in chunks)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 2])
    blob.data.extend(data.ravel())
    blob.diff.extend(diff.ravel())
    assert encoded == blob.SerializeToString()


def test_truncated_binaryproto_raises(tmp_path):
    path = tmp_path / "mean.binaryproto"
    write_binaryproto(path, np.ones((1, 3, 4, 4), np.float32))
    data = path.read_bytes()
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsFormatError) as info:
            read_binaryproto(path)
        assert 0 <= info.value.offset <= cut
    path.write_bytes(b"")
    with pytest.raises(WeightsFormatError, match="empty"):
        read_binaryproto(path)


@pytest.mark.parametrize("dims, data, message", [
    ([1] * 33, [1.0], "a blob of at most 32 axes"),                # Caffe's kMaxBlobAxes
    ([2**31, 1], [], r"blob dimensions in 0..2147483647"),         # Caffe's dims are ints
    ([0] + [2**31 - 1] * 4, [], "a blob shape numpy can hold"),    # no values, 2**124 slots
])
def test_blob_shapes_caffe_cannot_hold_raise(tmp_path, dims, data, message):
    blob = caffe_pb2.BlobProto(data=data)
    blob.shape.dim.extend(dims)
    path = tmp_path / "odd.binaryproto"
    path.write_bytes(blob.SerializeToString())
    with pytest.raises(WeightsFormatError, match=f"at byte 0: expected {message}"):
        read_binaryproto(path)
