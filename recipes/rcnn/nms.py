"""Box overlap and greedy non-maximum suppression as R-CNN computes them.

Boxes are ``(x1, y1, x2, y2)`` pixel boxes with the max INCLUSIVE, so a box covers
``(x2 - x1 + 1) * (y2 - y1 + 1)`` pixels: the "+1 areas" of R-CNN's MATLAB code
(``nms/nms.m``, ``utils/boxoverlap.m``), of the PASCAL VOC devkit and of
py-faster-rcnn's ``py_cpu_nms``.

>>> import numpy as np
>>> boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29]])
>>> np.round(box_iou(boxes[:1], boxes), 4).tolist()       # 81 / (100 + 100 - 81)
[[1.0, 0.6807, 0.0]]
>>> nms(boxes, np.array([0.9, 0.8, 0.7]), 0.3).tolist()
[0, 2]
"""
from __future__ import annotations

import numpy as np

from caffe_compat.errors import CaffeCompatError


def _as_boxes(boxes, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise CaffeCompatError(f"{what} must be an (N, 4) array of x1, y1, x2, y2 boxes, "
                               f"got shape {arr.shape}")
    return arr[:, :4]


def box_areas(boxes) -> np.ndarray:
    """``(x2 - x1 + 1) * (y2 - y1 + 1)`` of each box."""
    b = _as_boxes(boxes, "boxes")
    return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """``(N, M)`` intersection over union of every box of ``boxes_a`` with every box of
    ``boxes_b``, with +1 pixel widths (R-CNN's ``boxoverlap.m``); 0 where they do not meet."""
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def nms(boxes, scores, overlap: float = 0.3) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best score first.

    Repeatedly take the highest-scoring remaining box and drop every remaining box whose
    IoU with it is ABOVE ``overlap`` (a box at exactly ``overlap`` survives), as R-CNN's
    ``nms.m`` (``I = I(find(o <= overlap))``) and py-faster-rcnn's ``py_cpu_nms`` do.
    Equal scores go to the box that comes first in ``boxes`` (a stable sort; ``nms.m``
    takes the last of equal scores instead, py-faster-rcnn's is unspecified).
    """
    b = _as_boxes(boxes, "boxes")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(b):
        raise CaffeCompatError(f"nms: {len(b)} boxes but {len(s)} scores")
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-s, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= overlap]
    return np.asarray(keep, dtype=np.int64)
