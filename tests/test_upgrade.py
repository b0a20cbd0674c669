"""Upgrading V0 / V1 / legacy-input / old-BatchNorm nets and old solvers exactly as
Caffe's upgrade_proto.cpp does, from prototxt and from binary caffemodels."""
import json
import os

import numpy as np
import pytest

from caffe_compat.cli.main import main as cli_main
from caffe_compat.errors import PrototxtError
from caffe_compat.formats.prototxt import format_text, parse_text, read_net
from caffe_compat.formats.solver_files import read_solver, resolve_path
from caffe_compat.formats.upgrade import (
    LayerOrigins, NetUpgradeError, UpgradeWarning, net_needs_upgrade, upgrade_net,
    upgrade_net_as_needed, upgrade_solver, upgrade_v0_net, v1_layer_type_name)
from caffe_compat.proto import caffe_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "prototxt")
GOLDEN = os.path.join(HERE, "golden")
V1 = caffe_pb2.V1LayerParameter


def fixture(name):
    return os.path.join(DATA, name)


def diff_text(a, b):
    import difflib
    return "".join(difflib.unified_diff(format_text(a).splitlines(True),
                                        format_text(b).splitlines(True)))


# ---------------------------------------------------------------------------
# The same net in three formats
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("legacy, current", [
    ("v0_deploy.prototxt", "v2_deploy.prototxt"),
    ("v1_deploy.prototxt", "v2_deploy.prototxt"),
    ("v0_train.prototxt", "v2_train.prototxt"),
    ("v1_train_val.prototxt", "v2_train_val.prototxt"),
])
def test_legacy_formats_upgrade_to_the_v2_file(legacy, current):
    old, new = read_net(fixture(legacy)), read_net(fixture(current))
    assert old.param == new.param, diff_text(new.param, old.param)
    assert new.upgrades == []


def test_v0_upgrade_steps_and_lines():
    net = read_net(fixture("v0_deploy.prototxt"))
    assert net.upgrades == ["V0->V1", "V1->V2", "input fields"]
    # Input layer -> line of `input:`; the padding layer (line 9) is folded into conv1 (18).
    assert net.layer_lines == [4, 18, 43, 51, 62, 73, 85, 94]
    conv = net.param.layer[1]
    assert list(conv.bottom) == ["data"] and list(conv.convolution_param.pad) == [2]


def test_v1_upgrade_params_and_data_transform():
    net = read_net(fixture("v1_train_val.prototxt"))
    assert net.upgrades == ["data transform fields", "V1->V2"]
    layers = {(l.name, i): l for i, l in enumerate(net.param.layer)}
    train_data, test_data = layers[("data", 0)], layers[("data", 1)]
    assert not train_data.data_param.HasField("scale")
    assert train_data.transform_param.scale == np.float32(0.0078125)
    assert train_data.transform_param.mean_file == "mean.binaryproto"
    # Caffe gives every data layer a (possibly empty) transform_param.
    assert test_data.HasField("transform_param") and not test_data.transform_param.ListFields()
    conv_a, conv_b = layers[("conv_a", 4)], layers[("conv_b", 5)]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv_a.param] == \
        [("shared_w", 1, 1), ("shared_b", 2, 0)]
    assert conv_a.param[0].share_mode == caffe_pb2.ParamSpec.PERMISSIVE
    assert not conv_a.param[1].HasField("share_mode")
    assert not conv_b.param[0].HasField("decay_mult")        # no weight_decay given
    assert layers[("aux", 10)].loss_weight == [0.5]


