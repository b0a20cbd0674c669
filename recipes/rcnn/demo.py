"""The R-CNN stage of ``caffe-compat demo``.

1. Always (offline too): the shapes R-CNN shipped with caffe-compat
   (:mod:`caffe_compat.recipes.shapes`: a small classifier fine-tuned on warped
   selective-search windows, per-class SVMs and pool5 box regressors, all trained by
   this recipe's ``train`` module) detects circles, squares and triangles in the bundled
   held-out test scenes: selective search "fast" proposals, SVM scores, box regression,
   NMS 0.3. Each scene's best detections (at most 5, SVM score above -1, the edge of the
   SVMs' negative margin) are drawn to ``rcnn_<scene>.png``; the stage prints ``rcnn: mAP@0.5 X``, the VOC07 AP over the
   scenes (GluonCV's metric, every NMS survivor ranked, as :mod:`.voc_eval`).
2. With network: ``bvlc_reference_rcnn_ilsvrc13`` from the zoo (about 230 MB, downloaded
   once) on ``data/chelsea.jpg`` (scikit-image's ``chelsea()``, CC0 by Stefan van der
   Walt): 200-class scores, the five best detections drawn to ``rcnn_detections.png``.
   Offline, one line says the download failed.

>>> demo_stage("demo-out/rcnn", quick=True)        # doctest: +SKIP
['.../demo-out/rcnn/rcnn_scene_0000.png', ...]
"""
from __future__ import annotations

import os
import re
import sys
import time
from typing import Callable, List

import numpy as np

from caffe_compat.recipes.rcnn.detector import (DEFAULT_MODEL, ImageDetections, RCNNDetector,
                                                draw_detections)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SAMPLE_IMAGE = os.path.join(DATA, "chelsea.jpg")
DOWNLOAD_TIMEOUT = 20.0
#: Drawn: a scene's best detections (at most 5) outside the SVMs' negative margin (score > -1).
DRAW_THRESHOLD, DRAW_TOP_K = -1.0, 5


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    found = re.search(r"://\S+?: ([^;]+)", text)
    reason = found.group(1) if found else text
    return reason if len(reason) <= 80 else reason[:77] + "..."


def _zoo_detector() -> RCNNDetector:
    """The zoo's R-CNN (weights downloaded once; DownloadError when that fails)."""
    from caffe_compat import zoo
    from caffe_compat.download import download
    entry = zoo.get(DEFAULT_MODEL)
    w = entry.weights
    download(w.urls, entry.weights_path, w.sha1, w.size, timeout=DOWNLOAD_TIMEOUT, retries=1,
             manual_hint=entry.manual_hint())
    return RCNNDetector.from_zoo(DEFAULT_MODEL)


def best(found: ImageDetections, threshold: float, top_k: int) -> ImageDetections:
    """The ``top_k`` best detections scoring above ``threshold`` (``found`` is best first)."""
    keep = np.flatnonzero(found.scores > threshold)[:top_k]
    return ImageDetections(found.boxes[keep], found.scores[keep], found.labels[keep],
                           found.class_names, found.image, found.image_size, found.num_proposals)


def detect_shapes(out_dir: str, log: Callable[[str], None] = print) -> List[str]:
    """The shapes R-CNN on the bundled test scenes: one drawing per scene, the mAP line."""
    from caffe_compat import io as caffe_io
    from caffe_compat.recipes.rcnn.detector import proposals_for_image
    from caffe_compat.recipes.rcnn.train import score_detections
    from caffe_compat.recipes.shapes import models
    from caffe_compat.recipes.shapes.scenes import CLASSES
    scenes = models.bundled_scenes()
    annotations = models.read_annotations(scenes)
    detector = models.rcnn_detector()
    t0 = time.time()
    found, written, windows = [], [], 0
    for scene in scenes:
        image = caffe_io.load_image(str(scene.image))
        boxes = proposals_for_image(image, "fast")
        windows += len(boxes)
        found.append(detector.detect(image, boxes, threshold=-np.inf, image_name=str(scene.image)))
        written.append(draw_detections(image, best(found[-1], DRAW_THRESHOLD, DRAW_TOP_K),
                                       os.path.join(out_dir, f"rcnn_{scene.name}.png")))
    result = score_detections(found, annotations, CLASSES)
    per_class = ", ".join(f"{name} {ap:.2f}" for name, ap in result.ap.items())
    log(f"shapes R-CNN (shipped): {len(scenes)} held-out scenes, {windows} selective search "
        f"windows in {time.time() - t0:.1f}s; AP {per_class}; drawings rcnn_scene_*.png")
    log(f"rcnn: mAP@0.5 {result.mean_ap:.3f}")
    return written


def demo_stage(out_dir: str, quick: bool = False, log: Callable[[str], None] = print) -> List[str]:
    """The shapes R-CNN on the test scenes, then the zoo R-CNN on the sample picture when
    it can be downloaded; returns the paths of the PNGs written."""
    from tqdm import tqdm
    from caffe_compat import io as caffe_io
    from caffe_compat.download import DownloadError
    from caffe_compat.recipes.rcnn.detector import proposals_for_image
    os.makedirs(out_dir, exist_ok=True)
    written = detect_shapes(out_dir, log)
    try:
        detector = _zoo_detector()
    except DownloadError as exc:
        log(f"offline: cannot download {DEFAULT_MODEL}'s weights ({_reason(exc)}); skipping "
            "its 200-class detection of the sample picture")
        return written
    image = caffe_io.load_image(SAMPLE_IMAGE)
    t0 = time.time()
    boxes = proposals_for_image(image, "fast", max_boxes=300 if quick else None)
    log(f"selective search (fast): {len(boxes)} proposals in {time.time() - t0:.1f}s")
    t0 = time.time()
    with tqdm(total=len(boxes), unit="box", desc="scoring", file=sys.stderr, disable=None,
              leave=False) as bar:
        found = detector.detect(image, boxes, threshold=0.0, top_k=5, image_name=SAMPLE_IMAGE,
                                progress=bar.update)
    log(f"{DEFAULT_MODEL}: {len(boxes)} windows scored in {time.time() - t0:.1f}s; best: "
        + ", ".join(f"{name} {score:.2f}" for name, score in zip(found.names(), found.scores)))
    written.append(draw_detections(image, found, os.path.join(out_dir, "rcnn_detections.png")))
    return written


__all__ = ["SAMPLE_IMAGE", "best", "demo_stage", "detect_shapes"]
