"""ResNet-50/101/152 as released by MSRA (KaimingHe/deep-residual-networks), deploy form.

Bottleneck blocks (1x1 -> 3x3 -> 1x1, x4 expansion) with BatchNorm (global stats) +
Scale after every convolution, convolutions without bias; the first block of stages
3-5 strides by 2 in its first 1x1 convolution and its projection shortcut. Blocks are
named ``res<stage><letter>`` for ResNet-50 and ``res<stage>a``, ``res<stage>b1``,
``res<stage>b2`` ... when a stage has more than three blocks in ResNet-101/152.
The original deploy files declare the input with the legacy ``input``/``input_dim``
header, reproduced here.
"""
from __future__ import annotations

import string

from caffe_compat.net_spec import NetSpec, layers as L, params as P

from .common import finish, max_pool

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _conv_bn(n: NetSpec, conv: str, bn: str, scale: str, bottom, num_output: int,
             kernel_size: int, pad: int = 0, stride: int = 1, bias: bool = False):
    """Convolution (a bias only where the MSRA files have one) + BatchNorm + Scale, in place."""
    extra = {} if bias else {"bias_term": False}
    n[conv] = L.Convolution(bottom, num_output=num_output, kernel_size=kernel_size, pad=pad,
                            stride=stride, **extra)
    n[bn] = L.BatchNorm(n[conv], use_global_stats=True, in_place=True)
    n[scale] = L.Scale(n[bn], bias_term=True, in_place=True)
    return n[scale]


def _block_names(depth: int, stage: int) -> list[str]:
    count = BLOCKS[depth][stage - 2]
    if depth == 50 or count <= 3:
        return [f"{stage}{string.ascii_lowercase[i]}" for i in range(count)]
    return [f"{stage}a"] + [f"{stage}b{i}" for i in range(1, count)]


def _bottleneck(n: NetSpec, name: str, bottom, width: int, stride: int, project: bool):
    r = f"res{name}"
    if project:
        shortcut = _conv_bn(n, r + "_branch1", f"bn{name}_branch1", f"scale{name}_branch1",
                            bottom, width * 4, 1, stride=stride)
    else:
        shortcut = bottom
    x = _conv_bn(n, r + "_branch2a", f"bn{name}_branch2a", f"scale{name}_branch2a",
                 bottom, width, 1, stride=stride)
    n[r + "_branch2a_relu"] = L.ReLU(x, in_place=True)
    x = _conv_bn(n, r + "_branch2b", f"bn{name}_branch2b", f"scale{name}_branch2b",
                 n[r + "_branch2a_relu"], width, 3, pad=1)
    n[r + "_branch2b_relu"] = L.ReLU(x, in_place=True)
    x = _conv_bn(n, r + "_branch2c", f"bn{name}_branch2c", f"scale{name}_branch2c",
                 n[r + "_branch2b_relu"], width * 4, 1)
    n[r] = L.Eltwise(shortcut, x)
    n[r + "_relu"] = L.ReLU(n[r], in_place=True)
    return n[r + "_relu"]


def resnet(depth: int):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 224, 224]))   # replaced by the legacy header below
    # conv1 has a bias in MSRA's ResNet-50 file only; ResNet-101/152 say bias_term: false
    x = _conv_bn(n, "conv1", "bn_conv1", "scale_conv1", n.data, 64, 7, pad=3, stride=2,
                 bias=(depth == 50))
    n.conv1_relu = L.ReLU(x, in_place=True)
    n.pool1 = max_pool(n.conv1_relu, 3, 2)
    x = n.pool1
    for stage, width in zip((2, 3, 4, 5), (64, 128, 256, 512)):
        for i, name in enumerate(_block_names(depth, stage)):
            stride = 2 if (i == 0 and stage > 2) else 1
            x = _bottleneck(n, name, x, width, stride, project=(i == 0))
    n.pool5 = L.Pooling(x, kernel_size=7, stride=1, pool=P.Pooling.AVE)
    n.fc1000 = L.InnerProduct(n.pool5, num_output=1000)
    n.prob = L.Softmax(n.fc1000)
    proto = finish(n, f"ResNet-{depth}")
    del proto.layer[0]                                    # the Input layer -> input/input_dim
    proto.input.append("data")
    proto.input_dim.extend([1, 3, 224, 224])
    return proto
