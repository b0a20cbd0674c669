"""The engine's user-facing surface: hybridize parity, reshape, export/convert, info,
custom layer registration and error messages naming layer, type and line."""
from __future__ import annotations

import os

import mxnet as mx
import numpy as np
import pytest

import caffe_compat
import golden_harness as gh
from caffe_compat.cli.main import main
from caffe_compat.engine.layer import Layer
from caffe_compat.engine.network import CaffeNet
from caffe_compat.errors import LayerError


def golden_net(name="googlenet_tiny"):
    gs = gh.load(name)
    return gs, CaffeNet.from_prototxt(gs.prototxt, weights=gs.weights)


def test_parameter_names_follow_caffe_layer_names():
    _, net = golden_net()
    names = set(net.collect_params().keys())
    assert "conv1/7x7_s2_weight" in names and "conv1/7x7_s2_bias" in names


def test_hybridized_equals_imperative_and_reshapes():
    gs, net = golden_net()
    x = mx.nd.array(gs.npz["input/data"])
    imperative = net(x).asnumpy()
    net.hybridize(static_alloc=True)
    assert gh.rel_err(net(x).asnumpy(), imperative) <= 1e-6
    assert gh.rel_err(imperative, gs.npz["data/prob"]) <= 1e-5
    # another batch size: the same object reshapes (Caffe reshapes on every forward)
    two = mx.nd.concat(x, x, dim=0)
    assert gh.rel_err(net(two).asnumpy()[1], imperative[0]) <= 1e-6
    assert gh.rel_err(net(x).asnumpy(), imperative) <= 1e-6


def test_fully_convolutional_net_runs_any_image_size():
    gs, net = golden_net("fcn_tiny")
    net.hybridize()
    for h, w in ((64, 80), (96, 112), (50, 61)):
        out = net(mx.nd.array(np.random.RandomState(h).uniform(-50, 50, (1, 3, h, w))))
        assert out.shape[2:] == (h, w)
    out = net(mx.nd.array(gs.npz["input/data"])).asnumpy()
    assert gh.rel_err(out, gs.npz["data/" + net.output_names[0]]) <= 1e-5


def test_convert_symbol_json_loads_in_plain_mxnet(tmp_path, capsys):
    gs = gh.load("resnet_tiny")
    prefix = str(tmp_path / "resnet")
    assert main(["convert", gs.prototxt, gs.weights, "-o", prefix]) == 0
    assert "wrote" in capsys.readouterr().out
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    out = block(mx.nd.array(gs.npz["input/data"])).asnumpy()
    assert gh.rel_err(out, gs.npz["data/prob"]) <= 1e-5
    assert main(["convert", gs.prototxt, gs.weights, "-o", prefix, "--params-only"]) == 0
    net = CaffeNet.from_prototxt(gs.prototxt)
    net.load_parameters(prefix + ".params")
    assert gh.rel_err(net(mx.nd.array(gs.npz["input/data"])).asnumpy(), gs.npz["data/prob"]) <= 1e-5


