"""The FCN recipe (caffe_compat.recipes.fcn): infer, surgery, score, solve, data layers,
NetSpec builders and the segment / fcn-train / fcn-score commands.

Everything runs on tiny nets and tiny dataset folders written here; nothing touches
the network (fcn-train's offline failure uses a mirror folder that does not exist).
"""
from __future__ import annotations

import io
import os
import random
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest
import scipy.io
from google.protobuf import text_format
from PIL import Image

import caffe_compat as caffe
import golden_harness as gh
from caffe_compat.cli.main import main as cli_main
from caffe_compat.coord_map import crop
from caffe_compat.engine.network import CaffeNet
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
from caffe_compat.net_spec import NetSpec, layers as L
from caffe_compat.proto import caffe_pb2
from caffe_compat.recipes import fcn
from caffe_compat.recipes.fcn import nets, score, solve, surgery
from caffe_compat.recipes.fcn.infer import FCN_MEAN, Segmenter, preprocess
from caffe_compat.recipes.fcn.layers import VOC_MEAN, data_layer_ids
from caffe_compat.recipes.fcn.palette import label_image, overlay, voc_colormap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO_PROTOTXT = os.path.join(REPO, "prototxt")
CORPUS_FCN = os.path.join(REPO, "..", "shared", "corpus", "fcn")
FIXTURE = os.path.join(REPO, "tests", "data", "net_spec", "voc_fcn8s_train.prototxt")
FLT_MIN_LOSS = -np.log(np.finfo(np.float32).tiny)   # Caffe's per-pixel loss cap
LAYERS = nets.LAYERS_MODULE


# --------------------------------------------------------------------------- fixtures
def encode(rgb: np.ndarray, lossless: bool) -> bytes:
    """Image bytes for a ``.jpg`` path: real JPEG, or PNG content when the test needs
    exact pixels (PIL opens files by content, so the data layers read either)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG" if lossless else "JPEG", quality=95)
    return buf.getvalue()


def write_voc(root, samples: dict, splits: dict, lossless: bool = False) -> str:
    """A VOC-layout folder: JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette
    indices), ImageSets/Segmentation/<split>.txt."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for idx, (rgb, label) in samples.items():
        with open(os.path.join(root, "JPEGImages", idx + ".jpg"), "wb") as f:
            f.write(encode(rgb, lossless))
        label_image(label).save(os.path.join(root, "SegmentationClass", idx + ".png"))
    for split, ids in splits.items():
        with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    return str(root)


