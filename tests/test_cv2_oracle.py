"""OpenCV's Caffe importer (cv2.dnn.readNetFromCaffe) as a second, independent oracle.

Each case is a small net (Input -> the layer under test), random weights written with
our caffemodel writer; both engines run the same input and must agree to rel. 1e-5.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from caffe_compat.engine.network import CaffeNet
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel

# (case id, input shape, layer text, extra layers after it)
CASES = [
    ("conv", (2, 3, 11, 13), 'type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 }'),
    ("conv_group_dilate", (1, 4, 13, 15),
     'type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 group: 2 dilation: 2 pad: 1 stride: 2 }'),
    ("conv_hw", (1, 3, 12, 17),
     'type: "Convolution" convolution_param { num_output: 5 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 stride_h: 2 stride_w: 3 }'),
    ("conv_nobias", (1, 3, 9, 9),
     'type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 bias_term: false }'),
    ("deconv", (1, 4, 6, 7),
     'type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 }'),
    ("deconv_group", (1, 4, 5, 5),
     'type: "Deconvolution" convolution_param { num_output: 4 group: 4 kernel_size: 4 stride: 2 bias_term: false }'),
    ("pool_max_ceil", (1, 3, 13, 15), 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }'),
    ("pool_max_pad", (1, 3, 7, 8), 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }'),
    ("pool_ave_pad", (1, 3, 7, 8), 'type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }'),
    ("pool_ave", (1, 3, 14, 14), 'type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 }'),
    ("pool_global", (1, 3, 7, 9), 'type: "Pooling" pooling_param { pool: AVE global_pooling: true }'),
    ("lrn", (1, 8, 5, 5), 'type: "LRN" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }'),
    # (OpenCV ignores LRN's k != 1, so k is checked against numpy in the layer tests.)
    ("ip", (2, 3, 4, 5), 'type: "InnerProduct" inner_product_param { num_output: 7 }'),
    ("relu", (1, 3, 4, 5), 'type: "ReLU"'),
    ("leaky", (1, 3, 4, 5), 'type: "ReLU" relu_param { negative_slope: 0.1 }'),
    ("prelu", (1, 3, 4, 5), 'type: "PReLU"'),
    ("elu", (1, 3, 4, 5), 'type: "ELU" elu_param { alpha: 0.7 }'),
    ("sigmoid", (1, 3, 4, 5), 'type: "Sigmoid"'),
    ("tanh", (1, 3, 4, 5), 'type: "TanH"'),
    ("absval", (1, 3, 4, 5), 'type: "AbsVal"'),
    ("bnll", (1, 3, 4, 5), 'type: "BNLL"'),
    ("power", (1, 3, 4, 5), 'type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }'),
    ("softmax", (2, 5, 3, 4), 'type: "Softmax"'),
    ("flatten", (2, 3, 4, 5), 'type: "Flatten"'),
    ("reshape", (2, 3, 4, 5), 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 5 } }'),
    ("batchnorm", (2, 3, 4, 5), 'type: "BatchNorm" batch_norm_param { use_global_stats: true eps: 0.001 }'),
    ("scale_bias", (2, 3, 4, 5), 'type: "Scale" scale_param { bias_term: true }'),
    ("mvn", (2, 3, 4, 5), 'type: "MVN"'),
    ("mvn_across", (2, 3, 4, 5), 'type: "MVN" mvn_param { across_channels: true normalize_variance: false }'),
    ("dropout", (2, 3, 4, 5), 'type: "Dropout" dropout_param { dropout_ratio: 0.3 }'),
]

_TWO_CONVS = ('layer { name: "a" type: "Convolution" bottom: "data" top: "a" '
              'convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
              'layer { name: "b" type: "Convolution" bottom: "data" top: "b" '
              'convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n')

# Multi-layer cases: full layer text after the Input layer; the compared blob is "out".
GRAPH_CASES = [
    ("eltwise_sum_coeff", (1, 3, 6, 7), _TWO_CONVS +
     'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "out" '
     'eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }'),
    ("eltwise_prod", (1, 3, 6, 7), _TWO_CONVS +
     'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "out" eltwise_param { operation: PROD } }'),
    ("eltwise_max", (1, 3, 6, 7), _TWO_CONVS +
     'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "out" eltwise_param { operation: MAX } }'),
    ("concat", (1, 3, 6, 7), _TWO_CONVS +
     'layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "out" }'),
    ("slice_then_sum", (1, 6, 4, 5),
     'layer { name: "s" type: "Slice" bottom: "data" top: "s1" top: "s2" slice_param { slice_point: 2 } }\n'
     'layer { name: "p" type: "Pooling" bottom: "s2" top: "p" pooling_param { pool: MAX kernel_size: 2 stride: 1 pad: 0 } }\n'
     'layer { name: "f" type: "Flatten" bottom: "s1" top: "out" }'),
    ("crop_offsets", (1, 3, 12, 12),
     'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" '
     'convolution_param { num_output: 3 kernel_size: 4 stride: 2 } }\n'
     'layer { name: "c" type: "Crop" bottom: "up" bottom: "data" top: "out" crop_param { axis: 2 offset: 3 offset: 5 } }'),
    ("caffenet_head", (1, 3, 67, 67),
     'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
     'convolution_param { num_output: 8 kernel_size: 11 stride: 4 } }\n'
     'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
     'layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n'
     'layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }\n'
     'layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2" '
     'convolution_param { num_output: 8 pad: 2 kernel_size: 5 group: 2 } }\n'
     'layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 10 } }\n'
     'layer { name: "prob" type: "Softmax" bottom: "fc" top: "out" }'),
]


def _random_blobs(net: CaffeNet, rng) -> list:
    out = []
    for layer in net.caffe_layers:
        blobs = []
        for name, p in zip(layer.blob_names, layer.blobs()):
            arr = rng.standard_normal(p.shape).astype(np.float32) * 0.5
            if arr.ndim >= 2:  # keep activations O(1) so float32 conditioning is not tested
                arr *= np.float32(1.0 / np.sqrt(arr.size / arr.shape[0]))
            if layer.type == "BatchNorm":
                arr = (np.abs(arr) + 0.5) if name != layer.blob_names[0] else arr
                if p.shape == (1,):
                    arr = np.array([1.7], np.float32)
            blobs.append(arr)
        if blobs:
            net.load_layer_blobs([(layer.name, blobs)])
            out.append(LayerWeights(layer.name, layer.type, blobs))
    return out


def _run_both(tmp_path, shape, layers_text, seed=0):
    proto = (f'name: "t"\nlayer {{ name: "data" type: "Input" top: "data" '
             f'input_param {{ shape {{ {" ".join(f"dim: {d}" for d in shape)} }} }} }}\n'
             + layers_text + "\n")
    pt = os.path.join(tmp_path, "net.prototxt")
    cm = os.path.join(tmp_path, "net.caffemodel")
    with open(pt, "w") as f:
        f.write(proto)
    rng = np.random.default_rng(seed)
    ours = CaffeNet.from_prototxt(pt)
    write_caffemodel(cm, _random_blobs(ours, rng))
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    import mxnet as mx
    ours.set_outputs(["out"])
    mine = ours(mx.nd.array(x)).asnumpy()
    cvnet = cv2.dnn.readNetFromCaffe(pt, cm)
    cvnet.setInput(x)
    theirs = cvnet.forward()
    return mine, theirs


def _single(text: str) -> str:
    return f'layer {{ name: "L" bottom: "data" top: "out" {text} }}'


ALL = [(i, s, _single(t)) for i, s, t in CASES] + GRAPH_CASES


@pytest.mark.parametrize("case", ALL, ids=[c[0] for c in ALL])
def test_layer_matches_opencv(case, tmp_path):
    _, shape, text = case
    mine, theirs = _run_both(str(tmp_path), shape, text)
    assert mine.size == theirs.size, (mine.shape, theirs.shape)
    theirs = theirs.reshape(mine.shape)
    err = np.linalg.norm(mine - theirs) / max(np.linalg.norm(theirs), 1e-30)
    assert err <= 1e-5, err
