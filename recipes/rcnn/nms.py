"""Box overlap and greedy non-maximum suppression as R-CNN computes them: the
R-CNN convention (float64, +1 pixel areas) of :mod:`caffe_compat.boxes`.

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

from caffe_compat import boxes as _boxes


def box_areas(boxes) -> np.ndarray:
    """``(x2 - x1 + 1) * (y2 - y1 + 1)`` of each box."""
    return _boxes.box_areas(_boxes.as_boxes(boxes).astype(np.float64), pixel_offset=1)


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """``(N, M)`` intersection over union of every box of ``boxes_a`` with every box of
    ``boxes_b``, with +1 pixel widths (R-CNN's ``boxoverlap.m``); 0 where they do not meet."""
    a = _boxes.as_boxes(boxes_a, "boxes_a").astype(np.float64)
    b = _boxes.as_boxes(boxes_b, "boxes_b").astype(np.float64)
    return _boxes.box_iou(a, b, pixel_offset=1)


def nms(boxes, scores, overlap: float = 0.3) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best score first (:func:`caffe_compat.boxes.nms`
    with +1 pixel areas: R-CNN's ``nms.m`` and py-faster-rcnn's ``py_cpu_nms``). Equal
    scores go to the box that comes first in ``boxes`` (a stable sort; ``nms.m`` takes
    the last of equal scores instead, py-faster-rcnn's is unspecified)."""
    b = _boxes.as_boxes(boxes).astype(np.float64)
    return _boxes.nms(b, np.asarray(scores, dtype=np.float64), overlap, pixel_offset=1)
