"""VGG 16 and 19 (Simonyan & Zisserman, configurations D and E): the ILSVRC-2014 nets
published by the VGG team as VGG_ILSVRC_16_layers / VGG_ILSVRC_19_layers.

Five stages of 3x3 convolutions (pad 1) with 2x2 max pooling, then three fully
connected layers; deploy input 10x3x224x224.
"""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L

from .common import finish, input_layer, max_pool

#: convolutions per stage and their widths
STAGES = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


def vgg(depth: int):
    n = NetSpec()
    input_layer(n, "data", [10, 3, 224, 224])
    x = n.data
    for stage, (convs, width) in enumerate(zip(STAGES[depth], WIDTHS), start=1):
        for i in range(1, convs + 1):
            n[f"conv{stage}_{i}"] = L.Convolution(x, num_output=width, pad=1, kernel_size=3)
            n[f"relu{stage}_{i}"] = L.ReLU(n[f"conv{stage}_{i}"], in_place=True)
            x = n[f"relu{stage}_{i}"]
        n[f"pool{stage}"] = max_pool(x, 2, 2)
        x = n[f"pool{stage}"]
    n.fc6 = L.InnerProduct(x, num_output=4096)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7 = L.InnerProduct(n.drop6, num_output=4096)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.fc8 = L.InnerProduct(n.drop7, num_output=1000)
    n.prob = L.Softmax(n.fc8)
    return finish(n, f"VGG_ILSVRC_{depth}_layers")
