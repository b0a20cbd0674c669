"""AlexNet and CaffeNet (BVLC models/bvlc_alexnet, bvlc_reference_caffenet) and the
CaffeNet-based R-CNN ILSVRC13 detector and Flickr Style fine-tune.

AlexNet normalizes before pooling; CaffeNet pools before normalizing. Both split
conv2, conv4 and conv5 into two groups, as the original two-GPU network did.
"""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L

from .common import LR_PARAMS, finish, input_layer, lrn, max_pool


#: finetune_flickr_style's deploy keeps train_val's fillers: gaussian weights (std per
#: layer) and constant biases (0 or 1), as models/finetune_flickr_style/deploy.prototxt
FLICKR_FILLERS = {"conv1": (0.01, 0), "conv2": (0.01, 1), "conv3": (0.01, 0), "conv4": (0.01, 1),
                  "conv5": (0.01, 1), "fc6": (0.005, 1), "fc7": (0.005, 1), "fc8_flickr": (0.01, 0)}


def _fillers(name: str, fillers) -> dict:
    if not fillers:
        return {}
    std, bias = fillers[name]
    return dict(weight_filler=dict(type="gaussian", std=std),
                bias_filler=dict(type="constant", value=bias))


def _trunk(n: NetSpec, pool_first: bool, lr_params: bool, fillers=None) -> None:
    """data -> fc7/drop7 (in place on fc7)."""
    extra = {"param": LR_PARAMS} if lr_params else {}

    def conv(name, bottom, num_output, kernel_size, **kw):
        n[name] = L.Convolution(bottom, num_output=num_output, kernel_size=kernel_size,
                                **extra, **kw, **_fillers(name, fillers))
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
    conv("conv3", x, 384, 3, pad=1)
    n.relu3 = L.ReLU(n.conv3, in_place=True)
    conv("conv4", n.relu3, 384, 3, pad=1, group=2)
    n.relu4 = L.ReLU(n.conv4, in_place=True)
    conv("conv5", n.relu4, 256, 3, pad=1, group=2)
    n.relu5 = L.ReLU(n.conv5, in_place=True)
    n.pool5 = max_pool(n.relu5, 3, 2)
    n.fc6 = L.InnerProduct(n.pool5, num_output=4096, **extra, **_fillers("fc6", fillers))
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7 = L.InnerProduct(n.drop6, num_output=4096, **extra, **_fillers("fc7", fillers))
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
    _trunk(n, pool_first=True, lr_params=True, fillers=FLICKR_FILLERS)
    n.fc8_flickr = L.InnerProduct(n.drop7, num_output=20,
                                  param=[dict(lr_mult=10, decay_mult=1),
                                         dict(lr_mult=20, decay_mult=0)],
                                  **_fillers("fc8_flickr", FLICKR_FILLERS))
    n.prob = L.Softmax(n.fc8_flickr)
    return finish(n, "FlickrStyleCaffeNet")
