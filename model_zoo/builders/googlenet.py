"""GoogLeNet / Inception v1 as BVLC replicated it (models/bvlc_googlenet), deploy form:
the two auxiliary classifiers of training are not part of the deploy net.

Each Inception module concatenates a 1x1, a 1x1->3x3, a 1x1->5x5 and a 3x3 max-pool->1x1
branch; layer names follow BVLC's (``inception_3a/3x3_reduce`` ...).
"""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L, params as P

from .common import LR_PARAMS, finish, input_layer, lrn, max_pool

#: module -> (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) widths (Szegedy et al. Table 1)
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
#: the xavier filler's std of each convolution as BVLC's deploy.prototxt writes it: per
#: Inception branch, and 0.1 / 0.1 / 0.03 for conv1, conv2/3x3_reduce, conv2/3x3
BRANCH_STD = {"1x1": 0.03, "3x3_reduce": 0.09, "3x3": 0.03, "5x5_reduce": 0.2, "5x5": 0.03,
              "pool_proj": 0.1}


def _conv_relu(n: NetSpec, conv: str, relu: str, bottom, num_output: int, kernel_size: int,
               std: float, **kw):
    n[conv] = L.Convolution(bottom, param=LR_PARAMS, num_output=num_output,
                            kernel_size=kernel_size, **kw,
                            weight_filler=dict(type="xavier", std=std),
                            bias_filler=dict(type="constant", value=0.2))
    n[relu] = L.ReLU(n[conv], in_place=True)
    return n[relu]


def _inception(n: NetSpec, name: str, bottom):
    w1, w3r, w3, w5r, w5, wp = INCEPTION[name]
    m = f"inception_{name}/"
    std = BRANCH_STD
    b1 = _conv_relu(n, m + "1x1", m + "relu_1x1", bottom, w1, 1, std["1x1"])
    r3 = _conv_relu(n, m + "3x3_reduce", m + "relu_3x3_reduce", bottom, w3r, 1, std["3x3_reduce"])
    b3 = _conv_relu(n, m + "3x3", m + "relu_3x3", r3, w3, 3, std["3x3"], pad=1)
    r5 = _conv_relu(n, m + "5x5_reduce", m + "relu_5x5_reduce", bottom, w5r, 1, std["5x5_reduce"])
    b5 = _conv_relu(n, m + "5x5", m + "relu_5x5", r5, w5, 5, std["5x5"], pad=2)
    n[m + "pool"] = max_pool(bottom, 3, 1, pad=1)
    bp = _conv_relu(n, m + "pool_proj", m + "relu_pool_proj", n[m + "pool"], wp, 1,
                    std["pool_proj"])
    n[m + "output"] = L.Concat(b1, b3, b5, bp)
    return n[m + "output"]


def googlenet():
    """bvlc_googlenet deploy: 10x3x224x224 -> prob (1000)."""
    n = NetSpec()
    input_layer(n, "data", [10, 3, 224, 224])
    x = _conv_relu(n, "conv1/7x7_s2", "conv1/relu_7x7", n.data, 64, 7, 0.1, pad=3, stride=2)
    n["pool1/3x3_s2"] = max_pool(x, 3, 2)
    n["pool1/norm1"] = lrn(n["pool1/3x3_s2"])
    x = _conv_relu(n, "conv2/3x3_reduce", "conv2/relu_3x3_reduce", n["pool1/norm1"], 64, 1, 0.1)
    x = _conv_relu(n, "conv2/3x3", "conv2/relu_3x3", x, 192, 3, 0.03, pad=1)
    n["conv2/norm2"] = lrn(x)
    n["pool2/3x3_s2"] = max_pool(n["conv2/norm2"], 3, 2)
    x = n["pool2/3x3_s2"]
    for name in ("3a", "3b"):
        x = _inception(n, name, x)
    n["pool3/3x3_s2"] = max_pool(x, 3, 2)
    x = n["pool3/3x3_s2"]
    for name in ("4a", "4b", "4c", "4d", "4e"):
        x = _inception(n, name, x)
    n["pool4/3x3_s2"] = max_pool(x, 3, 2)
    x = n["pool4/3x3_s2"]
    for name in ("5a", "5b"):
        x = _inception(n, name, x)
    n["pool5/7x7_s1"] = L.Pooling(x, pool=P.Pooling.AVE, kernel_size=7, stride=1)
    n["pool5/drop_7x7_s1"] = L.Dropout(n["pool5/7x7_s1"], dropout_ratio=0.4, in_place=True)
    n["loss3/classifier"] = L.InnerProduct(n["pool5/drop_7x7_s1"], param=LR_PARAMS,
                                           num_output=1000, weight_filler=dict(type="xavier"),
                                           bias_filler=dict(type="constant", value=0))
    n.prob = L.Softmax(n["loss3/classifier"])
    return finish(n, "GoogleNet")
