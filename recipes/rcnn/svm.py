"""R-CNN's per-class linear SVMs with hard negative mining (``rcnn_train.m``).

The problem each class solves is liblinear's ``-s 3 -c C -w1 pos_loss_weight -B
bias_mult`` (what R-CNN called): the L2-regularised L1-loss (hinge) SVM with the bias as
an extra feature of constant value ``bias_mult``::

    min  1/2 ||w||^2 + 1/2 (b / bias_mult)^2 + C * sum_i c_i max(0, 1 - y_i (w.x_i + b))

with ``c_i = pos_loss_weight`` for positives and 1 for negatives. It is solved by
liblinear itself, through scikit-learn's ``LinearSVC(loss="hinge", dual=True,
intercept_scaling=bias_mult, class_weight={1: pos_loss_weight})``: the same library and
solver (dual coordinate descent) R-CNN called, with a tighter stopping tolerance
(``tol=1e-4``; liblinear's own default is 0.1). On the shapes demo's mining problems it
reaches the optimum to ~1e-5 relative (a certified dual solver written here before got
within 1e-4, 30-100x slower) and the same detections.

Settings are the paper's (``SVMSettings``): features scaled to a mean norm of 20,
``C = 0.001``, ``bias_mult = 10``, ``pos_loss_weight = 2``; positives are the ground-truth
boxes only; negatives are proposals with IoU < 0.3 with every instance of the class; the
first image gives all its negatives, later images their hard negatives (score >
-1.0001, not already cached); a class is retrained when more than 2000 negatives were
added and after the last image, and negatives scoring below -1.2 are then evicted.

>>> import numpy as np
>>> rng = np.random.RandomState(0)
>>> pos, neg = rng.randn(20, 5) + 3, rng.randn(200, 5) - 3
>>> sol = train_linear_svm(pos, neg, C=1.0)
>>> bool((pos @ sol.w + sol.b > 0).all() and (neg @ sol.w + sol.b < 0).all())
True
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from caffe_compat.errors import CaffeCompatError


@dataclass(frozen=True)
class SVMSettings:
    """R-CNN's SVM training settings (rcnn_train.m and its init_cache)."""
    C: float = 1e-3
    bias_mult: float = 10.0
    pos_loss_weight: float = 2.0
    neg_overlap: float = 0.3       # negatives: IoU < this with the class's ground truths
    hard_thresh: float = -1.0001   # a cached negative is "hard" when it scores above this
    evict_thresh: float = -1.2     # negatives scoring below this leave the cache
    retrain_limit: int = 2000      # retrain once more than this many negatives were added
    target_norm: float = 20.0      # features are scaled to this mean norm
    tol: float = 1e-4              # liblinear's stopping tolerance (-e)
    max_iter: int = 10000          # liblinear's passes over the data at most


@dataclass
class SVMSolution:
    """One trained SVM: ``score = x . w + b``; the objective's parts as rcnn_train.m logs
    them and liblinear's passes over the data."""
    w: np.ndarray
    b: float
    pos_loss: float
    neg_loss: float
    reg_loss: float
    iterations: int

    @property
    def primal(self) -> float:
        return self.pos_loss + self.neg_loss + self.reg_loss


