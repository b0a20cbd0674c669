"""Fully convolutional networks (shelhamer/fcn.berkeleyvision.org), deploy form.

The VGG-16 trunk is padded by 100 so the output can be cropped back onto any input;
fc6/fc7 are convolutions; scores are upsampled by fixed bilinear Deconvolutions and
fused with pool4/pool3 scores for the 16s/8s nets. Crop offsets are computed from the
net's coordinate maps (caffe_compat.coord_map.crop), as the upstream net.py files do.
The upstream data layers (Python) are replaced by Input layers of 1x3x500x500 (the
shape of voc-fcn8s/deploy.prototxt), the losses are dropped, and so are the Dropout
layers (identities at TEST), as upstream's voc-fcn8s/deploy.prototxt has none.
"""
from __future__ import annotations

from caffe_compat.coord_map import crop
from caffe_compat.net_spec import NetSpec, layers as L, params as P
# The FCN architecture pieces live in the recipe (it builds the train/val nets from
# them too); the zoo only swaps the data layers for an Input.
from caffe_compat.recipes.fcn.nets import score_head as _head
from caffe_compat.recipes.fcn.nets import score_layer as _score
from caffe_compat.recipes.fcn.nets import upsample as _upscore
from caffe_compat.recipes.fcn.nets import vgg16_trunk

from .common import finish, lrn, max_pool

DEPLOY_SIZE = (500, 500)


def _input(n: NetSpec, top: str, channels: int = 3, name: str | None = "input"):
    kwargs = {"name": name} if name else {}
    n[top] = L.Input(shape=dict(dim=[1, channels, *DEPLOY_SIZE]), **kwargs)
    return n[top]


def fcn_vgg(name: str, classes: int, stride: int, scale_skips: bool = False):
    """voc-/pascalcontext- FCN-32s/16s/8s on a BGR ``data`` input."""
    n = NetSpec()
    data = _input(n, "data")
    _head(n, data, vgg16_trunk(n, data, dropout=False), classes, stride, scale_skips=scale_skips)
    return finish(n, name)


def fcn_alexnet():
    """voc-fcn-alexnet: CaffeNet trunk padded by 100, fc6 as a 6x6 convolution, stride 32."""
    n = NetSpec()
    data = _input(n, "data")

    def conv_relu(i, bottom, ks, nout, stride=1, pad=0, group=1):
        n[f"conv{i}"] = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout,
                                      pad=pad, group=group)
        n[f"relu{i}"] = L.ReLU(n[f"conv{i}"], in_place=True)
        return n[f"relu{i}"]

    n.pool1 = max_pool(conv_relu(1, data, 11, 96, stride=4, pad=100), 3, 2)
    n.norm1 = lrn(n.pool1)
    n.pool2 = max_pool(conv_relu(2, n.norm1, 5, 256, pad=2, group=2), 3, 2)
    n.norm2 = lrn(n.pool2)
    x = conv_relu(3, n.norm2, 3, 384, pad=1)
    x = conv_relu(4, x, 3, 384, pad=1, group=2)
    n.pool5 = max_pool(conv_relu(5, x, 3, 256, pad=1, group=2), 3, 2)
    n.fc6 = L.Convolution(n.pool5, kernel_size=6, stride=1, num_output=4096, pad=0, group=1)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.fc7 = L.Convolution(n.relu6, kernel_size=1, stride=1, num_output=4096, pad=0, group=1)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.score_fr = _score(n.relu7, 21)
    n.upscore = _upscore(n.score_fr, 21, 63, 32)
    n.score = crop(n.upscore, data)
    return finish(n, "voc-fcn-alexnet")


def siftflow(stride: int):
    """siftflow-fcn{32,16,8}s: one trunk, a semantic (33) and a geometric (3) head."""
    n = NetSpec()
    data = _input(n, "data")
    relu7 = vgg16_trunk(n, data, dropout=False)
    _head(n, data, relu7, 33, stride, s="_sem")
    _head(n, data, relu7, 3, stride, s="_geo")
    return finish(n, f"siftflow-fcn{stride}s")


def nyud(modality: str):
    """nyud-fcn32s-{color,hha,color-d,color-hha}: 40 classes, stride 32."""
    n = NetSpec()
    if modality in ("color", "hha"):
        data = _input(n, "data")
        _head(n, data, vgg16_trunk(n, data, dropout=False), 40, 32)
    elif modality == "color-d":                       # early fusion: a 4-channel trunk
        color = _input(n, "color", name="color")
        depth = _input(n, "depth", channels=1, name="depth")
        n.data = L.Concat(color, depth)
        _head(n, n.data, vgg16_trunk(n, n.data, first_conv="conv1_1_bgrd", dropout=False), 40, 32)
    elif modality == "color-hha":                     # late fusion of two full streams
        color = _input(n, "color", name="color")
        hha = _input(n, "hha", name="hha")
        n.score_frcolor = _score(vgg16_trunk(n, color, s="color", dropout=False), 40)
        n.score_frhha = _score(vgg16_trunk(n, hha, s="hha", dropout=False), 40)
        n.score_fused = L.Eltwise(n.score_frcolor, n.score_frhha, operation=P.Eltwise.SUM,
                                  coeff=[0.5, 0.5])
        n.upscore = _upscore(n.score_fused, 40, 64, 32)
        n.score = crop(n.upscore, color)
    else:
        raise ValueError(f"unknown NYUDv2 modality {modality!r}")
    return finish(n, f"nyud-fcn32s-{modality}")
