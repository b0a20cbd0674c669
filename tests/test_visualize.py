"""The visualisation recipe (caffe_compat.recipes.visualize) and ``caffe-compat saliency``.

Every net is tiny and built here (prototxt text, filler weights under a fixed seed);
nothing touches the network.
"""
from __future__ import annotations

import hashlib
import os.path as os_path
import json

import numpy as np
import pytest
from PIL import Image

import caffe_compat as caffe
from caffe_compat.cli.main import main as cli_main
from caffe_compat.engine.network import CaffeNet
from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes import visualize as vis
from caffe_compat.recipes.visualize.backprop import Target

CLASSIFIER = """
name: "tiny_classifier"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1
          weight_filler { type: "gaussian" std: 0.4 }
          bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool1" top: "fc6"
        inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.2 }
          bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc6" top: "fc8"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""

CONV_RELU_FC = """
name: "conv_relu_fc"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 3 kernel_size: 3
          weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 }
          bias_filler { type: "gaussian" std: 1 } } }
"""


def build(text: str, seed: int = 3) -> CaffeNet:
    caffe.set_random_seed(seed)
    return CaffeNet.from_prototxt(text)


def params(block, layer: str) -> list:
    return [p.data().asnumpy() for p in block.layers_by_name()[layer].blobs()]


# --------------------------------------------------------------------------- saliency

def test_saliency_equals_finite_difference_gradient():
    block = build(CLASSIFIER)
    rng = np.random.RandomState(0)
    x = rng.randn(1, 3, 12, 12).astype(np.float32)
    k = 2
    smap, result = vis.class_saliency(block, x, k)
    assert result.activation.shape == (1, 4)          # fc8: pre-softmax scores
    score = vis.class_score_target(block)
    assert (score.blob, score.layer) == ("fc8", "fc8")

    def s(v):
        return float(vis.activation(block, v, score)[0, k])
    eps = 1e-2
    s0 = s(x)
    forward, backward = np.zeros_like(x), np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        forward[idx] = (s(up) - s0) / eps
        backward[idx] = (s0 - s(down)) / eps
    central = (forward + backward) / 2
    g = result.gradient
    # The score is piecewise linear (ReLU, max pooling): where the two one-sided
    # differences agree no kink lies within eps and the central difference is the
    # gradient; where a kink does, the gradient is the slope of one of the two sides.
    smooth = np.abs(forward - backward) < 2e-3
    assert smooth.mean() > 0.95
    assert np.linalg.norm(g[smooth] - central[smooth]) / np.linalg.norm(central[smooth]) < 1e-3
    at_kink = np.minimum(np.abs(g - forward), np.abs(g - backward))[~smooth]
    assert np.all(at_kink < 2e-3)
    np.testing.assert_array_equal(smap, np.abs(g[0]).max(axis=0))
    assert smap.shape == (12, 12)


def test_saliency_map_is_channel_max_of_abs():
    g = np.array([[[1.0, -5.0]], [[-2.0, 3.0]], [[0.5, 4.0]]])
    np.testing.assert_array_equal(vis.saliency_map(g), [[2.0, 5.0]])


# --------------------------------------------------------------------------- ReLU rules

def numpy_reference(block, x, cls: int, method: str):
    """conv -> ReLU -> fc backward in numpy: (d/dx, d/d conv output) for the class."""
    w, b = params(block, "conv1")
    fw, fb = params(block, "fc")
    c, h, wd = w.shape[0], x.shape[2] - 2, x.shape[3] - 2
    pre = np.zeros((c, h, wd))
    for o in range(c):
        for i in range(h):
            for j in range(wd):
                pre[o, i, j] = (w[o] * x[0, :, i:i + 3, j:j + 3]).sum() + b[o]
    top = fw[cls].reshape(c, h, wd)             # d score / d relu output
    rules = {"backprop": top * (pre > 0), "deconvnet": top * (top > 0),
             "guided": top * (pre > 0) * (top > 0)}
    d_pre = rules[method]
    dx = np.zeros(x.shape[1:])
    for o in range(c):
        for i in range(h):
            for j in range(wd):
                dx[:, i:i + 3, j:j + 3] += d_pre[o, i, j] * w[o]
    return dx, d_pre, pre, top


@pytest.mark.parametrize("method", ["backprop", "deconvnet", "guided"])
def test_relu_rules_match_numpy_derivation(method):
    block = build(CONV_RELU_FC, seed=5)
    x = np.random.RandomState(1).randn(1, 2, 6, 6).astype(np.float32)
    dx, d_pre, pre, top = numpy_reference(block, x, 1, method)
    # The rule must matter here: some positions are active with a negative top diff
    # and some inactive with a positive one.
    assert ((pre > 0) & (top < 0)).any() and ((pre <= 0) & (top > 0)).any()
    fc = vis.resolve_target(block, "fc")
    result = vis.gradient(block, x, fc, vis.class_head(1), method)
    np.testing.assert_allclose(result.gradient[0], dx, rtol=1e-5, atol=1e-5)
    # At the ReLU's bottom (conv1 right after its layer, before the in-place ReLU),
    # the zeros are exactly the rule's.
    conv_out = vis.layer_target(block, "conv1")            # pre-ReLU value
    assert conv_out == Target("conv1", 1, "conv1")
    assert vis.resolve_target(block, "conv1") == Target("conv1", 2, "relu1")   # the blob
    at_relu = vis.gradient(block, x, fc, vis.class_head(1), method, wrt=conv_out).gradient[0]
    np.testing.assert_array_equal(at_relu == 0, d_pre == 0)
    np.testing.assert_allclose(at_relu, d_pre, rtol=1e-5, atol=1e-6)
    expected_zeros = {"backprop": pre <= 0, "deconvnet": top <= 0,
                      "guided": (pre <= 0) | (top <= 0)}[method]
    np.testing.assert_array_equal(at_relu == 0, expected_zeros)


def test_relu_rules_differ_from_each_other():
    block = build(CONV_RELU_FC, seed=5)
    x = np.random.RandomState(1).randn(1, 2, 6, 6).astype(np.float32)
    fc = vis.resolve_target(block, "fc")
    grads = {m: vis.gradient(block, x, fc, vis.class_head(1), m).gradient for m in vis.METHODS}
    assert not np.allclose(grads["backprop"], grads["guided"])
    assert not np.allclose(grads["deconvnet"], grads["guided"])


def test_unit_gradient_projects_one_neuron():
    block = build(CLASSIFIER)
    x = np.random.RandomState(2).randn(1, 3, 12, 12).astype(np.float32)
    target = vis.resolve_target(block, "pool1")
    act = vis.activation(block, x, target)
    result = vis.unit_gradient(block, x, target, unit=3, method="guided")
    y, xx = np.unravel_index(np.argmax(act[0, 3]), act.shape[2:])
    head = np.zeros_like(act)
    head[0, 3, y, xx] = 1
    np.testing.assert_array_equal(result.head, head)
    # A pool1 unit sees a 4x4 window: the gradient is zero outside it.
    field = vis.receptive_field(block, "pool1")
    y0, x0, y1, x1 = field.box(y, xx)
    outside = np.ones((12, 12), bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert np.all(result.gradient[0][:, outside] == 0)
    assert np.abs(result.gradient).sum() > 0


def test_bad_targets_are_clear_errors():
    block = build(CLASSIFIER)
    x = np.zeros((1, 3, 12, 12), np.float32)
    with pytest.raises(CaffeCompatError, match="no blob or layer named 'nope'"):
        vis.resolve_target(block, "nope")
    with pytest.raises(CaffeCompatError, match="class 9 is out of range"):
        vis.class_gradient(block, x, 9)
    with pytest.raises(CaffeCompatError, match="unit 7 is out of range"):
        vis.unit_gradient(block, x, vis.resolve_target(block, "conv1"), unit=7)
    with pytest.raises(CaffeCompatError, match="unknown method"):
        vis.class_gradient(block, x, 0, method="magic")


# --------------------------------------------------------------------------- receptive fields

RF_NET = """
name: "rf"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 40 dim: 40 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 2 kernel_size: 5 pad: 2
          weight_filler { type: "uniform" min: 0.1 max: 1 } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 2 kernel_size: 3 pad: 1 dilation: 2
          weight_filler { type: "uniform" min: 0.1 max: 1 } } }