def write_sbdd(root, samples: dict, splits: dict) -> str:
    """An SBD-layout folder: img/<id>.jpg, cls/<id>.mat (GTcls.Segmentation), <split>.txt."""
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    os.makedirs(os.path.join(root, "cls"), exist_ok=True)
    for idx, (rgb, label) in samples.items():
        with open(os.path.join(root, "img", idx + ".jpg"), "wb") as f:
            f.write(encode(rgb, False))
        scipy.io.savemat(os.path.join(root, "cls", idx + ".mat"),
                         {"GTcls": {"Segmentation": label, "Boundaries": np.zeros((1, 1)),
                                    "CategoriesPresent": np.unique(label).astype(np.uint8)}})
    for split, ids in splits.items():
        with open(os.path.join(root, split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    return str(root)


def random_samples(n: int, h: int = 32, w: int = 32, classes: int = 3, seed: int = 0) -> dict:
    rng = np.random.RandomState(seed)
    out = {}
    for i in range(n):
        rgb = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        label = rng.randint(0, classes, (h, w)).astype(np.uint8)
        label[:2, :] = 255                   # a void border, as VOC's object outlines
        out[f"2008_{i:06d}"] = (rgb, label)
    return out


@pytest.fixture
def original_module_names():
    """install_layer_modules() edits sys.modules: undo it after the test."""
    before = {n: sys.modules.get(n) for n in fcn.ORIGINAL_LAYER_MODULES + ("layers",)}
    yield
    for name, mod in before.items():
        if mod is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = mod


def python_data(layer: str, ntop: int, params: dict, module: str = LAYERS):
    return L.Python(module=module, layer=layer, ntop=ntop, param_str=str(params))


def tiny_fcn32s(data_layer, classes: int = 3) -> caffe_pb2.NetParameter:
    """FCN-32s at toy scale: conv1_1 pad 100, two pool stages, fc6 (4x4) / fc7 as
    convolutions, score_fr, a fixed Deconvolution ``upscore`` (8/4), crop, FCN's loss."""
    n = NetSpec()
    n.data, n.label = data_layer
    n.conv1_1, n.relu1_1 = nets.conv_relu(n.data, 4, pad=100)
    n.pool1 = nets.max_pool(n.relu1_1)
    n.conv2_1, n.relu2_1 = nets.conv_relu(n.pool1, 8)
    n.pool2 = nets.max_pool(n.relu2_1)
    n.fc6, n.relu6 = nets.conv_relu(n.pool2, 16, ks=4, pad=0)
    n.fc7, n.relu7 = nets.conv_relu(n.relu6, 16, ks=1, pad=0)
    n.score_fr = nets.score_layer(n.relu7, classes)
    n.upscore = nets.upsample(n.score_fr, classes, 8, 4)
    n.score = crop(n.upscore, n.data)
    n.loss = nets.softmax_loss(n.score, n.label)
    return n.to_proto()


CLASSIFIER = """
name: "tiny_vgg"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer { name: "conv1_1" type: "Convolution" bottom: "data" top: "conv1_1"
        convolution_param { num_output: 4 pad: 1 kernel_size: 3 } }
layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1_1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2_1" type: "Convolution" bottom: "pool1" top: "conv2_1"
        convolution_param { num_output: 8 pad: 1 kernel_size: 3 } }
layer { name: "relu2_1" type: "ReLU" bottom: "conv2_1" top: "conv2_1" }
layer { name: "pool2" type: "Pooling" bottom: "conv2_1" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "%(fc6)s" bottom: "pool2" top: "fc6" %(fc6_param)s }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "%(fc)s" bottom: "fc6" top: "fc7" %(fc7_param)s }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "%(fc)s" bottom: "fc7" top: "fc8" %(fc8_param)s }
"""


def classifier_prototxt(fully_conv: bool) -> str:
    """A VGG-like classifier (fc6/fc7/fc8 InnerProduct) or its fully convolutional twin."""
    if fully_conv:
        return CLASSIFIER % dict(
            fc6="Convolution", fc="Convolution",
            fc6_param="convolution_param { num_output: 16 kernel_size: 4 }",
            fc7_param="convolution_param { num_output: 16 kernel_size: 1 }",
            fc8_param="convolution_param { num_output: 5 kernel_size: 1 }")
    return CLASSIFIER % dict(
        fc6="InnerProduct", fc="InnerProduct",
        fc6_param="inner_product_param { num_output: 16 }",
        fc7_param="inner_product_param { num_output: 16 }",
        fc8_param="inner_product_param { num_output: 5 }")


def random_classifier(tmp_path, seed: int = 0):
    """The fully connected classifier with random weights (a pycaffe Net)."""
    path = tmp_path / "classifier.prototxt"
    path.write_text(classifier_prototxt(False))
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.RandomState(seed)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.randn(*b.data.shape) * 0.3
    return net


# --------------------------------------------------------------------------- infer
def test_infer_on_golden_fcn_tiny_matches_caffe():
    """infer.py's flow on the real-Caffe fcn_tiny set: its input is an image minus the
    BGR mean (104, 117, 123), so the RGB image is rebuilt and the same mean passed."""
    gs = gh.load("fcn_tiny")
    x = gs.npz["input/data"]
    mean = (104.0, 117.0, 123.0)
    rgb = (x[0] + np.array(mean, np.float32)[:, None, None]).transpose(1, 2, 0)[:, :, ::-1]
    seg = Segmenter.from_files(gs.prototxt, os.path.join(gs.dir, "weights.caffemodel"), mean=mean)
    ref = gs.npz["data/score"][0]
    assert gh.rel_err(seg.scores(rgb), ref) <= 1e-5
    label = seg.segment(rgb)
    assert label.shape == ref.shape[1:] == (64, 80)
    assert np.array_equal(label, ref.argmax(0))
    # a second image size through the same loaded (hybridized) net
    small = rgb[:40, :50]
    assert seg.segment(small).shape == (40, 50)
    assert np.array_equal(seg.segment(rgb), label)


def test_segmenter_picks_the_semantic_head_of_two(tmp_path):
    """SIFT Flow style: two heads, no ``score`` blob: the first computed output
    (score_sem) is segmented unless another is asked for."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 20, 20]))
    n.conv1_1, n.relu1_1 = nets.conv_relu(n.data, 4, pad=100)
    n.pool1 = nets.max_pool(n.relu1_1, ks=32, stride=32)      # the trunk's stride 32
    nets.score_head(n, n.data, n.pool1, 3, 32, s="_sem")
    nets.score_head(n, n.data, n.pool1, 2, 32, s="_geo")
    (tmp_path / "two.prototxt").write_text(str(n.to_proto()))
    rgb = np.zeros((20, 20, 3), np.uint8)
    seg = Segmenter(CaffeNet.from_prototxt(str(tmp_path / "two.prototxt")))
    assert seg.output == "score_sem" and seg.scores(rgb).shape == (3, 20, 20)
    geo = Segmenter(CaffeNet.from_prototxt(str(tmp_path / "two.prototxt")), output="score_geo")
    assert geo.scores(rgb).shape == (2, 20, 20)


def test_preprocess_is_infer_py():
    rgb = np.random.RandomState(0).randint(0, 256, (5, 7, 3)).astype(np.uint8)
    ours = preprocess(rgb)
    in_ = np.array(rgb, dtype=np.float32)[:, :, ::-1]
    in_ -= np.array((104.00698793, 116.66876762, 122.67891434))
    assert ours.dtype == np.float32 and ours.shape == (3, 5, 7)
    assert np.array_equal(ours, in_.transpose((2, 0, 1)))
    assert FCN_MEAN == (104.00698793, 116.66876762, 122.67891434)


def test_voc_palette_png_and_overlay(tmp_path):
    cmap = voc_colormap()
    assert cmap[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert cmap[20].tolist() == [0, 64, 128] and cmap[255].tolist() == [224, 224, 192]
    label = np.array([[0, 1, 2], [20, 255, 7]], np.uint8)
    path = tmp_path / "l.png"
    label_image(label).save(path)
    back = Image.open(path)
    assert back.mode == "P" and np.array_equal(np.array(back), label)
    assert back.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    img = np.full((2, 3, 3), 100, np.uint8)
    out = overlay(img, label, alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100]             # background kept
    assert out[0, 1].tolist() == [114, 50, 50]               # (100 + 128) / 2, 100 / 2
    with pytest.raises(ValueError):
        label_image(np.array([[256]]))


# --------------------------------------------------------------------------- shapes
def fcn_deploys() -> list[str]:
    prefixes = ("voc-fcn", "pascalcontext-", "nyud-", "siftflow-")
    found = sorted(os.path.join(ZOO_PROTOTXT, d, "deploy.prototxt")
                   for d in os.listdir(ZOO_PROTOTXT) if d.startswith(prefixes))
    return [p for p in found if os.path.isfile(p)]


def check_output_sizes(prototxt: str, h: int, w: int) -> int:
    """Every score the net outputs (a Crop no layer reads) is H x W like its inputs;
    returns how many there are."""
    param = nets.read_net_param(prototxt)
    inputs = {l.top[0]: l for l in param.layer if l.type == "Input"}
    given = {name: (1, int(l.input_param.shape[0].dim[1]), h, w) for name, l in inputs.items()}
    shapes = nets.infer_shapes(param, given)
    read = {b for l in param.layer for b in l.bottom}
    crops = [l for l in param.layer if l.type == "Crop" and l.top[0] not in read]
    for layer in crops:
        assert shapes[layer.top[0]][2:] == (h, w), (prototxt, layer.name, shapes[layer.top[0]])
    return len(crops)


SIZES = [(500, 500), (375, 500), (333, 271)]


def test_every_fcn_deploy_prototxt_keeps_the_input_size():
    deploys = fcn_deploys()
    assert len(deploys) == 15
    for path in deploys:
        for h, w in SIZES:
            heads = check_output_sizes(path, h, w)
            assert heads == (2 if "siftflow" in path else 1), path


@pytest.mark.skipif(not os.path.isdir(CORPUS_FCN), reason="../shared/corpus/fcn absent")
def test_every_corpus_fcn_prototxt_keeps_the_input_size():
    paths = [os.path.join(d, f) for d, _, files in os.walk(CORPUS_FCN) for f in files
             if f.endswith("deploy.prototxt")]
    for path in paths:
        for h, w in SIZES:
            assert check_output_sizes(path, h, w) >= 1, path


def test_infer_shapes_agrees_with_the_engine():
    """The allocation-free shape inference gives CaffeNet.reshape's shapes (fcn_tiny,
    same crop/deconv structure as voc-fcn8s)."""
    gs = gh.load("fcn_tiny")
    net = CaffeNet.from_prototxt(gs.prototxt)
    for h, w in SIZES:
        ours = nets.infer_shapes(gs.prototxt, {"data": (1, 3, h, w)})
        engine = net.reshape({"data": (1, 3, h, w)})
        assert {k: tuple(v) for k, v in engine.items()} == {k: ours[k] for k in engine}
        assert ours["score"] == (1, 21, h, w)


# --------------------------------------------------------------------------- surgery
def test_transplant_makes_the_fully_convolutional_twin_equal(tmp_path):
    fc_net = random_classifier(tmp_path)
    conv_path = tmp_path / "conv.prototxt"
    conv_path.write_text(classifier_prototxt(True))
    conv_net = caffe.Net(str(conv_path), caffe.TEST)
    lines = []
    report = surgery.transplant(conv_net, fc_net, log=lines.append)
    assert ("coercing", "fc6", 0) in report and ("copying", "conv1_1", 0) in report
    assert "coercing fc6 0 from (16, 128) to (16, 8, 4, 4)" in lines
    x = np.random.RandomState(1).uniform(-50, 50, (1, 3, 16, 16)).astype(np.float32)
    ref = fc_net.forward(data=x)["fc8"]
    ours = conv_net.forward(data=x)["fc8"]
    assert ours.shape == (1, 5, 1, 1)
    assert gh.rel_err(ours[:, :, 0, 0], ref) <= 1e-5
    # twice the size: a 3x3 map of scores from the same weights
    conv_net.blobs["data"].reshape(1, 3, 24, 24)
    assert conv_net.forward(data=np.zeros((1, 3, 24, 24), np.float32))["fc8"].shape == (1, 5, 3, 3)


def test_transplant_drops_unmatched_layers_and_blobs(tmp_path):
    fc_net = random_classifier(tmp_path)
    proto = tmp_path / "small.prototxt"
    proto.write_text(textwrap.dedent("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "conv1_1x" type: "Convolution" bottom: "data" top: "c"
                convolution_param { num_output: 4 pad: 1 kernel_size: 3 bias_term: false } }
    """))
    net = caffe.Net(str(proto), caffe.TEST)
    report = surgery.transplant(net, fc_net, suffix="x", log=None)
    assert ("copying", "conv1_1", 0) in report
    assert ("dropping", "conv1_1", 1) in report          # the bias blob has no place
    assert ("dropping", "fc8", None) in report
    assert np.array_equal(net.params["conv1_1x"][0].data, fc_net.params["conv1_1"][0].data)


