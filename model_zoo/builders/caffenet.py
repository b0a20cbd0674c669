"""AlexNet and CaffeNet (BVLC models/bvlc_alexnet, bvlc_reference_caffenet) and the
CaffeNet-based R-CNN ILSVRC13 detector and Flickr Style fine-tune.

AlexNet normalizes before pooling; CaffeNet pools before normalizing. Both split
conv2, conv4 and conv5 into two groups, as the original two-GPU network did.
"""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L

from .common import LR_PARAMS, finish, input_layer, lrn, max_pool


def _trunk(n: NetSpec, pool_first: bool, lr_params: bool) -> None:
    """data -> fc7/drop7 (in place on fc7)."""
    extra = {"param": LR_PARAMS} if lr_params else {}

    def conv(name, bottom, num_output, kernel_size, **kw):
        n[name] = L.Convolution(bottom, num_output=num_output, kernel_size=kernel_size,
                                **extra, **kw)
        return n[name]

    def stage(i, bottom, num_output, kernel_size, **kw):
        """conv<i> + relu<i> (+ pool/norm in the net's order)."""
        top = conv(f"conv{i}", bottom, num_output, kernel_size, **kw)
        n[f"relu{i}"] = L.ReLU(top, in_place=True)
        if pool_first:
            n[f"pool{i}"] = max_pool(n[f"relu{i}"], 3, 2)
            n[f"norm{i}"] = lrn(n[f"pool{i}"])
            return n[f"norm{i}"]
        n[f"norm{i}"] = lrn(n[f"relu{i}"])
        n[f"pool{i}"] = max_pool(n[f"norm{i}"], 3, 2)
        return n[f"pool{i}"]

    x = stage(1, n.data, 96, 11, stride=4)
    x = stage(2, x, 256, 5, pad=2, group=2)
    n.conv3 = L.Convolution(x, num_output=384, pad=1, kernel_size=3, **extra)
    n.relu3 = L.ReLU(n.conv3, in_place=True)
    n.conv4 = L.Convolution(n.relu3, num_output=384, pad=1, kernel_size=3, group=2, **extra)
    n.relu4 = L.ReLU(n.conv4, in_place=True)
    n.conv5 = L.Convolution(n.relu4, num_output=256, pad=1, kernel_size=3, group=2, **extra)
    n.relu5 = L.ReLU(n.conv5, in_place=True)
    n.pool5 = max_pool(n.relu5, 3, 2)
    n.fc6 = L.InnerProduct(n.pool5, num_output=4096, **extra)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7 = L.InnerProduct(n.drop6, num_output=4096, **extra)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)


def alexnet():
    """bvlc_alexnet deploy: 10x3x227x227 -> prob (1000)."""
    n = NetSpec()
    input_layer(n, "data", [10, 3, 227, 227])
    _trunk(n, pool_first=False, lr_params=True)
    n.fc8 = L.InnerProduct(n.drop7, num_output=1000, param=LR_PARAMS)
    n.prob = L.Softmax(n.fc8)
    return finish(n, "AlexNet")


def caffenet():
    """bvlc_reference_caffenet deploy: 10x3x227x227 -> prob (1000)."""
    n = NetSpec()
    input_layer(n, "data", [10, 3, 227, 227])
    _trunk(n, pool_first=True, lr_params=False)
    n.fc8 = L.InnerProduct(n.drop7, num_output=1000)
    n.prob = L.Softmax(n.fc8)
    return finish(n, "CaffeNet")


def rcnn_ilsvrc13():
    """bvlc_reference_rcnn_ilsvrc13 deploy: CaffeNet with the R-CNN SVMs as fc-rcnn (200)."""
    n = NetSpec()
    input_layer(n, "data", [10, 3, 227, 227])
    _trunk(n, pool_first=True, lr_params=False)
    n["fc-rcnn"] = L.InnerProduct(n.drop7, num_output=200)
    return finish(n, "R-CNN-ilsvrc13")


def flickr_style():
    """finetune_flickr_style deploy: CaffeNet with fc8_flickr (20 styles)."""
    n = NetSpec()
    input_layer(n, "data", [10, 3, 227, 227])
    _trunk(n, pool_first=True, lr_params=True)
    n.fc8_flickr = L.InnerProduct(n.drop7, num_output=20,
                                  param=[dict(lr_mult=10, decay_mult=1),
                                         dict(lr_mult=20, decay_mult=0)])
    n.prob = L.Softmax(n.fc8_flickr)
    return finish(n, "FlickrStyleCaffeNet")
