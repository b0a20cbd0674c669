"""The classic pycaffe workflows, run with ``import caffe_compat as caffe`` on golden nets.

DeepDream's make_step (the notebook's code, verbatim), live numpy views, in-place
semantics, diff accumulation, force_backward, net surgery FC -> conv, feature
extraction, saliency and Python layers.
"""
from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest

import caffe_compat as caffe
import golden_harness as gh
from caffe_compat.formats.prototxt import read_net, write_net

pytestmark = pytest.mark.skipif(not os.path.isdir(gh.GOLDEN_DIR), reason="tests/golden missing")


def with_force_backward(src: str, dst: str) -> str:
    with open(src) as f:
        text = f.read()
    with open(dst, "w") as f:
        f.write("force_backward: true\n" + text)
    return dst


# ---- DeepDream's step, verbatim from the notebook (the seed's code) ------------------
def objective_L2(dst):
    dst.diff[:] = dst.data


def make_step(net, step_size=1.5, end='inception_4c/output', jitter=32, clip=True, objective=objective_L2):
    src = net.blobs['data']
    dst = net.blobs[end]
    ox, oy = np.random.randint(-jitter, jitter+1, 2)
    src.data[0] = np.roll(np.roll(src.data[0], ox, -1), oy, -2)
    net.forward(end=end)
    objective(dst)
    net.backward(start=end)
    g = src.diff[0]
    src.data[:] += step_size/np.abs(g).mean() * g
    src.data[0] = np.roll(np.roll(src.data[0], -ox, -1), -oy, -2)
    if clip:
        bias = net.transformer.mean['data']
        src.data[:] = np.clip(src.data, -bias, 255-bias)


def test_make_step_moves_image_by_caffes_gradient(tmp_path):
    gs = gh.load("googlenet_tiny")
    proto = with_force_backward(gs.prototxt, str(tmp_path / "dream.prototxt"))
    net = caffe.Classifier(proto, gs.weights, mean=np.float32([104.0, 116.0, 122.0]),
                           channel_swap=(2, 1, 0))
    x = gs.npz["input/data"].copy()
    net.blobs["data"].data[...] = x
    topdiff = gs.npz["topdiff/prob"]

    def objective_golden(dst):  # Caffe's run used this top diff on "prob"
        dst.diff[:] = topdiff

    np.random.seed(0)
    make_step(net, step_size=1.5, end="prob", jitter=0, objective=objective_golden)
    g = gs.npz["diff/data"][0]
    bias = np.float32([104.0, 116.0, 122.0])[:, None, None]
    expected = np.clip(x + 1.5 / np.abs(g).mean() * g, -bias, 255 - bias)
    assert gh.rel_err(net.blobs["data"].data, expected) <= 1e-5
    # the gradient itself is Caffe's, blob by blob below the dream layer
    assert gh.rel_err(net.blobs["data"].diff, gs.npz["diff/data"]) <= 1e-4


def test_make_step_l2_objective_runs_on_inner_layer(tmp_path):
    gs = gh.load("googlenet_tiny")
    proto = with_force_backward(gs.prototxt, str(tmp_path / "dream.prototxt"))
    net = caffe.Classifier(proto, gs.weights, mean=np.float32([104.0, 116.0, 122.0]),
                           channel_swap=(2, 1, 0))
    net.blobs["data"].data[...] = gs.npz["input/data"]
    before = net.blobs["data"].data.copy()
    np.random.seed(1)
    make_step(net, end="inception_3b/output", jitter=4)
    after = net.blobs["data"].data
    assert not np.allclose(before, after)
    assert np.isfinite(after).all()


def test_no_input_gradient_without_force_backward():
    gs = gh.load("googlenet_tiny")
    net = caffe.Net(gs.prototxt, gs.weights, caffe.TEST)
    net.blobs["data"].data[...] = gs.npz["input/data"]
    net.forward()
    net.blobs["prob"].diff[...] = 1.0
    net.backward()
    assert not net.blobs["data"].diff.any()


