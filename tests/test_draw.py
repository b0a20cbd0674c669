"""caffe_compat.draw and ``caffe-compat draw``: pycaffe's draw.py graph and draw_net.py."""
import os
import re
import shutil

import pytest
from google.protobuf import text_format

from caffe_compat import draw
from caffe_compat.cli.main import main
from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

DATA = os.path.join(os.path.dirname(__file__), "data", "net_spec")
LENET = os.path.join(DATA, "lenet_auto_train.prototxt")
FCN = os.path.join(DATA, "voc_fcn8s_train.prototxt")
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz 'dot' is not installed")

NODE = re.compile(r'^\t(\S+) \[(.*)\]$')
EDGE = re.compile(r'^\t(\S+) -> (\S+) \[(.*)\]$')
ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ ]+)')


def attrs(text):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in ATTR.findall(text)}


def parse_dot(source):
    """(graph line, {node: attrs}, [(src, dst, label)]) of graphviz-package DOT text."""
    nodes, edges = {}, []
    for line in source.splitlines():
        edge = EDGE.match(line)
        if edge:
            edges.append((edge.group(1), edge.group(2), attrs(edge.group(3)).get("label")))
            continue
        node = NODE.match(line)
        if node and node.group(1) != "graph":
            nodes[node.group(1)] = attrs(node.group(2))
    return source.splitlines()[0], nodes, edges


def read(path):
    with open(path) as fh:
        return text_format.Parse(fh.read(), caffe_pb2.NetParameter())


def lenet():
    net = read(LENET)
    net.name = "LeNet"
    return net


def test_lenet_nodes_styles_and_edges():
    head, nodes, edges = parse_dot(draw.get_pydot_graph(lenet(), "LR").source)
    assert head == "digraph LeNet {"
    assert nodes["conv1_Convolution"] == {
        "label": r"conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0",
        "fillcolor": "#FF5050", "shape": "record", "style": "filled"}
    assert nodes["pool1_Pooling"]["label"] == r"pool1\n(Pooling MAX)\nkernel size: 2\nstride: 2\npad: 0"
    assert nodes["pool1_Pooling"]["fillcolor"] == "#FF9900"
    assert nodes["ip1_InnerProduct"]["fillcolor"] == "#CC33FF"
    assert nodes["data_Data"]["fillcolor"] == "#6495ED"
    assert nodes["loss_SoftmaxWithLoss"]["fillcolor"] == "#6495ED"
    # in-place ReLU: the light-green neuron style
    assert nodes["relu1_ReLU"] == {"label": r"relu1\n(ReLU)", "fillcolor": "#90EE90",
                                   "shape": "record", "style": "filled"}
    # blobs: octagon where last read as a bottom, plain where last written as a top
    assert nodes["data_blob"] == {"label": "data", "fillcolor": "#E0E0E0", "shape": "octagon",
                                  "style": "filled"}
    assert nodes["ip1_blob"]["shape"] == "octagon"
    assert nodes["loss_blob"] == {"label": "loss"}
    assert list(nodes)[:4] == ["data_Data", "data_blob", "label_blob", "conv1_Convolution"]
    assert edges == [
        ("data_Data", "data_blob", "Batch 64"), ("data_Data", "label_blob", "Batch 64"),
        ("data_blob", "conv1_Convolution", ""), ("conv1_Convolution", "conv1_blob", "20"),
        ("conv1_blob", "pool1_Pooling", ""), ("pool1_Pooling", "pool1_blob", ""),
        ("pool1_blob", "conv2_Convolution", ""), ("conv2_Convolution", "conv2_blob", "50"),
        ("conv2_blob", "pool2_Pooling", ""), ("pool2_Pooling", "pool2_blob", ""),
        ("pool2_blob", "ip1_InnerProduct", ""), ("ip1_InnerProduct", "ip1_blob", "500"),
        ("ip1_blob", "relu1_ReLU", ""), ("relu1_ReLU", "ip1_blob", ""),
        ("ip1_blob", "ip2_InnerProduct", ""), ("ip2_InnerProduct", "ip2_blob", "10"),
        ("ip2_blob", "loss_SoftmaxWithLoss", ""), ("label_blob", "loss_SoftmaxWithLoss", ""),
        ("loss_SoftmaxWithLoss", "loss_blob", ""),
    ]