@pytest.mark.parametrize("v1_type, name", [
    (V1.NONE, ""), (V1.ABSVAL, "AbsVal"), (V1.CONVOLUTION, "Convolution"),
    (V1.DECONVOLUTION, "Deconvolution"), (V1.SPLIT, "Split"), (V1.IMAGE_DATA, "ImageData"),
    (V1.SOFTMAX_LOSS, "SoftmaxWithLoss"), (V1.IM2COL, "Im2col"), (V1.TANH, "TanH"),
    (V1.HDF5_DATA, "HDF5Data"), (V1.HDF5_OUTPUT, "HDF5Output"), (V1.BNLL, "BNLL"),
    (V1.MULTINOMIAL_LOGISTIC_LOSS, "MultinomialLogisticLoss"), (V1.MVN, "MVN"),
    (V1.SIGMOID_CROSS_ENTROPY_LOSS, "SigmoidCrossEntropyLoss"), (V1.DUMMY_DATA, "DummyData"),
    (V1.WINDOW_DATA, "WindowData"), (V1.MEMORY_DATA, "MemoryData"), (V1.SILENCE, "Silence"),
    (V1.THRESHOLD, "Threshold"), (V1.INNER_PRODUCT, "InnerProduct"), (V1.LRN, "LRN"),
])
def test_v1_type_names_are_caffes(v1_type, name):
    assert v1_layer_type_name(v1_type) == name


def test_every_v1_enum_value_has_a_type_name():
    for value in V1.LayerType.values():
        assert isinstance(v1_layer_type_name(value), str)


def test_v1_copies_every_layer_specific_param():
    v1 = V1(name="x", type=V1.THRESHOLD, bottom=["a"], top=["b"])
    v1.threshold_param.threshold = 0.3
    v1.window_data_param.crop_mode = "square"
    v1.hinge_loss_param.norm = caffe_pb2.HingeLossParameter.L2
    v1.include.add(phase=caffe_pb2.TEST, min_level=1)
    v1.exclude.add(stage=["s"])
    v1.blobs.add(data=[1.0, 2.0])
    net = caffe_pb2.NetParameter(layers=[v1])
    assert upgrade_net(net)
    layer = net.layer[0]
    assert layer.type == "Threshold" and layer.threshold_param.threshold == np.float32(0.3)
    assert layer.window_data_param.crop_mode == "square"
    assert layer.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2
    assert layer.include[0].min_level == 1 and list(layer.exclude[0].stage) == ["s"]
    assert list(layer.blobs[0].data) == [1.0, 2.0]


# ---------------------------------------------------------------------------
# V0 details
# ---------------------------------------------------------------------------

def v0_net(text):
    return parse_text(text, caffe_pb2.NetParameter())


def test_v0_routes_data_layer_settings():
    net = v0_net("""
      layers { layer { name: "img" type: "images" source: "list.txt" batchsize: 5
                       shuffle_images: true new_height: 20 new_width: 30 rand_skip: 2
                       cropsize: 16 mirror: true scale: 0.5 meanfile: "m" } top: "x" }
      layers { layer { name: "win" type: "window_data" source: "w.txt" batchsize: 8
                       det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
                       det_context_pad: 16 det_crop_mode: "square" } top: "y" }
      layers { layer { name: "h5" type: "hdf5_output" hdf5_output_param { file_name: "o.h5" } }
               bottom: "x" }
      layers { layer { name: "ig" type: "infogain_loss" source: "H.binaryproto" }
               bottom: "x" bottom: "y" }
    """)
    upgrade_net(net)
    img, win, h5, ig = net.layer
    assert img.type == "ImageData"
    idp = img.image_data_param
    assert (idp.source, idp.batch_size, idp.shuffle, idp.new_height, idp.new_width,
            idp.rand_skip) == ("list.txt", 5, True, 20, 30, 2)
    tp = img.transform_param
    assert (tp.crop_size, tp.mirror, tp.scale, tp.mean_file) == (16, True, 0.5, "m")
    wdp = win.window_data_param
    assert win.type == "WindowData"
    assert (wdp.source, wdp.batch_size, wdp.context_pad, wdp.crop_mode) == \
        ("w.txt", 8, 16, "square")
    assert (wdp.fg_threshold, wdp.bg_threshold, wdp.fg_fraction) == \
        tuple(np.float32([0.6, 0.4, 0.3]))
    assert h5.type == "HDF5Output" and h5.hdf5_output_param.file_name == "o.h5"
    assert ig.type == "InfogainLoss" and ig.infogain_loss_param.source == "H.binaryproto"


