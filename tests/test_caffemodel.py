"""Reading and writing .caffemodel files (caffe_compat.formats.caffemodel).

Real-Caffe files: every tests/golden/*/weights.caffemodel (V2, written by Caffe's
net.save()) and caffenet_tiny/weights_v1.caffemodel (V1 binary, legacy 4-d blobs).
"""
import glob
import os
import struct

import numpy as np
import pytest

from caffe_compat.errors import WeightsFormatError, WeightsMismatchError
from caffe_compat.formats.caffemodel import (V1_LAYER_TYPES, LayerWeights, legacy_shape_matches,
                                             read_caffemodel, write_caffemodel)
from caffe_compat.formats.wire import WireReader, len_field, tag, varint
from caffe_compat.proto import caffe_pb2

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
GOLDEN_SETS = sorted(os.path.basename(os.path.dirname(p))
                     for p in glob.glob(os.path.join(GOLDEN, "*", "weights.caffemodel")))


def golden_params(set_name):
    """{(layer, index): array} from golden.npz param/<layer>/<i> (layer names may hold '/')."""
    npz = np.load(os.path.join(GOLDEN, set_name, "golden.npz"))
    params = {}
    for key in npz.files:
        if key.startswith("param/"):
            layer, index = key[len("param/"):].rsplit("/", 1)
            params[(layer, int(index))] = npz[key]
    return params


def test_golden_sets_present():
    assert set(GOLDEN_SETS) >= {"layers_basic", "layers_more", "fcn_tiny", "googlenet_tiny",
                                "resnet_tiny", "caffenet_tiny"}


@pytest.mark.parametrize("set_name", GOLDEN_SETS)
def test_golden_weights_equal_caffe_params(set_name):
    model = read_caffemodel(os.path.join(GOLDEN, set_name, "weights.caffemodel"))
    expected = golden_params(set_name)
    assert not model.is_v1 and not model.has_legacy_shapes
    found = {(layer.name, i): blob for layer in model.layers for i, blob in enumerate(layer.blobs)}
    assert set(found) == set(expected)
    for key, array in expected.items():
        assert found[key].dtype == np.float32
        assert found[key].shape == array.shape, key
        assert np.array_equal(found[key], array), key


@pytest.mark.parametrize("set_name", GOLDEN_SETS)
def test_golden_net_param_is_stripped_of_blobs(set_name):
    model = read_caffemodel(os.path.join(GOLDEN, set_name, "weights.caffemodel"))
    net = model.net_param
    assert [lp.name for lp in net.layer] == [layer.name for layer in model.layers]
    assert [lp.type for lp in net.layer] == [layer.type for layer in model.layers]
    assert all(len(lp.blobs) == 0 for lp in net.layer)
    # Caffe's saved layers carry their phase and full parameters.
    assert all(lp.phase == caffe_pb2.TEST for lp in net.layer)


@pytest.mark.parametrize("set_name", GOLDEN_SETS)
def test_rewrite_with_net_param_is_byte_identical_to_caffe(set_name, tmp_path):
    source = os.path.join(GOLDEN, set_name, "weights.caffemodel")
    model = read_caffemodel(source)
    out = tmp_path / "rewritten.caffemodel"
    write_caffemodel(out, model.layers, net_param=model.net_param)
    with open(source, "rb") as a, open(out, "rb") as b:
        assert a.read() == b.read()


