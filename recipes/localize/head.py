"""A localisation head for any classification deploy prototxt: the classifier's score
layer is swapped for an L2 box regressor (Sermanet et al. 2014, OverFeat section 5;
Simonyan & Zisserman 2015, VGG's localisation).

* deploy: the same net up to the score layer's input, then ``bbox_pred``, an
  InnerProduct with 4 outputs (class-agnostic) or ``4 * classes`` (one box per class);
  layers that consumed the scores (the Softmax) are gone;
* train: the Input layer becomes :class:`.data.VOCBoxDataLayer`; the loss is
  ``EuclideanLoss(bbox_pred, bbox_target)`` (``1 / 2N * sum of squares``), per class
  through ``Eltwise PROD(bbox_pred, bbox_weight)`` so that only the true class's four
  outputs get a gradient. The head learns ``head_lr_mult`` times faster (10x on
  weights, 20x on biases, as Caffe's fine-tuning example does); ``freeze`` sets
  ``lr_mult: 0`` on every layer up to and including the one named.

>>> from caffe_compat.recipes.localize.head import localization_params  # doctest: +SKIP
>>> train, deploy = localization_params(deploy_param, data_param_str, num_classes=None)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Optional

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

HEAD = "bbox_pred"
DATA_MODULE = "caffe_compat.recipes.localize.data"
DATA_LAYER = "VOCBoxDataLayer"

#: Learnable blobs per layer type (for ``freeze``): fixed counts, or 1 + bias_term.
_BIAS_FIELDS = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
                "InnerProduct": "inner_product_param", "Scale": "scale_param",
                "Embed": "embed_param"}
_FIXED_BLOBS = {"Bias": 1, "PReLU": 1, "BatchNorm": 3}


def _blob_count(lp) -> int:
    if lp.type in _BIAS_FIELDS:
        return 1 + int(bool(getattr(lp, _BIAS_FIELDS[lp.type]).bias_term))
    return _FIXED_BLOBS.get(lp.type, 0)


def score_layer(net_param) -> str:
    """Name of the classifier's score layer: the InnerProduct under the output Softmax
    (or the last InnerProduct of a net without one)."""
    layers = list(net_param.layer)
    producers = {}
    for lp in layers:
        for t in lp.top:
            producers[t] = lp
    for lp in reversed(layers):
        if lp.type == "Softmax":
            src = producers.get(lp.bottom[0])
            if src is not None and src.type == "InnerProduct":
                return src.name
            raise CaffeCompatError(f"the Softmax {lp.name!r} reads {lp.bottom[0]!r}, which no "
                                   "InnerProduct makes; name the score layer to replace")
    for lp in reversed(layers):
        if lp.type == "InnerProduct":
            return lp.name
    raise CaffeCompatError(f"net {net_param.name!r} has no InnerProduct score layer")


def _head_layer(bottom: str, num_outputs: int, head_lr_mult: float):
    lp = caffe_pb2.LayerParameter()
    lp.name, lp.type = HEAD, "InnerProduct"
    lp.bottom.append(bottom)
    lp.top.append(HEAD)
    for mult, decay in ((head_lr_mult, 1.0), (2 * head_lr_mult, 0.0)):
        spec = lp.param.add()
        spec.lr_mult, spec.decay_mult = mult, decay
    ip = lp.inner_product_param
    ip.num_output = num_outputs
    ip.weight_filler.type = "gaussian"
    ip.weight_filler.std = 0.001
    ip.bias_filler.type = "constant"
    return lp


def _data_layer(input_layer, param_str: str, per_class: bool):
    lp = caffe_pb2.LayerParameter()
    lp.name, lp.type = input_layer.name, "Python"
    lp.top.extend([input_layer.top[0], "bbox_target"] + (["bbox_weight"] if per_class else []))
    lp.python_param.module = DATA_MODULE
    lp.python_param.layer = DATA_LAYER
    lp.python_param.param_str = param_str
    return lp


def localization_params(net_param, data_param_str: str, num_classes: Optional[int] = None,
                        replace: Optional[str] = None, freeze: Optional[str] = None,
                        head_lr_mult: float = 10.0) -> tuple:
    """(train NetParameter, deploy NetParameter) of the localiser built on the TEST-phase
    classifier ``net_param`` (see the module docstring). ``num_classes=None`` is the
    class-agnostic head; ``replace`` names the score layer (default :func:`score_layer`)."""
    layers = list(net_param.layer)
    names = [lp.name for lp in layers]
    replace = replace or score_layer(net_param)
    if replace not in names:
        raise CaffeCompatError(f"net {net_param.name!r} has no layer {replace!r}")
    if freeze is not None and freeze not in names:
        raise CaffeCompatError(f"freeze: net {net_param.name!r} has no layer {freeze!r}")
    inputs = [lp for lp in layers if lp.type == "Input"]
    if len(inputs) != 1 or len(inputs[0].top) != 1:
        raise CaffeCompatError("the localisation head needs a deploy net with one Input layer "
                               "and one image top")
    old = layers[names.index(replace)]
    if old.type != "InnerProduct":
        raise CaffeCompatError(f"layer {replace!r} is a {old.type}; the head replaces an "
                               "InnerProduct")
    dead = set(old.top)                 # blobs computed from the scores: dropped
    frozen = True if freeze is not None else False
    body = []
    for lp in layers:
        if lp.name == replace:
            body.append(_head_layer(old.bottom[0], 4 * (num_classes or 1), head_lr_mult))
            frozen = False
            continue
        if dead & set(lp.bottom):
            dead |= set(lp.top)
            continue
        new = caffe_pb2.LayerParameter()
        new.CopyFrom(lp)
        if frozen and _blob_count(lp):
            while len(new.param) < _blob_count(lp):
                new.param.add()
            for spec in new.param:
                spec.lr_mult = 0.0
        if lp.name == freeze:
            frozen = False
        body.append(new)
    deploy = caffe_pb2.NetParameter()
    deploy.CopyFrom(net_param)
    deploy.ClearField("layer")
    deploy.name = (net_param.name or "net") + "_localizer"
    deploy.layer.extend(body)
    train = caffe_pb2.NetParameter()
    train.CopyFrom(deploy)
    train.ClearField("layer")
    train.ClearField("state")
    per_class = num_classes is not None
    for lp in body:
        train.layer.append(_data_layer(lp, data_param_str, per_class) if lp.type == "Input" else lp)
    prediction = HEAD
    if per_class:
        masked = train.layer.add()
        masked.name, masked.type = "bbox_pred_masked", "Eltwise"
        masked.bottom.extend([HEAD, "bbox_weight"])
        masked.top.append("bbox_pred_masked")
        masked.eltwise_param.operation = caffe_pb2.EltwiseParameter.PROD
        prediction = "bbox_pred_masked"
    loss = train.layer.add()
    loss.name, loss.type = "loss", "EuclideanLoss"
    loss.bottom.extend([prediction, "bbox_target"])
    loss.top.append("loss")
    return train, deploy
