"""The FCN stage of ``caffe-compat demo``.

1. Always (offline too): the shapes FCN-8s shipped with caffe-compat
   (:mod:`caffe_compat.recipes.shapes`: FCN-8s's skips and bilinear upsampling on a
   narrow trunk, trained by ``fcn-train --model shapes-fcn8s``) segments the bundled
   held-out test scenes into background, circle, square and triangle; each scene's
   class map (VOC palette) and overlay are written to ``fcn_<scene>.png`` and
   ``fcn_<scene>_overlay.png``, and the stage prints ``fcn: mean IU X``, score.py's mean
   IU over the scenes (:mod:`.score`, void rims not counted).
2. With network: the zoo's voc-fcn8s (downloaded once) segments the sample picture
   (``fcn_labels.png``, ``fcn_overlay.png``). Offline, one line says the download failed.
"""
from __future__ import annotations

import os
import time
from typing import Callable, List

import numpy as np

DEFAULT_MODEL = "voc-fcn8s"


def segment_shapes(out_dir: str, log: Callable[[str], None] = print) -> List[str]:
    """The shapes FCN-8s on the bundled test scenes: class maps, overlays, the mean IU line."""
    from caffe_compat.images import open_as_stored
    from caffe_compat.recipes.fcn import score
    from caffe_compat.recipes.shapes import models
    scenes = models.bundled_scenes()
    seg = models.fcn_segmenter()
    n = len(models.FCN_CLASSES)
    hist = np.zeros((n, n))
    written = []
    t0 = time.time()
    for scene in scenes:
        labels = os.path.join(out_dir, f"fcn_{scene.name}.png")
        overlay = os.path.join(out_dir, f"fcn_{scene.name}_overlay.png")
        predicted = seg.save(str(scene.image), labels, overlay)
        truth = np.array(open_as_stored(scene.segmentation))   # palette indices
        hist += score.fast_hist(truth.flatten(), predicted.flatten(), n)
        written += [labels, overlay]
    metrics = score.segmentation_metrics(hist)
    per_class = ", ".join(f"{name} {iu:.2f}" for name, iu in zip(models.FCN_CLASSES,
                                                                 metrics.per_class_iu))
    log(f"shapes FCN-8s (shipped): {len(scenes)} held-out scenes in {time.time() - t0:.1f}s; "
        f"pixel accuracy {metrics.overall_acc:.3f}; IU {per_class}; overlays "
        "fcn_scene_*_overlay.png")
    log(f"fcn: mean IU {metrics.mean_iu:.3f}")
    return written


def run_demo(out_dir, quick: bool = False, log: Callable[[str], None] = print) -> list:
    """The shapes FCN on the test scenes, then the zoo's voc-fcn8s on the sample picture
    when it can be downloaded; returns the PNGs written."""
    from caffe_compat.download import DownloadError
    from caffe_compat.recipes.deepdream.images import sample_image
    from caffe_compat.recipes.fcn.infer import Segmenter
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    written = segment_shapes(out_dir, log)
    try:
        seg = Segmenter.from_zoo(DEFAULT_MODEL)
    except DownloadError as exc:
        reason = str(exc).splitlines()[0]
        log(f"offline: cannot download {DEFAULT_MODEL}'s weights ({reason[:120]}); skipping "
            "its 21-class segmentation of the sample picture")
        return written
    label_png = os.path.join(out_dir, "fcn_labels.png")
    overlay_png = os.path.join(out_dir, "fcn_overlay.png")
    t0 = time.time()
    label = seg.save(str(sample_image()), label_png, overlay_png)
    classes = np.unique(label)
    log(f"{DEFAULT_MODEL}: segmented {label.shape[1]}x{label.shape[0]} in {time.time() - t0:.1f}s; "
        f"{len(classes)} class(es) present: {', '.join(str(int(c)) for c in classes[:10])}")
    return written + [label_png, overlay_png]