def test_v1_binary_reads_same_values_as_v2():
    v1 = read_caffemodel(os.path.join(GOLDEN, "caffenet_tiny", "weights_v1.caffemodel"))
    v2 = read_caffemodel(os.path.join(GOLDEN, "caffenet_tiny", "weights.caffemodel")).by_name()
    assert v1.is_v1 and v1.has_legacy_shapes and not v1.has_v0_layers
    assert len(v1.net_param.layers) == len(v1.layers) == 23 and not len(v1.net_param.layer)
    assert list(v1.net_param.input) == ["data"]
    assert list(v1.net_param.input_dim) == [2, 3, 115, 115]
    assert all(len(lp.blobs) == 0 for lp in v1.net_param.layers)
    assert v1.net_param.layers[0].type == caffe_pb2.V1LayerParameter.CONVOLUTION
    assert list(v1.net_param.layers[0].blobs_lr) == [1, 2]
    compared = 0
    for layer in v1.layers:
        reference = v2[layer.name]
        assert layer.type == reference.type
        assert len(layer.blobs) == len(reference.blobs)
        for i, blob in enumerate(layer.blobs):
            assert layer.legacy[i] and blob.ndim == 4
            target = reference.blobs[i]
            assert legacy_shape_matches(blob.shape, target.shape)
            assert np.array_equal(layer.blob_for(i, target.shape), target)
            compared += 1
    assert compared == 16
    fc6 = v1.by_name()["fc6"]
    assert fc6.blobs[0].shape == (1, 1, 64, 144) and fc6.blobs[1].shape == (1, 1, 1, 64)


def test_legacy_shape_rule_and_blob_for():
    assert legacy_shape_matches((12, 3, 11, 11), (12, 3, 11, 11))
    assert legacy_shape_matches((1, 1, 1, 12), (12,))
    assert legacy_shape_matches((1, 1, 1, 12), (1, 12))
    assert not legacy_shape_matches((1, 1, 1, 12), (12, 1))
    assert not legacy_shape_matches((1, 1, 1, 12), (1, 1, 1, 1, 12))   # > 4 axes never
    assert not legacy_shape_matches((1, 12), (12,))                     # not a legacy 4-tuple
    layer = LayerWeights("ip", "InnerProduct", [np.zeros((1, 1, 3, 4), np.float32),
                                                np.zeros((3,), np.float32)], legacy=[True, False])
    assert layer.blob_for(0, (3, 4)).shape == (3, 4)
    with pytest.raises(WeightsMismatchError, match='layer "ip" blob 0'):
        layer.blob_for(0, (4, 3))
    with pytest.raises(WeightsMismatchError, match="blob 1"):
        layer.blob_for(1, (1, 3))          # non-legacy blobs must match exactly
    with pytest.raises(WeightsMismatchError, match="no blob 2"):
        layer.blob_for(2, (3,))


def test_v1_type_map_covers_every_v1_enum_value():
    names = caffe_pb2.V1LayerParameter.LayerType.keys()
    values = {caffe_pb2.V1LayerParameter.LayerType.Value(n) for n in names}
    assert values == set(V1_LAYER_TYPES)
    assert V1_LAYER_TYPES[caffe_pb2.V1LayerParameter.SOFTMAX_LOSS] == "SoftmaxWithLoss"
    assert V1_LAYER_TYPES[caffe_pb2.V1LayerParameter.DECONVOLUTION] == "Deconvolution"


