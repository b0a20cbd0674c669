"""Region proposals for the detector: selective search on an image, proposal files, and
the (ymin, xmin, ymax, xmax) windows pycaffe's Detector takes."""
from __future__ import annotations

import json
from typing import Optional

import numpy as np

from caffe_compat.recipes.rcnn.constants import MIN_PROPOSAL_SIZE, DetectionError


def boxes_to_windows(boxes) -> np.ndarray:
    """``(xmin, ymin, xmax, ymax)`` -> pycaffe's ``(ymin, xmin, ymax, xmax)``."""
    return np.asarray(boxes).reshape(-1, 4)[:, [1, 0, 3, 2]]


windows_to_boxes = boxes_to_windows  # the same swap both ways


def proposals_for_image(image: np.ndarray, mode: str = "fast", *, seed: int = 0,
                        min_size: int = MIN_PROPOSAL_SIZE, max_boxes: Optional[int] = None
                        ) -> np.ndarray:
    """Selective search boxes (xmin, ymin, xmax, ymax) of an RGB image as R-CNN used them."""
    from caffe_compat.recipes.rcnn.selective_search import selective_search
    return selective_search(image, mode=mode, min_size=min_size, seed=seed, max_boxes=max_boxes)


def selective_search_windows(image_fname: str) -> np.ndarray:
    """pycaffe's proposal contract for ``caffe.Detector.detect_selective_search``: the
    image file's selective search proposals ("fast", min size 20) as (N, 4) windows
    ``(ymin, xmin, ymax, xmax)``, read with ``caffe.io.load_image`` like the detector::

        det.detect_selective_search(["cat.jpg"], proposals=selective_search_windows)
    """
    from caffe_compat import io as caffe_io
    return boxes_to_windows(proposals_for_image(caffe_io.load_image(image_fname)))


def read_proposals(path: str) -> np.ndarray:
    """Boxes (xmin, ymin, xmax, ymax) from ``caffe-compat proposals`` JSON
    (``{"boxes": [[x1, y1, x2, y2], ...]}``) or an ``.npy`` (N, 4) array."""
    if path.lower().endswith(".npy"):
        boxes = np.load(path, allow_pickle=False)
    else:
        with open(path, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as exc:
                raise DetectionError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON "
                                     f"({exc.msg})") from None
        if not isinstance(doc, dict) or "boxes" not in doc:
            raise DetectionError(f"{path}: expected a JSON object with \"boxes\" (as written by "
                                 "caffe-compat proposals)")
        boxes = np.asarray(doc["boxes"], dtype=np.float64)
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        return np.zeros((0, 4), np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DetectionError(f"{path}: proposals must be N x 4 (xmin, ymin, xmax, ymax), got "
                             f"shape {boxes.shape}")
    return boxes
