"""The FCN stage of ``caffe-compat demo``: segment the bundled sample picture.

With network access it uses the zoo's voc-fcn8s (downloaded once). Offline it says so
in one line and runs the same voc-fcn8s architecture with seeded random weights, so
every stage of the pipeline (reshape to the picture, crops 5/9/31, argmax, palette PNG,
overlay) still runs; the labels are then meaningless.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

DEFAULT_MODEL = "voc-fcn8s"


def _random_segmenter():
    from caffe_compat import zoo
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.recipes.fcn.infer import Segmenter
    net = CaffeNet.from_prototxt(str(zoo.get(DEFAULT_MODEL).deploy))
    rng = np.random.RandomState(0)
    blobs = []
    for layer in net.caffe_layers:
        arrays = [p.data().asnumpy() for p in layer.blobs()]
        if not arrays or layer.type == "Deconvolution":
            continue   # the up* layers keep their bilinear filler
        fan_in = int(np.prod(arrays[0].shape[1:]))
        blobs.append((layer.name, [rng.randn(*a.shape).astype(np.float32) * np.sqrt(2.0 / fan_in)
                                   if i == 0 else np.zeros(a.shape, np.float32)
                                   for i, a in enumerate(arrays)]))
    net.load_layer_blobs(blobs, source="random weights")
    return Segmenter(net)


def run_demo(out_dir, quick: bool = False, log: Callable[[str], None] = print) -> list:
    """Segment the sample picture; returns the label PNG and the overlay written."""
    from caffe_compat.download import DownloadError
    from caffe_compat.recipes.deepdream.images import sample_image
    from caffe_compat.recipes.fcn.infer import Segmenter
    os.makedirs(out_dir, exist_ok=True)
    try:
        seg = Segmenter.from_zoo(DEFAULT_MODEL)
        which = DEFAULT_MODEL
    except DownloadError as exc:
        reason = str(exc).splitlines()[0]
        log(f"offline: cannot download {DEFAULT_MODEL}'s weights ({reason[:120]}); segmenting "
            "with the same architecture and random weights, so the labels are meaningless")
        seg, which = _random_segmenter(), f"{DEFAULT_MODEL} (random weights)"
    label_png = os.path.join(str(out_dir), "fcn_labels.png")
    overlay_png = os.path.join(str(out_dir), "fcn_overlay.png")
    t0 = time.time()
    label = seg.save(str(sample_image()), label_png, overlay_png)
    classes = np.unique(label)
    log(f"{which}: segmented {label.shape[1]}x{label.shape[0]} in {time.time() - t0:.1f}s; "
        f"{len(classes)} class(es) present: {', '.join(str(int(c)) for c in classes[:10])}")
    return [label_png, overlay_png]