def test_upsample_filt_is_the_bilinear_tent():
    assert np.allclose(surgery.upsample_filt(4)[0], [0.0625, 0.1875, 0.1875, 0.0625])
    odd = surgery.upsample_filt(3)                       # factor 2, centre 1
    assert np.allclose(odd, np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    k16 = surgery.upsample_filt(16)                      # upscore8's kernel
    assert np.allclose(k16, k16.T) and np.isclose(k16.sum(), 64.0)


def deconv_net(tmp_path, channels: int, ks: int, stride: int, group: int = 1):
    proto = tmp_path / f"deconv{channels}_{ks}_{group}.prototxt"
    proto.write_text(textwrap.dedent(f"""
        layer {{ name: "data" type: "Input" top: "data"
                 input_param {{ shape {{ dim: 1 dim: {channels} dim: 6 dim: 7 }} }} }}
        layer {{ name: "upscore" type: "Deconvolution" bottom: "data" top: "up"
                 param {{ lr_mult: 0 }}
                 convolution_param {{ num_output: {channels} kernel_size: {ks} stride: {stride}
                                      group: {group} bias_term: false }} }}
    """))
    return caffe.Net(str(proto), caffe.TEST)


def numpy_deconv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Transposed convolution by scattering: out[o, s*i + u, s*j + v] += x[c, i, j] w[c, o, u, v]."""
    c, h, wd = x.shape
    _, o, k, _ = w.shape
    out = np.zeros((o, stride * (h - 1) + k, stride * (wd - 1) + k))
    for i in range(h):
        for j in range(wd):
            out[:, stride * i:stride * i + k, stride * j:stride * j + k] += \
                np.einsum("c,cokl->okl", x[:, i, j], w)
    return out


def test_interp_deconvolution_upsamples_a_ramp_exactly(tmp_path):
    net = deconv_net(tmp_path, channels=3, ks=4, stride=2)
    surgery.interp(net, surgery.interp_layers(net))
    w = net.params["upscore"][0].data
    assert np.array_equal(w[1, 1], surgery.upsample_filt(4)) and not w[0, 1].any()
    yy, xx = np.mgrid[0:6, 0:7].astype(np.float32)
    ramp = np.stack([2 * yy + 3 * xx + 1, -yy + 0.5 * xx, 5 * xx])          # 3 channels
    out = net.forward(data=ramp[None])["up"][0]
    assert out.shape == (3, 14, 16)
    assert np.allclose(out, numpy_deconv(ramp, w, 2), rtol=0, atol=1e-5)
    # away from the border, 2x bilinear upsampling of a linear ramp IS the ramp at
    # (p - 1.5) / 2 (output p samples input (p - 1.5) / 2 for kernel 4, stride 2)
    p = np.arange(2, 12)
    q = np.arange(2, 14)
    src_y, src_x = np.meshgrid((p - 1.5) / 2, (q - 1.5) / 2, indexing="ij")
    expected = 2 * src_y + 3 * src_x + 1
    assert np.allclose(out[0][np.ix_(p, q)], expected, rtol=0, atol=1e-5)


def test_interp_on_grouped_deconvolution_and_errors(tmp_path):
    net = deconv_net(tmp_path, channels=2, ks=4, stride=2, group=2)   # weights (2, 1, 4, 4)
    surgery.interp(net, ["upscore"])
    assert np.array_equal(net.params["upscore"][0].data[1, 0], surgery.upsample_filt(4))
    fc_net = random_classifier(tmp_path)
    with pytest.raises(ValueError, match="channels need to be the same"):
        surgery.interp(fc_net, ["conv2_1"])                  # 8 x 4 x 3 x 3
    with pytest.raises(ValueError, match="no layer"):
        surgery.interp(fc_net, ["upscore9"])


def test_expand_score_keeps_the_old_classes(tmp_path):
    (tmp_path / "conv5.prototxt").write_text(classifier_prototxt(True))
    (tmp_path / "conv7.prototxt").write_text(
        classifier_prototxt(True).replace("num_output: 5", "num_output: 7"))
    old = caffe.Net(str(tmp_path / "conv5.prototxt"), caffe.TEST)
    new = caffe.Net(str(tmp_path / "conv7.prototxt"), caffe.TEST)
    rng = np.random.RandomState(2)
    old.params["fc8"][0].data[...] = rng.randn(5, 16, 1, 1)
    old.params["fc8"][1].data[...] = rng.randn(5)
    new.params["fc8"][0].data[...] = -1
    new.params["fc8"][1].data[...] = -1
    surgery.expand_score(new, "fc8", old, "fc8")
    assert np.array_equal(new.params["fc8"][0].data[:5], old.params["fc8"][0].data)
    assert np.array_equal(new.params["fc8"][1].data[:5], old.params["fc8"][1].data)
    assert (new.params["fc8"][0].data[5:] == -1).all() and (new.params["fc8"][1].data[5:] == -1).all()
    x = np.random.RandomState(3).randn(1, 3, 16, 16).astype(np.float32)
    for name in ("conv1_1", "conv2_1", "fc6", "fc7"):
        for a, b in zip(new.params[name], old.params[name]):
            a.data[...] = b.data
    assert np.allclose(new.forward(data=x)["fc8"][:, :5], old.forward(data=x)["fc8"], atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        surgery.expand_score(old, "fc8", new, "fc8")


# --------------------------------------------------------------------------- score
def score_folder(tmp_path) -> str:
    """Two 32x32 images of flat 16x16 blocks (lossless) and labels with a known
    confusion: image a = [[red, green], [blue, red]] labelled [[1, 1], [0, void]];
    image b = all green labelled [[2], [0]] (top/bottom halves)."""
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)

    def blocks(colors, size=16):
        return np.kron(np.asarray(colors, np.uint8).reshape(2, 2, 3).transpose(0, 1, 2),
                       np.ones((size, size, 1), np.uint8)).astype(np.uint8)

    img_a = np.zeros((32, 32, 3), np.uint8)
    for (r, c), color in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [red, green, blue, red]):
        img_a[16 * r:16 * r + 16, 16 * c:16 * c + 16] = color
    lab_a = np.zeros((32, 32), np.uint8)
    lab_a[:16, :] = 1
    lab_a[16:, 16:] = 255
    img_b = np.zeros((32, 32, 3), np.uint8)
    img_b[...] = green
    lab_b = np.zeros((32, 32), np.uint8)
    lab_b[:16] = 2
    return write_voc(tmp_path / "voc", {"a": (img_a, lab_a), "b": (img_b, lab_b)},
                     {"val": ["a", "b"], "train": ["a", "b"]}, lossless=True)


SCORE_EXPECTED_HIST = np.array([[256, 0, 512], [0, 256, 256], [0, 0, 512]])


def colour_net(voc_dir: str, tmp_path, module: str = LAYERS, classes: int = 3):
    """A val net whose class scores are the B, R, G channels (blue -> 0, red -> 1,
    green -> 2; extra classes score 0): data layer (zero mean), 1x1 conv, loss."""
    n = NetSpec()
    n.data, n.label = python_data("VOCSegDataLayer", 2,
                                  dict(voc_dir=voc_dir, split="val", mean=(0, 0, 0)), module)
    n.score = L.Convolution(n.data, num_output=classes, kernel_size=1)
    n.loss = nets.softmax_loss(n.score, n.label)
    proto = tmp_path / f"colour_{module.replace('.', '_')}_{classes}.prototxt"
    proto.write_text(str(n.to_proto()))
    w = np.zeros((classes, 3, 1, 1), np.float32)
    w[0, 0] = w[1, 2] = w[2, 1] = 1.0              # BGR channels: B -> 0, R -> 1, G -> 2
    weights = tmp_path / f"colour_{classes}.caffemodel"
    write_caffemodel(str(weights), [LayerWeights("score", "Convolution",
                                                 [w, np.zeros(classes, np.float32)])])
    return str(proto), str(weights)


def test_score_metrics_by_hand(tmp_path):
    voc = score_folder(tmp_path)
    proto, weights = colour_net(voc, tmp_path)
    net = caffe.Net(proto, weights, caffe.TEST)
    ids = data_layer_ids(text_format.Parse(open(proto).read(), caffe_pb2.NetParameter()).layer[0])
    assert ids == ["a", "b"]
    saved = tmp_path / "seg"
    hist, loss = score.compute_hist(net, str(saved), ids)
    assert np.array_equal(hist, SCORE_EXPECTED_HIST)
    # wrong pixels cost Caffe's -log(FLT_MIN) (softmax underflows), right ones 0
    assert loss == pytest.approx((256 + 512) / 2 * FLT_MIN_LOSS, rel=1e-6)
    m = score.segmentation_metrics(hist)
    assert m.overall_acc == pytest.approx(1024 / 1792)
    assert m.per_class_acc.tolist() == pytest.approx([1 / 3, 1 / 2, 1])
    assert m.mean_acc == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert m.per_class_iu.tolist() == pytest.approx([1 / 3, 1 / 2, 0.4])
    assert m.mean_iu == pytest.approx((1 / 3 + 1 / 2 + 0.4) / 3)
    assert m.fwavacc == pytest.approx((768 / 3 + 512 / 2 + 512 * 0.4) / 1792)
    png = np.array(Image.open(saved / "a.png"))
    assert png[0, 0] == 1 and png[0, 31] == 2 and png[31, 0] == 0 and png[31, 31] == 1
    lines = score.report_lines(7, loss, m)
    assert [l.split(" Iteration 7 ")[1].rsplit(" ", 1)[0] for l in lines] == \
        ["loss", "overall accuracy", "mean accuracy", "mean IU", "fwavacc"]


def test_score_agrees_with_gluoncv(tmp_path):
    """GluonCV counts labels from 1 (target + 1; 0 = ignored), so FCN's void 255 is
    passed as -1. Pixel accuracy and per-class IU agree; its mIoU averages over ALL
    classes (an absent class counts 0) where score.py's nanmean skips them."""
    from gluoncv.utils.metrics.segmentation import (SegmentationMetric, batch_intersection_union,
                                                    batch_pix_accuracy)
    voc = score_folder(tmp_path)
    for classes in (3, 4):                      # 4: class 3 never occurs
        proto, weights = colour_net(voc, tmp_path, classes=classes)
        net = caffe.Net(proto, weights, caffe.TEST)
        hist = np.zeros((classes, classes))
        metric = SegmentationMetric(classes)
        inter = union = correct = labeled = 0
        for _ in range(2):
            net.forward()
            scores = net.blobs["score"].data.copy()
            label = net.blobs["label"].data[0, 0]
            hist += score.fast_hist(label.flatten(), scores[0].argmax(0).flatten(), classes)
            target = mx.nd.array(np.where(label == 255, -1, label)[None])
            c, lab = batch_pix_accuracy(mx.nd.array(scores), target)
            i, u = batch_intersection_union(mx.nd.array(scores), target, classes)
            correct, labeled, inter, union = correct + c, labeled + lab, inter + i, union + u
            metric.update(target, mx.nd.array(scores))
        ours = score.segmentation_metrics(hist)
        assert correct / labeled == pytest.approx(ours.overall_acc)
        present = union > 0
        assert (inter[present] / union[present]).tolist() == \
            pytest.approx(ours.per_class_iu[present].tolist())
        pix_acc, miou = metric.get()
        assert pix_acc == pytest.approx(ours.overall_acc)
        assert miou * classes / present.sum() == pytest.approx(ours.mean_iu)
        assert present.sum() == 3


# --------------------------------------------------------------------------- data layers
def voc_top_values(voc_dir: str, idx: str, mean) -> tuple:
    rgb = np.array(Image.open(os.path.join(voc_dir, "JPEGImages", idx + ".jpg")), np.float32)
    data = rgb[:, :, ::-1] - np.asarray(mean)
    label = np.array(Image.open(os.path.join(voc_dir, "SegmentationClass", idx + ".png")))
    return data.transpose(2, 0, 1), label[None]


def original_order(n_images: int, seed, draws: int) -> list:
    """The indices voc_layers.py visits with randomize: random.seed(seed) + randint."""
    state = random.getstate()
    try:
        random.seed(seed)
        return [random.randint(0, n_images - 1) for _ in range(draws)]
    finally:
        random.setstate(state)


def test_voc_layer_tops_order_and_determinism(tmp_path):
    samples = random_samples(4, seed=3)
    ids = list(samples)
    voc = write_voc(tmp_path / "voc", samples, {"train": ids, "seg11valid": ids})
    for split, expected in (("seg11valid", [0, 1, 2, 3, 0]),
                            ("train", original_order(4, 1337, 5))):
        n = NetSpec()
        n.data, n.label = python_data("VOCSegDataLayer", 2,
                                      dict(voc_dir=voc, split=split, mean=VOC_MEAN, seed=1337))
        n.silence = L.Silence(n.data, n.label, ntop=0)
        proto = tmp_path / f"{split}.prototxt"
        proto.write_text(str(n.to_proto()))
        net = caffe.Net(str(proto), caffe.TRAIN)
        for k in expected:
            net.forward()
            data, label = voc_top_values(voc, ids[k], VOC_MEAN)
            assert net.blobs["data"].data.shape == (1, 3, 32, 32)
            assert np.allclose(net.blobs["data"].data[0], data, rtol=0, atol=1e-4)
            assert np.array_equal(net.blobs["label"].data[0], label)
        assert (net.blobs["label"].data == 255).sum() == 64    # the palette's void index


def test_sbdd_layer_reads_gtcls_mat_and_trains(tmp_path):
    samples = random_samples(3, seed=5)
    ids = list(samples)
    sbdd = write_sbdd(tmp_path / "sbdd", samples, {"train": ids})
    voc = write_voc(tmp_path / "voc", random_samples(2, seed=6), {"val": ["2008_000000",
                                                                          "2008_000001"]})
    train = tiny_fcn32s(python_data("SBDDSegDataLayer", 2, dict(
        sbdd_dir=sbdd, split="train", mean=VOC_MEAN, seed=7)))
    (tmp_path / "train.prototxt").write_text(str(train))
    caffe.set_random_seed(0)
    net = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TRAIN)
    rng = np.random.RandomState(0)
    for name, blobs in net.params.items():
        if name != "upscore":
            blobs[0].data[...] = rng.randn(*blobs[0].data.shape) * 0.1
    surgery.interp(net, ["upscore"])
    loss = net.forward()["loss"]
    first = original_order(3, 7, 1)[0]
    assert np.array_equal(net.blobs["label"].data[0], samples[ids[first]][1][None])
    assert net.blobs["score"].data.shape == (1, 3, 32, 32)
    assert np.isfinite(loss) and loss > 0
    net.backward()
    assert np.abs(net.params["conv1_1"][0].diff).sum() > 0
    assert not net.params["upscore"][0].diff.any()          # lr_mult 0: no diff

    # a few solver steps over the same files (SGD, momentum, FCN-style net)
    val = tiny_fcn32s(python_data("VOCSegDataLayer", 2, dict(voc_dir=voc, split="val",
                                                             mean=VOC_MEAN)))
    (tmp_path / "val.prototxt").write_text(str(val))
    param = solve.solver_param("voc-fcn32s", "train.prototxt", "val.prototxt",
                               str(tmp_path / "snap" / "train"))
    param.base_lr = 1e-4                     # visible updates on a toy net
    (tmp_path / "solver.prototxt").write_text(str(param))
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    for name, blobs in net.params.items():          # start from the net above
        for mine, theirs in zip(solver.net.params[name], blobs):
            mine.data[...] = theirs.data
    w0 = {k: v[0].data.copy() for k, v in solver.net.params.items()}
    order = original_order(3, 7, 3)
    seen = []
    for _ in range(3):
        solver.step(1)
        seen.append(solver.net.blobs["label"].data[0, 0].copy())
    assert solver.iter == 3
    for k, label in zip(order, seen):
        assert np.array_equal(label, samples[ids[k]][1])
    assert not np.array_equal(solver.net.params["conv1_1"][0].data, w0["conv1_1"])
    assert np.array_equal(solver.net.params["upscore"][0].data, w0["upscore"])