def test_v0_setting_on_wrong_layer_type_is_dropped_with_a_warning():
    text = ('name: "n"\nlayers {\n  layer { name: "r" type: "relu" num_output: 3 }\n'
            '  bottom: "x" top: "x"\n}\ninput: "x"\n')
    with pytest.warns(UpgradeWarning, match='Unknown parameter num_output for layer type "relu"'):
        net = read_net(text)
    assert [f.name for f, _ in net.param.layer[0].ListFields()] == ["name", "type", "bottom", "top"]
    assert net.warnings and net.warnings[0].startswith("<string>:2: Unknown parameter num_output")
    assert net.param.layer[0].name == "r"
    assert [l.type for l in net.param.layer] == ["ReLU"]     # input without dims: only removed


def test_v0_unknown_type_is_an_error_with_the_layer_line():
    text = ('input: "x"\nlayers {\n  bottom: "x"\n}\nlayers {\n'
            '  layer { name: "q" type: "quantum" }\n}\n')
    with pytest.raises(PrototxtError, match='unknown V0 layer type "quantum"') as info:
        read_net(text)
    assert info.value.line == 5


def test_v0_padding_before_a_non_conv_layer_is_an_error():
    text = ('input: "x"\n'
            'layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "p" }\n'
            'layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }\n')
    with pytest.raises(PrototxtError, match="non-convolutional / non-pooling") as info:
        read_net(text)
    assert info.value.line == 3


def test_v0_unknown_bottom_blob_is_an_error():
    with pytest.raises(NetUpgradeError, match='unknown blob input "nope" to layer "c"'):
        upgrade_net(v0_net('layers { layer { name: "c" type: "conv" } bottom: "nope" }'))


def test_v0_padding_into_pooling_and_net_fields_kept_as_caffe_keeps_them():
    net = v0_net("""
      name: "n" force_backward: true debug_info: true input: "x"
      input_dim: 1 input_dim: 1 input_dim: 5 input_dim: 5
      layers { layer { name: "p" type: "padding" pad: 3 } bottom: "x" top: "p" }
      layers { layer { name: "pool" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
               bottom: "p" top: "y" }
    """)
    origins = LayerOrigins.blank(net)
    origins.layers = ["p-origin", "pool-origin"]
    upgrade_v0_net(net, origins)
    assert [l.name for l in net.layers] == ["pool"]
    assert not any(l.HasField("layer") for l in net.layers)
    assert origins.layers == ["pool-origin"]
    pool = net.layers[0]
    assert (pool.type, list(pool.bottom), pool.pooling_param.pad) == (V1.POOLING, ["x"], 3)
    assert pool.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    # UpgradeV0Net keeps only name, layers, input, input_dim and force_backward.
    assert net.force_backward and not net.HasField("debug_info") and net.name == "n"


# ---------------------------------------------------------------------------
# input fields, BatchNorm, both layer lists
# ---------------------------------------------------------------------------

def test_input_shape_header_becomes_a_first_input_layer():
    net = read_net(fixture("v2_input_shape.prototxt"))
    first = net.param.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data", "im_info"])
    assert [list(s.dim) for s in first.input_param.shape] == [[1, 3, 16, 24], [1, 3]]
    assert net.layer_lines == [3, 15]
    assert not net.param.input and not net.param.input_shape


def test_input_without_shape_is_only_removed():
    net = caffe_pb2.NetParameter(input=["data"])
    net.layer.add(name="r", type="ReLU")
    assert upgrade_net_as_needed(net) == ["input fields"]
    assert [l.name for l in net.layer] == ["r"] and not net.input