def _random_layers(rng):
    return [
        LayerWeights("conv", "Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                             rng.standard_normal(4).astype(np.float32)]),
        LayerWeights("relu", "ReLU", []),
        LayerWeights("bn", "BatchNorm", [rng.random(4).astype(np.float32),
                                         rng.random(4).astype(np.float32),
                                         np.array([1.0], np.float32)]),
        LayerWeights("scalar", "Parameter", [np.array(2.5, np.float32)]),
        LayerWeights("empty", "Parameter", [np.zeros((0, 3), np.float32)]),
        LayerWeights("five_d", "Convolution", [rng.standard_normal((2, 1, 2, 3, 2))]),
        LayerWeights("legacy_ip", "InnerProduct",
                     [rng.standard_normal((1, 1, 5, 6)).astype(np.float32),
                      rng.standard_normal((1, 1, 1, 5)).astype(np.float32)], legacy=[True, True]),
    ]


def test_round_trip_v2_without_net_param(tmp_path):
    layers = _random_layers(np.random.default_rng(1))
    path = tmp_path / "w.caffemodel"
    write_caffemodel(path, layers, name="roundtrip")
    model = read_caffemodel(path)
    assert model.net_param.name == "roundtrip"
    assert [(l.name, l.type) for l in model.layers] == [(l.name, l.type) for l in layers]
    for got, want in zip(model.layers, layers):
        assert got.legacy == want.legacy
        for g, w in zip(got.blobs, want.blobs):
            assert g.dtype == np.float32 and g.shape == np.shape(w)
            assert np.array_equal(g, np.asarray(w, np.float32))
    # The protobuf library reads the same file the same way.
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    assert [lp.name for lp in net.layer] == [l.name for l in layers]
    conv = net.layer[0].blobs[0]
    assert list(conv.shape.dim) == [4, 3, 3, 3]
    assert np.array_equal(np.array(conv.data, np.float32).reshape(4, 3, 3, 3), layers[0].blobs[0])
    scalar = net.layer[3].blobs[0]
    assert scalar.HasField("shape") and list(scalar.shape.dim) == [] and list(scalar.data) == [2.5]
    legacy = net.layer[6].blobs[0]
    assert (legacy.num, legacy.channels, legacy.height, legacy.width) == (1, 1, 5, 6)
    assert not legacy.HasField("shape")


def test_round_trip_preserves_special_float_bits(tmp_path):
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -3.4028235e38, 1.0],
                       np.float32)
    special = np.concatenate([special, np.frombuffer(struct.pack("<I", 0x7FC12345), np.float32)])
    path = tmp_path / "w.caffemodel"
    write_caffemodel(path, [LayerWeights("p", "Parameter", [special])])
    back = read_caffemodel(path).layers[0].blobs[0]
    assert np.array_equal(back.view(np.uint32), special.view(np.uint32))


def test_write_with_net_param_follows_the_net(tmp_path):
    net = caffe_pb2.NetParameter(name="from_prototxt")
    net.input.append("data")
    data = net.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, 3, 8, 8])
    ip = net.layer.add(name="ip", type="InnerProduct", bottom=["data"], top=["ip"])
    ip.inner_product_param.num_output = 2
    ip.param.add(lr_mult=1)
    ip.include.add(phase=caffe_pb2.TEST)
    net.layer.add(name="prob", type="Softmax", bottom=["ip"], top=["prob"])
    weights = [LayerWeights("ip", "", [np.ones((2, 192), np.float32), np.zeros(2, np.float32)])]
    path = tmp_path / "w.caffemodel"
    write_caffemodel(path, weights, net_param=net)
    parsed = caffe_pb2.NetParameter()
    parsed.ParseFromString(path.read_bytes())
    assert parsed.name == "from_prototxt" and list(parsed.input) == ["data"]
    assert [lp.name for lp in parsed.layer] == ["data", "ip", "prob"]
    stripped = caffe_pb2.LayerParameter()
    stripped.CopyFrom(parsed.layer[1])
    stripped.ClearField("blobs")
    assert stripped == ip
    assert [list(b.shape.dim) for b in parsed.layer[1].blobs] == [[2, 192], [2]]
    # blobs sit where Caffe puts them: after param (6), before include (8)
    model = read_caffemodel(path)
    assert [layer.type for layer in model.layers] == ["Input", "InnerProduct", "Softmax"]

    with pytest.raises(ValueError, match="does not have: nope"):
        write_caffemodel(tmp_path / "x.caffemodel", [LayerWeights("nope", "", [])], net_param=net)
    v1 = caffe_pb2.NetParameter()
    v1.layers.add(name="old")
    with pytest.raises(ValueError, match="V1"):
        write_caffemodel(tmp_path / "x.caffemodel", [], net_param=v1)
    assert not (tmp_path / "x.caffemodel").exists()


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "w.caffemodel"
    with pytest.raises(ValueError, match="blob 1 is missing"):
        write_caffemodel(path, [LayerWeights("a", "", [np.zeros(2, np.float32), None])])
    assert os.listdir(tmp_path) == []