def test_original_prototxt_module_voc_layers_runs(tmp_path, original_module_names):
    samples = random_samples(2, seed=8)
    voc = write_voc(tmp_path / "voc", samples, {"val": list(samples)})
    text = str(tiny_fcn32s(python_data("VOCSegDataLayer", 2, dict(
        voc_dir=voc, split="val", mean=VOC_MEAN), module="voc_layers")))
    assert 'module: "voc_layers"' in text
    (tmp_path / "orig.prototxt").write_text(text)
    sys.modules.pop("voc_layers", None)
    with pytest.raises(caffe.LayerError, match="voc_layers"):
        caffe.Net(str(tmp_path / "orig.prototxt"), caffe.TRAIN)
    assert "voc_layers" in fcn.install_layer_modules()
    import voc_layers                                       # noqa: F401  (now importable)
    assert voc_layers.VOCSegDataLayer is fcn.layers.VOCSegDataLayer
    net = caffe.Net(str(tmp_path / "orig.prototxt"), caffe.TRAIN)
    net.forward()
    assert np.array_equal(net.blobs["label"].data[0, 0], samples["2008_000000"][1])
    # a module of the user's own is not replaced unless asked
    sys.modules["nyud_layers"] = mine = type(sys)("nyud_layers")
    assert "nyud_layers" not in fcn.install_layer_modules()
    assert sys.modules["nyud_layers"] is mine


