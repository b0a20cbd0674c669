"""The PASCAL VOC colour map, indexed PNGs and overlays of segmentations.

The VOC development kit's ``labelcolormap`` (the palette of every
``SegmentationClass/*.png``): the bits of a class index are spread, three at a time,
over the high bits of R, G and B. Index 0 (background) is black, 255 (void) is
(224, 224, 192).

>>> voc_colormap()[[0, 1, 15, 255]].tolist()
[[0, 0, 0], [128, 0, 0], [192, 128, 128], [224, 224, 192]]
>>> img = label_image(np.array([[0, 1], [15, 255]], np.uint8))
>>> img.mode, np.array(img).tolist()
('P', [[0, 1], [15, 255]])
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def voc_colormap(n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 RGB colours of the VOC palette (VOCdevkit's labelcolormap.m)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        cmap[index] = (r, g, b)
    return cmap


def _as_labels(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"a segmentation is a 2-D array of class indices, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError("class indices must lie in 0..255 to be stored in a palette PNG "
                         f"(got {int(label.min())}..{int(label.max())})")
    return label.astype(np.uint8)


def label_image(label: np.ndarray) -> Image.Image:
    """A PIL ``P``-mode image of class indices with the VOC palette attached.

    Saved as PNG it is what VOC's ``SegmentationClass`` files are: the pixel values are
    the class indices (``np.array(Image.open(path))`` gives them back), the palette only
    colours them for viewers.
    """
    img = Image.fromarray(_as_labels(label), mode="P")
    img.putpalette(voc_colormap().reshape(-1).tolist())
    return img


def colorize(label: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB rendering of a segmentation with the VOC colours."""
    return voc_colormap()[_as_labels(label)]


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5,
            background: int = 0) -> np.ndarray:
    """The RGB ``image`` with every non-``background`` pixel blended with its class colour.

    ``out = (1 - alpha) * image + alpha * colour`` where ``label != background``; the
    background keeps the image's pixels. Returns ``(H, W, 3)`` uint8.
    """
    image = np.asarray(image)
    label = _as_labels(label)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape} and segmentation {label.shape} must be "
                         "(H, W, 3) and (H, W)")
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(label).astype(np.float32)
    out = np.where((label != background)[..., None], np.rint(blended), image.astype(np.float32))
    return np.clip(out, 0, 255).astype(np.uint8)