def test_too_few_input_dims_is_an_error():
    with pytest.raises(PrototxtError, match="need 8 input_dim values") as info:
        read_net('name: "n"\ninput: "a"\ninput: "b"\ninput_dim: [1, 2, 3, 4]\n')
    assert info.value.line == 2


def test_old_batchnorm_params_get_zero_lr_and_decay():
    net = read_net(fixture("v2_batchnorm.prototxt"))
    assert net.upgrades == ["BatchNorm params"]
    old, shared, new, two = net.param.layer[1:]
    assert [(p.lr_mult, p.decay_mult) for p in old.param] == [(0, 0)] * 3
    assert all(p.HasField("decay_mult") for p in old.param)
    assert [(p.name, p.lr_mult, p.decay_mult) for p in shared.param] == \
        [("m", 0, 0), ("v", 0, 0), ("f", 0, 0)]
    assert len(new.param) == 0
    assert [(p.lr_mult, p.HasField("decay_mult")) for p in two.param] == [(0, False)] * 2
    assert old.batch_norm_param.use_global_stats


def test_layer_and_layers_together_are_refused():
    with pytest.raises(PrototxtError, match="both 'layer' and 'layers'") as info:
        read_net('layer { name: "a" }\n\nlayers { name: "b" type: RELU }\n')
    assert info.value.line == 3


def test_current_nets_are_left_alone():
    net = read_net(fixture("v2_deploy.prototxt")).param
    before = net.SerializeToString()
    assert not net_needs_upgrade(net) and not upgrade_net(net)
    assert net.SerializeToString() == before


# ---------------------------------------------------------------------------
# Golden: a real V1 net and a real V1 caffemodel, as Caffe upgraded them
# ---------------------------------------------------------------------------

def golden_meta(name):
    with np.load(os.path.join(GOLDEN, name, "golden.npz")) as z:
        return json.loads(str(z["meta"]))


def test_caffenet_tiny_v1_prototxt_upgrades_like_caffe():
    net = read_net(os.path.join(GOLDEN, "caffenet_tiny", "net.prototxt"))
    ours = [{"name": l.name, "type": l.type, "bottoms": list(l.bottom), "tops": list(l.top)}
            for l in net.param.layer]
    caffes = [l for l in golden_meta("caffenet_tiny")["layers"] if l["type"] != "Split"]
    assert ours == caffes
    assert net.layer_lines[0] == 8                      # the `input: "data"` line
    conv1 = net.param.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv1.param] == [(1, 1), (2, 0)]


def test_caffenet_tiny_v1_caffemodel_upgrades_to_caffes_v2_caffemodel():
    def load(name):
        net = caffe_pb2.NetParameter()
        with open(os.path.join(GOLDEN, "caffenet_tiny", name), "rb") as fh:
            net.ParseFromString(fh.read())
        return net
    v1, v2 = load("weights_v1.caffemodel"), load("weights.caffemodel")
    assert upgrade_net_as_needed(v1) == ["V1->V2", "input fields"]
    assert len(v1.layer) == len(v2.layer) == 24
    for ours, caffes in zip(v1.layer, v2.layer):
        # Same weights (V1 blobs keep their legacy 4-D num/channels/height/width).
        assert [list(b.data) for b in ours.blobs] == [list(b.data) for b in caffes.blobs]
        for layer in (ours, caffes):
            layer.ClearField("blobs")
        caffes.ClearField("phase")                      # Net::ToProto records the phase
        assert ours == caffes, diff_text(caffes, ours)


# ---------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("enum, name", [
    ("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
    ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam"),
])
def test_solver_type_enum_becomes_type_string(enum, name):
    solver = caffe_pb2.SolverParameter(solver_type=caffe_pb2.SolverParameter.SolverType.Value(enum))
    assert upgrade_solver(solver)
    assert solver.type == name and not solver.HasField("solver_type")
    assert not upgrade_solver(solver)


def test_solver_with_both_type_fields_is_refused():
    with pytest.raises(PrototxtError, match="cannot be both specified"):
        read_solver('type: "Adam"\nsolver_type: ADAM\n')