def test_info_table_and_layer_list(capsys):
    gs = gh.load("caffenet_tiny")
    assert main(["info", gs.prototxt, "--input-shape", "1,3,115,115"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "Convolution" in out and "1x12x27x27" in out
    assert "total parameters:" in out and "multiply-adds" in out
    assert main(["info", "--layers"]) == 0
    listing = capsys.readouterr().out
    assert "Convolution" in listing and "BVLC" in listing and "Python" in listing


def test_unknown_layer_names_layer_type_line_and_supported_types(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('name: "n"\nlayer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
                 'layer {\n  name: "odd"\n  type: "Permutee"\n  bottom: "x" top: "y" }\n')
    with pytest.raises(LayerError) as e:
        CaffeNet.from_prototxt(str(p))
    msg = str(e.value)
    assert 'layer "odd"' in msg and "Permutee" in msg and "n.prototxt:3" in msg
    assert "Convolution" in msg  # lists what is supported


def test_shape_mismatch_names_layer(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
                 'shape { dim: 1 dim: 2 } shape { dim: 1 dim: 3 } } }\n'
                 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "c" }\n')
    with pytest.raises(LayerError) as e:
        CaffeNet.from_prototxt(str(p))
    assert 'layer "sum"' in str(e.value) and "Eltwise" in str(e.value)


def test_weights_mismatch_names_layer(tmp_path):
    gs = gh.load("caffenet_tiny")
    other = gh.load("googlenet_tiny")
    from caffe_compat.errors import CaffeCompatError
    net = CaffeNet.from_prototxt(gs.prototxt)
    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    bad = str(tmp_path / "bad.caffemodel")
    write_caffemodel(bad, [LayerWeights("conv1", "Convolution", [np.zeros((3, 3, 3, 3), np.float32),
                                                                  np.zeros(3, np.float32)])])
    with pytest.raises(CaffeCompatError) as e:
        net.copy_from(bad)
    assert 'layer "conv1"' in str(e.value)
    # no layer names in common: nothing loaded and no error (as Caffe), but a warning
    from caffe_compat.errors import WeightsMatchWarning
    with pytest.warns(WeightsMatchWarning, match="no layer of these weights matches"):
        assert not set(net.copy_from(other.weights)) & {l.name for l in net.caffe_layers if l.blob_names}


def test_an_empty_caffemodel_loads_into_a_net_without_learnable_layers(tmp_path):
    """Caffe reads an empty file as an empty NetParameter."""
    import warnings
    p = tmp_path / "net.prototxt"
    p.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
                 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = caffe_compat.Net(str(p), str(empty), caffe_compat.TEST)
    assert net.forward(x=np.array([[-1.0, 2.0]], np.float32))["y"].tolist() == [[0.0, 2.0]]


@caffe_compat.register_layer("TimesThree")
class TimesThree(Layer):
    """A user layer registered through the public decorator."""

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def hybrid_forward(self, F, x):
        return (x * 3,)


def test_user_registered_layer_runs_forward_backward_and_hybridized(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('force_backward: true\n'
                 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
                 'layer { name: "t" type: "TimesThree" bottom: "x" top: "y" }\n')
    net = caffe_compat.Net(str(p), caffe_compat.TEST)
    net.blobs["x"].data[...] = 1.5
    assert np.allclose(net.forward()["y"], 4.5)
    net.blobs["y"].diff[...] = 1
    assert np.allclose(net.backward()["x"], 3)
    net.block.hybridize()
    assert np.allclose(net.block(mx.nd.ones((2, 3))).asnumpy(), 3)
    from caffe_compat.engine.layer import LAYER_TYPES
    assert LAYER_TYPES["TimesThree"].origin == "user"


def test_fused_batchnorm_scale_matches_caffe_and_refolds_on_load(tmp_path):
    gs, net = golden_net("resnet_tiny")
    x = mx.nd.array(gs.npz["input/data"])
    assert net.fuse_batchnorm_scale() == 12            # every BatchNorm+Scale pair
    net.hybridize(static_alloc=True)
    assert gh.rel_err(net(x).asnumpy(), gs.npz["data/prob"]) <= 1e-5
    # new weights: the folded constants follow copy_from
    fresh = CaffeNet.from_prototxt(gs.prototxt)
    fresh.fuse_batchnorm_scale()
    fresh.hybridize()
    before = fresh(x).asnumpy()
    fresh.copy_from(gs.weights)
    after = fresh(x).asnumpy()
    assert gh.rel_err(after, gs.npz["data/prob"]) <= 1e-5 and not np.allclose(before, after)
    assert net.fuse_batchnorm_scale(False) == 0
    assert gh.rel_err(net(x).asnumpy(), gs.npz["data/prob"]) <= 1e-5


ROWS_LAYER = '''
import numpy as np
import caffe_compat as caffe

class Rows(caffe.Layer):
    """Like py-faster-rcnn's proposal layer: declares one row, produces three."""
    def setup(self, bottom, top): pass
    def reshape(self, bottom, top): top[0].reshape(1, 2)
    def forward(self, bottom, top):
        top[0].reshape(3, 2)
        top[0].data[...] = np.arange(6).reshape(3, 2) + bottom[0].data.sum()
    def backward(self, top, propagate_down, bottom): pass
'''


def test_layers_after_a_data_dependent_top_size_reshape_in_the_block(tmp_path, monkeypatch):
    """The engine block re-shapes the layers after a top whose size depends on the data,
    as Caffe's Net::Forward does (it kept the build-time (1, 1, 2) and broke)."""
    (tmp_path / "rows_layer.py").write_text(ROWS_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    proto = tmp_path / "net.prototxt"
    proto.write_text('''
input: "data" input_shape { dim: 1 dim: 4 }
layer { name: "rows" type: "Python" bottom: "data" top: "rows"
        python_param { module: "rows_layer" layer: "Rows" } }
layer { name: "reshape" type: "Reshape" bottom: "rows" top: "r"
        reshape_param { shape { dim: -1 dim: 1 dim: 2 } } }
layer { name: "scale" type: "Power" bottom: "r" top: "out" power_param { scale: 2 } }
''')
    block = CaffeNet.from_prototxt(str(proto))
    out = block(mx.nd.ones((1, 4))).asnumpy()
    expected = 2 * (np.arange(6).reshape(3, 1, 2) + 4)
    np.testing.assert_array_equal(out, expected)
    net = caffe_compat.Net(str(proto), caffe_compat.TEST)   # pycaffe's path agrees
    net.blobs["data"].data[...] = 1
    np.testing.assert_array_equal(net.forward()["out"], expected)


def test_weights_loaded_layers_are_not_filled_and_the_others_are(tmp_path):
    """Net(proto, weights) equals Caffe's fill-then-copy: loaded layers (and blobs they
    share) hold the file's values, layers the file lacks their fillers."""
    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    proto = tmp_path / "net.prototxt"
    proto.write_text('''
input: "data" input_shape { dim: 1 dim: 3 }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a"
        param { name: "shared_w" } param { name: "shared_b" }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "constant" value: 7 } } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b"
        param { name: "shared_w" } param { name: "shared_b" }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "constant" value: 7 } } }
layer { name: "c" type: "InnerProduct" bottom: "b" top: "c"
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 3 }
                              bias_filler { type: "constant" value: 5 } } }
''')
    w = np.arange(9, dtype=np.float32).reshape(3, 3)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(str(weights), [LayerWeights("a", "InnerProduct", [w, np.ones(3, np.float32)])])
    net = caffe_compat.Net(str(proto), str(weights), caffe_compat.TEST)
    np.testing.assert_array_equal(net.params["a"][0].data, w)
    np.testing.assert_array_equal(net.params["b"][0].data, w)        # shared with "a"
    np.testing.assert_array_equal(net.params["b"][1].data, np.ones(3))
    np.testing.assert_array_equal(net.params["c"][0].data, np.full((2, 3), 3.0))
    np.testing.assert_array_equal(net.params["c"][1].data, np.full(2, 5.0))
    block = CaffeNet.from_prototxt(str(proto), weights=str(weights))
    np.testing.assert_array_equal(block.layers_by_name()["c"].blobs()[1].data().asnumpy(), [5, 5])