def test_vertical_layout_label_and_unlabelled_edges():
    graph = draw.get_pydot_graph(lenet(), "TB", label_edges=False)
    _, nodes, edges = parse_dot(graph.source)
    assert "\tgraph [rankdir=TB]" in graph.source.splitlines()
    assert nodes["conv1_Convolution"]["label"] == \
        "conv1 (Convolution) kernel size: 5 stride: 1 pad: 0"
    assert {label for _, _, label in edges} == {""}


def test_unnamed_net_and_deconvolution_lr_mults():
    net = read(FCN)
    _, nodes, edges = parse_dot(draw.get_pydot_graph(net, "LR", display_lrm=True).source)
    assert draw.get_pydot_graph(net, "LR").source.startswith("digraph Net {")
    assert nodes["upscore2_Deconvolution"]["fillcolor"] == "#FF5050"
    # one param entry (lr_mult 0): pycaffe shows the bias multiplier as the default 1.0
    assert nodes["upscore2_Deconvolution"]["label"] == \
        r"upscore2\n(Deconvolution)\nkernel size: 4\nstride: 2\npad: 0\nlr mult: 0.0, 1.0"
    assert nodes["conv1_1_Convolution"]["label"].endswith(r"pad: 100\nlr mult: 1.0, 2.0")
    assert ("upscore2_Deconvolution", "upscore2_blob", "21") in edges
    assert nodes["score_pool4c_Crop"]["label"] == r"score_pool4c\n(Crop)"


def test_layer_label_helpers():
    layer = caffe_pb2.LayerParameter(name="c", type="Convolution")
    assert draw.get_layer_lr_mult(layer) == (1.0, 1.0)
    layer.param.add(lr_mult=0)
    layer.param.add(lr_mult=0)
    assert draw.get_layer_lr_mult(layer) == (0.0, 0.0)
    # both multipliers zero: no lr line even with display_lrm
    assert draw.get_layer_label(layer, "TB", display_lrm=True) == \
        '"c (Convolution) kernel size: 1 stride: 1 pad: 0"'
    layer.param.add(lr_mult=1)
    with pytest.raises(ValueError, match="Could not parse"):
        draw.get_layer_lr_mult(layer)
    with pytest.raises(ValueError, match="ReLU layers do not have"):
        draw.get_layer_lr_mult(caffe_pb2.LayerParameter(type="ReLU"))
    assert draw.get_edge_label(caffe_pb2.LayerParameter(type="Softmax")) == '""'
    assert draw.get_pooling_types_dict() == {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}
    assert draw.choose_color_by_layertype("Deconvolution") == "#FF5050"
    assert draw.choose_color_by_layertype("Eltwise") == "#6495ED"


TRAIN_TEST = '''
name: "tt"
layer { name: "mnist" type: "Data" top: "data" top: "label"
        include { phase: TRAIN } data_param { batch_size: 64 } }
layer { name: "mnist" type: "Data" top: "data" top: "label"
        include { phase: TEST } data_param { batch_size: 100 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 10 } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
        exclude { phase: TEST } }
'''


def test_phase_selects_layers():
    net = text_format.Parse(TRAIN_TEST, caffe_pb2.NetParameter())
    _, nodes, edges = parse_dot(draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TRAIN).source)
    assert "accuracy_Accuracy" not in nodes and "loss_SoftmaxWithLoss" in nodes
    assert ("mnist_Data", "data_blob", "Batch 64") in edges
    _, nodes, edges = parse_dot(draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TEST).source)
    assert "accuracy_Accuracy" in nodes and "loss_SoftmaxWithLoss" not in nodes
    assert ("mnist_Data", "data_blob", "Batch 100") in edges
    # all phases: the two "mnist" Data layers share one node, as in pycaffe
    _, nodes, edges = parse_dot(draw.get_pydot_graph(net, "LR").source)
    assert "accuracy_Accuracy" in nodes and "loss_SoftmaxWithLoss" in nodes
    assert [e for e in edges if e[0] == "mnist_Data"] == [
        ("mnist_Data", "data_blob", "Batch 64"), ("mnist_Data", "label_blob", "Batch 64"),
        ("mnist_Data", "data_blob", "Batch 100"), ("mnist_Data", "label_blob", "Batch 100")]
    net.layer[2].include.add(phase=caffe_pb2.TRAIN)
    net.layer[2].exclude.add(phase=caffe_pb2.TEST)
    with pytest.raises(ValueError, match="layer ip has both include and exclude"):
        draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TRAIN)


