"""Box arithmetic: (x0, y0, x1, y1) in continuous pixel coordinates (pixel k spans
[k, k + 1)), their intersection over union, and the regression encoding.

The localisation head regresses a box as fractions of the image:
``(x0 / W, y0 / H, x1 / W, y1 / H)``, so one target fits any image size.

>>> iou((0, 0, 10, 10), (5, 0, 15, 10))
0.3333333333333333
>>> encode((10, 20, 30, 40), width=100, height=80)
(0.1, 0.25, 0.3, 0.5)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from caffe_compat.boxes import box_iou


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    pair = np.asarray([a[:4], b[:4]], dtype=np.float64)
    return float(box_iou(pair[:1], pair[1:], pixel_offset=0)[0, 0])


def encode(box: Sequence[float], width: float, height: float) -> tuple:
    """Pixel box -> fractions of the image (the regression target)."""
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


def decode(fractions: Sequence[float], width: float, height: float) -> tuple:
    """Regressed fractions -> a pixel box inside the image, corners ordered."""
    f = np.clip(np.asarray(fractions, np.float64), 0.0, 1.0)
    x0, x1 = sorted((f[0] * width, f[2] * width))
    y0, y1 = sorted((f[1] * height, f[3] * height))
    return (float(x0), float(y0), float(x1), float(y1))


def mirror(fractions: Sequence[float]) -> tuple:
    """The encoded box of the horizontally flipped image."""
    return (1.0 - fractions[2], fractions[1], 1.0 - fractions[0], fractions[3])