def test_pascalcontext_nyud_siftflow_layers(tmp_path):
    rng = np.random.RandomState(2)
    rgb = rng.randint(0, 256, (12, 10, 3)).astype(np.uint8)
    # PASCAL-Context: 400 labels -> the 59-class task (names mapped as the original does)
    ctx = tmp_path / "context"
    (ctx / "trainval").mkdir(parents=True)
    (ctx / "labels.txt").write_text("1: accordion\n2: aeroplane\n3: table\n4: dog\n")
    (ctx / "59_labels.txt").write_text("1: aeroplane\n2: diningtable\n3: dog\n")
    label_400 = rng.randint(0, 5, (12, 10)).astype(np.uint16)
    scipy.io.savemat(str(ctx / "trainval" / "x1.mat"), {"LabelMap": label_400})
    voc2010 = tmp_path / "pascal" / "VOC2010"
    (voc2010 / "JPEGImages").mkdir(parents=True)
    (voc2010 / "ImageSets" / "Main").mkdir(parents=True)
    (voc2010 / "JPEGImages" / "x1.jpg").write_bytes(encode(rgb, True))
    (voc2010 / "ImageSets" / "Main" / "val.txt").write_text("x1\n")
    # NYUDv2: colour, HHA, depth PNGs and the 40-class .mat (0 = void)
    nyud = tmp_path / "nyud"
    for sub in ("data/images", "data/hha", "data/depth", "segmentation"):
        (nyud / sub).mkdir(parents=True)
    Image.fromarray(rgb).save(nyud / "data/images/img_5001.png")
    Image.fromarray(rgb[:, :, ::-1].copy()).save(nyud / "data/hha/img_5001.png")
    depth = rng.randint(1, 60000, (12, 10)).astype(np.uint16)
    Image.fromarray(depth).save(nyud / "data/depth/img_5001.png")
    seg40 = rng.randint(0, 41, (12, 10)).astype(np.uint8)
    scipy.io.savemat(str(nyud / "segmentation/img_5001.mat"), {"segmentation": seg40})
    (nyud / "test.txt").write_text("5001\n")
    # SIFT Flow: semantic 1..33 (0 void) and geometric -1..3 label .mats
    sift = tmp_path / "sift-flow"
    sub = "spatial_envelope_256x256_static_8outdoorcategories"
    for folder in ("Images", "SemanticLabels", "GeoLabels"):
        (sift / folder / sub).mkdir(parents=True)
    (sift / "Images" / sub / "coast_1.jpg").write_bytes(encode(rgb, True))
    sem = rng.randint(0, 34, (12, 10)).astype(np.int32)
    geo = rng.randint(-1, 4, (12, 10)).astype(np.int32)
    scipy.io.savemat(str(sift / "SemanticLabels" / sub / "coast_1.mat"), {"S": sem})
    scipy.io.savemat(str(sift / "GeoLabels" / sub / "coast_1.mat"), {"S": geo})
    (sift / "test.txt").write_text("coast_1\n")

    n = NetSpec()
    n.data, n.label = python_data("PASCALContextSegDataLayer", 2, dict(
        voc_dir=str(tmp_path / "pascal"), context_dir=str(ctx), split="val", seed=1337))
    n.color, n.hha, n.depth, n.nlabel = python_data("NYUDSegDataLayer", 4, dict(
        nyud_dir=str(nyud), split="test", tops=["color", "hha", "depth", "label"]))
    n.sdata, n.sem, n.geo = python_data("SIFTFlowSegDataLayer", 3, dict(
        siftflow_dir=str(sift), split="test"))
    n.silence = L.Silence(n.data, n.label, n.color, n.hha, n.depth, n.nlabel, n.sdata, n.sem,
                          n.geo, ntop=0)
    (tmp_path / "all.prototxt").write_text(str(n.to_proto()))
    net = caffe.Net(str(tmp_path / "all.prototxt"), caffe.TEST)
    net.forward()
    b = {k: v.data[0] for k, v in net.blobs.items()}
    bgr = rgb[:, :, ::-1].astype(np.float32)
    # PASCAL-Context: accordion (1) -> 0, aeroplane (2) -> 1, table (3) -> 2 via
    # diningtable, dog (4) -> 3, 0 -> 0
    assert np.array_equal(b["label"][0], np.array([0, 0, 1, 2, 3])[label_400])
    assert np.allclose(b["data"], (bgr - np.array((104.007, 116.669, 122.679), np.float32))
                       .transpose(2, 0, 1), atol=1e-4)
    assert np.allclose(b["color"], (bgr - np.array((116.190, 97.203, 92.318), np.float32))
                       .transpose(2, 0, 1), atol=1e-4)
    assert np.allclose(b["hha"], (rgb[:, :, ::-1] - np.array((132.431, 94.076, 118.477),
                                                             np.float32)).transpose(2, 0, 1),
                       atol=1e-4)
    assert np.allclose(b["depth"][0], np.log(depth.astype(np.float32)) - 7.844, atol=1e-4)
    assert np.array_equal(b["nlabel"][0], (seg40.astype(np.uint8) - 1).astype(np.uint8))
    assert np.array_equal(b["sem"][0], (sem.astype(np.uint8) - 1).astype(np.uint8))
    assert np.array_equal(b["geo"][0], (np.where(geo == -1, 0, geo).astype(np.uint8) - 1)
                          .astype(np.uint8))
    assert (b["sem"][0] == 255).any() and (b["geo"][0] == 255).any()
    assert np.allclose(b["sdata"], (bgr - np.array((114.578, 115.294, 108.353), np.float32))
                       .transpose(2, 0, 1), atol=1e-4)