def test_read_solver_file(tmp_path, monkeypatch):
    path = fixture("legacy_solver.prototxt")
    solver = read_solver(path)
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")
    assert solver.net == "v1_train_val.prototxt"          # kept as written
    assert list(solver.test_iter) == [10] and solver.stepsize == 1000
    assert solver.snapshot_prefix == os.path.join(DATA, "legacy_solver")
    # Caffe opens paths relative to the CWD; resolve_path falls back to the solver's folder.
    monkeypatch.chdir(tmp_path)
    assert resolve_path(path, solver.net) == os.path.join(DATA, "v1_train_val.prototxt")
    (tmp_path / "v1_train_val.prototxt").write_text("")
    assert resolve_path(path, solver.net) == "v1_train_val.prototxt"
    assert resolve_path(path, "missing.prototxt") == "missing.prototxt"


def test_snapshot_prefix_directory_gets_the_solver_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snaps").mkdir()
    (tmp_path / "my_solver.prototxt").write_text('snapshot_prefix: "snaps"\n')
    (tmp_path / "other_solver.prototxt").write_text('snapshot_prefix: "snaps/run1"\n')
    def prefix_of(source):     # these files have no lr_policy: only the upgrade is read
        solver = read_solver(source, check=False)
        return solver.snapshot_prefix if solver.HasField("snapshot_prefix") else None
    assert prefix_of("my_solver.prototxt") == os.path.join("snaps", "my_solver")
    assert prefix_of("other_solver.prototxt") == "snaps/run1"
    assert prefix_of("base_lr: 1") is None     # text: no file name


# ---------------------------------------------------------------------------
# caffe-compat upgrade
# ---------------------------------------------------------------------------

def test_cli_upgrades_text(tmp_path, capsys):
    out = tmp_path / "out.prototxt"
    assert cli_main(["upgrade", fixture("v0_deploy.prototxt"), str(out)]) == 0
    expected = read_net(fixture("v2_deploy.prototxt")).param
    assert out.read_text() == format_text(expected)
    assert "V0->V1, V1->V2, input fields" in capsys.readouterr().err


def test_cli_on_current_file_notes_it_and_still_writes(tmp_path, capsys):
    out = tmp_path / "out.prototxt"
    assert cli_main(["upgrade", fixture("v2_train.prototxt"), str(out)]) == 0
    assert "File already in latest proto format" in capsys.readouterr().err
    assert read_net(str(out)).param == read_net(fixture("v2_train.prototxt")).param


def test_cli_reports_dropped_settings_with_status_1(tmp_path, capsys):
    src = tmp_path / "v0.prototxt"
    src.write_text('input: "x"\nlayers {\n  layer { name: "r" type: "relu" group: 2 }\n'
                   '  bottom: "x" top: "x"\n}\n')
    assert cli_main(["upgrade", str(src), str(tmp_path / "o.prototxt")]) == 1
    assert f"{src}:2: Unknown parameter group" in capsys.readouterr().err


def test_cli_upgrades_binary(tmp_path):
    out = tmp_path / "v2.caffemodel"
    src = os.path.join(GOLDEN, "caffenet_tiny", "weights_v1.caffemodel")
    assert cli_main(["upgrade", "--binary", src, str(out)]) == 0
    net = caffe_pb2.NetParameter()
    net.ParseFromString(out.read_bytes())
    assert not net.layers and not net.input
    assert [l.type for l in net.layer[:3]] == ["Input", "Convolution", "ReLU"]
    assert len(net.layer[1].blobs) == 2


def test_cli_binary_corrupt_input_is_a_clean_error(tmp_path, capsys):
    src = tmp_path / "bad.caffemodel"
    src.write_bytes(b"\x12\xff\xff\xff\x0f")
    assert cli_main(["upgrade", "--binary", str(src), str(tmp_path / "o")]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
