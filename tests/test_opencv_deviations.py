"""Where OpenCV's Caffe importer computes a layer differently from Caffe, proven.

The corpus run (tests/test_corpus_run.py) uses OpenCV's ``cv2.dnn.readNetFromCaffe`` as an
independent oracle, and skips the comparison downstream of the layers named by
``corpus_harness.opencv_deviations``. Each rule there is proven here on a minimal net: our
output equals the Caffe (or fork) formula written in numpy, and OpenCV's does not. If an
OpenCV release fixes one, its test fails and the rule must go.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

import caffe_compat as caffe
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel

import corpus_harness

HERE = os.path.dirname(os.path.abspath(__file__))
f32 = np.float32


def run_both(tmp_path, text: str, feeds: dict, out: str, weights=()):
    path = str(tmp_path / "net.prototxt")
    with open(path, "w") as handle:
        handle.write(text)
    cm = None
    if weights:
        cm = str(tmp_path / "net.caffemodel")
        write_caffemodel(cm, list(weights))
    net = caffe.Net(path, cm, caffe.TEST) if cm else caffe.Net(path, caffe.TEST)
    for name, value in feeds.items():
        net.blobs[name].data[...] = value
    ours = net.forward()[out].copy()
    cv = cv2.dnn.readNetFromCaffe(path, cm) if cm else cv2.dnn.readNetFromCaffe(path)
    for name, value in feeds.items():
        cv.setInput(value, name)
    return ours, cv.forward(), net


def inputs(**shapes) -> str:
    tops = "".join(f' top: "{n}"' for n in shapes)
    dims = "".join(" shape { " + " ".join(f"dim: {d}" for d in s) + " }" for s in shapes.values())
    return f'name: "t"\nlayer {{ name: "in" type: "Input"{tops} input_param {{{dims} }} }}\n'


def deviation_of(net, layer_name: str):
    graph = net.block.graph
    node = graph.layers[graph.layer_index(layer_name)]
    return corpus_harness.opencv_deviations(node, net.block.blob_shapes)


def test_lrn_k_is_ignored_by_opencv(tmp_path):
    """lrn_layer.cpp: scale = k + alpha / n * sum(x^2) over n channels; OpenCV uses k = 1."""
    x = np.random.default_rng(0).standard_normal((1, 6, 5, 5)).astype(f32) * 3
    text = inputs(x=x.shape) + ('layer { name: "lrn" type: "LRN" bottom: "x" top: "z" lrn_param '
                                '{ local_size: 5 alpha: 0.5 beta: 0.75 k: 2 } }\n')
    ours, theirs, net = run_both(tmp_path, text, {"x": x}, "z")
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, i:i + 6] for i in range(5))
    caffe_ref = x / (2 + 0.5 / 5 * window) ** 0.75
    k1 = x / (1 + 0.5 / 5 * window) ** 0.75
    assert np.abs(ours - caffe_ref).max() < 1e-5
    assert np.abs(theirs - caffe_ref).max() > 0.1 and np.abs(theirs - k1).max() < 1e-5
    assert deviation_of(net, "lrn")


def test_axpy_is_rewritten_wrongly_by_opencv(tmp_path):
    """SENet's axpy_layer.cpp: top = a * x + y, a = bottom[0] (N, C, 1, 1)."""
    rng = np.random.default_rng(1)
    feeds = {"a": rng.standard_normal((1, 4, 1, 1)).astype(f32),
             "x": rng.standard_normal((1, 4, 3, 3)).astype(f32),
             "y": rng.standard_normal((1, 4, 3, 3)).astype(f32)}
    text = inputs(**{k: v.shape for k, v in feeds.items()}) + \
        'layer { name: "axpy" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" top: "z" }\n'
    ours, theirs, net = run_both(tmp_path, text, feeds, "z")
    ref = feeds["a"] * feeds["x"] + feeds["y"]
    assert np.abs(ours - ref).max() < 1e-6
    assert np.abs(theirs - ref).max() > 0.1
    assert deviation_of(net, "axpy")