def _net_with_raw_blob(blob_payload: bytes, v1: bool = False) -> bytes:
    """A NetParameter with one layer whose single blob is the given raw BlobProto bytes."""
    if v1:
        layer = (len_field(4, b"raw") + tag(5, 0) + varint(caffe_pb2.V1LayerParameter.INNER_PRODUCT)
                 + len_field(6, blob_payload))
        return len_field(2, layer)
    layer = len_field(1, b"raw") + len_field(2, b"InnerProduct") + len_field(7, blob_payload)
    return len_field(1, b"net") + len_field(100, layer)


def _reference(blob_payload: bytes):
    """What the protobuf library makes of the same BlobProto bytes."""
    blob = caffe_pb2.BlobProto()
    blob.ParseFromString(blob_payload)
    return blob


def test_unpacked_floats_and_dims(tmp_path):
    values = np.random.default_rng(2).standard_normal(6).astype(np.float32)
    # data as unpacked fixed32 fields, one tag byte (0x2d) per value, split around a
    # packed chunk; dims as unpacked varints.
    payload = (b"".join(tag(5, 5) + v.tobytes() for v in values[:2])
               + len_field(5, values[2:4].tobytes())
               + b"".join(tag(5, 5) + v.tobytes() for v in values[4:])
               + len_field(7, tag(1, 0) + varint(2) + tag(1, 0) + varint(3)))
    ref = _reference(payload)
    assert list(ref.shape.dim) == [2, 3]
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_net_with_raw_blob(payload))
    blob = read_caffemodel(path).layers[0].blobs[0]
    assert blob.shape == (2, 3)
    assert np.array_equal(blob.ravel(), np.array(ref.data, np.float32))
    assert np.array_equal(blob.ravel(), values)


def test_long_unpacked_run(tmp_path):
    values = np.arange(3000, dtype=np.float32)
    payload = (b"".join(tag(5, 5) + v.tobytes() for v in values)
               + len_field(7, len_field(1, varint(3000))))
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_net_with_raw_blob(payload))
    assert np.array_equal(read_caffemodel(path).layers[0].blobs[0], values)


def test_double_data_and_diff(tmp_path):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 2])
    blob.double_data.extend([1.0 / 3, 2.0, -1e-300, 4.0])
    blob.diff.extend([0.5, 0.25, 0.125, 1.0])
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_net_with_raw_blob(blob.SerializeToString()))
    layer = read_caffemodel(path).layers[0]
    assert layer.blobs[0].dtype == np.float64
    assert np.array_equal(layer.blobs[0].ravel(), np.array(blob.double_data))
    assert layer.diffs is None
    with_diff = read_caffemodel(path, with_diff=True).layers[0]
    assert np.array_equal(with_diff.diffs[0], np.array(blob.diff, np.float32).reshape(2, 2))
    # double_data wins over data when both exist (Blob::FromProto).
    blob.data.extend([9, 9, 9, 9])
    path.write_bytes(_net_with_raw_blob(blob.SerializeToString()))
    assert read_caffemodel(path).layers[0].blobs[0][0, 0] == 1.0 / 3


def test_legacy_dims_win_over_shape_and_v1_types(tmp_path):
    blob = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=3)
    blob.shape.dim.extend([6])
    blob.data.extend(range(6))
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_net_with_raw_blob(blob.SerializeToString(), v1=True))
    model = read_caffemodel(path)
    layer = model.layers[0]
    assert model.is_v1 and layer.type == "InnerProduct" and layer.name == "raw"
    assert layer.legacy == [True] and layer.blobs[0].shape == (1, 1, 2, 3)