def test_data_layer_errors_name_the_layer(tmp_path):
    n = NetSpec()
    n.data, n.label = python_data("VOCSegDataLayer", 2, dict(split="val", mean=VOC_MEAN))
    (tmp_path / "bad.prototxt").write_text(str(n.to_proto()))
    with pytest.raises(caffe.LayerError, match="param_str lacks the key 'voc_dir'"):
        caffe.Net(str(tmp_path / "bad.prototxt"), caffe.TEST)
    n = NetSpec()
    n.data = L.Python(module=LAYERS, layer="SBDDSegDataLayer", ntop=1,
                      param_str="{'sbdd_dir': '.', 'split': 'x', 'mean': (0, 0, 0)}")
    (tmp_path / "bad2.prototxt").write_text(str(n.to_proto()))
    with pytest.raises(caffe.LayerError, match="need 2 tops"):
        caffe.Net(str(tmp_path / "bad2.prototxt"), caffe.TEST)


# --------------------------------------------------------------------------- solve
def test_solve_flow_transplant_interp_step_score(tmp_path):
    """solve.py on toy scale: the classifier's weights transplanted into the FCN train
    net (fc6/fc7 coerced to convolutions, fc8 dropped), upscore made bilinear, then
    step / seg_tests rounds."""
    samples = random_samples(3, seed=9)
    ids = list(samples)
    voc = write_voc(tmp_path / "voc", samples, {"train": ids, "val": ids[:2]})
    for split, name in (("train", "train.prototxt"), ("val", "val.prototxt")):
        net = tiny_fcn32s(python_data("VOCSegDataLayer", 2, dict(
            voc_dir=voc, split=split, mean=VOC_MEAN, seed=1337)))
        (tmp_path / name).write_text(str(net))
    (tmp_path / "solver.prototxt").write_text(str(solve.solver_param(
        "voc-fcn32s", "train.prototxt", "val.prototxt", str(tmp_path / "snap" / "train"))))
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    assert solver.param.base_lr == pytest.approx(1e-10, rel=1e-6)
    assert solver.param.momentum == pytest.approx(0.99)
    classifier = random_classifier(tmp_path)
    lines = []
    solve.initialize(solver.net, classifier, log=lines.append)
    assert "dropping fc8" in lines
    assert np.array_equal(solver.net.params["fc6"][0].data.reshape(16, -1),
                          classifier.params["fc6"][0].data)
    up = solver.net.params["upscore"][0].data
    assert np.array_equal(up[2, 2], surgery.upsample_filt(8)) and not up[0, 1].any()
    logged = []
    val = data_layer_ids(text_format.Parse((tmp_path / "val.prototxt").read_text(),
                                           caffe_pb2.NetParameter()).layer[0])
    hists = solve.train(solver, val, iters=3, test_interval=2, save_format=str(tmp_path / "s_{}"),
                        log=logged.append)
    assert solver.iter == 3 and len(hists) == 2
    labelled = sum(int((samples[i][1] != 255).sum()) for i in ids[:2])
    assert all(h.sum() == labelled for h in hists)
    assert sum("mean IU" in l for l in logged) == 2 and "Begin seg tests" in logged[0]
    assert sorted(os.listdir(tmp_path / "s_3")) == ["2008_000000.png", "2008_000001.png"]
    # the test net shares the trained weights (seg_tests' share_with)
    assert np.array_equal(solver.test_nets[0].params["fc6"][0].data,
                          solver.net.params["fc6"][0].data)


