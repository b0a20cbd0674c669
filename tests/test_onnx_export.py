"""ONNX export (``caffe_compat.onnx_export``, ``caffe-compat convert --to onnx``).

* Every golden set, every blob: the exported file run in onnxruntime and in OpenCV's
  ONNX importer on Caffe's own input gives real Caffe's blobs (rel. L2 <= 1e-5).
* The SSD fork's golden runs (real weiliu89/caffe on real weights, when ../shared is
  present): PriorBox, Normalize, Permute/Flatten/Concat heads and the softmaxed scores.
* The classic architectures with random weights (the bundled zoo prototxts; MobileNet
  and DenseNet from tests/onnx_fixtures.py), the fork-layer nets of test_fork_nets and
  a few corpus nets against the engine, in onnxruntime and OpenCV.
* Small nets for each layer setting the golden sets leave out, against the engine.
* Refusals name the layer and why; the command line writes, verifies, and reports.
"""
from __future__ import annotations

import os

import mxnet as mx
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

import cv2  # noqa: E402

import golden_harness as gh  # noqa: E402
import onnx_fixtures  # noqa: E402
from test_cv2_zoo_nets import random_weights as zoo_random_weights  # noqa: E402
from test_fork_nets import (SE_AXPY, SEGNET, mobilenet_ssd_text, pspnet_text,  # noqa: E402
                            random_weights, shufflenet_text)

import caffe_compat as caffe  # noqa: E402
from caffe_compat.cli.main import main  # noqa: E402
from caffe_compat.engine.network import CaffeNet  # noqa: E402
from caffe_compat.onnx_export import check_with_onnxruntime, export_onnx  # noqa: E402
from caffe_compat.onnx_export.converter import OPSET, onnx_model  # noqa: E402
from caffe_compat.onnx_export.registry import OnnxExportError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))
CORPUS = os.path.join(SHARED, "corpus")
SSD_GOLDEN = os.path.join(SHARED, "golden", "ssd_fork")
TOL = gh.FORWARD_TOL
f32 = np.float32

ort.set_default_logger_severity(3)


# ---- helpers ----------------------------------------------------------------------------
def write(tmp_path, name: str, text: str) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def run_onnxruntime(path: str, feeds: dict) -> dict:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    used = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in used})))


def run_opencv(path: str, feeds: dict, outputs: list) -> dict:
    net = cv2.dnn.readNetFromONNX(path)
    used = [i.name for i in onnx.load(path, load_external_data=False).graph.input]
    for name in used:
        net.setInput(np.ascontiguousarray(feeds[name], f32), name)
    return dict(zip(outputs, net.forward(outputs)))


def engine_outputs(net: CaffeNet, feeds: dict) -> dict:
    out = net(*[mx.nd.array(feeds[n]) for n in net.input_names])
    out = out if isinstance(out, (list, tuple)) else [out]
    return {name: o.asnumpy() for name, o in zip(net.output_names, out)}


def errors(mine: dict, ref: dict) -> dict:
    return {k: gh.rel_err(np.reshape(mine[k], np.shape(ref[k])), ref[k]) for k in ref}


def too_far(errs: dict, tol: float = TOL) -> dict:
    return {k: f"{e:.3g}" for k, e in errs.items() if not e <= tol}


def uniform_feeds(net: CaffeNet, seed: int = 1, low: float = -1.0, high: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(low, high, net.blob_shapes[n]).astype(f32) for n in net.input_names}


def last_weighted_blob(net: CaffeNet) -> str:
    """The top of the last Convolution/InnerProduct: the logits before the softmax (whose
    saturation on random weights would hide differences)."""
    return [n.tops[0] for n in net.graph.layers
            if n.type in ("InnerProduct", "Convolution", "Deconvolution")][-1]