def test_v0_nested_layers(tmp_path):
    net = caffe_pb2.NetParameter(name="v0net")
    net.input.append("data")
    conv = net.layers.add(bottom=["data"], top=["conv1"])
    conv.layer.name = "conv1"
    conv.layer.type = "conv"
    conv.layer.num_output = 2
    w = conv.layer.blobs.add(num=2, channels=1, height=1, width=1)
    w.data.extend([1.5, -2.5])
    pad = net.layers.add(bottom=["conv1"], top=["pad1"])
    pad.layer.name = "pad1"
    pad.layer.type = "padding"
    pad.layer.pad = 1
    fc = net.layers.add(bottom=["pad1"], top=["fc"])
    fc.layer.name = "fc"
    fc.layer.type = "innerproduct"
    fc.layer.blobs.add(num=1, channels=1, height=1, width=2).data.extend([3, 4])
    path = tmp_path / "v0.caffemodel"
    path.write_bytes(net.SerializeToString())
    model = read_caffemodel(path)
    assert model.is_v1 and model.has_v0_layers and model.has_legacy_shapes
    assert [(l.name, l.type) for l in model.layers] == [("conv1", "Convolution"),
                                                         ("fc", "InnerProduct")]
    assert np.array_equal(model.layers[0].blob_for(0, (2, 1, 1, 1)).ravel(), [1.5, -2.5])
    assert np.array_equal(model.layers[1].blob_for(0, (1, 2)), [[3, 4]])
    # the raw structure keeps all three V0 layers, blobs stripped, other fields intact
    assert len(model.net_param.layers) == 3
    assert model.net_param.layers[0].layer.num_output == 2
    assert len(model.net_param.layers[0].layer.blobs) == 0
    assert model.net_param.layers[1].layer.pad == 1


def _top_level_ends(data: bytes):
    reader = WireReader(data, "<golden>")
    ends = []
    for _ in reader.fields():
        ends.append(reader.pos)
    return ends


def test_truncated_files_raise_with_offset(tmp_path):
    source = os.path.join(GOLDEN, "layers_basic", "weights.caffemodel")
    data = open(source, "rb").read()
    full = read_caffemodel(source)
    boundaries = set(_top_level_ends(data))
    cuts = sorted(set(range(1, len(data), 97)) | {1, 2, 3, len(data) - 1, len(data) - 5}
                  | {b + 1 for b in boundaries if b + 1 < len(data)}
                  | {b - 1 for b in boundaries})
    path = tmp_path / "cut.caffemodel"
    raised = 0
    for cut in cuts:
        path.write_bytes(data[:cut])
        if cut in boundaries:
            # Cut exactly between two top-level fields: a valid shorter NetParameter.
            prefix = read_caffemodel(path)
            assert [l.name for l in prefix.layers] == [l.name for l in full.layers][:len(prefix.layers)]
            continue
        with pytest.raises(WeightsFormatError) as info:
            read_caffemodel(path)
        assert info.value.path == str(path)
        assert info.value.offset is not None and 0 <= info.value.offset <= cut
        assert f"at byte {info.value.offset}" in str(info.value)
        raised += 1
    assert raised >= 200


def test_corrupt_bytes_raise_with_offset(tmp_path):
    source = os.path.join(GOLDEN, "layers_basic", "weights.caffemodel")
    data = bytearray(open(source, "rb").read())
    reader = WireReader(bytes(data), "<golden>")
    fields = list(reader.fields())
    path = tmp_path / "bad.caffemodel"

    # 1. a layer length pointing past the end of the file: the last layer with a
    #    2-byte length gets length 16383 (0xff 0x7f), more than the bytes left.
    layer = [f for f in fields if f.number == 100 and f.start - f.offset == 4][-1]
    length_at = layer.offset + 2
    assert len(data) - layer.start < 16383
    bad = bytearray(data)
    bad[length_at:length_at + 2] = b"\xff\x7f"
    path.write_bytes(bytes(bad))
    with pytest.raises(WeightsFormatError, match=f"at byte {length_at}: expected field 100 of "
                                                 f"16383 bytes"):
        read_caffemodel(path)

    # 2. an invalid wire type (7) in the first tag
    bad = bytearray(data)
    bad[0] = (bad[0] & ~7) | 7
    path.write_bytes(bytes(bad))
    with pytest.raises(WeightsFormatError, match="at byte 0: expected a field tag with a valid wire"):
        read_caffemodel(path)

    # 3. an endless varint
    path.write_bytes(b"\x08" + b"\xff" * 12)
    with pytest.raises(WeightsFormatError, match="at byte 1: expected .* at most 10 bytes"):
        read_caffemodel(path)

    # 4. a blob whose shape does not match its number of values
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend(range(5))
    path.write_bytes(_net_with_raw_blob(blob.SerializeToString()))
    with pytest.raises(WeightsFormatError, match=r"\(2, 3\) \(found 5\)"):
        read_caffemodel(path)

    # 5. packed floats whose byte length is not a multiple of 4
    payload = len_field(5, b"\x00" * 7) + len_field(7, len_field(1, varint(2)))
    path.write_bytes(_net_with_raw_blob(payload))
    with pytest.raises(WeightsFormatError, match="whole number of 4-byte values"):
        read_caffemodel(path)

    # 6. a known field with the wrong wire type (layer as a varint)
    path.write_bytes(tag(100, 0) + varint(5))
    with pytest.raises(WeightsFormatError, match="NetParameter.layer"):
        read_caffemodel(path)

    # 7. a layer parameter the protobuf schema cannot decode (bad nested length)
    layer_bytes = len_field(1, b"x") + tag(106, 2) + varint(3) + b"\x08"
    path.write_bytes(len_field(100, layer_bytes))
    with pytest.raises(WeightsFormatError):
        read_caffemodel(path)


