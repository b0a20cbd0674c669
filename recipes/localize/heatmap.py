"""Class-score maps of a fully convolutional classifier over a whole image, upsampled to
the image and drawn over it (the ``heatmap`` command).

Each cell of the score map is the classifier applied to one window of the image (its
receptive field); :func:`upsample_map` puts every cell value at the centre of its
window and interpolates bilinearly between centres (constant beyond the outer ones)::

    from caffe_compat.recipes.localize import class_heatmap, fully_convolutional
    hm = class_heatmap(src, "cat.jpg", class_index=281)
    hm.scores.shape, hm.map.shape          # (1000, 8, 11) cells, (375, 500) pixels
    save_png("cat_heat.png", hm.picture())
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes.visualize.backprop import (Target, activation, class_score_target,
                                                     resolve_target)
from caffe_compat.recipes.visualize.receptive_field import ReceptiveField, receptive_field
from caffe_compat.recipes.visualize.render import normalize, overlay
from caffe_compat.recipes.visualize.source import NetSource, image_input, load_image


def heatmap_target(block, blob: Optional[str] = None) -> Target:
    """The blob to draw: ``blob``, else the output of the net's final Softmax (class
    probabilities at every position), else the class scores."""
    if blob is not None:
        return resolve_target(block, blob)
    graph = block.graph
    for node in reversed(graph.layers):
        if node.type == "Softmax" and node.tops and node.tops[0] in graph.outputs:
            return resolve_target(block, node.tops[0])
    return class_score_target(block)


def upsample_map(values: np.ndarray, field: ReceptiveField, size: tuple) -> np.ndarray:
    """An (h, w) cell map as an (H, W) pixel map: cell (i, j) sits at the centre of its
    receptive field; bilinear between centres, nearest beyond them."""
    from scipy.ndimage import map_coordinates
    if field.is_global:
        raise CaffeCompatError("the map's units see the whole image: there is no map to draw")
    values = np.asarray(values, np.float64)
    cy, cx = field.center(0, 0)
    ys = (np.arange(size[0]) + 0.5 - cy) / field.stride[0]
    xs = (np.arange(size[1]) + 0.5 - cx) / field.stride[1]
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return map_coordinates(values, [yy, xx], order=1, mode="nearest")


def working_size(image_shape: tuple, input_hw: tuple, short_side: Optional[int]) -> tuple:
    """(H, W) to run the net at: ``short_side`` on the shorter side when given, else the
    image's own size, scaled up (keeping the aspect) to cover the net's input size."""
    h, w = image_shape[:2]
    if short_side is not None:
        if short_side <= 0:
            raise CaffeCompatError(f"the short side must be positive, not {short_side}")
        scale = short_side / min(h, w)
    else:
        scale = max(1.0, input_hw[0] / h, input_hw[1] / w)
    return (max(int(round(h * scale)), input_hw[0]), max(int(round(w * scale)), input_hw[1]))


@dataclass
class Heatmap:
    """``image`` (H x W x 3, as run), ``scores`` (K, h, w) map of the drawn blob,
    ``class_index`` drawn, ``map`` (H, W) its upsampled values, ``blob`` its name."""
    image: np.ndarray
    scores: np.ndarray
    class_index: int
    map: np.ndarray
    blob: str
    label: str = ""

    def picture(self, alpha: float = 0.5) -> np.ndarray:
        """uint8 RGB: the image with the map (stretched to its range) in jet colours."""
        return overlay(self.image, normalize(self.map), alpha)


def class_heatmap(source: NetSource, image_path: str, class_index: Optional[int] = None,
                  blob: Optional[str] = None, short_side: Optional[int] = None,
                  fcn=None) -> Heatmap:
    """Run the fully convolutional twin of ``source`` over the whole image and return
    the map of ``class_index`` (default: the class with the highest value anywhere).
    ``fcn``: an already converted :class:`~.surgery.FullyConvolutional` to reuse."""
    from caffe_compat.recipes.localize.surgery import fully_convolutional
    fcn = fcn if fcn is not None else fully_convolutional(source)
    block = fcn.block
    name, shape = image_input(block)
    image = load_image(image_path)
    size = working_size(image.shape, fcn.input_shape[2:], short_side)
    run_shape = (1, shape[1]) + size
    data = source.preprocessing.apply(image, run_shape)[None]
    block.reshape({name: run_shape})
    target = heatmap_target(block, blob)
    scores = activation(block, data, target)[0]
    if scores.ndim != 3:
        raise CaffeCompatError(f"{target.blob!r} has shape {scores.shape} per image; a class "
                               "map is K x h x w")
    if class_index is None:
        class_index = int(np.argmax(scores.reshape(scores.shape[0], -1).max(axis=1)))
    if not 0 <= class_index < scores.shape[0]:
        raise CaffeCompatError(f"class {class_index} is out of range: {target.blob!r} has "
                               f"{scores.shape[0]} classes")
    field = receptive_field(block, target.blob)
    upsampled = upsample_map(scores[class_index], field, size)
    shown = source.preprocessing.invert(data[0], run_shape)
    if shown.shape[2] == 1:
        shown = np.repeat(shown, 3, axis=2)
    return Heatmap(shown, scores, class_index, upsampled, target.blob,
                   source.label(class_index))
