"""Checks that caffe_compat/proto/caffe.proto matches BVLC Caffe's wire format.

Field numbers and defaults are facts of the Caffe file format: a wrong number
silently drops or misreads data in .caffemodel / .prototxt files.
"""

import importlib
import importlib.util
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_DIR = os.path.join(ROOT, "caffe_compat", "proto")
UPSTREAM_SPEC = os.path.normpath(
    os.path.join(ROOT, "..", "shared", "corpus", "spec", "caffe.proto"))


def _load_caffe_pb2():
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    try:
        return importlib.import_module("caffe_compat.proto.caffe_pb2")
    except ImportError:
        # The parent package may import things that are not there yet;
        # load the generated module straight from its file.
        path = os.path.join(PROTO_DIR, "caffe_pb2.py")
        spec = importlib.util.spec_from_file_location("_caffe_pb2_direct", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


pb = _load_caffe_pb2()


def number(message, field):
    return message.DESCRIPTOR.fields_by_name[field].number


# ---------------------------------------------------------------------------
# Field numbers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("field, num", [
    ("name", 1), ("type", 2), ("bottom", 3), ("top", 4), ("loss_weight", 5),
    ("param", 6), ("blobs", 7), ("include", 8), ("exclude", 9), ("phase", 10),
    ("propagate_down", 11), ("transform_param", 100), ("loss_param", 101),
    ("accuracy_param", 102), ("argmax_param", 103), ("concat_param", 104),
    ("contrastive_loss_param", 105), ("convolution_param", 106),
    ("data_param", 107), ("dropout_param", 108), ("dummy_data_param", 109),
    ("eltwise_param", 110), ("exp_param", 111), ("hdf5_data_param", 112),
    ("hdf5_output_param", 113), ("hinge_loss_param", 114),
    ("image_data_param", 115), ("infogain_loss_param", 116),
    ("inner_product_param", 117), ("lrn_param", 118),
    ("memory_data_param", 119), ("mvn_param", 120), ("pooling_param", 121),
    ("power_param", 122), ("relu_param", 123), ("sigmoid_param", 124),
    ("softmax_param", 125), ("slice_param", 126), ("tanh_param", 127),
    ("threshold_param", 128), ("window_data_param", 129),
    ("python_param", 130), ("prelu_param", 131), ("spp_param", 132),
    ("reshape_param", 133), ("log_param", 134), ("flatten_param", 135),
    ("reduction_param", 136), ("embed_param", 137), ("tile_param", 138),
    ("batch_norm_param", 139), ("elu_param", 140), ("bias_param", 141),
    ("scale_param", 142), ("input_param", 143), ("crop_param", 144),
    ("parameter_param", 145), ("recurrent_param", 146),
    ("swish_param", 147), ("clip_param", 148),
])
def test_layer_parameter_numbers(field, num):
    assert number(pb.LayerParameter, field) == num


def test_convolution_parameter_numbers():
    expected = {
        "num_output": 1, "bias_term": 2, "pad": 3, "kernel_size": 4,
        "group": 5, "stride": 6, "weight_filler": 7, "bias_filler": 8,
        "pad_h": 9, "pad_w": 10, "kernel_h": 11, "kernel_w": 12,
        "stride_h": 13, "stride_w": 14, "engine": 15, "axis": 16,
        "force_nd_im2col": 17, "dilation": 18,
    }
    fields = pb.ConvolutionParameter.DESCRIPTOR.fields_by_name
    assert {k: v.number for k, v in fields.items()} == expected
    for name in ("pad", "kernel_size", "stride", "dilation"):
        assert fields[name].is_repeated


def test_pooling_parameter_numbers():
    assert number(pb.PoolingParameter, "pool") == 1
    assert number(pb.PoolingParameter, "kernel_size") == 2
    assert number(pb.PoolingParameter, "stride") == 3
    assert number(pb.PoolingParameter, "pad") == 4
    assert number(pb.PoolingParameter, "global_pooling") == 12
    assert number(pb.PoolingParameter, "round_mode") == 13
    assert pb.PoolingParameter.CEIL == 0
    assert pb.PoolingParameter.FLOOR == 1
    assert pb.PoolingParameter().round_mode == pb.PoolingParameter.CEIL