def train_linear_svm(x_pos: np.ndarray, x_neg: np.ndarray, *, C: float = 1e-3,
                     bias_mult: float = 10.0, pos_loss_weight: float = 2.0,
                     tol: float = 1e-4, max_iter: int = 10000) -> SVMSolution:
    """Solve liblinear's ``-s 3`` problem (see the module docstring) for positives
    ``x_pos`` (P, D) and negatives ``x_neg`` (N, D)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC
    x_pos = np.asarray(x_pos, dtype=np.float64)
    x_neg = np.asarray(x_neg, dtype=np.float64)
    dims = {a.shape[1] for a in (x_pos, x_neg) if a.ndim == 2 and a.size}
    if len(dims) != 1 or x_pos.ndim != 2 or x_neg.ndim != 2:
        raise CaffeCompatError(f"SVM training needs (P, D) positives and (N, D) negatives of one "
                               f"feature size D, got shapes {x_pos.shape} and {x_neg.shape}")
    if not len(x_pos) and not len(x_neg):
        raise CaffeCompatError("SVM training needs at least one example")
    x = np.concatenate([x_pos, x_neg])
    y = np.concatenate([np.ones(len(x_pos)), -np.ones(len(x_neg))])
    weight = np.ones(len(x))
    if not len(x_pos) or not len(x_neg):
        # A class without positives (a rare class in a few images): liblinear needs
        # both labels (and drops weight-0 examples), so one example of the missing label
        # with weight 1e-12 completes the problem; its loss, at most C * 1e-12 * (1 + |b|),
        # is far below the tolerance.
        x = np.concatenate([x, np.zeros((1, x.shape[1]))])
        y = np.concatenate([y, [-1.0 if len(x_pos) else 1.0]])
        weight = np.concatenate([weight, [1e-12]])
    svm = LinearSVC(C=C, loss="hinge", dual=True, intercept_scaling=bias_mult,
                    class_weight={1: pos_loss_weight, -1: 1.0}, tol=tol, max_iter=max_iter,
                    random_state=0)     # liblinear visits the examples in a random order
    with warnings.catch_warnings():     # not converging is reported by `iterations`
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x, y, sample_weight=weight)
    w, b = svm.coef_[0].astype(np.float64), float(svm.intercept_[0])
    return SVMSolution(
        w=w, b=b,
        pos_loss=float(C * pos_loss_weight * np.maximum(0.0, 1.0 - (x_pos @ w + b)).sum()),
        neg_loss=float(C * np.maximum(0.0, 1.0 + (x_neg @ w + b)).sum()),
        reg_loss=float(0.5 * (w @ w + (b / bias_mult) ** 2)),
        iterations=int(svm.n_iter_))


# --------------------------------------------------------------------------- mining


@dataclass
class ImageFeatures:
    """What hard negative mining needs of one image (R-CNN's cached ``d`` struct):
    ``feat`` (N, D) features ALREADY scaled to the target norm, ``overlaps`` (N, K) IoU of
    each box with the ground truths of each class, ``gt_classes`` (N,) the 1-based class
    of a ground-truth box and 0 for a proposal."""
    feat: np.ndarray
    overlaps: np.ndarray
    gt_classes: np.ndarray


@dataclass
class SVMDetectors:
    """The trained detectors: ``scores = (x * target_norm / feat_norm_mean) @ W + B``."""
    W: np.ndarray            # (D, K)
    B: np.ndarray            # (K,)
    feat_norm_mean: float
    target_norm: float = 20.0

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, K) scores of unscaled features."""
        f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        return f * (self.target_norm / self.feat_norm_mean) @ self.W + self.B

    def inner_product_blobs(self) -> tuple:
        """(weight (K, D), bias (K,)) float32 of an InnerProduct layer on the UNSCALED
        features giving the same scores (the feature scale folded into the weights, the
        bias already multiplied by bias_mult): what a ``fc-rcnn`` layer holds."""
        scale = self.target_norm / self.feat_norm_mean
        return (np.ascontiguousarray((self.W * scale).T, dtype=np.float32),
                np.asarray(self.B, dtype=np.float32).copy())


class _ClassCache:
    def __init__(self, x_pos: np.ndarray, dim: int):
        self.x_pos = x_pos
        self.x_neg = np.zeros((0, dim), np.float32)
        self.keys_neg = np.zeros(0, np.int64)
        self.num_added = 0

    def add(self, x: np.ndarray, keys: np.ndarray) -> None:
        self.x_neg = np.concatenate([self.x_neg, x.astype(np.float32)])
        self.keys_neg = np.concatenate([self.keys_neg, keys])
        self.num_added += len(keys)


def _box_keys(image_index: int, rows: np.ndarray) -> np.ndarray:
    return np.int64(image_index) * np.int64(1 << 32) + rows.astype(np.int64)


def train_svms(num_images: int, load: Callable[[int], ImageFeatures], num_classes: int,
               feat_norm_mean: float, settings: SVMSettings = SVMSettings(), *,
               log: Optional[Callable[[str], None]] = None,
               progress: Optional[Callable[[int], None]] = None) -> SVMDetectors:
    """Train ``num_classes`` SVMs with R-CNN's hard negative mining over the images
    ``load(0) ... load(num_images - 1)`` (each loaded twice: positives, then mining).
    ``feat_norm_mean`` is recorded in the result (``load`` must already return features
    scaled by ``settings.target_norm / feat_norm_mean``)."""
    if num_images <= 0:
        raise CaffeCompatError("SVM training needs at least one image")
    say = log or (lambda _msg: None)
    positives: List[List[np.ndarray]] = [[] for _ in range(num_classes)]
    dim = None
    for i in range(num_images):
        d = load(i)
        dim = d.feat.shape[1]
        for j in range(num_classes):
            sel = np.flatnonzero(np.asarray(d.gt_classes) == j + 1)
            if len(sel):
                positives[j].append(np.asarray(d.feat[sel], np.float32))
    caches = [_ClassCache(np.concatenate(p) if p else np.zeros((0, dim), np.float32), dim)
              for p in positives]
    for j, c in enumerate(caches):
        say(f"class {j + 1}: {len(c.x_pos)} positive instances")
    W = np.zeros((dim, num_classes))
    B = np.zeros(num_classes)
    s = settings
    for i in range(num_images):
        d = load(i)
        feat = np.asarray(d.feat, np.float64)
        overlaps = np.asarray(d.overlaps).reshape(len(feat), num_classes)
        first, last = i == 0, i == num_images - 1
        zs = None if first else feat @ W + B
        for j, cache in enumerate(caches):
            candidates = overlaps[:, j] < s.neg_overlap
            if not first:
                candidates &= zs[:, j] > s.hard_thresh
            rows = np.flatnonzero(candidates)
            keys = _box_keys(i, rows)
            fresh = ~np.isin(keys, cache.keys_neg)
            if fresh.any():
                cache.add(feat[rows[fresh]], keys[fresh])
            if (first or cache.num_added > s.retrain_limit or last) and len(cache.x_neg):
                sol = train_linear_svm(cache.x_pos, cache.x_neg, C=s.C, bias_mult=s.bias_mult,
                                       pos_loss_weight=s.pos_loss_weight, tol=s.tol,
                                       max_iter=s.max_iter)
                W[:, j], B[j] = sol.w, sol.b
                cache.num_added = 0
                z_neg = cache.x_neg.astype(np.float64) @ sol.w + sol.b
                keep = z_neg >= s.evict_thresh
                say(f"class {j + 1} after image {i + 1}: obj {sol.primal:.4f} = "
                    f"{sol.pos_loss:.4f} (pos) + {sol.neg_loss:.4f} (neg) + {sol.reg_loss:.4f} "
                    f"(reg), {sol.iterations} passes; {len(cache.x_pos)} pos, "
                    f"{int(keep.sum())}/{len(keep)} neg kept")
                cache.x_neg, cache.keys_neg = cache.x_neg[keep], cache.keys_neg[keep]
        if progress is not None:
            progress(i)
    return SVMDetectors(W=W, B=B, feat_norm_mean=float(feat_norm_mean), target_norm=s.target_norm)


__all__ = ["ImageFeatures", "SVMDetectors", "SVMSettings", "SVMSolution", "train_linear_svm",
           "train_svms"]