def compare_both_runtimes(net: CaffeNet, tmp_path, feeds: dict) -> None:
    path = export_onnx(net, os.path.join(str(tmp_path), "net.onnx"))
    try:
        ours = engine_outputs(net, feeds)
        assert too_far(errors(run_onnxruntime(path, feeds), ours)) == {}
        assert too_far(errors(run_opencv(path, feeds, list(ours)), ours)) == {}
    finally:
        os.remove(path)         # up to 550 MB (VGG-16): not kept in pytest's tmp folders


# ---- golden sets: real Caffe --------------------------------------------------------------
@pytest.mark.parametrize("name", gh.SETS)
def test_golden_set_every_blob_matches_real_caffe(name, tmp_path):
    gs = gh.load(name)
    net = CaffeNet.from_prototxt(gs.prototxt, weights=gs.weights)
    blobs = [k[5:] for k in gs.npz if k.startswith("data/") and k[5:] not in net.input_names]
    path = export_onnx(net, os.path.join(str(tmp_path), f"{name}.onnx"), outputs=blobs)
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == gs.meta["inputs"]
    assert [o.name for o in model.graph.output] == blobs
    assert model.opset_import[0].version == OPSET
    feeds = {b: gs.npz[f"input/{b}"] for b in gs.meta["inputs"]}
    ref = {b: gs.npz[f"data/{b}"] for b in blobs}
    assert too_far(errors(run_onnxruntime(path, feeds), ref)) == {}
    assert too_far(errors(run_opencv(path, feeds, blobs), ref)) == {}


SSD_SETS = [("yufacedetectnet_v1", "weights/yufacedetectnet/yufacedetectnet-open-v1"),
            ("hyperlpr_mininet_ssd_v1", "weights/hyperlpr/mininet_ssd_v1")]


@pytest.mark.parametrize("name,files", SSD_SETS, ids=[s[0] for s in SSD_SETS])
def test_ssd_fork_heads_match_real_ssd_caffe(name, files, tmp_path):
    """Real weiliu89/caffe on real weights: everything up to DetectionOutput."""
    npz_path = os.path.join(SSD_GOLDEN, name, "golden.npz")
    if not (os.path.exists(npz_path) and os.path.isdir(CORPUS)):
        pytest.skip("../shared/golden/ssd_fork or ../shared/corpus absent")
    with np.load(npz_path) as z:
        golden = {k: z[k] for k in z.files}
    feeds = {k[6:]: v for k, v in golden.items() if k.startswith("input/")}
    ref = {k[5:]: v for k, v in golden.items() if k.startswith("blob/")}
    net = CaffeNet.from_prototxt(os.path.join(CORPUS, files + ".prototxt"),
                                 weights=os.path.join(CORPUS, files + ".caffemodel"),
                                 input_shapes={k: v.shape for k, v in feeds.items()})
    with pytest.raises(OnnxExportError, match="DetectionOutput.*NonMaxSuppression"):
        onnx_model(net)
    path = export_onnx(net, os.path.join(str(tmp_path), "heads.onnx"), outputs=list(ref))
    assert too_far(errors(run_onnxruntime(path, feeds), ref)) == {}


# ---- classic architectures, random weights ------------------------------------------------
ZOO = [("bvlc_googlenet", 224), ("bvlc_alexnet", 227), ("resnet50", 224),
       ("squeezenet_v1.1", 227), ("vgg16", 224), ("voc-fcn8s", 64)]