def test_solver_param_is_the_original_solver_prototxt():
    p = solve.solver_param("voc-fcn8s")
    expected = text_format.Parse(textwrap.dedent("""
        train_net: "train.prototxt" test_net: "val.prototxt" test_iter: 736
        test_interval: 999999999 display: 20 average_loss: 20 lr_policy: "fixed"
        base_lr: 1e-14 momentum: 0.99 iter_size: 1 max_iter: 100000 weight_decay: 0.0005
        snapshot: 4000 snapshot_prefix: "snapshot/train" test_initialization: false
    """), caffe_pb2.SolverParameter())
    assert p == expected
    assert solve.solver_param("voc-fcn-alexnet").iter_size == 20


# --------------------------------------------------------------------------- builders
def structure(net) -> list:
    """Layer names/types/bottoms/tops/params and every *_param but python_param's text."""
    out = []
    for l in net.layer:
        copy = caffe_pb2.LayerParameter()
        copy.CopyFrom(l)
        copy.python_param.ClearField("param_str")
        out.append(copy)
    return out


def test_voc_fcn8s_train_regenerated_matches_the_repository_file():
    real = text_format.Parse(open(FIXTURE).read(), caffe_pb2.NetParameter())
    # the file predates drop6/drop7; its paths are ../../data
    ours = nets.voc_fcn(8, "train", sbdd_dir="../../data/sbdd/dataset", dropout=False)
    assert structure(ours) == structure(real)
    assert eval(ours.layer[0].python_param.param_str) == eval(real.layer[0].python_param.param_str)
    assert [list(l.crop_param.offset) for l in ours.layer if l.type == "Crop"] == [[5], [9], [31]]
    # today's net.py: the same plus in-place dropout after relu6/relu7
    current = nets.voc_fcn(8, "train", sbdd_dir="../../data/sbdd/dataset")
    assert [s for s in structure(current) if s.type != "Dropout"] == structure(real)
    names = [l.name for l in current.layer]
    assert names[names.index("relu6") + 1] == "drop6" and names[names.index("relu7") + 1] == "drop7"
    val = nets.voc_fcn(8, "seg11valid").layer[0].python_param
    assert val.layer == "VOCSegDataLayer" and eval(val.param_str)["voc_dir"] == "../data/pascal/VOC2011"


def test_builders_cover_every_model_and_match_the_deploy_nets():
    """Each train net is its deploy net plus the data layer and loss(es): same layers,
    same crops (the deploy prototxts come from independent builders)."""
    from caffe_compat.recipes.shapes.models import FCN_PROTOTXT
    shipped = {"shapes-fcn8s": str(FCN_PROTOTXT)}   # the demo's model, not a zoo one
    for name, model in nets.MODELS.items():
        deploy = nets.read_net_param(shipped.get(name) or os.path.join(ZOO_PROTOTXT, name,
                                                                        "deploy.prototxt"))
        for split in model.splits:
            train = nets.build(name, split)
            # the deploy nets leave out Dropout (identity at TEST), as upstream's deploy does
            kept = [l for l in train.layer if l.type not in ("Python", "SoftmaxWithLoss", "Dropout")]
            dep = [l for l in deploy.layer if l.type != "Input"]
            assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in kept] == \
                [(l.name, l.type, list(l.bottom), list(l.top)) for l in dep], name
            assert [l.crop_param for l in kept if l.type == "Crop"] == \
                [l.crop_param for l in dep if l.type == "Crop"], name
            losses = [l for l in train.layer if l.type == "SoftmaxWithLoss"]
            assert len(losses) == len(model.scores)
            # summed losses, except voc-fcn-alexnet's, which averages (its upstream net.py),
            # and shapes-fcn8s's (trained from scratch)
            averaged = name in ("voc-fcn-alexnet", "shapes-fcn8s")
            assert all(l.loss_param.ignore_label == 255
                       and l.loss_param.normalize == averaged for l in losses)


@pytest.mark.skipif(not os.path.isdir(CORPUS_FCN), reason="../shared/corpus/fcn absent")
@pytest.mark.parametrize("name", sorted(nets.MODELS))
def test_recipe_nets_equal_upstreams_prototxts_field_for_field(name):
    """An independent reference: fcn.berkeleyvision.org's own trainval/test prototxts.
    The Python data layers' param_str (dataset paths) is the only field not compared."""
    model = nets.MODELS[name]
    folder = os.path.join(CORPUS_FCN, name)
    for split, file in zip(model.splits, model.files):
        upstream_path = os.path.join(folder, file)
        if not os.path.isfile(upstream_path):
            continue
        ours, theirs = nets.build(name, split), nets.read_net_param(upstream_path)
        for net in (ours, theirs):
            for layer in net.layer:
                if layer.type == "Python":
                    layer.python_param.ClearField("param_str")
        assert [l.name for l in ours.layer] == [l.name for l in theirs.layer], (name, file)
        for a, b in zip(ours.layer, theirs.layer):
            assert a == b, f"{name}/{file}: layer {a.name} differs:\nours:\n{a}\nupstream:\n{b}"


def test_make_net_writes_the_pair(tmp_path):
    paths = nets.make_net("siftflow-fcn16s", str(tmp_path), siftflow_dir="/data/sift")
    assert [os.path.basename(p) for p in paths] == ["trainval.prototxt", "test.prototxt"]
    test = text_format.Parse(open(paths[1]).read(), caffe_pb2.NetParameter())
    assert eval(test.layer[0].python_param.param_str) == dict(siftflow_dir="/data/sift",
                                                              split="test", seed=1337)
    assert [l.name for l in test.layer if l.type == "SoftmaxWithLoss"] == ["loss", "loss_geo"]


