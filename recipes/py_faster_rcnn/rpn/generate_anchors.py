"""py-faster-rcnn's ``rpn/generate_anchors.py``: the reference anchors of one cell.

>>> generate_anchors().shape
(9, 4)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from caffe_compat.engine.layers import rcnn


def generate_anchors(base_size: int = 16, ratios: Sequence[float] = (0.5, 1, 2),
                     scales: Sequence[float] = 2 ** np.arange(3, 6)) -> np.ndarray:
    """Anchors ``[x1, y1, x2, y2]`` (ratio-major, then scale) around a ``base_size``
    square at the origin: sides rounded per ratio (numpy rounding), then scaled."""
    return rcnn.generate_anchors(base_size, ratios, scales, half_away=False)


__all__ = ["generate_anchors"]
