"""Neural style recipe (caffe_compat.recipes.style, caffe-compat style) on a tiny VGG-shaped
net with VGG's layer names (conv1_1 ... conv5_1, conv4_2) and fixed random weights."""
from __future__ import annotations

import cv2
import mxnet as mx
import numpy as np
import pytest

from caffe_compat.cli.main import main
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
from caffe_compat.recipes.style import (NeuralStyle, feature_net_param, gram, load_image,
                                        resize_to, style_layer_loss)
from caffe_compat.recipes.finetune import read_deploy

MEAN = (104.0, 117.0, 123.0)
CONVS = [("conv1_1", "data", 3, 4), ("conv2_1", "pool1", 4, 6), ("conv3_1", "pool2", 6, 8),
         ("conv4_1", "pool3", 8, 8), ("conv4_2", "conv4_1", 8, 8), ("conv5_1", "pool4", 8, 8)]
POOLS = {"conv1_1": "pool1", "conv2_1": "pool2", "conv3_1": "pool3", "conv4_2": "pool4"}


def tiny_vgg_prototxt() -> str:
    text = ['name: "TinyVGG"',
            'layer { name: "data" type: "Input" top: "data" '
            'input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }']
    for name, bottom, _, out in CONVS:
        text.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                    f'convolution_param {{ num_output: {out} kernel_size: 3 pad: 1 }} }}')
        text.append(f'layer {{ name: "relu{name[4:]}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        if name in POOLS:
            text.append(f'layer {{ name: "{POOLS[name]}" type: "Pooling" bottom: "{name}" '
                        f'top: "{POOLS[name]}" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}')
    # a classifier head that only fits 32 x 32 input: the feature net must never build it
    text.append('layer { name: "fc6" type: "InnerProduct" bottom: "conv5_1" top: "fc6" '
                'inner_product_param { num_output: 5 } }')
    text.append('layer { name: "prob" type: "Softmax" bottom: "fc6" top: "prob" }')
    return "\n".join(text) + "\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    (root / "deploy.prototxt").write_text(tiny_vgg_prototxt())
    rs = np.random.RandomState(0)
    weights = []
    for name, _, cin, cout in CONVS:
        w = (rs.randn(cout, cin, 3, 3) * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
        if name == "conv1_1":
            w /= 60.0                            # pixels come in 0..255 units
        weights.append(LayerWeights(name, "Convolution", [w, (rs.randn(cout) * 0.1).astype(np.float32)]))
    np.savez(root / "convs.npz", **{f"{lw.name}/{i}": b for lw in weights for i, b in enumerate(lw.blobs)})
    weights.append(LayerWeights("fc6", "InnerProduct", [(rs.randn(5, 32) * 0.1).astype(np.float32),
                                                        np.zeros(5, np.float32)]))
    write_caffemodel(str(root / "w.caffemodel"), weights)
    yy, xx = np.mgrid[0:40, 0:48]
    content = np.dstack([(xx * 5) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256]).astype(np.uint8)
    style = np.sin(xx / 2.0) * np.cos(yy / 3.0) * 100 + 128 + rs.uniform(-20, 20, (40, 48))
    style = np.dstack([style, 255 - style, style[::-1]]).clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(root / "content.png"), content[:, :, ::-1])
    cv2.imwrite(str(root / "style.png"), style[:, :, ::-1])
    return root


def numpy_tiny_vgg(x: np.ndarray, convs) -> dict:
    """Every conv blob (after its in-place ReLU) of the tiny VGG for a (1, 3, H, W) input,
    in float64 numpy: 3x3 pad-1 convolutions and Caffe's ceil-mode 2x2 max pooling."""
    blobs = {"data": x[0].astype(np.float64)}
    for name, bottom, _, _ in CONVS:
        inp, w, b = blobs[bottom], convs[f"{name}/0"], convs[f"{name}/1"]
        h, wd = inp.shape[1:]
        padded = np.pad(inp, ((0, 0), (1, 1), (1, 1)))
        out = sum(np.einsum("oc,chw->ohw", w[:, :, dy, dx], padded[:, dy:dy + h, dx:dx + wd])
                  for dy in range(3) for dx in range(3)) + b[:, None, None]
        blobs[name] = np.maximum(out, 0)
        if name in POOLS:
            ph, pw = -(-(h - 2) // 2) + 1, -(-(wd - 2) // 2) + 1      # ceil, as Caffe
            full = np.full((out.shape[0], 2 * ph, 2 * pw), -np.inf)
            full[:, :h, :wd] = blobs[name]
            blobs[POOLS[name]] = full.reshape(out.shape[0], ph, 2, pw, 2).max(axis=(2, 4))
    return {n: v[None] for n, v in blobs.items()}


def make_style(tiny, **weights) -> NeuralStyle:
    return NeuralStyle.from_files(str(tiny / "deploy.prototxt"), str(tiny / "w.caffemodel"),
                                  mean=MEAN, **weights)


def test_feature_net_is_cut_and_reads_post_relu_blobs(tiny):
    net = read_deploy(str(tiny / "deploy.prototxt"))
    param, blobs, last = feature_net_param(net, ["conv4_2", "conv1_1", "relu3_1"])
    names = [lp.name for lp in param.layer]
    assert blobs == ["conv4_2", "conv1_1", "conv3_1"] and last == "relu4_2"
    assert "fc6" not in names and "conv5_1" not in names
    avg, _, _ = feature_net_param(net, ["conv2_1"], pool="avg")
    assert all(lp.pooling_param.pool == 1 for lp in avg.layer if lp.type == "Pooling")
    ns = make_style(tiny)
    img = load_image(str(tiny / "content.png"))
    np.testing.assert_array_equal(ns.deprocess(ns.preprocess(img)), img)     # RGB <-> BGR - mean
    np.testing.assert_allclose(ns.preprocess(img).asnumpy()[0, 0], img[:, :, 2] - MEAN[0])
    feats = ns.features(mx.nd.array(np.random.RandomState(1).uniform(-100, 100, (1, 3, 24, 40))))
    assert feats["conv1_1"].shape == (1, 4, 24, 40) and feats["conv5_1"].shape == (1, 8, 2, 3)  # Caffe ceil pooling
    assert min(float(f.min().asscalar()) for f in feats.values()) >= 0.0   # after in-place ReLU


def test_gram_style_loss_is_the_papers_normalisation():
    rs = np.random.RandomState(0)
    f, a = rs.randn(1, 5, 6, 7), rs.randn(1, 5, 6, 7)
    n, m = 5, 42
    F, A = f.reshape(n, m), a.reshape(n, m)
    paper = np.sum((F @ F.T - A @ A.T) ** 2) / (4 * n ** 2 * m ** 2)      # Gatys et al. eq. 4
    ours = style_layer_loss(mx.nd.array(f, dtype="float64"), gram(mx.nd.array(a, dtype="float64")))
    assert abs(float(ours.asscalar()) - paper) <= 1e-12 * paper


def test_style_loss_decreases_and_grams_approach_the_style(tiny):
    ns = make_style(tiny, tv_weight=0.0)
    content = ns.preprocess(resize_to(load_image(str(tiny / "content.png")), 32))
    ns.set_content(content)
    ns.set_style(ns.preprocess(resize_to(load_image(str(tiny / "style.png")), 40)))
    start, start_dist = ns.loss(content), ns.style_distance(content)
    for optimizer, kwargs in (("lbfgs", {}), ("adam", {"lr": 5.0})):
        x, history = ns.optimize(content, 25, optimizer, **kwargs)
        assert len(history) == 25 and history[-1] < 0.5 * history[0]
        end, end_dist = ns.loss(x), ns.style_distance(x)
        assert end.style < 0.5 * start.style, optimizer
        assert np.mean(list(end_dist.values())) < 0.8 * np.mean(list(start_dist.values())), optimizer
        low, high = (b.asnumpy() for b in ns.bounds())
        assert (x.asnumpy() >= low - 1e-3).all() and (x.asnumpy() <= high + 1e-3).all()


def test_style_gradient_matches_finite_differences(tiny):
    content = resize_to(load_image(str(tiny / "content.png")), 12)
    style = resize_to(load_image(str(tiny / "style.png")), 16)
    rs = np.random.RandomState(1)
    for weights in (dict(content_weight=0.0, style_weight=1.0, tv_weight=0.0),   # style alone
                    dict(content_weight=1e-3, style_weight=1.0, tv_weight=1e-6)):
        ns = make_style(tiny, **weights)
        x32 = ns.preprocess(content)
        ns.set_content(x32)
        ns.set_style(ns.preprocess(style))
        x32 = x32 + mx.nd.array(rs.uniform(-5, 5, x32.shape))      # away from the content
        _, grad32 = ns.loss_and_grad(x32)
        # the same engine block in float64, so central differences are exact to ~1e-9
        ns.features.block.cast("float64")
        ns.set_content(ns.preprocess(content).astype("float64"))
        ns.set_style(ns.preprocess(style).astype("float64"))
        x = x32.astype("float64")
        _, grad = ns.loss_and_grad(x)
        for _ in range(3):
            d = mx.nd.array(rs.randn(*x.shape), dtype="float64")
            eps = 1e-3
            fd = (ns.loss(x + eps * d).total - ns.loss(x - eps * d).total) / (2 * eps)
            analytic = float(mx.nd.sum(grad * d).asscalar())
            assert abs(fd - analytic) <= 1e-6 * abs(analytic), (weights, fd, analytic)
        g32, g64 = grad32.asnumpy(), grad.asnumpy()
        assert np.linalg.norm(g32 - g64) <= 1e-4 * np.linalg.norm(g64)


def test_multiscale_transfer_returns_the_requested_size(tiny):
    ns = make_style(tiny)
    calls = []
    out = ns.transfer(load_image(str(tiny / "content.png")), load_image(str(tiny / "style.png")),
                      size=36, iters=3, scales=2, progress=lambda *a: calls.append(a))
    assert out.shape == (30, 36, 3) and out.dtype == np.uint8
    assert [c[:2] for c in calls] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]


def test_style_cli_end_to_end(tiny, tmp_path, capsys):
    out = tmp_path / "out.png"
    for optimizer in ("lbfgs", "adam"):
        assert main(["style", str(tiny / "content.png"), str(tiny / "style.png"), "-o", str(out),
                     "--prototxt", str(tiny / "deploy.prototxt"), "--weights", str(tiny / "w.caffemodel"),
                     "--size", "32", "--iters", "5", "--scales", "2", "--optimizer", optimizer,
                     "--tv-weight", "1e-4", "--no-progress"]) == 0
        img = cv2.imread(str(out))
        assert img is not None and img.shape == (27, 32, 3)
        assert "wrote" in capsys.readouterr().out
    assert main(["style", str(tiny / "content.png"), str(tiny / "style.png"), "-o", str(out),
                 "--prototxt", str(tiny / "deploy.prototxt"), "--weights", str(tiny / "w.caffemodel"),
                 "--style-layers", "conv9_1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("caffe-compat style: error:") and "conv9_1" in err and "\n" not in err


def test_style_from_a_zoo_model(tiny, tmp_path, monkeypatch, capsys):
    """--model NAME: the zoo's deploy prototxt and cached weights, shared not copied."""
    from caffe_compat import zoo
    from caffe_compat.download import sha1_of
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "home"))
    # a loopback URL that is never contacted: the weights are imported (and verified) first
    zoo.add("tiny_vgg", tiny / "deploy.prototxt", "http://127.0.0.1:9/tiny_vgg.caffemodel", sha1_of(tiny / "w.caffemodel"),
            mean=MEAN, input_size=(32, 32))
    zoo.import_file("tiny_vgg", tiny / "w.caffemodel")
    out = tmp_path / "zoo.png"
    assert main(["style", str(tiny / "content.png"), str(tiny / "style.png"), "-o", str(out),
                 "--model", "tiny_vgg", "--size", "24", "--iters", "3", "--no-progress"]) == 0
    assert cv2.imread(str(out)).shape == (20, 24, 3)
    # against an independent reference: the zoo's mean applied by hand (RGB -> BGR,
    # - mean), the features of a numpy forward with the weights as generated, and
    # Gatys's loss terms computed from those features
    a = NeuralStyle.from_zoo("tiny_vgg", progress=False)
    convs = np.load(tiny / "convs.npz")

    def by_hand(path, size):
        img = resize_to(load_image(str(path)), size)
        bgr = np.asarray(img, np.float64)[:, :, ::-1].transpose(2, 0, 1)[None]
        return img, bgr - np.reshape(MEAN, (1, 3, 1, 1))

    content, content_ref = by_hand(tiny / "content.png", 24)
    style, style_ref = by_hand(tiny / "style.png", 20)
    x = a.preprocess(content)
    np.testing.assert_allclose(x.asnumpy(), content_ref, rtol=0, atol=1e-4)
    features, ref = a.features(x), numpy_tiny_vgg(content_ref, convs)
    assert set(features) == {"conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"}
    for name, fa in features.items():
        assert np.linalg.norm(fa.asnumpy() - ref[name]) <= 1e-5 * np.linalg.norm(ref[name]), name
    a.set_content(x)
    a.set_style(a.preprocess(style))
    shifted = np.random.RandomState(2).uniform(-20, 20, content_ref.shape)
    losses = a.loss(x + mx.nd.array(shifted))
    mine = numpy_tiny_vgg(content_ref + shifted, convs)
    styled = numpy_tiny_vgg(style_ref, convs)

    def gram_np(f):
        f = f.reshape(f.shape[1], -1)
        return f @ f.T / f.shape[1]
    expected = {"content/conv4_2": 0.5 * np.sum((mine["conv4_2"] - ref["conv4_2"]) ** 2)}
    for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"):
        n = mine[name].shape[1]
        expected[f"style/{name}"] = np.sum((gram_np(mine[name]) - gram_np(styled[name])) ** 2) / (4 * n * n)
    assert set(losses.per_layer) == set(expected)
    for key, value in expected.items():
        assert value > 0 and abs(losses.per_layer[key] - value) <= 1e-4 * value, key
    capsys.readouterr()


LRN_NET = '''name: "WithLRN"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
'''


def test_feature_gradient_equals_pycaffe_backward_through_lrn(tmp_path):
    """The device gradient w.r.t. the image equals pycaffe's layer-by-layer backward, also
    through LRN (CaffeNet/GoogLeNet), where MXNet's oneDNN backward needs a guard."""
    import caffe_compat as caffe
    from caffe_compat.recipes.style import FeatureNet
    (tmp_path / "net.prototxt").write_text(LRN_NET)
    rs = np.random.RandomState(0)
    write_caffemodel(str(tmp_path / "w.caffemodel"), [
        LayerWeights("conv1", "Convolution", [(rs.randn(8, 3, 3, 3) * 0.1).astype(np.float32),
                                              np.zeros(8, np.float32)]),
        LayerWeights("conv2", "Convolution", [(rs.randn(8, 8, 3, 3) * 0.3).astype(np.float32),
                                              np.zeros(8, np.float32)])])
    fx = FeatureNet.from_files(str(tmp_path / "net.prototxt"), str(tmp_path / "w.caffemodel"),
                               ["conv2"])
    x = mx.nd.array(rs.uniform(-100, 100, (1, 3, 16, 16)))
    head = rs.randn(1, 8, 16, 16).astype(np.float32)
    x.attach_grad()
    with mx.autograd.record():
        feat = fx(x)["conv2"]
    feat.backward(mx.nd.array(head))
    net = caffe.Net(str(tmp_path / "net.prototxt"), str(tmp_path / "w.caffemodel"), caffe.TEST)
    net.blobs["data"].data[...] = x.asnumpy()
    net.forward()
    np.testing.assert_allclose(feat.asnumpy(), net.blobs["conv2"].data, rtol=1e-5, atol=1e-5)
    net.blobs["conv2"].diff[...] = head
    net.backward()
    ours, theirs = x.grad.asnumpy(), net.blobs["data"].diff
    assert np.linalg.norm(ours - theirs) <= 1e-5 * np.linalg.norm(theirs)