# --------------------------------------------------------------------------- CLI
def tiny_deploy(tmp_path) -> tuple:
    """A tiny FCN deploy net + random weights (upscore bilinear)."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 32, 32]))
    n.conv1_1, n.relu1_1 = nets.conv_relu(n.data, 4, pad=100)
    n.pool1 = nets.max_pool(n.relu1_1)
    n.fc6, n.relu6 = nets.conv_relu(n.pool1, 8, ks=3, pad=0)
    n.score_fr = nets.score_layer(n.relu6, 5)
    n.upscore = nets.upsample(n.score_fr, 5, 4, 2)
    n.score = crop(n.upscore, n.data)
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(str(n.to_proto()))
    rng = np.random.RandomState(4)
    weights = [LayerWeights("conv1_1", "Convolution", [rng.randn(4, 3, 3, 3).astype(np.float32) * 0.05,
                                                       rng.randn(4).astype(np.float32)]),
               LayerWeights("fc6", "Convolution", [rng.randn(8, 4, 3, 3).astype(np.float32) * 0.3,
                                                   rng.randn(8).astype(np.float32)]),
               LayerWeights("score_fr", "Convolution", [rng.randn(5, 8, 1, 1).astype(np.float32),
                                                        rng.randn(5).astype(np.float32)]),
               LayerWeights("upscore", "Deconvolution", [np.zeros((5, 5, 4, 4), np.float32)])]
    weights[3].blobs[0][range(5), range(5)] = surgery.upsample_filt(4)
    path = tmp_path / "w.caffemodel"
    write_caffemodel(str(path), weights)
    return str(proto), str(path)


def test_cli_segment_writes_indexed_pngs(tmp_path, capsys):
    proto, weights = tiny_deploy(tmp_path)
    rng = np.random.RandomState(1)
    images = []
    for i, (h, w) in enumerate([(30, 41), (25, 25), (40, 33)]):
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(path)
        images.append(str(path))
    out = tmp_path / "out"
    assert cli_main(["segment", *images, "--prototxt", proto, "--weights", weights,
                     "-o", str(out), "--overlay", "--no-progress"]) == 0
    ref = caffe.Net(proto, weights, caffe.TEST)
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        png = Image.open(out / f"{stem}.png")
        rgb = np.array(Image.open(path))
        x = preprocess(rgb)
        ref.blobs["data"].reshape(1, *x.shape)
        expected = ref.forward(data=x[None])["score"][0].argmax(0)
        assert png.mode == "P" and np.array_equal(np.array(png), expected)
        assert len(np.unique(expected)) > 1
        assert np.array_equal(np.array(Image.open(out / f"{stem}_overlay.png")),
                              overlay(rgb, expected))
    assert "img0.jpg ->" in capsys.readouterr().out
    single = tmp_path / "one.png"
    assert cli_main(["segment", images[1], "--prototxt", proto, "--weights", weights,
                     "-o", str(single), "--no-progress"]) == 0
    assert np.array_equal(np.array(Image.open(single)), np.array(Image.open(out / "img1.png")))


def test_cli_segment_user_errors(tmp_path, capsys):
    proto, weights = tiny_deploy(tmp_path)
    assert cli_main(["segment", str(tmp_path / "missing.jpg"), "--prototxt", proto,
                     "--weights", weights]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.jpg" in err
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b.jpg")
    assert cli_main(["segment", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"),
                     "--prototxt", proto, "--weights", weights, "-o", str(tmp_path / "x.png")]) == 2
    assert "names one file" in capsys.readouterr().err
    assert cli_main(["segment", str(tmp_path / "a.jpg"), "--prototxt", proto]) == 2
    assert "--prototxt needs --weights" in capsys.readouterr().err


def test_cli_fcn_score_on_the_tiny_folder(tmp_path, capsys, original_module_names):
    voc = score_folder(tmp_path)
    proto, weights = colour_net(voc, tmp_path, module="voc_layers")   # the original name
    save = tmp_path / "pred"
    assert cli_main(["fcn-score", "--prototxt", proto, "--weights", weights,
                     "--save-dir", str(save), "--per-class"]) == 0
    out = capsys.readouterr().out
    values = {}
    for line in out.splitlines():
        if line.startswith(">>>"):
            head, value = line.rsplit(" ", 1)
            values[head.split(".prototxt ", 1)[1]] = float(value)
    assert values["mean IU"] == pytest.approx((1 / 3 + 1 / 2 + 0.4) / 3)
    assert values["overall accuracy"] == pytest.approx(1024 / 1792)
    assert values["mean accuracy"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert values["fwavacc"] == pytest.approx((768 / 3 + 512 / 2 + 512 * 0.4) / 1792)
    assert values["loss"] == pytest.approx(384 * FLT_MIN_LOSS, rel=1e-6)
    assert "per-class IU: [0.333" in out
    assert sorted(os.listdir(save)) == ["a.png", "b.png"]


def test_cli_fcn_train_offline_fails_in_one_line(tmp_path, capsys, monkeypatch):
    voc = write_voc(tmp_path / "voc", random_samples(1), {"train": ["2008_000000"],
                                                          "seg11valid": ["2008_000000"]})
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", str(tmp_path / "no-mirror"))
    assert cli_main(["fcn-train", "--model", "voc-fcn8s", "--voc-dir", voc, "--iters", "1",
                     "--work-dir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "VGG_ILSVRC_16_layers.caffemodel" in err
    assert cli_main(["fcn-train", "--model", "pascalcontext-fcn8s", "--voc-dir", voc]) == 2
    assert "needs --context-dir" in capsys.readouterr().err
    assert cli_main(["fcn-train", "--model", "voc-fcn9s", "--voc-dir", voc]) == 2
    assert "unknown FCN model" in capsys.readouterr().err


def test_fcn_train_prepares_the_original_layout(tmp_path):
    voc = write_voc(tmp_path / "voc", random_samples(1), {"train": ["2008_000000"]})
    path = solve.prepare("voc-fcn8s", str(tmp_path / "work"), voc_dir=voc, sbdd_dir=None)
    solver = text_format.Parse(open(path).read(), caffe_pb2.SolverParameter())
    assert solver.base_lr == pytest.approx(1e-14) and solver.train_net == "train.prototxt"
    assert solver.snapshot_prefix == str(tmp_path / "work" / "snapshot" / "train")
    train = nets.read_net_param(str(tmp_path / "work" / "train.prototxt"))
    data = train.layer[0].python_param
    assert (data.module, data.layer) == (LAYERS, "VOCSegDataLayer")   # no SBDD: VOC train
    assert eval(data.param_str)["voc_dir"] == os.path.abspath(voc)