def test_empty_caffemodel_is_an_empty_net_that_loads_into_a_net_without_weights(tmp_path):
    """Caffe parses a 0-byte file as an empty NetParameter; CopyTrainedLayersFrom copies nothing."""
    import caffe_compat as caffe
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    model = read_caffemodel(empty)
    assert model.layers == [] and model.net_param == caffe_pb2.NetParameter()
    proto = tmp_path / "relu.prototxt"
    proto.write_text('input: "data" input_shape { dim: 1 dim: 2 }\n'
                     'layer { name: "relu" type: "ReLU" bottom: "data" top: "out" }\n')
    net = caffe.Net(str(proto), str(empty), caffe.TEST)
    net.blobs["data"].data[...] = [[-1.0, 2.0]]
    np.testing.assert_array_equal(net.forward()["out"], [[0.0, 2.0]])


def test_writer_output_loads_in_opencv_bit_for_bit(tmp_path):
    cv2 = pytest.importorskip("cv2")
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text('''name: "cvcheck"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
        inner_product_param { num_output: 5 } }
layer { name: "prelu" type: "PReLU" bottom: "fc" top: "fc" }
''')
    rng = np.random.default_rng(3)
    conv_w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    conv_w.flat[:4] = [-0.0, 1e-45, 3.4028235e38, -1.5]
    layers = [
        LayerWeights("conv1", "Convolution", [conv_w, rng.standard_normal(4).astype(np.float32)]),
        LayerWeights("relu1", "ReLU", []),
        LayerWeights("bn1", "BatchNorm", [rng.random(4).astype(np.float32),
                                          rng.random(4).astype(np.float32) + 1,
                                          np.array([1.0], np.float32)]),
        LayerWeights("scale1", "Scale", [rng.standard_normal(4).astype(np.float32),
                                         rng.standard_normal(4).astype(np.float32)]),
        LayerWeights("fc", "InnerProduct", [rng.standard_normal((5, 144)).astype(np.float32),
                                            rng.standard_normal(5).astype(np.float32)]),
        LayerWeights("prelu", "PReLU", [rng.standard_normal(5).astype(np.float32)]),
    ]
    caffemodel = tmp_path / "w.caffemodel"
    write_caffemodel(caffemodel, layers, name="cvcheck")
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    checked = 0
    for layer in layers:
        for i, blob in enumerate(layer.blobs):
            param = net.getParam(layer.name, i)
            # OpenCV keeps 1-d blobs as (n, 1) or (1, n) matrices; values must be identical.
            assert param.dtype == np.float32 and param.size == blob.size
            assert np.array_equal(param.reshape(blob.shape).view(np.uint32), blob.view(np.uint32))
            checked += 1
    assert checked == 10