def test_live_views_and_in_place_semantics(tmp_path):
    gs = gh.load("caffenet_tiny")
    net = caffe.Net(gs.prototxt, gs.weights, caffe.TEST)
    data = net.blobs["data"].data          # reference taken before forward
    conv1 = net.blobs["conv1"].data
    data[...] = gs.npz["input/data"]
    net.forward()
    # conv1 holds the ReLU output after a full forward (in place)
    assert gh.rel_err(conv1, gs.npz["data/conv1"]) <= 1e-5
    net.forward(end="conv1")
    assert gh.rel_err(conv1, gs.npz["top/conv1/0"]) <= 1e-5
    assert (conv1 < 0).any()
    # writes through the views reach the model: .flat, fancy indexing, reshaped views
    w = net.params["conv1"][0].data
    w.flat = np.zeros(w.size, np.float32)
    net.params["conv1"][1].data[[0, 2]] = 1.5
    net.forward(end="conv1")
    assert np.allclose(conv1[:, [0, 2]], 1.5) and np.allclose(conv1[:, 1], 0)
    flat_view = data.reshape(-1)
    flat_view[:] = 0
    net.params["conv1"][0].data[...] = 1.0
    net.forward(end="conv1")
    assert np.allclose(conv1[:, 1], 0)
    # outputs returned by forward are the blob views themselves
    out = net.forward()
    assert out["prob"] is net.blobs["prob"].data


def test_param_diffs_accumulate_until_cleared(tmp_path):
    gs = gh.load("caffenet_tiny")
    net = caffe.Net(with_force_backward(gs.prototxt, str(tmp_path / "n.prototxt")),
                    gs.weights, caffe.TEST)
    net.blobs["data"].data[...] = gs.npz["input/data"]
    net.forward()
    net.blobs["prob"].diff[...] = gs.npz["topdiff/prob"]
    net.backward()
    once = net.params["conv1"][0].diff.copy()
    assert gh.rel_err(once, gs.npz["param_diff/conv1/0"]) <= 1e-4
    net.backward()
    assert gh.rel_err(net.params["conv1"][0].diff, 2 * once) <= 1e-5
    net.clear_param_diffs()
    assert not net.params["conv1"][0].diff.any()


def test_forward_kwargs_and_forward_all_batching():
    gs = gh.load("caffenet_tiny")
    net = caffe.Net(gs.prototxt, gs.weights, caffe.TEST)
    x = gs.npz["input/data"]
    out = net.forward(data=x)
    assert gh.rel_err(out["prob"], gs.npz["data/prob"]) <= 1e-5
    five = np.concatenate([x, x, x[:1]])           # 5 images, batch 2: last batch padded
    allout = net.forward_all(data=five)
    assert allout["prob"].shape[0] == 5
    assert gh.rel_err(allout["prob"][4], gs.npz["data/prob"][0]) <= 1e-5
    with pytest.raises(ValueError):
        net.forward(data=x[:1])


def test_feature_extraction_fc7():
    gs = gh.load("caffenet_tiny")
    net = caffe.Net(gs.prototxt, gs.weights, caffe.TEST)
    net.blobs["data"].data[...] = gs.npz["input/data"]
    out = net.forward(blobs=["fc7"])
    assert gh.rel_err(out["fc7"], gs.npz["data/fc7"]) <= 1e-5


def test_saliency_by_top_diff_and_backward(tmp_path):
    gs = gh.load("caffenet_tiny")
    net = caffe.Net(with_force_backward(gs.prototxt, str(tmp_path / "n.prototxt")),
                    gs.weights, caffe.TEST)
    net.forward(data=gs.npz["input/data"])
    grads = net.backward(prob=gs.npz["topdiff/prob"])
    assert gh.rel_err(grads["data"], gs.npz["diff/data"]) <= 1e-4
    saliency = np.abs(grads["data"]).max(axis=1)
    assert saliency.shape == (2, 115, 115)