def test_quoted_names_are_escaped():
    net = text_format.Parse('layer { name: "inception_3a/1x1" type: "Convolution" '
                            'bottom: "pool 2" top: "inception_3a/1x1" }',
                            caffe_pb2.NetParameter())
    source = draw.get_pydot_graph(net, "LR").source
    assert '\t"pool 2_blob" -> "inception_3a/1x1_Convolution" [label=""]' in source


def test_raw_output_is_dot_text(tmp_path):
    raw = draw.draw_net(lenet(), "LR", ext="raw")
    assert raw.decode() == draw.get_pydot_graph(lenet(), "LR").source
    path = tmp_path / "lenet.raw"
    draw.draw_net_to_file(lenet(), str(path))
    assert path.read_text() == raw.decode()
    assert draw.get_pydot_graph(lenet(), "LR").to_string() == raw.decode()


@needs_dot
def test_png_and_svg_are_rendered(tmp_path):
    png = draw.draw_net(lenet(), "LR")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    path = tmp_path / "fcn.svg"
    draw.draw_net_to_file(read(FCN), str(path), rankdir="TB", display_lrm=True)
    svg = path.read_text()
    assert "<svg" in svg and "score_pool4c" in svg and "lr mult: 0.0, 1.0" in svg
    assert draw.get_pydot_graph(lenet(), "LR").create(format="png") == png


def _no_dot_path(tmp_path, monkeypatch):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_missing_dot_is_one_clear_error(tmp_path, monkeypatch):
    _no_dot_path(tmp_path, monkeypatch)
    with pytest.raises(draw.GraphvizNotFound) as info:
        draw.draw_net_to_file(lenet(), str(tmp_path / "x.png"))
    message = str(info.value)
    assert "'dot'" in message and "\n" not in message
    assert not (tmp_path / "x.png").exists()
    draw.draw_net_to_file(lenet(), str(tmp_path / "x.raw"))     # DOT text needs no dot


@needs_dot
def test_unknown_format_and_missing_extension(tmp_path):
    with pytest.raises(CaffeCompatError, match="Graphviz could not draw format 'nope'"):
        draw.draw_net(lenet(), "LR", ext="nope")
    with pytest.raises(CaffeCompatError, match="cannot tell the image format"):
        draw.draw_net_to_file(lenet(), str(tmp_path / "noext"))


# ---------------------------------------------------------------------------
# caffe-compat draw
# ---------------------------------------------------------------------------

@needs_dot
def test_cli_draws_png(tmp_path, capsys):
    out = tmp_path / "lenet.png"
    assert main(["draw", LENET, str(out), "--rankdir", "TB", "--display-lrm"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert capsys.readouterr().out == f"Drawing net to {out}\n"


def test_cli_phase_and_raw(tmp_path):
    net = tmp_path / "tt.prototxt"
    net.write_text(TRAIN_TEST)
    out = tmp_path / "tt.raw"
    assert main(["draw", str(net), str(out), "--phase", "test"]) == 0
    text = out.read_text()
    assert "accuracy_Accuracy" in text and "loss_SoftmaxWithLoss" not in text
    assert main(["draw", str(net), str(out), "--phase", "ALL"]) == 0
    assert "loss_SoftmaxWithLoss" in out.read_text()


def test_cli_upgrades_legacy_nets(tmp_path):
    net = tmp_path / "v1.prototxt"
    net.write_text('name: "old" layers { name: "r" type: RELU bottom: "x" top: "x" }')
    out = tmp_path / "v1.raw"
    assert main(["draw", str(net), str(out)]) == 0
    assert 'r_ReLU [label="r\\n(ReLU)"' in out.read_text()


def test_cli_missing_file_exit_2(tmp_path, capsys):
    missing = tmp_path / "missing.prototxt"
    assert main(["draw", str(missing), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert err == f"caffe-compat draw: error: {missing}: No such file or directory\n"


def test_cli_missing_dot_exit_2(tmp_path, monkeypatch, capsys):
    _no_dot_path(tmp_path, monkeypatch)
    assert main(["draw", LENET, str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'dot' program was not found" in err


def test_cli_include_and_exclude_exit_2(tmp_path, capsys):
    net = tmp_path / "bad.prototxt"
    net.write_text('layer { name: "r" type: "ReLU" bottom: "x" top: "x" '
                   'include { phase: TRAIN } exclude { phase: TEST } }')
    assert main(["draw", str(net), str(tmp_path / "o.raw"), "--phase", "TRAIN"]) == 2
    assert "has both include and exclude" in capsys.readouterr().err