"""


def test_receptive_field_matches_gradient_support():
    block = build(RF_NET)
    field = vis.receptive_field(block, "conv2")
    # conv1: 5 wide, offset -2; AVE pool 3/2: 7 wide, stride 2; dilated 3x3 conv, pad 1:
    # 7 + 2 * 2 * 2 = 15 wide, offset -2 - 1 * 2 = -4.
    assert field == vis.ReceptiveField((15, 15), (2, 2), (-4, -4))
    x = np.ones((1, 1, 40, 40), np.float32)
    target = vis.resolve_target(block, "conv2")
    shape = vis.activation(block, x, target).shape
    for pos in [(0, 0), (5, 7), (shape[2] - 1, shape[3] - 1)]:
        g = vis.unit_gradient(block, x, target, 1, pos, "backprop").gradient[0, 0]
        ys, xs = np.nonzero(g)
        y0, x0, y1, x1 = field.box(*pos)
        assert (ys.min(), xs.min()) == (max(y0, 0), max(x0, 0))
        assert (ys.max() + 1, xs.max() + 1) == (min(y1, 40), min(x1, 40))


# --------------------------------------------------------------------------- top patches

PATTERN_NET = """
name: "pattern"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 2 kernel_size: 5 pad: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 2 kernel_size: 3 } }
"""

CROSS = np.array([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0],
                  [0, 0, 1, 0, 0]], np.float32)


def test_top_patches_find_the_planted_pattern(tmp_path):
    block = build(PATTERN_NET)
    w1, _ = block.layers_by_name()["conv1"].blobs()
    k = np.zeros((2, 3, 5, 5), np.float32)
    k[1] = (CROSS - CROSS.mean())[None]                     # unit 1 detects a cross
    k[0] = -k[1]
    w1.set_data(k)
    w2, _ = block.layers_by_name()["conv2"].blobs()
    k2 = np.zeros((2, 2, 3, 3), np.float32)
    k2[1, 1] = 1.0 / 9
    w2.set_data(k2)
    rng = np.random.RandomState(4)
    folder = tmp_path / "images"
    folder.mkdir()
    planted = {}
    for i in range(7):
        img = (rng.rand(40, 48, 3) * 90).astype(np.uint8)    # not the net's size: resized
        if i == 4:
            y, x = 12, 25
            img[y:y + 5, x:x + 5][CROSS > 0] = 255
            planted = (y, x)
        Image.fromarray(img).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    source = vis.NetSource(prototxt="<built in the test>", weights=None,
                           preprocessing=vis.Preprocessing(mean=(128, 128, 128)))
    # Images are resized to the net input: make it their size, so the pattern keeps
    # its shape and the box can be checked pixel for pixel.
    block.reshape({"data": (1, 3, 40, 48)})
    patches = vis.top_patches(source, str(folder), "conv2", unit=1, top=3, per_image=1,
                              batch_size=3, block=block)
    assert len(patches) == 3
    assert [p.score for p in patches] == sorted((p.score for p in patches), reverse=True)
    best = patches[0]
    assert best.image.endswith("img4.png")
    y0, x0, y1, x1 = best.box
    py, px = planted
    assert y0 <= py and py + 5 <= y1 and x0 <= px and px + 5 <= x1
    assert (y1 - y0, x1 - x0) == (10, 10)                  # 5 + 1 + 2 * 2: the field
    assert best.pixels.shape == (10, 10, 3)
    assert len({p.image for p in patches}) == 3           # one position per image
    grid = vis.patch_picture(patches, cell=20, columns=3)
    assert grid.shape == (20, 64, 3) and grid.dtype == np.uint8


def test_top_patches_refuse_a_blob_without_a_map(tmp_path):
    block = build(CLASSIFIER)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "a.png")
    source = vis.NetSource("<test>", None)
    with pytest.raises(CaffeCompatError, match="no spatial map"):
        vis.top_patches(source, str(tmp_path), "fc6", unit=0, block=block)


# --------------------------------------------------------------------------- class model

def test_class_model_increases_the_class_score():
    block = build(CLASSIFIER)
    result = vis.class_model(block, 1, iters=25, lr=0.05, decay=0.01)
    scores = result.scores
    assert len(scores) == 26
    assert scores[-1] > scores[0] + 1.0
    assert np.mean(np.diff(scores) > 0) > 0.8                # ascent, step after step
    picture = result.picture()
    assert picture.shape == (12, 12, 3) and picture.dtype == np.uint8
    # The L2 decay keeps the image bounded: a strong decay holds it nearer zero.
    tight = vis.class_model(block, 1, iters=25, lr=0.05, decay=0.5)
    assert np.abs(tight.data).max() < np.abs(result.data).max()
    jittered = vis.class_model(block, 1, iters=25, lr=0.05, jitter=1, blur_every=5)
    assert jittered.scores[-1] > jittered.scores[0]


# --------------------------------------------------------------------------- CLI

@pytest.fixture
def files(tmp_path):
    block = build(CLASSIFIER)
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(CLASSIFIER)
    weights = tmp_path / "w.caffemodel"
    block.save_caffemodel(str(weights))
    img = tmp_path / "img.png"
    Image.fromarray((np.random.RandomState(7).rand(20, 24, 3) * 255).astype(np.uint8)).save(img)
    labels = tmp_path / "labels.txt"
    labels.write_text("ant\nbee\ncat\ndog\n")
    return proto, weights, img, labels


@pytest.mark.parametrize("extra", [["--method", "saliency", "--class", "2"],
                                   ["--method", "guided", "--layer", "conv1", "--unit", "1"],
                                   ["--method", "deconvnet"]])
def test_saliency_cli_writes_side_by_side_png(files, tmp_path, capsys, extra):
    proto, weights, img, labels = files
    out = tmp_path / "out" / "sal.png"
    rc = cli_main(["saliency", str(img), "--prototxt", str(proto), "--weights", str(weights),
                   "--mean", "100,110,120", "--labels", str(labels), "-o", str(out)] + extra)
    assert rc == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape == (12, 12 + 4 + 12, 3)            # image | gap | map
    line = capsys.readouterr().out
    assert str(out) in line
    if "--class" in extra:
        assert "class 2 (fc8) (cat)" in line
    if "--layer" in extra:
        assert "conv1 unit 1 at (" in line


def test_saliency_map_is_simonyans_map_as_a_pycaffe_script_computes_it(files, tmp_path):
    """The CLI's map against an independent reference: the legacy pycaffe recipe
    (Transformer, forward to the class score, a one-hot diff, backward) and Simonyan et
    al.'s definition, max over channels of |d score / d image|, rescaled to [0, 255]
    with white = high."""
    proto, weights, img, _ = files
    out = tmp_path / "sal.png"
    assert cli_main(["saliency", str(img), "--prototxt", str(proto), "--weights", str(weights),
                     "--class", "0", "-o", str(out)]) == 0
    fb = tmp_path / "force_backward.prototxt"
    fb.write_text("force_backward: true\n" + proto.read_text())
    net = caffe.Net(str(fb), str(weights), caffe.TEST)
    t = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    net.blobs["data"].data[...] = t.preprocess("data", caffe.io.load_image(str(img)))
    net.forward(end="fc8")
    net.blobs["fc8"].diff[...] = np.eye(4)[0]
    net.backward(start="fc8")
    sal = np.abs(net.blobs["data"].diff[0]).max(axis=0).astype(np.float64)
    expected = np.round(255 * (sal - sal.min()) / (sal.max() - sal.min()))
    picture = np.asarray(Image.open(out))[:, 16:].astype(np.float64)
    assert picture.shape == (12, 12, 3)
    assert np.all(picture == picture[:, :, :1])                   # grey
    assert np.abs(picture[:, :, 0] - expected).max() <= 1         # float rounding at .5


def test_saliency_cli_map_is_the_hand_derived_gradient(tmp_path):
    """The CLI's map against a reference that shares no code with the engine: conv ->
    ReLU -> fc, whose class-score gradient numpy_reference derives by hand, on a 6x6
    image the size of the input (no resizing). The net input is Caffe's (BGR, * 255,
    - mean, CHW); the right half of the PNG is max_k |dS/dI_k| rescaled min..max to
    0..255 grey, the left half the image itself."""
    text = CONV_RELU_FC.replace("dim: 1 dim: 2 dim: 6", "dim: 1 dim: 3 dim: 6")
    block = build(text, seed=5)
    proto, weights, img = tmp_path / "d.prototxt", tmp_path / "w.caffemodel", tmp_path / "i.png"
    proto.write_text(text)
    block.save_caffemodel(str(weights))
    rgb = np.random.RandomState(4).randint(0, 256, (6, 6, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(img)
    out = tmp_path / "sal.png"
    assert cli_main(["saliency", str(img), "--prototxt", str(proto), "--weights", str(weights),
                     "--mean", "100,110,120", "--class", "0", "-o", str(out)]) == 0
    x = (rgb[:, :, ::-1].astype(np.float64) - [100, 110, 120]).transpose(2, 0, 1)[None]
    dx, _, pre, _ = numpy_reference(block, x, 0, "backprop")
    assert (pre > 0).any() and (pre <= 0).any()          # the ReLU gates the gradient
    smap = np.abs(dx).max(axis=0)
    grey = np.round((smap - smap.min()) / (smap.max() - smap.min()) * 255)
    picture = np.asarray(Image.open(out)).astype(np.int64)
    assert picture.shape == (6, 6 + 4 + 6, 3)
    np.testing.assert_array_equal(picture[:, :6], rgb)
    # float32 in the engine, float64 here: a value on a .5 boundary may round either way
    assert np.abs(picture[:, 10:] - grey[:, :, None]).max() <= 1


def test_saliency_cli_errors_are_one_line(files, tmp_path, capsys):
    proto, weights, img, _ = files
    out = str(tmp_path / "x.png")
    base = ["saliency", str(img), "--prototxt", str(proto), "--weights", str(weights), "-o", out]
    assert cli_main(base + ["--class", "9"]) == 2
    assert "class 9 is out of range" in capsys.readouterr().err
    assert cli_main(base + ["--layer", "conv1"]) == 2
    assert "--layer and --unit together" in capsys.readouterr().err
    assert cli_main(["saliency", str(img), "--prototxt", str(proto), "-o", out]) == 2
    assert "--prototxt needs --weights" in capsys.readouterr().err
    assert cli_main(["saliency", str(tmp_path / "missing.png"), "--prototxt", str(proto),
                     "--weights", str(weights), "-o", out]) == 2
    assert "missing.png" in capsys.readouterr().err


def register_zoo_model(tmp_path, monkeypatch, name: str, prototxt_text: str, block,
                       labels=None, mean=(100.0, 110.0, 120.0)) -> None:
    """A registry entry for ``block``'s weights, served from a local mirror folder
    (CAFFE_COMPAT_MIRROR), with the cache in tmp_path: ``--model name`` works offline."""
    home, mirror, reg = tmp_path / "home", tmp_path / "mirror", tmp_path / "zoo"
    for d in (home, mirror, reg):
        d.mkdir(exist_ok=True)
    block.save_caffemodel(str(mirror / f"{name}.caffemodel"))
    sha1 = hashlib.sha1((mirror / f"{name}.caffemodel").read_bytes()).hexdigest()
    (reg / f"{name}.prototxt").write_text(prototxt_text)
    entry = {"prototxt": {"deploy": f"{name}.prototxt"},
             "weights": {"urls": [f"https://models.invalid/{name}.caffemodel"], "sha1": sha1,
                         "size": None},
             "mean": {"values": list(mean)}, "input": {"channel_order": "BGR", "raw_scale": 255}}
    if labels:
        (reg / f"{name}_labels.txt").write_text("\n".join(labels) + "\n")
        entry["labels"] = f"{name}_labels.txt"
    (reg / "registry.json").write_text(json.dumps({"format": "caffe-compat-zoo/1",
                                                   "models": {name: entry}}))
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(home))
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", str(mirror))
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", str(reg / "registry.json"))


def test_saliency_cli_with_a_zoo_model(files, tmp_path, monkeypatch, capsys):
    _, _, img, _ = files
    block = build(CLASSIFIER)
    register_zoo_model(tmp_path, monkeypatch, "tiny_cls", CLASSIFIER, block,
                       labels=["ant", "bee", "cat", "dog"])
    out = tmp_path / "zoo.png"
    assert cli_main(["saliency", str(img), "--model", "tiny_cls", "--method", "guided",
                     "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (12, 28, 3)
    line = capsys.readouterr().out
    source = vis.NetSource.from_zoo("tiny_cls")
    assert source.preprocessing.mean == (100.0, 110.0, 120.0)
    ex = vis.explain_image(source, str(img), method="guided")
    assert f"class {ex.class_index} (fc8) ({source.labels[ex.class_index]})" in line
    assert cli_main(["saliency", str(img), "--model", "tiny_cls", "--prototxt", "x",
                     "--weights", "y", "-o", str(out)]) == 2
    assert "not both" in capsys.readouterr().err


def test_demo_stage_runs_offline(tmp_path):
    from caffe_compat.recipes.visualize.demo import run_demo
    lines = []
    written = run_demo(tmp_path, quick=True, log=lines.append)
    names = sorted(os_path.basename(p) for p in written)
    assert names == ["class_model.png", "deconvnet.png", "guided.png", "patches.png",
                     "saliency.png", "unit.png"]
    assert all(np.asarray(Image.open(p)).ndim == 3 for p in written)
    assert any(line.startswith("class model of class") for line in lines)
