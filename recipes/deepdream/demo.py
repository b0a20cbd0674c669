"""The DeepDream stage of ``caffe-compat demo``: every step of the notebook on the sample.

With network: bvlc_googlenet from the zoo (downloaded once, ~51 MB). Without: one line
says so and the embedded model (see :func:`caffe_compat.recipes.deepdream.embedded_model`)
dreams instead, so every step still runs offline:

1. a dream of the sample picture (``dream.jpg``);
2. a guided dream towards the sample guide picture (``guided.jpg``);
3. a short zoom sequence (``zoom/0000.jpg`` ... and ``zoom/zoom.mp4`` or ``.gif``);
4. the notebook's own pycaffe ``make_step`` next to the device fast path: the
   relative difference of the two images after the same jittered steps.

The dreams use the notebook's 4 octaves x 10 steps, the zoom frames 3 x 5 (the output
says so); with bvlc_googlenet the stage takes well under a minute on two CPU cores.
``quick=True`` (the tests) dreams a 160x120 picture with 2 octaves x 2 steps.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from caffe_compat.recipes.deepdream import models
from caffe_compat.recipes.deepdream.images import (guide_image, load_image, sample_image,
                                                   save_image)

ZOO_MODEL = "bvlc_googlenet"
DOWNLOAD_TIMEOUT = 20.0   # seconds without an answer before the zoo download gives up


@dataclass
class DreamPlan:
    """What the demo dreams with and how hard."""
    label: str
    prototxt: str
    weights: str
    end: str
    guide_end: str
    octaves: int
    iters: int
    zoom_frames: int
    zoom_iters: int
    zoom_octaves: int
    note: str = ""


def _first_reason(exc: Exception) -> str:
    """The first failure of a DownloadError ("cannot download F: URL: reason; ...")."""
    text = " ".join(str(exc).split())
    found = re.search(r"://\S+?: ([^;]+)", text)
    reason = found.group(1) if found else text
    return reason if len(reason) <= 80 else reason[:77] + "..."


def _fetch_zoo_weights(log: Callable[[str], None]) -> Optional[Path]:
    """bvlc_googlenet's weights, or None (after one line saying why) when unreachable."""
    from caffe_compat import zoo
    from caffe_compat.download import DownloadError, download
    entry = zoo.get(ZOO_MODEL)
    w = entry.weights
    try:
        return download(w.urls, entry.weights_path, w.sha1, w.size, timeout=DOWNLOAD_TIMEOUT,
                        manual_hint=entry.manual_hint())
    except DownloadError as exc:
        log(f"offline: cannot download {ZOO_MODEL}'s weights ({_first_reason(exc)}); dreaming "
            f"with the embedded model shipped with caffe-compat instead")
        return None


def plan(quick: bool, log: Callable[[str], None]) -> DreamPlan:
    """Choose the model (zoo or embedded) and the amount of work.

    The dream and the guided dream use the notebook's 4 octaves x 10 steps (about 5 s
    each for bvlc_googlenet at 320x240 on two CPU cores); the zoom frames use 3 x 5.
    """
    from caffe_compat import zoo
    weights = _fetch_zoo_weights(log)
    if weights is not None:
        files = (ZOO_MODEL, str(zoo.get(ZOO_MODEL).deploy), str(weights),
                 models.GOOGLENET_END, "inception_3b/output")
    else:
        prototxt, emb_weights = models.embedded_model()
        files = ("embedded model", str(prototxt), str(emb_weights), models.EMBEDDED_END,
                 models.EMBEDDED_END)
    if quick:
        return DreamPlan(*files, 2, 2, 2, 1, 2, "quick run: 2 octaves x 2 steps")
    return DreamPlan(*files, 4, 10, 4, 5, 3, "the notebook's 4 octaves x 10 steps; zoom "
                                             "frames 3 x 5 to keep the demo short")