def test_net_parameter_numbers():
    assert number(pb.NetParameter, "name") == 1
    assert number(pb.NetParameter, "layers") == 2
    assert number(pb.NetParameter, "input") == 3
    assert number(pb.NetParameter, "input_dim") == 4
    assert number(pb.NetParameter, "force_backward") == 5
    assert number(pb.NetParameter, "state") == 6
    assert number(pb.NetParameter, "debug_info") == 7
    assert number(pb.NetParameter, "input_shape") == 8
    assert number(pb.NetParameter, "layer") == 100


def test_blob_proto_numbers():
    fields = pb.BlobProto.DESCRIPTOR.fields_by_name
    assert {k: v.number for k, v in fields.items()} == {
        "num": 1, "channels": 2, "height": 3, "width": 4, "data": 5,
        "diff": 6, "shape": 7, "double_data": 8, "double_diff": 9,
    }
    for name in ("data", "diff", "double_data", "double_diff"):
        assert fields[name].GetOptions().packed
    assert pb.BlobShape.DESCRIPTOR.fields_by_name["dim"].number == 1


def test_legacy_v1_layer():
    assert number(pb.V1LayerParameter, "layer") == 1
    assert number(pb.V1LayerParameter, "bottom") == 2
    assert number(pb.V1LayerParameter, "top") == 3
    assert number(pb.V1LayerParameter, "name") == 4
    assert number(pb.V1LayerParameter, "type") == 5
    assert number(pb.V1LayerParameter, "blobs") == 6
    assert number(pb.V1LayerParameter, "blobs_lr") == 7
    assert number(pb.V1LayerParameter, "weight_decay") == 8
    assert number(pb.V1LayerParameter, "convolution_param") == 10
    assert number(pb.V1LayerParameter, "pooling_param") == 19
    assert number(pb.V1LayerParameter, "param") == 1001
    assert number(pb.V1LayerParameter, "blob_share_mode") == 1002
    assert pb.V1LayerParameter.CONVOLUTION == 4
    assert pb.V1LayerParameter.POOLING == 17
    assert pb.V1LayerParameter.INNER_PRODUCT == 14
    assert pb.V1LayerParameter.DECONVOLUTION == 39
    assert pb.V1LayerParameter.SOFTMAX_LOSS == 21


def test_legacy_v0_layer():
    expected = {
        "name": 1, "type": 2, "num_output": 3, "biasterm": 4,
        "weight_filler": 5, "bias_filler": 6, "pad": 7, "kernelsize": 8,
        "group": 9, "stride": 10, "pool": 11, "dropout_ratio": 12,
        "local_size": 13, "alpha": 14, "beta": 15, "source": 16, "scale": 17,
        "meanfile": 18, "batchsize": 19, "cropsize": 20, "mirror": 21, "k": 22,
        "blobs": 50, "blobs_lr": 51, "weight_decay": 52, "rand_skip": 53,
        "det_fg_threshold": 54, "det_bg_threshold": 55, "det_fg_fraction": 56,
        "det_context_pad": 58, "det_crop_mode": 59, "new_num": 60,
        "new_channels": 61, "new_height": 62, "new_width": 63,
        "shuffle_images": 64, "concat_dim": 65, "hdf5_output_param": 1001,
    }
    fields = pb.V0LayerParameter.DESCRIPTOR.fields_by_name
    assert {k: v.number for k, v in fields.items()} == expected
    assert pb.V0LayerParameter().det_crop_mode == "warp"
    assert pb.V0LayerParameter().biasterm is True


