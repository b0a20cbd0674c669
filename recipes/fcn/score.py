"""Segmentation scoring as fcn.berkeleyvision.org's ``score.py`` defines it.

A confusion histogram ``hist[gt, pred]`` over n classes, accumulated over images
(labels outside ``0..n-1``, such as void 255, are not counted), and from it:

* overall (pixel) accuracy ``sum(diag) / sum(hist)``;
* per-class accuracy ``diag / hist.sum(1)`` and its mean over the classes present
  (``nanmean``: a class without ground-truth pixels is skipped);
* per-class IU ``diag / (hist.sum(1) + hist.sum(0) - diag)`` and mean IU (``nanmean``);
* frequency-weighted IU ``sum(freq * iu)`` over classes with ``freq > 0``.

>>> hist = fast_hist(np.array([0, 0, 1, 1, 255]), np.array([0, 1, 1, 1, 0]), 2)
>>> hist.tolist()
[[1, 1], [0, 2]]
>>> round(segmentation_metrics(hist).mean_iu, 4)     # (1/2 + 2/3) / 2
0.5833

:func:`compute_hist`, :func:`seg_tests` and :func:`do_seg_tests` run a net with a data
layer over a split as the original does, printing the same ``>>>`` lines.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Optional, Sequence

import numpy as np


def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """``n x n`` histogram of (ground truth ``a``, prediction ``b``) pairs; pairs whose
    ground truth is outside ``0..n-1`` are skipped."""
    a = np.asarray(a)
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + np.asarray(b)[k].astype(int),
                       minlength=n ** 2).reshape(n, n)


@dataclass(frozen=True)
class SegMetrics:
    """The numbers score.py prints (plus the per-class arrays)."""
    overall_acc: float
    mean_acc: float
    mean_iu: float
    fwavacc: float
    per_class_acc: np.ndarray
    per_class_iu: np.ndarray


def segmentation_metrics(hist: np.ndarray) -> SegMetrics:
    """score.py's metrics of a confusion histogram (NaN where a class has no pixels)."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        overall = diag.sum() / hist.sum()
        acc = diag / hist.sum(1)
        iu = diag / (hist.sum(1) + hist.sum(0) - diag)
        freq = hist.sum(1) / hist.sum()
        mean_acc = np.nanmean(acc) if np.isfinite(acc).any() else float("nan")
        mean_iu = np.nanmean(iu) if np.isfinite(iu).any() else float("nan")
    fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    return SegMetrics(float(overall), float(mean_acc), float(mean_iu), float(fwavacc), acc, iu)


def compute_hist(net, save_dir: Optional[str], dataset: Sequence[str], layer: str = "score",
                 gt: str = "label", loss_blob: str = "loss") -> tuple[np.ndarray, float]:
    """Forward ``net`` once per entry of ``dataset`` (its data layer feeds the images),
    accumulate ``fast_hist(gt, argmax(layer))`` and the mean of ``loss_blob``.

    With ``save_dir`` each prediction is written to ``<save_dir>/<id>.png`` (palette
    PNG of the class indices). Returns ``(hist, mean loss)`` (loss NaN when the net
    has no ``loss_blob``).
    """
    from caffe_compat.recipes.fcn.palette import label_image
    n_cl = net.blobs[layer].channels
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
    hist = np.zeros((n_cl, n_cl))
    loss = 0.0
    has_loss = loss_blob in net.blobs
    for idx in dataset:
        net.forward()
        pred = net.blobs[layer].data[0].argmax(0)
        hist += fast_hist(net.blobs[gt].data[0, 0].flatten(), pred.flatten(), n_cl)
        if save_dir:
            label_image(pred.astype(np.uint8)).save(os.path.join(save_dir, str(idx) + ".png"))
        if has_loss:
            loss += float(net.blobs[loss_blob].data.flat[0])
    return hist, (loss / len(dataset) if has_loss and len(dataset) else float("nan"))


def report_lines(iteration, loss: float, metrics: SegMetrics,
                 now: Callable[[], datetime] = datetime.now) -> list[str]:
    """score.py's ``>>> <time> Iteration <it> <metric> <value>`` lines (``iteration``
    may also be a label such as a split name, printed in its place)."""
    where = f"Iteration {iteration}" if isinstance(iteration, int) else str(iteration)
    return [f">>> {now()} {where} {what} {value}" for what, value in (
        ("loss", loss), ("overall accuracy", metrics.overall_acc),
        ("mean accuracy", metrics.mean_acc), ("mean IU", metrics.mean_iu),
        ("fwavacc", metrics.fwavacc))]


def do_seg_tests(net, iteration: int, save_format: Optional[str], dataset: Sequence[str],
                 layer: str = "score", gt: str = "label", loss_blob: str = "loss",
                 log: Optional[Callable[[str], None]] = print) -> np.ndarray:
    """Score ``net`` over ``dataset`` and print loss, overall accuracy, mean accuracy,
    mean IU and fwavacc; ``save_format`` (e.g. ``"seg_{}"``) formatted with the
    iteration is where predictions are written. Returns the histogram."""
    if save_format:
        save_format = save_format.format(iteration)
    hist, loss = compute_hist(net, save_format, dataset, layer, gt, loss_blob)
    if log is not None:
        for line in report_lines(iteration, loss, segmentation_metrics(hist)):
            log(line)
    return hist


def seg_tests(solver, save_format: Optional[str], dataset: Sequence[str], layer: str = "score",
              gt: str = "label", loss_blob: str = "loss",
              log: Optional[Callable[[str], None]] = print) -> np.ndarray:
    """score.py's ``seg_tests``: share the train net's weights with test net 0, then
    :func:`do_seg_tests` at the solver's iteration. Returns the histogram."""
    if log is not None:
        log(f">>> {datetime.now()} Begin seg tests")
    solver.test_nets[0].share_with(solver.net)
    return do_seg_tests(solver.test_nets[0], solver.iter, save_format, dataset, layer, gt,
                        loss_blob, log)
