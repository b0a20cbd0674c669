"""SqueezeNet v1.0 and v1.1 (forresti/SqueezeNet), deploy form.

Fire modules: a 1x1 squeeze convolution feeding 1x1 and 3x3 expand convolutions whose
outputs are concatenated; conv10 + global average pooling replace fully connected
layers. v1.1 uses a 3x3/64 conv1 and pools after fire3 and fire5 instead of after
fire4 and fire8.
"""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L, params as P

from .common import input_layer, max_pool

#: fire module -> (squeeze, expand) widths
FIRE = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128),
        6: (48, 192), 7: (48, 192), 8: (64, 256), 9: (64, 256)}


def _fire(n: NetSpec, i: int, bottom):
    squeeze, expand = FIRE[i]
    f = f"fire{i}/"
    n[f + "squeeze1x1"] = L.Convolution(bottom, num_output=squeeze, kernel_size=1)
    n[f + "relu_squeeze1x1"] = L.ReLU(n[f + "squeeze1x1"], in_place=True)
    n[f + "expand1x1"] = L.Convolution(n[f + "relu_squeeze1x1"], num_output=expand, kernel_size=1)
    n[f + "relu_expand1x1"] = L.ReLU(n[f + "expand1x1"], in_place=True)
    n[f + "expand3x3"] = L.Convolution(n[f + "relu_squeeze1x1"], num_output=expand, pad=1,
                                       kernel_size=3)
    n[f + "relu_expand3x3"] = L.ReLU(n[f + "expand3x3"], in_place=True)
    n[f + "concat"] = L.Concat(n[f + "relu_expand1x1"], n[f + "relu_expand3x3"])
    return n[f + "concat"]


def squeezenet(version: str):
    """``version`` "1.0" or "1.1"; deploy input 10x3x227x227 -> prob (1000)."""
    n = NetSpec()
    input_layer(n, "data", [10, 3, 227, 227])
    if version == "1.0":
        n.conv1 = L.Convolution(n.data, num_output=96, kernel_size=7, stride=2)
        pools_after = (4, 8)
    else:
        n.conv1 = L.Convolution(n.data, num_output=64, kernel_size=3, stride=2)
        pools_after = (3, 5)
    n.relu_conv1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = max_pool(n.relu_conv1, 3, 2)
    x = n.pool1
    for i in range(2, 10):
        x = _fire(n, i, x)
        if i in pools_after:
            n[f"pool{i}"] = max_pool(x, 3, 2)
            x = n[f"pool{i}"]
    n.drop9 = L.Dropout(x, dropout_ratio=0.5, in_place=True)
    # v1.0's file pads its 1x1 conv10 by 1 (a 15x15 map before global pooling); v1.1's not
    pad10 = {"pad": 1} if version == "1.0" else {}
    n.conv10 = L.Convolution(n.drop9, num_output=1000, kernel_size=1, **pad10)
    n.relu_conv10 = L.ReLU(n.conv10, in_place=True)
    n.pool10 = L.Pooling(n.relu_conv10, pool=P.Pooling.AVE, global_pooling=True)
    n.prob = L.Softmax(n.pool10)
    return n.to_proto()                                  # the upstream files have no name
