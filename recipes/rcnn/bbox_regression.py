"""R-CNN's class-specific bounding-box regression (Girshick et al. 2014, Appendix C).

For a proposal ``P`` and its ground truth ``G`` the targets are the paper's

    t_x = (G_x - P_x) / P_w,   t_y = (G_y - P_y) / P_h,
    t_w = log(G_w / P_w),      t_h = log(G_h / P_h)

with centres and widths computed as R-CNN's MATLAB code does
(``bbox_regression/rcnn_train_bbox_regressor.m``): ``w = x2 - x1 + eps`` (no +1 pixel,
unlike py-faster-rcnn), ``x = x1 + w / 2``. One ridge regressor per class maps the pool5
feature of a proposal (scaled to mean norm 20, a bias feature of 1 appended) to the
targets; as in R-CNN the targets are first centred and whitened (``mu``, ``T``), the
bias weight is regularised like the others (``lambda = 1000``), training uses the
proposals whose IoU with a ground truth is above 0.6, and the fit is a Cholesky solve of
``(A'A + lambda I) x = A'y``.

>>> import numpy as np
>>> p = np.array([[10., 10., 50., 30.]]); g = np.array([[12., 8., 60., 30.]])
>>> np.allclose(decode_boxes(p, encode_boxes(p, g)), g)
True
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from caffe_compat.errors import CaffeCompatError

#: R-CNN's settings (rcnn_exp_bbox_reg_train_and_test.m).
MIN_OVERLAP = 0.6
RIDGE_LAMBDA = 1000.0
TARGET_NORM = 20.0
_EPS = np.finfo(np.float64).eps  # MATLAB's eps, added to widths as R-CNN does


def _centres(boxes: np.ndarray):
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0] + _EPS
    h = b[:, 3] - b[:, 1] + _EPS
    return b[:, 0] + 0.5 * w, b[:, 1] + 0.5 * h, w, h


def encode_boxes(proposals, gt_boxes) -> np.ndarray:
    """``(N, 4)`` targets ``(t_x, t_y, t_w, t_h)`` taking each proposal to its ground truth."""
    px, py, pw, ph = _centres(proposals)
    gx, gy, gw, gh = _centres(gt_boxes)
    return np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)], axis=1)


def decode_boxes(proposals, targets) -> np.ndarray:
    """Apply ``(N, 4)`` targets to proposals: ``(N, 4)`` float boxes (x1, y1, x2, y2)."""
    px, py, pw, ph = _centres(proposals)
    t = np.asarray(targets, dtype=np.float64).reshape(-1, 4)
    cx, cy = t[:, 0] * pw + px, t[:, 1] * ph + py
    w, h = np.exp(t[:, 2]) * pw, np.exp(t[:, 3]) * ph
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)


def clip_boxes(boxes, height: int, width: int) -> np.ndarray:
    """Clip to the image: x in [0, width - 1], y in [0, height - 1] (0-based pixels)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    b[:, 0] = np.maximum(b[:, 0], 0)
    b[:, 1] = np.maximum(b[:, 1], 0)
    b[:, 2] = np.minimum(b[:, 2], width - 1)
    b[:, 3] = np.minimum(b[:, 3], height - 1)
    return b


def ridge_fit(features: np.ndarray, targets: np.ndarray, lam: float = RIDGE_LAMBDA) -> np.ndarray:
    """``argmin_x ||A x - y||^2 + lam ||x||^2`` with ``A = [features, 1]`` (the bias is
    regularised too, as R-CNN's ``ridge_reg_chol``); returns ``(D + 1, T)``, bias row last."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    a = np.hstack([x, np.ones((len(x), 1))])
    gram = a.T @ a + lam * np.eye(a.shape[1])
    return cho_solve(cho_factor(gram), a.T @ y)


@dataclass
class ClassRegressor:
    """One class's regressor: ``beta`` (D + 1, 4), bias last; whitening ``mu``, ``t_inv``."""
    beta: np.ndarray
    mu: np.ndarray
    t_inv: np.ndarray

    def targets(self, features: np.ndarray) -> np.ndarray:
        """Predicted (unwhitened) targets for scaled features."""
        y = features @ self.beta[:-1] + self.beta[-1]
        return y @ self.t_inv + self.mu


def fit_class_regressor(features: np.ndarray, targets: np.ndarray,
                        lam: float = RIDGE_LAMBDA) -> ClassRegressor:
    """R-CNN's per-class fit: centre and whiten the targets (``T = V diag(1/sqrt(D +
    0.001)) V'`` of their covariance), ridge-regress each whitened target."""
    y = np.asarray(targets, dtype=np.float64)
    if len(y) == 0:
        raise CaffeCompatError("bbox regression: no training examples for this class")
    mu = y.mean(axis=0)
    yc = y - mu
    cov = yc.T @ yc / len(yc)
    evals, evecs = np.linalg.eigh(cov)
    t = evecs @ np.diag(1.0 / np.sqrt(evals + 0.001)) @ evecs.T
    t_inv = evecs @ np.diag(np.sqrt(evals + 0.001)) @ evecs.T
    return ClassRegressor(beta=ridge_fit(features, yc @ t, lam), mu=mu, t_inv=t_inv)


