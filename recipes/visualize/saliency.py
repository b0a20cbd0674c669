"""Class saliency maps (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional
Networks", section 3) and the image-level entry point of the ``saliency`` command.

The saliency of pixel (i, j) for class c is ``max_k |dS_c / dI[k, i, j]|``: the largest
absolute derivative, over colour channels, of the class score ``S_c`` (the layer under
the softmax, e.g. ``fc8``) w.r.t. the image, from one backward pass::

    from caffe_compat.recipes.visualize import NetSource, explain_image
    src = NetSource.from_zoo("bvlc_reference_caffenet")
    result = explain_image(src, "cat.jpg", method="saliency")     # predicted class
    result.map.shape, result.label                                # (227, 227), 'n02123045 tabby...'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes.visualize.backprop import (GradientResult, Target, activation,
                                                     class_gradient, class_score_target,
                                                     resolve_target, unit_gradient,
                                                     unit_position)
from caffe_compat.recipes.visualize.render import (gradient_picture, map_picture, side_by_side,
                                                   to_uint8)
from caffe_compat.recipes.visualize.source import NetSource, image_input, load_image

#: ``saliency`` is Simonyan's |gradient| map; the others are the ReLU rules of backprop.py.
PICTURE_METHODS = ("saliency", "deconvnet", "guided")


def saliency_map(grad: np.ndarray) -> np.ndarray:
    """``max over channels of |grad|``: (H, W) from (C, H, W) or (1, C, H, W).

    >>> saliency_map(np.array([[[1., -3.]], [[-2., 1.]]]))
    array([[2., 3.]])
    """
    g = np.asarray(grad)
    if g.ndim == 4:
        if g.shape[0] != 1:
            raise ValueError(f"one image at a time: the gradient has shape {g.shape}")
        g = g[0]
    if g.ndim != 3:
        raise ValueError(f"expected a C x H x W gradient, got shape {g.shape}")
    return np.abs(g).max(axis=0)


def class_saliency(block, data, class_index: int,
                   score: Optional[Target] = None) -> tuple[np.ndarray, GradientResult]:
    """(saliency map H x W, the raw gradient result) of ``class_index`` for ``data``."""
    result = class_gradient(block, data, class_index, "backprop", score)
    return saliency_map(result.gradient), result


@dataclass
class Explanation:
    """What :func:`explain_image` computed for one image."""
    image: np.ndarray          # the image as the net saw it: H x W x 3 RGB in [0, 1]
    gradient: np.ndarray       # (C, H, W) d(target)/d(input) under ``method``
    map: np.ndarray            # (H, W) saliency map (max |grad| over channels)
    method: str
    target: str                # "class 281 (fc8)" or "conv5 unit 12 at (3, 4)"
    score: float               # the class score / unit activation that was explained
    class_index: Optional[int] = None
    label: Optional[str] = None


def explain_image(source: NetSource, image_path: str, *, class_index: Optional[int] = None,
                  layer: Optional[str] = None, unit: Optional[int] = None,
                  position: Optional[Sequence[int]] = None, method: str = "saliency",
                  score_layer: Optional[str] = None, block=None) -> Explanation:
    """Saliency / deconvnet / guided-backprop picture data for one image file.

    With ``layer`` and ``unit``: that neuron (at ``position``, default its strongest
    activation). Otherwise class ``class_index`` (default: the predicted class) of the
    class score (``score_layer``, default the blob under the output Softmax).
    """
    if method not in PICTURE_METHODS:
        raise CaffeCompatError(f"unknown method {method!r}; choose one of "
                               f"{', '.join(PICTURE_METHODS)}")
    if (layer is None) != (unit is None):
        raise CaffeCompatError("give --layer and --unit together")
    if layer is not None and class_index is not None:
        raise CaffeCompatError("give either a class or a layer and unit, not both")
    block = block if block is not None else source.load()
    name, shape = image_input(block)
    shape = (1,) + tuple(shape[1:])
    if tuple(block.blob_shapes[name]) != shape:
        block.reshape({name: shape})
    data = source.preprocessing.apply(load_image(image_path), shape)[None]
    rule = "backprop" if method == "saliency" else method
    if layer is not None:
        target = resolve_target(block, layer)
        act = activation(block, data, target)
        pos = unit_position(act, unit, position)
        result = unit_gradient(block, data, target, unit, pos, rule)
        value = float(act[(0, unit) + (pos or ())])
        where = f" at {pos}" if pos is not None else ""
        what, label = f"{target.blob} unit {unit}{where}", None
    else:
        score = class_score_target(block, score_layer)
        if class_index is None:
            scores = activation(block, data, score)
            class_index = int(np.argmax(scores[0].reshape(scores.shape[1], -1).max(axis=1)))
        result = class_gradient(block, data, class_index, rule, score)
        value = float(result.activation[0, class_index].max())
        label = source.label(class_index)
        what = f"class {class_index} ({score.blob})"
    image = source.preprocessing.invert(data[0], shape)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return Explanation(image, result.gradient[0], saliency_map(result.gradient), method, what,
                       value, class_index if layer is None else None, label)


def explanation_picture(ex: Explanation, channel_swap=(2, 1, 0)) -> np.ndarray:
    """The ``saliency`` command's picture: image | map (gray |grad| for ``saliency``,
    the signed gradient in colour for ``deconvnet`` and ``guided``)."""
    if ex.method == "saliency":
        right = map_picture(ex.map)
    else:
        right = gradient_picture(ex.gradient, channel_swap)
    return side_by_side([to_uint8(ex.image), right])

