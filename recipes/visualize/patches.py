"""Top-activating image patches of one neuron over a folder of images (Zeiler & Fergus
2013, fig. 2; Girshick et al. 2014, fig. 4).

Every image is resized to the net input (as the classifier sees it) and run up to the
chosen blob; the strongest positions of channel ``unit`` are kept and each is cut out
of the original image at the unit's receptive field (:mod:`.receptive_field`), scaled
back to the original resolution::

    from caffe_compat.recipes.visualize import NetSource, top_patches, patch_picture
    patches = top_patches(NetSource.from_zoo("bvlc_reference_caffenet"), "photos/",
                          "conv5", unit=12, top=9)
    patches[0].image, patches[0].score, patches[0].box      # best: file, value, (y0, x0, y1, x1)
    save_png("conv5_12.png", patch_picture(patches))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes.visualize.backprop import (prepare_input, resolve_target,
                                                     run_layers)
from caffe_compat.recipes.visualize.receptive_field import ReceptiveField, receptive_field
from caffe_compat.recipes.visualize.render import grid, to_uint8
from caffe_compat.recipes.visualize.source import NetSource, image_input, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


def list_images(images: Union[str, Sequence[str]]) -> list[str]:
    """A folder's image files (sorted by name), or the given list of files."""
    if isinstance(images, (str, os.PathLike)):
        folder = str(images)
        if not os.path.isdir(folder):
            raise FileNotFoundError(2, "No such directory", folder)
        files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise CaffeCompatError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    return [str(p) for p in images]


@dataclass
class Patch:
    """One strong activation: ``image`` file, activation ``score``, ``position`` (y, x)
    in the blob, ``box`` (y0, x0, y1, x1) in the original image (clipped, half-open),
    ``pixels`` the receptive field cut from the original image (H x W x 3 in [0, 1];
    parts outside the image are mid-gray)."""
    image: str
    score: float
    position: tuple
    box: tuple
    pixels: np.ndarray


def _cut(image: np.ndarray, field: ReceptiveField, pos: tuple, scale: tuple) -> tuple:
    """(clipped box, padded crop) of unit ``pos`` in the original ``image``."""
    y0, x0, y1, x1 = field.box(*pos)
    sy, sx = scale
    oy0, ox0 = int(np.floor(y0 * sy)), int(np.floor(x0 * sx))
    oy1, ox1 = int(np.ceil(y1 * sy)), int(np.ceil(x1 * sx))
    h, w = image.shape[:2]
    crop = np.full((oy1 - oy0, ox1 - ox0, image.shape[2]), 0.5, np.float32)
    cy0, cx0, cy1, cx1 = max(oy0, 0), max(ox0, 0), min(oy1, h), min(ox1, w)
    if cy1 > cy0 and cx1 > cx0:
        crop[cy0 - oy0:cy1 - oy0, cx0 - ox0:cx1 - ox0] = image[cy0:cy1, cx0:cx1]
    return (cy0, cx0, cy1, cx1), crop


def top_patches(source: NetSource, images: Union[str, Sequence[str]], layer: str, unit: int,
                top: int = 9, per_image: int = 1, batch_size: int = 8, block=None,
                progress: Optional[callable] = None) -> list[Patch]:
    """The ``top`` strongest activations of channel ``unit`` of ``layer`` (a blob or
    layer name with a spatial map) over ``images`` (a folder or a list of files), at
    most ``per_image`` positions from any one image, best first."""
    files = list_images(images)
    block = block if block is not None else source.load()
    target = resolve_target(block, layer)
    name, shape = image_input(block)
    field = receptive_field(block, target.blob)
    if field.is_global:
        raise CaffeCompatError(f"{target.blob!r} has no spatial map (its units see the whole "
                               "image); pick a convolution or pooling layer")
    pre = source.preprocessing
    found: list[tuple] = []
    batch_shape = (batch_size,) + tuple(shape[1:])
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        originals = [load_image(f) for f in chunk]
        data = np.zeros(batch_shape, np.float32)
        for i, img in enumerate(originals):
            data[i] = pre.apply(img, batch_shape)
        name, x = prepare_input(block, data)
        values, _ = run_layers(block, {name: x}, target.layer_index)
        act = values[target.blob]
        if act.ndim != 4:
            raise CaffeCompatError(f"{target.blob!r} has shape {tuple(act.shape)}; top patches "
                                   "need an N x C x H x W blob")
        if not 0 <= unit < act.shape[1]:
            raise CaffeCompatError(f"unit {unit} is out of range: {target.blob!r} has "
                                   f"{act.shape[1]} channels")
        maps = act[:, unit].asnumpy()
        for i, (path, img) in enumerate(zip(chunk, originals)):
            flat = maps[i].ravel()
            order = np.argsort(-flat, kind="stable")[:per_image]
            scale = (img.shape[0] / shape[2], img.shape[1] / shape[3])
            for k in order:
                pos = tuple(int(v) for v in np.unravel_index(k, maps[i].shape))
                found.append((float(flat[k]), path, pos, img, scale))
        if progress is not None:
            progress(len(chunk))
    found.sort(key=lambda t: -t[0])
    patches = []
    for score, path, pos, img, scale in found[:top]:
        box, crop = _cut(img, field, pos, scale)
        patches.append(Patch(path, score, pos, box, crop))
    return patches


def patch_picture(patches: Iterable[Patch], cell: int = 64, columns: int = 3) -> np.ndarray:
    """The patches as a uint8 RGB grid, each resized to ``cell`` x ``cell``."""
    from caffe_compat.io import resize_image
    pictures = [to_uint8(resize_image(p.pixels, (cell, cell))) for p in patches]
    return grid(pictures, columns)


__all__ = ["IMAGE_EXTENSIONS", "Patch", "list_images", "patch_picture", "top_patches"]