@dataclass
class BBoxRegressor:
    """Per-class regressors (``None`` for a class without training examples) and the
    feature scaling they were trained with (features are multiplied by
    ``target_norm / feat_norm_mean`` first)."""
    models: List[Optional[ClassRegressor]]
    feat_norm_mean: float
    target_norm: float = TARGET_NORM
    blob: str = "pool5"

    @property
    def num_classes(self) -> int:
        return len(self.models)

    def scale(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        return f * (self.target_norm / self.feat_norm_mean)

    def predict(self, class_index: int, features: np.ndarray, boxes) -> np.ndarray:
        """Regressed boxes for ``boxes`` of class ``class_index`` (0-based) given their
        unscaled ``features`` (rows in the same order); unchanged when the class has no
        regressor."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        model = self.models[class_index]
        if model is None or len(boxes) == 0:
            return boxes.copy()
        return decode_boxes(boxes, model.targets(self.scale(features)))

    def save(self, path: str) -> str:
        """Write an ``.npz`` (read back with :meth:`load`)."""
        arrays = {"feat_norm_mean": np.float64(self.feat_norm_mean),
                  "target_norm": np.float64(self.target_norm),
                  "blob": np.array(self.blob), "num_classes": np.int64(self.num_classes)}
        for k, m in enumerate(self.models):
            if m is not None:
                arrays[f"beta_{k}"], arrays[f"mu_{k}"], arrays[f"t_inv_{k}"] = m.beta, m.mu, m.t_inv
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str) -> "BBoxRegressor":
        with np.load(path, allow_pickle=False) as z:
            if "num_classes" not in z:
                raise CaffeCompatError(f"{path}: not a bounding-box regressor file "
                                       "(written by BBoxRegressor.save)")
            models: List[Optional[ClassRegressor]] = []
            for k in range(int(z["num_classes"])):
                if f"beta_{k}" in z:
                    models.append(ClassRegressor(z[f"beta_{k}"], z[f"mu_{k}"], z[f"t_inv_{k}"]))
                else:
                    models.append(None)
            return cls(models, float(z["feat_norm_mean"]), float(z["target_norm"]), str(z["blob"]))


@dataclass
class RegressionExamples:
    """Training pairs of one image: indices of the proposals used, their targets, their
    IoU with the assigned ground truth and its class (1-based)."""
    indices: np.ndarray
    targets: np.ndarray
    overlaps: np.ndarray
    classes: np.ndarray


def regression_examples(boxes, gt_boxes, gt_classes, min_overlap: float = MIN_OVERLAP
                        ) -> RegressionExamples:
    """R-CNN's ``get_examples``: every box (ground truths included) whose best IoU with a
    ground truth is at least ``min_overlap`` is paired with that ground truth (the first
    of equal overlaps)."""
    from caffe_compat.recipes.rcnn.nms import box_iou
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
    if len(gt) == 0 or len(boxes) == 0:
        empty = np.zeros(0, np.int64)
        return RegressionExamples(empty, np.zeros((0, 4)), np.zeros(0), empty)
    iou = box_iou(boxes, gt)
    best = iou.argmax(axis=1)
    best_ov = iou[np.arange(len(boxes)), best]
    sel = np.flatnonzero(best_ov >= min_overlap)
    return RegressionExamples(sel, encode_boxes(boxes[sel], gt[best[sel]]), best_ov[sel],
                              gt_classes[best[sel]])


def train_bbox_regressor(features: np.ndarray, targets: np.ndarray, overlaps: np.ndarray,
                         classes: np.ndarray, num_classes: int, feat_norm_mean: float, *,
                         lam: float = RIDGE_LAMBDA, min_overlap: float = MIN_OVERLAP,
                         target_norm: float = TARGET_NORM, blob: str = "pool5") -> BBoxRegressor:
    """Fit one regressor per class (1-based ``classes``) on the examples with IoU strictly
    above ``min_overlap`` (R-CNN: ``O > min_overlap & C == i``)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    x = x * (target_norm / feat_norm_mean)
    overlaps = np.asarray(overlaps).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    models: List[Optional[ClassRegressor]] = []
    for c in range(1, num_classes + 1):
        sel = (overlaps > min_overlap) & (classes == c)
        models.append(fit_class_regressor(x[sel], targets[sel], lam) if sel.any() else None)
    return BBoxRegressor(models, float(feat_norm_mean), float(target_norm), blob)


__all__ = ["BBoxRegressor", "ClassRegressor", "RegressionExamples", "clip_boxes", "decode_boxes",
           "encode_boxes", "fit_class_regressor", "regression_examples", "ridge_fit",
           "train_bbox_regressor", "MIN_OVERLAP", "RIDGE_LAMBDA", "TARGET_NORM"]