def test_net_surgery_fc_to_conv(tmp_path):
    """Caffe's net_surgery example: fc6/7/8 become convolutions; at the FC input size the
    score map is 1x1 and equals the FC scores; a larger image gives a score map."""
    gs = gh.load("caffenet_tiny")
    definition = read_net(gs.prototxt)
    conv_shapes = {"fc6": 3, "fc7": 1, "fc8": 1}
    for lp in definition.param.layer:
        if lp.name in conv_shapes:
            n = lp.inner_product_param.num_output
            lp.type = "Convolution"
            lp.name = lp.name + "-conv"
            lp.ClearField("inner_product_param")
            lp.convolution_param.num_output = n
            lp.convolution_param.kernel_size.append(conv_shapes[lp.name[:3]])
    full_conv = str(tmp_path / "full_conv.prototxt")
    write_net(definition.param, full_conv)
    net = caffe.Net(gs.prototxt, gs.weights, caffe.TEST)
    net_full_conv = caffe.Net(full_conv, gs.weights, caffe.TEST)
    params = ["fc6", "fc7", "fc8"]
    fc_params = {pr: (net.params[pr][0].data, net.params[pr][1].data) for pr in params}
    conv_params = {pr: (net_full_conv.params[pr + "-conv"][0].data,
                        net_full_conv.params[pr + "-conv"][1].data) for pr in params}
    for pr in params:
        conv_params[pr][0].flat = fc_params[pr][0].flat
        conv_params[pr][1][...] = fc_params[pr][1]
    x = gs.npz["input/data"]
    fc_prob = net.forward(data=x)["prob"]
    conv_prob = net_full_conv.forward(data=x)["prob"]
    assert conv_prob.shape == fc_prob.shape + (1, 1)
    assert gh.rel_err(conv_prob[:, :, 0, 0], fc_prob) <= 1e-5
    net_full_conv.blobs["data"].reshape(1, 3, 179, 179)   # two more pool5 steps each way
    net_full_conv.blobs["data"].data[...] = np.random.RandomState(0).uniform(-100, 100, (1, 3, 179, 179))
    out = net_full_conv.forward()
    assert out["prob"].shape[2:] == (3, 3)
    assert np.allclose(out["prob"].sum(axis=1), 1, atol=1e-5)


PY_LAYER_MODULE = textwrap.dedent('''
    import numpy as np
    import caffe_compat as caffe

    class ToyData(caffe.Layer):
        """A Python data layer like FCN's voc_layers: param_str with a seed and a size."""
        def setup(self, bottom, top):
            params = eval(self.param_str)
            self.rng = np.random.RandomState(params["seed"])
            self.size = params["size"]
            self.calls = 0
            if len(top) != 2:
                raise Exception("need two tops")
        def reshape(self, bottom, top):
            self.calls += 1
            self.x = self.rng.uniform(-1, 1, (4, 3, self.size, self.size)).astype(np.float32)
            self.y = (self.x.mean(axis=(1, 2, 3)) > 0).astype(np.float32)
            top[0].reshape(*self.x.shape)
            top[1].reshape(*self.y.shape)
        def forward(self, bottom, top):
            top[0].data[...] = self.x
            top[1].data[...] = self.y
        def backward(self, top, propagate_down, bottom):
            pass

    class Doubler(caffe.Layer):
        def setup(self, bottom, top):
            self.phase_seen = self.phase
        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top):
            top[0].data[...] = 2 * bottom[0].data
        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = 2 * top[0].diff
''')


def test_python_layers_feed_a_train_net(tmp_path, monkeypatch):
    (tmp_path / "toy_layers.py").write_text(PY_LAYER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    proto = tmp_path / "train.prototxt"
    proto.write_text(textwrap.dedent('''
        name: "toy"
        force_backward: true
        layer { name: "data" type: "Python" top: "data" top: "label"
                python_param { module: "toy_layers" layer: "ToyData" param_str: "{'seed': 3, 'size': 6}" } }
        layer { name: "double" type: "Python" bottom: "data" top: "d2"
                python_param { module: "toy_layers" layer: "Doubler" } }
        layer { name: "ip" type: "InnerProduct" bottom: "d2" top: "ip"
                inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
    '''))
    caffe.set_random_seed(0)
    net = caffe.Net(str(proto), caffe.TRAIN)
    out = net.forward()
    assert out["loss"].shape == ()
    x = net.blobs["data"].data.copy()
    net.backward()
    # gradient through the Python Doubler equals 2 x the gradient at its output
    w = net.params["ip"][0].data
    prob = np.exp(net.blobs["ip"].data - net.blobs["ip"].data.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    label = net.blobs["label"].data.astype(int)
    dip = prob.copy()
    dip[np.arange(4), label] -= 1
    dip /= 4
    expected_w = dip.T @ (2 * x).reshape(4, -1)
    assert gh.rel_err(net.params["ip"][0].diff, expected_w) <= 1e-4
    assert gh.rel_err(net.blobs["d2"].diff.reshape(4, -1), dip @ w) <= 1e-4
    # the Python layer's own backward ran: d(data) = 2 * d(d2)
    assert gh.rel_err(net.blobs["data"].diff, 2 * net.blobs["d2"].diff) <= 1e-6
    # a second forward pulls a new batch (reshape runs before every forward, like Caffe)
    net.forward()
    assert not np.allclose(net.blobs["data"].data, x)
