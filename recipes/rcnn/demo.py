"""The R-CNN stage of ``caffe-compat demo``: detection on the bundled sample picture.

The picture is ``data/chelsea.jpg``: scikit-image's ``skimage.data.chelsea()`` (Chelsea
the cat, 451 x 300, CC0 by Stefan van der Walt) saved as JPEG. With network the stage
runs ``bvlc_reference_rcnn_ilsvrc13`` from the zoo (about 230 MB, downloaded once):
selective search "fast" proposals, 200-class scores, NMS 0.3, the five best detections
drawn to ``rcnn_detections.png``. Offline, one line says so and a tiny net
(``data/tiny_rcnn.prototxt``) with seeded random weights runs the same pipeline; its
boxes and labels are then meaningless.

>>> demo_stage("demo-out/rcnn", quick=True)        # doctest: +SKIP
'.../demo-out/rcnn/rcnn_detections.png'
"""
from __future__ import annotations

import os
import re
import sys
import time
from typing import Callable

import numpy as np

from caffe_compat.recipes.rcnn.detector import DEFAULT_MODEL, RCNNDetector, draw_detections

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SAMPLE_IMAGE = os.path.join(DATA, "chelsea.jpg")
TINY_PROTOTXT = os.path.join(DATA, "tiny_rcnn.prototxt")
DOWNLOAD_TIMEOUT = 20.0


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


def tiny_random_detector(seed: int = 0) -> RCNNDetector:
    """``data/tiny_rcnn.prototxt`` with He-scaled gaussian weights from ``seed`` and the
    200 ILSVRC13 detection labels (context pad 4 px of its 64 px crops)."""
    from caffe_compat import zoo
    from caffe_compat.engine.network import CaffeNet
    block = CaffeNet.from_prototxt(TINY_PROTOTXT, 1)
    rng = np.random.RandomState(seed)
    blobs = []
    for name, _, arrays in block.layer_blobs():
        if arrays:
            weight = arrays[0]
            fan_in = int(np.prod(weight.shape[1:]))
            blobs.append((name, [rng.randn(*weight.shape) * np.sqrt(2.0 / fan_in),
                                 rng.randn(*arrays[1].shape) * 0.1]))
    block.load_layer_blobs(blobs, source="random weights")
    return RCNNDetector(block, zoo.labels(DEFAULT_MODEL), context_pad=4, batch_size=256)


def demo_stage(out_dir: str, quick: bool = False, log: Callable[[str], None] = print) -> str:
    """Detect objects in the sample picture; returns the path of the PNG written."""
    from tqdm import tqdm
    from caffe_compat import io as caffe_io
    from caffe_compat.recipes.rcnn.detector import proposals_for_image
    from caffe_compat.download import DownloadError
    os.makedirs(out_dir, exist_ok=True)
    random_net = False
    try:
        detector = _zoo_detector()
    except DownloadError as exc:
        log(f"offline: cannot download {DEFAULT_MODEL}'s weights ({_reason(exc)}); detecting "
            "with a tiny random-weight net instead, so the boxes and labels are meaningless")
        detector, random_net = tiny_random_detector(), True
    image = caffe_io.load_image(SAMPLE_IMAGE)
    t0 = time.time()
    boxes = proposals_for_image(image, "fast", max_boxes=300 if quick else None)
    log(f"selective search (fast): {len(boxes)} proposals in {time.time() - t0:.1f}s")
    t0 = time.time()
    with tqdm(total=len(boxes), unit="box", desc="scoring", file=sys.stderr, disable=None,
              leave=False) as bar:
        # a random net's scores have no meaningful zero: show its best boxes anyway
        found = detector.detect(image, boxes, threshold=-np.inf if random_net else 0.0,
                                top_k=5, image_name=SAMPLE_IMAGE, progress=bar.update)
    log(f"{'tiny random net' if random_net else DEFAULT_MODEL}: {len(boxes)} windows scored in "
        f"{time.time() - t0:.1f}s; best: " + ", ".join(
            f"{name} {score:.2f}" for name, score in zip(found.names(), found.scores)))
    return draw_detections(image, found, os.path.join(out_dir, "rcnn_detections.png"))


__all__ = ["SAMPLE_IMAGE", "demo_stage", "tiny_random_detector"]