def test_mvn_eps_goes_inside_the_sqrt_in_opencv(tmp_path):
    """mvn_layer.cpp: (x - mean) / (sqrt(var) + eps); OpenCV divides by sqrt(var + eps)."""
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 5, 7)).astype(f32)
    text = inputs(x=x.shape) + ('layer { name: "mvn" type: "MVN" bottom: "x" top: "z" '
                                'mvn_param { eps: 0.1 across_channels: false } }\n')
    ours, theirs, net = run_both(tmp_path, text, {"x": x}, "z")
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=(2, 3), keepdims=True)
    var = (centred ** 2).mean(axis=(2, 3), keepdims=True)
    assert np.abs(ours - centred / (np.sqrt(var) + 0.1)).max() < 1e-5
    assert np.abs(theirs - centred / np.sqrt(var + 0.1)).max() < 1e-5
    assert np.abs(theirs - ours).max() > 1e-2
    assert deviation_of(net, "mvn")


def test_depthwise_convolution_of_a_one_pixel_input(tmp_path):
    """MobileNetv2-SSDLite's last head sees a 1x1 map: a 3x3 pad-1 depthwise convolution
    is then the centre tap times the input; OpenCV returns other numbers there."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 8, 1, 1)).astype(f32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(f32)
    text = inputs(x=x.shape) + ('layer { name: "dw" type: "Convolution" bottom: "x" top: "z" '
                                'convolution_param { num_output: 8 group: 8 kernel_size: 3 '
                                'pad: 1 bias_term: false } }\n')
    ours, theirs, net = run_both(tmp_path, text, {"x": x}, "z",
                                 [LayerWeights("dw", "Convolution", [w])])
    ref = w[:, 0, 1, 1].reshape(1, 8, 1, 1) * x
    assert np.abs(ours - ref).max() < 1e-6
    assert np.abs(theirs - ref).max() > 1e-3
    assert deviation_of(net, "dw")
    # a grouped (not depthwise) convolution of the same input is computed right by both
    text2 = text.replace("num_output: 8 group: 8", "num_output: 8 group: 2")
    w2 = rng.standard_normal((8, 4, 3, 3)).astype(f32)
    ours2, theirs2, net2 = run_both(tmp_path, text2, {"x": x}, "z",
                                    [LayerWeights("dw", "Convolution", [w2])])
    assert np.abs(ours2 - theirs2).max() < 1e-5 and deviation_of(net2, "dw") is None


def test_priorbox_fractional_sizes_follow_the_fork_not_opencv():
    """prior_box_layer.cpp keeps min/max sizes in int (51.2 -> 51): real SSD-fork output
    for HyperLPR's mininet (tests/golden/ssd_fork) against OpenCV on the same file."""
    golden = os.path.join(HERE, "golden", "ssd_fork", "hyperlpr_mininet_ssd_v1", "golden.npz")
    z = np.load(golden)
    meta = json.loads(str(z["meta"]))
    corpus = corpus_harness.CORPUS
    prototxt = os.path.join(corpus, meta["prototxt"])
    if not os.path.isfile(prototxt):
        pytest.skip("corpus not present")
    weights = os.path.join(corpus, meta["weights"]["path"])
    x = z["input/data"]
    cv = cv2.dnn.readNetFromCaffe(prototxt, weights)
    cv.setInput(x, "data")
    net = caffe.Net(prototxt, weights, caffe.TEST)
    net.blobs["data"].reshape(*x.shape)
    net.blobs["data"].data[...] = x
    net.forward()
    names = [k[5:] for k in z.files if k.startswith("blob/") and k.endswith("_priorbox")]
    fractional = [n for n in names if deviation_of(net, n)]
    assert fractional
    for name in fractional:
        ref = z["blob/" + name]
        assert np.abs(net.blobs[name].data - ref).max() < 1e-6, name
        assert np.abs(cv.forward(name).reshape(ref.shape) - ref).max() > 1e-4, name
