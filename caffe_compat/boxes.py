"""Box overlap (IoU) and greedy non-maximum suppression: the one copy of each.

Boxes are ``(x1, y1, x2, y2)`` rows. Two conventions meet in Caffe's world, chosen with
``pixel_offset``:

* ``pixel_offset=1`` -- pixel boxes with the max INCLUSIVE, so a box covers
  ``(x2 - x1 + 1) * (y2 - y1 + 1)`` pixels: R-CNN's MATLAB code (``nms/nms.m``,
  ``utils/boxoverlap.m``), the PASCAL VOC devkit, py-faster-rcnn's ``py_cpu_nms``;
* ``pixel_offset=0`` -- continuous or normalized boxes, area ``(x2 - x1) * (y2 - y1)``:
  SSD's ``JaccardOverlap`` (bbox_util.cpp, normalized) and the localisation recipe.

Arithmetic stays in the boxes' floating dtype (float32 boxes give SSD's float32
overlaps; integer boxes and lists are computed in float64). GluonCV's ``bbox_iou``
(``offset=1``) is not used: it counts boxes that share one row of pixels as disjoint
(``tl < br``), where R-CNN counts that row.

>>> import numpy as np
>>> boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29]])
>>> np.round(box_iou(boxes[:1], boxes, pixel_offset=1), 4).tolist()   # 81 / (100 + 100 - 81)
[[1.0, 0.6807, 0.0]]
>>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]]).tolist()             # continuous boxes
[[0.3333333333333333]]
>>> nms(boxes, np.array([0.9, 0.8, 0.7]), 0.3).tolist()
[0, 2]
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from caffe_compat.errors import CaffeCompatError

__all__ = ["as_boxes", "box_areas", "box_iou", "nms"]


def as_boxes(boxes, what: str = "boxes") -> np.ndarray:
    """``boxes`` as an ``(N, 4)`` float array (extra columns dropped; float dtypes kept,
    anything else float64); a clear error for any other shape."""
    arr = np.asarray(boxes)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise CaffeCompatError(f"{what} must be an (N, 4) array of x1, y1, x2, y2 boxes, "
                               f"got shape {arr.shape}")
    return arr[:, :4]


def box_areas(boxes, pixel_offset: float = 0) -> np.ndarray:
    """``(x2 - x1 + pixel_offset) * (y2 - y1 + pixel_offset)`` of each box."""
    b = as_boxes(boxes)
    return (b[:, 2] - b[:, 0] + pixel_offset) * (b[:, 3] - b[:, 1] + pixel_offset)


def box_iou(boxes_a, boxes_b, pixel_offset: float = 0) -> np.ndarray:
    """``(N, M)`` intersection over union of every box of ``boxes_a`` with every box of
    ``boxes_b``; 0 where they do not meet (``pixel_offset``: see the module)."""
    a = as_boxes(boxes_a, "boxes_a")
    b = as_boxes(boxes_b, "boxes_b")
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
          + pixel_offset)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
          + pixel_offset)
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_areas(a, pixel_offset)[:, None] + box_areas(b, pixel_offset)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, inter.dtype.type(0))


def nms(boxes, scores, overlap: float = 0.3, pixel_offset: float = 1,
        order: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, in the order they were kept.

    Repeatedly take the first remaining box of ``order`` and drop every remaining box
    whose IoU with it is ABOVE ``overlap`` (a box at exactly ``overlap`` survives), as
    R-CNN's ``nms.m`` (``I = I(find(o <= overlap))``) and py-faster-rcnn's
    ``py_cpu_nms`` do. ``order`` defaults to descending score with equal scores in
    ``boxes`` order (a stable sort); py_cpu_nms visits ``scores.argsort()[::-1]``.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores).reshape(-1)
    if len(s) != len(b):
        raise CaffeCompatError(f"nms: {len(b)} boxes but {len(s)} scores")
    remaining = np.argsort(-s, kind="stable") if order is None else np.asarray(order)
    keep = []
    while remaining.size:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        remaining = rest[box_iou(b[i:i + 1], b[rest], pixel_offset)[0] <= overlap]
    return np.asarray(keep, dtype=np.int64)