def test_solver_parameter():
    assert number(pb.SolverParameter, "type") == 40
    assert number(pb.SolverParameter, "solver_type") == 30
    assert number(pb.SolverParameter, "net") == 24
    assert number(pb.SolverParameter, "base_lr") == 5
    assert number(pb.SolverParameter, "lr_policy") == 8
    assert number(pb.SolverParameter, "snapshot_format") == 37
    assert number(pb.SolverParameter, "layer_wise_reduce") == 41
    assert number(pb.SolverParameter, "weights") == 42
    s = pb.SolverParameter()
    assert s.type == "SGD"
    assert s.solver_type == pb.SolverParameter.SGD
    assert pb.SolverParameter.ADAM == 5
    assert s.solver_mode == pb.SolverParameter.GPU
    assert s.snapshot_format == pb.SolverParameter.BINARYPROTO
    assert s.regularization_type == "L2"
    assert s.random_seed == -1
    assert s.delta == pytest.approx(1e-8)
    assert s.momentum2 == pytest.approx(0.999)
    assert s.rms_decay == pytest.approx(0.99)
    assert s.clip_gradients == -1
    assert s.test_initialization is True
    assert s.snapshot_after_train is True
    assert s.layer_wise_reduce is True


def test_phase_and_state():
    assert pb.TRAIN == 0 and pb.TEST == 1
    assert pb.NetState().phase == pb.TEST


# ---------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------

def test_defaults():
    assert pb.LRNParameter().k == 1.0
    assert pb.LRNParameter().local_size == 5
    assert pb.LRNParameter().alpha == 1.0
    assert pb.LRNParameter().beta == pytest.approx(0.75)
    bn = pb.BatchNormParameter()
    assert bn.eps == pytest.approx(1e-5)
    assert bn.moving_average_fraction == pytest.approx(0.999)
    assert not bn.HasField("use_global_stats")
    conv = pb.ConvolutionParameter()
    assert conv.bias_term is True
    assert conv.group == 1
    assert conv.axis == 1
    assert pb.PoolingParameter().pool == pb.PoolingParameter.MAX
    assert pb.PoolingParameter().stride == 1
    assert pb.SoftmaxParameter().axis == 1
    assert pb.InnerProductParameter().axis == 1
    assert pb.InnerProductParameter().bias_term is True
    assert pb.CropParameter().axis == 2
    assert pb.LossParameter().normalization == pb.LossParameter.VALID
    assert pb.ConcatParameter().axis == 1
    assert pb.EltwiseParameter().operation == pb.EltwiseParameter.SUM
    assert pb.DropoutParameter().dropout_ratio == pytest.approx(0.5)
    assert pb.ScaleParameter().bias_term is False
    assert pb.FillerParameter().type == "constant"
    assert pb.FillerParameter().std == 1.0
    assert pb.FlattenParameter().end_axis == -1
    assert pb.ReshapeParameter().num_axes == -1
    assert pb.MVNParameter().eps == pytest.approx(1e-9)
    assert pb.ParamSpec().lr_mult == 1.0
    assert pb.DataParameter().backend == pb.DataParameter.LEVELDB
    assert pb.DataParameter().prefetch == 4
    assert pb.ImageDataParameter().batch_size == 1
    assert pb.ImageDataParameter().is_color is True
    assert pb.ReductionParameter().operation == pb.ReductionParameter.SUM
    assert pb.HingeLossParameter().norm == pb.HingeLossParameter.L1
    assert pb.SwishParameter().beta == 1.0
    assert pb.ExpParameter().base == -1.0
    assert pb.WindowDataParameter().crop_mode == "warp"


def test_clip_is_required():
    fields = pb.ClipParameter.DESCRIPTOR.fields_by_name
    assert fields["min"].number == 1 and fields["max"].number == 2
    assert not pb.ClipParameter().IsInitialized()


def test_text_and_wire_round_trip():
    from google.protobuf import text_format

    net = text_format.Parse(
        """
        name: "tiny"
        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
        layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
                pooling_param { pool: AVE kernel_size: 2 stride: 2
                                round_mode: FLOOR } }
        """,
        pb.NetParameter(),
    )
    again = pb.NetParameter.FromString(net.SerializeToString())
    assert again == net
    assert again.layer[1].convolution_param.kernel_size == [3]
    assert again.layer[2].pooling_param.round_mode == pb.PoolingParameter.FLOOR
    # Field 100 (layer) is a length-delimited field with tag (100 << 3) | 2.
    assert net.SerializeToString().startswith(b"\n\x04tiny\xa2\x06")