@pytest.mark.parametrize("model,size", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_architecture_matches_engine(model, size, tmp_path):
    net = CaffeNet.from_prototxt(os.path.join(REPO, "prototxt", model, "deploy.prototxt"),
                                 fill=False)         # zoo_random_weights sets every blob
    net.reshape({net.input_names[0]: (1, 3, size, size)})
    zoo_random_weights(net)
    net.set_outputs(list(dict.fromkeys([last_weighted_blob(net)] + net.graph.outputs)))
    compare_both_runtimes(net, tmp_path, uniform_feeds(net, low=-100, high=100))


@pytest.mark.parametrize("builder", ["mobilenet_v1", "densenet121"])
def test_mobilenet_densenet_match_engine(builder, tmp_path):
    net = CaffeNet.from_prototxt(write(tmp_path, "net.prototxt",
                                       getattr(onnx_fixtures, builder)()), fill=False)
    zoo_random_weights(net)
    net.set_outputs([last_weighted_blob(net), "prob"])
    compare_both_runtimes(net, tmp_path, uniform_feeds(net))


# ---- fork layers ----------------------------------------------------------------------------
FORK_NETS = [("mobilenet_ssd", mobilenet_ssd_text(), ["mbox_loc", "mbox_conf_flatten",
                                                      "mbox_priorbox", "conv1_norm"]),
             ("shufflenet", shufflenet_text(), None),
             ("pspnet", pspnet_text(), None),
             ("se_axpy", 'name: "se"\n' + SE_AXPY, None),
             ("segnet", 'name: "segnet"\n' + SEGNET, ["score", "pool1_mask", "up1"])]


@pytest.mark.parametrize("name,text,outputs", FORK_NETS, ids=[f[0] for f in FORK_NETS])
def test_fork_nets_match_engine(name, text, outputs, tmp_path):
    net = CaffeNet.from_prototxt(write(tmp_path, f"{name}.prototxt", text))
    random_weights(net, np.random.default_rng(0))
    if outputs:
        net.set_outputs(outputs)
    feeds = uniform_feeds(net)
    path = export_onnx(net, os.path.join(str(tmp_path), "net.onnx"))
    ours = engine_outputs(net, feeds)
    assert too_far(errors(run_onnxruntime(path, feeds), ours)) == {}
    # OpenCV folds the all-constant PriorBox branch away, so that blob has no layer there
    shown = [o for o in ours if "priorbox" not in o]
    assert too_far(errors(run_opencv(path, feeds, shown), {k: ours[k] for k in shown})) == {}


# ---- layer settings the golden sets leave out ------------------------------------------------
def case_feeds(net: CaffeNet, kind) -> dict:
    rng = np.random.default_rng(3)
    feeds = {}
    for name in net.input_names:
        shape = net.blob_shapes[name]
        if kind == "ties":
            value = rng.integers(0, 3, shape)          # many equal values per row
        elif kind == "indices":
            value = rng.integers(0, 5, shape)
        elif kind is None:
            value = rng.uniform(0, 1, shape)             # STOCHASTIC pooling's domain
        else:
            value = rng.uniform(-kind, kind, shape)
        feeds[name] = value.astype(f32)
    return feeds


@pytest.mark.parametrize("name,text,kind", onnx_fixtures.LAYER_CASES,
                         ids=[c[0] for c in onnx_fixtures.LAYER_CASES])
def test_layer_setting_matches_engine(name, text, kind, tmp_path):
    net = CaffeNet.from_prototxt(write(tmp_path, f"{name}.prototxt", f'name: "{name}"\n' + text))
    path = export_onnx(net, os.path.join(str(tmp_path), "net.onnx"))
    feeds = case_feeds(net, kind)
    errs = check_with_onnxruntime(net, path, inputs=feeds)
    assert errs and too_far(errs) == {}


# ---- corpus nets the exporter was not written against -----------------------------------------
CORPUS_NETS = [      # (prototxt, real weights or None for random ones, input shape)
    ("shicai__DenseNet-Caffe/DenseNet_121.prototxt", None, None),
    ("shicai__MobileNet-Caffe/mobilenet_v2_deploy.prototxt", None, None),
    ("hujie-frank__SENet/models/SE-BN-Inception.prototxt", None, None),
    ("farmingyard__ShuffleNet/shufflenet_v2_1x_deploy.prototxt", None, None),
    ("TimoSaemann__ENet/prototxts/enet_deploy_final.prototxt", None, (1, 3, 128, 256)),
    ("s9xie__hed/examples/hed/deploy.prototxt", None, (1, 3, 64, 64)),
    ("weights/mtcnn/det3.prototxt", "weights/mtcnn/det3.caffemodel", None),
    ("weights/ultraface/RFB-320.prototxt", "weights/ultraface/RFB-320.caffemodel", None),
]


@pytest.mark.parametrize("rel,weights,shape", CORPUS_NETS,
                         ids=[c[0].split("/")[-2 if c[1] else 0] for c in CORPUS_NETS])
def test_corpus_net_matches_engine(rel, weights, shape, tmp_path):
    path = os.path.join(CORPUS, rel)
    if not os.path.exists(path):
        pytest.skip(f"{rel} not in ../shared/corpus")
    net = CaffeNet.from_prototxt(path, weights=weights and os.path.join(CORPUS, weights))
    if shape:
        net.reshape({net.input_names[0]: shape})
    if not weights:
        random_weights(net, np.random.default_rng(0))
    errs = check_with_onnxruntime(net, export_onnx(net, os.path.join(str(tmp_path), "n.onnx")))
    assert too_far(errs) == {}


# ---- refusals ----------------------------------------------------------------------------------
def test_refusals_name_the_layer_line_and_reason(tmp_path):
    path = write(tmp_path, "train.prototxt", onnx_fixtures._net(
        {"data": (2, 4, 6, 6), "label": (2,)},
        onnx_fixtures._layer("fc", "InnerProduct", "data", "inner_product_param { num_output: 3 }")
        + onnx_fixtures._layer("drop", "Dropout", "fc", tops=["fc"])
        + onnx_fixtures._layer("loss", "SoftmaxWithLoss", ["fc", "label"])))
    train = CaffeNet.from_prototxt(path, phase=caffe.TRAIN)
    with pytest.raises(OnnxExportError, match=r'train.prototxt:4: layer "drop" \(type Dropout\): '
                                              r"cannot be exported.*random masks"):
        onnx_model(train)
    test = CaffeNet.from_prototxt(path)
    with pytest.raises(OnnxExportError, match=r'train.prototxt:5: layer "loss" '
                                              r"\(type SoftmaxWithLoss\).*not part of inference"):
        onnx_model(test)
    model = onnx_model(test, outputs=["fc"])       # TEST: Dropout is a copy, the loss unused
    assert [i.name for i in model.graph.input] == ["data"]
    unknown = CaffeNet.from_prototxt(write(tmp_path, "im2col.prototxt", onnx_fixtures._net(
        {"x": (1, 2, 5, 5)}, onnx_fixtures._layer("i", "Im2col", "x",
                                                  "convolution_param { kernel_size: 3 }"))))
    with pytest.raises(OnnxExportError, match="no ONNX exporter for this layer type"):
        onnx_model(unknown)


# ---- command line --------------------------------------------------------------------------------
def test_convert_to_onnx_command(tmp_path, capsys):
    gs = gh.load("googlenet_tiny")
    out = os.path.join(str(tmp_path), "g")
    assert main(["convert", gs.prototxt, gs.weights, "--to", "onnx", "-o", out,
                 "--input-shape", "2,3,64,64", "--outputs", "inception_3b/output,prob",
                 "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "wrote " + out + ".onnx" in printed and "prob" in printed
    model = onnx.load(out + ".onnx")
    assert [o.name for o in model.graph.output] == ["inception_3b/output", "prob"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 64, 64]
    ssd = write(tmp_path, "ssd.prototxt", mobilenet_ssd_text())
    weights = os.path.join(str(tmp_path), "ssd.caffemodel")
    CaffeNet.from_prototxt(ssd).save_caffemodel(weights)
    assert main(["convert", ssd, weights, "--to", "onnx", "-o", out]) == 2
    assert 'layer "detection_out" (type DetectionOutput)' in capsys.readouterr().err