def _bar(total: int, desc: str):
    from tqdm import tqdm
    bar = tqdm(total=total, unit="step", desc=desc, file=sys.stderr, disable=None, leave=False)
    return bar, (lambda octave, i: bar.update(1))


def run_demo(out_dir: Path, quick: bool = False, log: Callable[[str], None] = print) -> list[Path]:
    """Run the four steps; returns the files written under ``out_dir``."""
    from caffe_compat.recipes.deepdream import notebook
    from caffe_compat.recipes.deepdream.fast import FastDreamer, dream_context
    from caffe_compat.recipes.deepdream.zoom import ffmpeg_available, zoom_sequence
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = dream_context()   # the GPU when MXNet sees one
    p = plan(quick, log)
    size = (160, 120) if quick else None
    img = load_image(sample_image(), size)
    guide = load_image(guide_image(), (100, 75) if quick else None)
    log(f"model: {p.label}, dream layer {p.end}, on {ctx}"
        + (f" ({p.note})" if p.note else ""))
    written = []

    t0 = time.time()
    dreamer = FastDreamer.from_files(p.prototxt, p.weights, end=p.end, ctx=ctx)
    np.random.seed(0)
    bar, progress = _bar(p.octaves * p.iters, "dream")
    with bar:
        frame = dreamer.deepdream(img, iter_n=p.iters, octave_n=p.octaves, progress=progress)
    written.append(save_image(frame, out_dir / "dream.jpg"))
    log(f"1/4 dream: {written[-1]} ({img.shape[1]}x{img.shape[0]}, {p.octaves} octaves x "
        f"{p.iters} steps, {time.time() - t0:.1f}s)")

    t0 = time.time()
    objective = dreamer.guide_features(guide, end=p.guide_end)
    np.random.seed(0)
    bar, progress = _bar(p.octaves * p.iters, "guided")
    with bar:
        frame = dreamer.deepdream(img, iter_n=p.iters, octave_n=p.octaves, progress=progress,
                                  objective=objective)
    written.append(save_image(frame, out_dir / "guided.jpg"))
    log(f"2/4 guided dream towards {guide_image().name} at {p.guide_end}: {written[-1]} "
        f"({time.time() - t0:.1f}s)")

    t0 = time.time()
    dreamer.set_end(p.end)
    np.random.seed(0)
    bar, progress = _bar(p.zoom_frames * p.zoom_octaves * p.zoom_iters, "zoom")
    with bar:
        result = zoom_sequence(
            lambda f: dreamer.deepdream(f, iter_n=p.zoom_iters, octave_n=p.zoom_octaves,
                                        progress=progress),
            img, p.zoom_frames, 0.05, out_dir=out_dir / "zoom")
    written += result.frames + [result.video]
    log(f"3/4 zoom: {len(result.frames)} frames in {out_dir / 'zoom'}, movie {result.video.name}"
        + ("" if ffmpeg_available() else " (pip install imageio-ffmpeg for an mp4)")
        + f" ({time.time() - t0:.1f}s)")

    t0 = time.time()
    net = models.load_dream_net(p.prototxt, p.weights, end=p.end)
    small = load_image(sample_image(), (120, 90))
    x = notebook.preprocess(net, small)
    net.blobs["data"].reshape(1, *x.shape)
    net.blobs["data"].data[0] = x
    np.random.seed(1)
    for _ in range(2):
        notebook.make_step(net, end=p.end, jitter=8)
    reference = net.blobs["data"].data[0].copy()
    import mxnet as mx
    fast = mx.nd.array(x[None], ctx=dreamer.ctx)
    np.random.seed(1)
    for _ in range(2):
        fast = dreamer.make_step(fast, jitter=8)
    diff = float(np.linalg.norm(fast.asnumpy()[0] - reference) / np.linalg.norm(reference))
    log(f"4/4 the notebook's pycaffe make_step and the device fast path, same seed: relative "
        f"difference {diff:.1e} ({time.time() - t0:.1f}s)")
    return written