# ---------------------------------------------------------------------------
# Comparison with the upstream BVLC file, when the corpus provides it
# ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<open>\b(?P<kind>message|enum)\s+(?P<name>\w+)\s*\{)"
    r"|(?P<close>\})"
    r"|(?P<field>\b(?:optional|required|repeated)\s+[\w.]+\s+(?P<fname>\w+)"
    r"\s*=\s*(?P<fnum>\d+))"
    r"|(?P<value>\b(?P<vname>[A-Z_][A-Z0-9_]*)\s*=\s*(?P<vnum>-?\d+)\s*[;\[])"
)


def parse_proto(text):
    """Return ({msg: {field: num}}, {enum: {value: num}}) keyed by full name."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', text)
    messages, enums, stack = {}, {}, []
    for m in _TOKEN.finditer(text):
        if m.group("open"):
            full = ".".join([s[1] for s in stack] + [m.group("name")])
            stack.append((m.group("kind"), full.split(".")[-1], full))
            stack[-1] = (m.group("kind"), m.group("name"), full)
            target = messages if m.group("kind") == "message" else enums
            target.setdefault(full, {})
        elif m.group("close"):
            if stack:
                stack.pop()
        elif m.group("field") and stack and stack[-1][0] == "message":
            messages[stack[-1][2]][m.group("fname")] = int(m.group("fnum"))
        elif m.group("value") and stack and stack[-1][0] == "enum":
            enums[stack[-1][2]][m.group("vname")] = int(m.group("vnum"))
    return messages, enums


def ours():
    messages, enums = {}, {}

    def walk_enum(desc, prefix):
        enums[prefix + desc.name] = {v.name: v.number for v in desc.values}

    def walk(desc, prefix):
        full = prefix + desc.name
        messages[full] = {f.name: f.number for f in desc.fields}
        for e in desc.enum_types:
            walk_enum(e, full + ".")
        for nested in desc.nested_types:
            walk(nested, full + ".")

    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        walk(desc, "")
    for desc in pb.DESCRIPTOR.enum_types_by_name.values():
        walk_enum(desc, "")
    return messages, enums


def test_parser_on_our_own_file():
    with open(os.path.join(PROTO_DIR, "caffe.proto")) as handle:
        parsed = parse_proto(handle.read())
    assert parsed == ours()


def test_matches_upstream_spec():
    if not os.path.exists(UPSTREAM_SPEC):
        pytest.skip("upstream spec not available: %s" % UPSTREAM_SPEC)
    with open(UPSTREAM_SPEC) as handle:
        up_messages, up_enums = parse_proto(handle.read())
    our_messages, our_enums = ours()
    problems = []
    for msg, fields in sorted(up_messages.items()):
        mine = our_messages.get(msg)
        if mine is None:
            problems.append("missing message %s" % msg)
            continue
        for name, num in sorted(fields.items()):
            if mine.get(name) != num:
                problems.append("%s.%s: upstream %s, ours %s"
                                % (msg, name, num, mine.get(name)))
    for enum, values in sorted(up_enums.items()):
        mine = our_enums.get(enum)
        if mine is None:
            problems.append("missing enum %s" % enum)
            continue
        for name, num in sorted(values.items()):
            if mine.get(name) != num:
                problems.append("%s.%s: upstream %s, ours %s"
                                % (enum, name, num, mine.get(name)))
    assert not problems, "\n".join(problems)


def _serialized_descriptor(path):
    import ast

    with open(path) as handle:
        source = handle.read()
    match = re.search(r"AddSerializedFile\((b'.*?')\)\n", source)
    assert match, "no serialized descriptor in %s" % path
    return ast.literal_eval(match.group(1))


def test_generated_module_is_current():
    """caffe_pb2.py must be regenerated whenever caffe.proto changes."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        status = protoc.main([
            "protoc", "-I" + PROTO_DIR, "--python_out=" + out,
            os.path.join(PROTO_DIR, "caffe.proto"),
        ])
        assert status == 0
        fresh = _serialized_descriptor(os.path.join(out, "caffe_pb2.py"))
    committed = _serialized_descriptor(os.path.join(PROTO_DIR, "caffe_pb2.py"))
    assert fresh == committed, (
        "caffe_pb2.py is stale: run python -m caffe_compat.proto.regenerate")
