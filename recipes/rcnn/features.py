"""Per-image R-CNN feature caches (R-CNN's ``rcnn_cache_pool5_features.m``).

An image's cache holds what R-CNN's cached ``d`` struct held: every box (the ground
truths first, then the proposals, as ``roidb_from_voc.m`` orders them), the 1-based class
of each ground-truth box (0 for proposals), the IoU of each box with the ground truths
of each class, and the CNN features of each box for the chosen blobs (default pool5 and
fc7: pool5 for bounding-box regression, fc7 for the SVMs). One HDF5 file per image::

    /boxes        (N, 4) float64  xmin, ymin, xmax, ymax (0-based, inclusive)
    /gt_classes   (N,)   int64
    /overlaps     (N, K) float32
    /feat/<blob>  (N, D) float32  (e.g. /feat/pool5, /feat/fc7)

>>> entry = roi_entry([[0, 0, 9, 9]], [1], [[0, 0, 9, 4], [20, 20, 30, 30]], num_classes=2)
>>> entry.gt_classes.tolist(), entry.overlaps[:, 0].round(2).tolist()
([1, 0, 0], [1.0, 0.5, 0.0])
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError

DEFAULT_BLOBS = ("pool5", "fc7")


@dataclass
class RoiEntry:
    """One image's boxes (ground truths first), their 1-based classes (0 = proposal) and
    (N, K) IoU with each class's ground truths (R-CNN's roidb ``rec``)."""
    boxes: np.ndarray
    gt_classes: np.ndarray
    overlaps: np.ndarray

    @property
    def is_gt(self) -> np.ndarray:
        return self.gt_classes > 0


def roi_entry(gt_boxes, gt_classes, proposals, num_classes: int) -> RoiEntry:
    """R-CNN's ``attach_proposals``: ground truths followed by proposals, each box's
    overlap with class ``k`` the max IoU (+1 pixel areas) with the ground truths of ``k``."""
    from caffe_compat.recipes.rcnn.nms import box_iou
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
    if len(classes) != len(gt):
        raise CaffeCompatError(f"{len(gt)} ground-truth boxes but {len(classes)} classes")
    if len(classes) and (classes.min() < 1 or classes.max() > num_classes):
        raise CaffeCompatError(f"ground-truth classes must be 1..{num_classes} (0 is background)")
    props = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([gt, props])
    overlaps = np.zeros((len(boxes), num_classes), np.float32)
    if len(gt):
        iou = box_iou(boxes, gt)
        for i, c in enumerate(classes):
            overlaps[:, c - 1] = np.maximum(overlaps[:, c - 1], iou[:, i])
    gt_col = np.concatenate([classes, np.zeros(len(props), np.int64)])
    return RoiEntry(boxes, gt_col, overlaps)


def extract_features(detector, image: np.ndarray, boxes, blobs: Sequence[str] = DEFAULT_BLOBS,
                     progress: Optional[Callable[[int], None]] = None) -> Dict[str, np.ndarray]:
    """(N, D) float32 features of each box for each blob (the crops of
    :class:`~caffe_compat.recipes.rcnn.detector.RCNNDetector`, one batched forward)."""
    from caffe_compat.recipes.rcnn.detector import boxes_to_windows
    return detector.forward_windows(image, boxes_to_windows(boxes), blobs, progress)


@dataclass
class CachedFeatures:
    boxes: np.ndarray
    gt_classes: np.ndarray
    overlaps: np.ndarray
    feat: Dict[str, np.ndarray]


def write_cache(path: str, entry: RoiEntry, feats: Dict[str, np.ndarray], image: str = "") -> str:
    """Write one image's cache (layout in the module docstring)."""
    import h5py
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["image"] = image
        f["boxes"] = entry.boxes
        f["gt_classes"] = entry.gt_classes
        f["overlaps"] = entry.overlaps
        group = f.create_group("feat")
        for name, value in feats.items():
            if len(value) != len(entry.boxes):
                raise CaffeCompatError(f"{name}: {len(value)} feature rows for "
                                       f"{len(entry.boxes)} boxes")
            group[name] = np.asarray(value, np.float32)
    os.replace(tmp, path)
    return path


def cache_features(detector, image: np.ndarray, entry: RoiEntry, path: str,
                   blobs: Sequence[str] = DEFAULT_BLOBS, image_name: str = "",
                   progress: Optional[Callable[[int], None]] = None) -> str:
    """Extract the features of every box of ``entry`` and write the cache to ``path``."""
    return write_cache(path, entry, extract_features(detector, image, entry.boxes, blobs, progress),
                       image_name)


def load_cache(path: str, blobs: Optional[Sequence[str]] = None) -> CachedFeatures:
    """Read a cache (only the feature ``blobs`` asked for; all by default)."""
    import h5py
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    with h5py.File(path, "r") as f:
        if "feat" not in f or "boxes" not in f:
            raise CaffeCompatError(f"{path}: not an R-CNN feature cache")
        names = list(f["feat"]) if blobs is None else list(blobs)
        missing = [n for n in names if n not in f["feat"]]
        if missing:
            raise CaffeCompatError(f"{path}: no cached features for {', '.join(missing)} "
                                   f"(it has {', '.join(f['feat'])})")
        return CachedFeatures(f["boxes"][()], f["gt_classes"][()], f["overlaps"][()],
                              {n: f["feat"][n][()] for n in names})


def feature_norm_mean(paths: Sequence[str], blob: str, *, num_images: int = 200,
                      boxes_per_image: int = 200, seed: int = 0) -> float:
    """R-CNN's ``rcnn_feature_stats``: the mean L2 norm of the features of up to
    ``boxes_per_image`` random boxes of up to ``num_images`` random images."""
    if not paths:
        raise CaffeCompatError("feature_norm_mean needs at least one cache")
    rng = np.random.RandomState(seed)
    chosen = rng.permutation(len(paths))[:min(num_images, len(paths))]
    norms = []
    for i in chosen:
        x = load_cache(paths[i], [blob]).feat[blob]
        rows = rng.permutation(len(x))[:min(boxes_per_image, len(x))]
        norms.append(np.linalg.norm(x[rows].astype(np.float64), axis=1))
    value = float(np.concatenate(norms).mean()) if norms else 0.0
    if not value > 0:
        raise CaffeCompatError(f"the cached {blob} features are all zero; cannot scale them")
    return value


__all__ = ["CachedFeatures", "DEFAULT_BLOBS", "RoiEntry", "cache_features", "extract_features",
           "feature_norm_mean", "load_cache", "roi_entry", "write_cache"]
