"""Benchmark: our selective search vs OpenCV's (``cv2.ximgproc.segmentation``), side by side.

Images: six scikit-image sample images (``astronaut``, ``coffee``, ``chelsea``, ``rocket``,
``stereo_motorcycle`` left view, ``coins``) with object boxes annotated by hand for this
benchmark (no annotated detection set is available offline: no PyPI package we can
install ships VOC-style images with XML annotations). Each box was drawn on the image
and checked by eye; they are listed in :data:`ANNOTATIONS` (original-image pixel
coordinates, inclusive). Every image is resized to 500x375 (the size of a typical
PASCAL VOC image) before either method runs, and the boxes are scaled the same way.

Metrics, per method and mode:

* ``recall@0.5``: fraction of annotated objects with a proposal of IoU >= 0.5;
* ``MABO``: mean over all annotated objects of the best IoU of any proposal (one class
  "object", so the paper's mean over classes of the average best overlap reduces to this);
* ``boxes``: proposals per image;
* ``wall s/img`` and ``cpu s/img``: the best of ``--repeats`` runs per image, averaged
  over images. CPU time (``time.process_time``, all threads of the process) is the
  robust number on a shared machine; wall time is printed too.

For a fair recall comparison at the same number of proposals, our method is also scored
with its ranked list cut to OpenCV's count on each image (``ours@cv-count``).

OpenCV's implementation ships only in ``opencv-contrib-python-headless``, whose ``cv2``
replaces ``opencv-python``'s, so it lives in its own virtualenv: ``benchmarks/.venv-contrib``
(created on first use with ``numpy`` and ``opencv-contrib-python-headless``) or the
interpreter given with ``--contrib-python``; OpenCV runs there in a subprocess.

Run::

    .venv/bin/python benchmarks/selective_search.py [--modes fast,quality] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import cv2
import numpy as np

from caffe_compat.boxes import box_iou

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONTRIB_VENV = os.path.join(ROOT, "benchmarks", ".venv-contrib")
BENCH_SIZE = (500, 375)  # width, height

# Hand-annotated objects, (xmin, ymin, xmax, ymax) inclusive, in the original image.
ANNOTATIONS: Dict[str, List[List[int]]] = {
    "astronaut": [  # 512x512
        [20, 15, 365, 511],    # person
        [152, 15, 302, 150],   # head
        [277, 342, 511, 511],  # helmet
        [352, 0, 472, 290],    # shuttle model
        [134, 347, 207, 422],  # mission patch
        [277, 339, 327, 367],  # name tag
    ],
    "coffee": [  # 600x400
        [172, 17, 407, 307],   # cup with handle
        [75, 70, 480, 390],    # saucer
        [315, 65, 425, 325],   # spoon
    ],
    "chelsea": [  # 451x300
        [0, 0, 398, 299],      # cat
        [135, 86, 205, 146],   # left eye
        [299, 109, 342, 165],  # right eye
        [228, 225, 292, 265],  # nose
    ],
    "rocket": [  # 640x427
        [307, 126, 336, 407],  # rocket
        [0, 0, 89, 426],       # left tower
        [559, 0, 639, 426],    # right tower
        [167, 124, 205, 426],  # lightning mast, left
        [439, 122, 478, 426],  # lightning mast, right
    ],
    "motorcycle": [  # 741x500, skimage.data.stereo_motorcycle()[0]
        [92, 95, 685, 452],    # motorcycle
        [508, 298, 685, 452],  # front wheel
        [120, 235, 280, 400],  # rear wheel
        [505, 122, 565, 190],  # headlight
        [40, 105, 285, 305],   # bench
        [525, 30, 590, 100],   # cardboard box, shelf
        [612, 185, 685, 275],  # cardboard box, floor
    ],
    "coins": [  # 384x303, grey
        [22, 32, 66, 75], [81, 38, 120, 74], [131, 28, 179, 74], [192, 29, 240, 74],
        [255, 33, 296, 72], [305, 16, 364, 72], [25, 104, 66, 146], [83, 106, 122, 145],
        [133, 109, 173, 145], [185, 104, 226, 144], [245, 95, 296, 144], [316, 104, 356, 145],
        [25, 177, 63, 216], [80, 175, 124, 217], [135, 178, 174, 217], [188, 171, 236, 216],
        [251, 172, 296, 217], [315, 156, 379, 218], [18, 232, 75, 288], [92, 244, 136, 288],
        [144, 236, 201, 289], [220, 240, 269, 289], [275, 239, 327, 289], [335, 247, 382, 290],
    ],
}


def load_image(name: str) -> np.ndarray:
    """An annotated sample image as HxWx3 uint8 RGB."""
    import skimage.data
    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def resize_with_boxes(image: np.ndarray, boxes: Sequence[Sequence[int]],
                      size=BENCH_SIZE) -> tuple:
    """``image`` resized to ``size`` (w, h) and ``boxes`` mapped onto it (pixel extents scaled)."""
    h, w = image.shape[:2]
    sx, sy = size[0] / w, size[1] / h
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    b = np.asarray(boxes, np.float64)
    out = np.stack([np.floor(b[:, 0] * sx), np.floor(b[:, 1] * sy),
                    np.ceil((b[:, 2] + 1) * sx) - 1, np.ceil((b[:, 3] + 1) * sy) - 1], axis=1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, size[0] - 1)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, size[1] - 1)
    return resized, out.astype(np.int64)


def best_overlaps(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Best IoU of any of ``boxes`` with each ground-truth box (0 when there are none)."""
    if len(boxes) == 0:
        return np.zeros(len(gt))
    return box_iou(np.asarray(gt, np.float64), np.asarray(boxes, np.float64),
                   pixel_offset=1).max(axis=1)


# ----------------------------------------------------------------- OpenCV in its own venv

OPENCV_WORKER = r"""
import json, sys, time
import cv2
cv2.setNumThreads(int(sys.argv[1]))
ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
print(json.dumps({"version": cv2.__version__}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    image = cv2.imread(job["path"])
    w0, c0 = time.perf_counter(), time.process_time()
    ss.setBaseImage(image)
    if job["mode"] == "fast":
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    rects = ss.process()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    boxes = [[int(x), int(y), int(x + w - 1), int(y + h - 1)] for x, y, w, h in rects]
    print(json.dumps({"boxes": boxes, "wall": wall, "cpu": cpu}), flush=True)
"""


def contrib_python(path: str = None) -> str:
    """The interpreter with ``opencv-contrib-python-headless``; creates the default venv."""
    if path:
        return path
    python = os.path.join(DEFAULT_CONTRIB_VENV, "bin", "python")
    if not os.path.exists(python):
        print(f"creating {DEFAULT_CONTRIB_VENV} (numpy + opencv-contrib-python-headless) ...",
              file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", DEFAULT_CONTRIB_VENV], check=True)
        with open(os.path.join(DEFAULT_CONTRIB_VENV, ".gitignore"), "w") as handle:
            handle.write("*\n")  # keep the virtualenv out of git (as Python >= 3.13 does)
        subprocess.run([python, "-m", "pip", "install", "-q", "numpy",
                        "opencv-contrib-python-headless"], check=True)
    return python


class OpenCVWorker:
    """OpenCV's selective search in a subprocess of the contrib interpreter, one image per
    request, so that its runs can alternate with ours under the same machine load."""

    def __init__(self, python: str, threads: int):
        self.proc = subprocess.Popen([python, "-c", OPENCV_WORKER, str(threads)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.version = self._read()["version"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"OpenCV worker exited with status {self.proc.wait()}")
        return json.loads(line)

    def run(self, path: str, mode: str) -> dict:
        self.proc.stdin.write(json.dumps({"path": path, "mode": mode}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run_ours(image: np.ndarray, mode: str) -> dict:
    from caffe_compat.recipes.rcnn.selective_search import selective_search
    w0, c0 = time.perf_counter(), time.process_time()
    boxes = selective_search(image, mode=mode, seed=0)
    return {"boxes": boxes.tolist(), "wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}


def run_both(worker: OpenCVWorker, images: Dict[str, np.ndarray], paths: Dict[str, str],
             mode: str, repeats: int) -> tuple:
    """Alternate OpenCV and ours on each image ``repeats`` times; keep each one's best times."""
    cv, ours = {}, {}
    for name, image in images.items():
        for _ in range(repeats):
            for results, result in ((cv, worker.run(paths[name], mode)), (ours, run_ours(image, mode))):
                if name in results:
                    result["wall"] = min(result["wall"], results[name]["wall"])
                    result["cpu"] = min(result["cpu"], results[name]["cpu"])
                results[name] = result
    return cv, ours


def segmentation_cpu(images: Dict[str, np.ndarray], mode: str) -> float:
    """CPU seconds per image spent in the initial FH segmentations of ``mode`` alone."""
    from caffe_compat.recipes.rcnn import selective_search as ss
    jobs = list(dict.fromkeys((s.colour_space, s.k) for s in ss.strategies_for(mode)))
    total = 0.0
    for image in images.values():
        converted = {space: ss.convert_colour(image, space) for space, _ in jobs}
        c0 = time.process_time()
        for space, k in jobs:
            ss.initial_segmentation(converted[space], k)
        total += time.process_time() - c0
    return total / len(images)


def score(results: dict, gts: Dict[str, np.ndarray], limits: Dict[str, int] = None) -> dict:
    overlaps, counts, walls, cpus = [], [], [], []
    for name, gt in gts.items():
        boxes = np.asarray(results[name]["boxes"], np.int64).reshape(-1, 4)
        if limits is not None:
            boxes = boxes[: limits[name]]
        overlaps.append(best_overlaps(gt, boxes))
        counts.append(len(boxes))
        walls.append(results[name]["wall"])
        cpus.append(results[name]["cpu"])
    ov = np.concatenate(overlaps)
    return {"recall": float((ov >= 0.5).mean()), "recall7": float((ov >= 0.7).mean()),
            "mabo": float(ov.mean()),
            "boxes": float(np.mean(counts)), "wall": float(np.mean(walls)),
            "cpu": float(np.mean(cpus))}


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="fast,quality", help="comma-separated: fast,quality")
    parser.add_argument("--repeats", type=int, default=3, help="runs per image; the best counts")
    parser.add_argument("--contrib-python", help="python with opencv-contrib-python-headless")
    parser.add_argument("--opencv-threads", type=int, default=1,
                        help="cv2.setNumThreads for OpenCV (ours is single-threaded); default 1")
    args = parser.parse_args(argv)

    images, gts = {}, {}
    for name, boxes in ANNOTATIONS.items():
        images[name], gts[name] = resize_with_boxes(load_image(name), boxes)
    n_objects = sum(len(g) for g in gts.values())
    worker = OpenCVWorker(contrib_python(args.contrib_python), args.opencv_threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, image in images.items():
            paths[name] = os.path.join(tmp, f"{name}.png")
            cv2.imwrite(paths[name], image[:, :, ::-1])
        print(f"images: {', '.join(images)} (scikit-image samples, resized to "
              f"{BENCH_SIZE[0]}x{BENCH_SIZE[1]}); {n_objects} hand-annotated objects")
        print(f"times: best of {args.repeats} runs per image (fast; quality: best of "
              f"{max(1, args.repeats // 3)}), OpenCV and ours alternating, mean over images; "
              f"OpenCV {worker.version} with cv2.setNumThreads({args.opencv_threads})")
        for mode in args.modes.split(","):
            repeats = args.repeats if mode == "fast" else max(1, args.repeats // 3)
            cv, ours = run_both(worker, images, paths, mode, repeats)
            limits = {name: len(r["boxes"]) for name, r in cv.items()}
            rows = [("opencv", score(cv, gts)),
                    ("ours", score(ours, gts)),
                    ("ours@cv-count", score(ours, gts, limits))]
            print(f"\nmode {mode} (repeats {repeats})")
            print(f"{'method':15s} {'recall@0.5':>10s} {'recall@0.7':>10s} {'MABO':>6s} {'boxes':>6s} "
                  f"{'wall s/img':>10s} {'cpu s/img':>9s}")
            for label, s in rows:
                print(f"{label:15s} {s['recall']:10.3f} {s['recall7']:10.3f} {s['mabo']:6.3f} "
                      f"{s['boxes']:6.0f} {s['wall']:10.3f} {s['cpu']:9.3f}")
            c, o, oc = rows[0][1], rows[1][1], rows[2][1]
            print(f"ratios ours/opencv: recall {o['recall'] / c['recall']:.3f} "
                  f"(at cv count {oc['recall'] / c['recall']:.3f}), MABO {o['mabo'] / c['mabo']:.3f} "
                  f"(at cv count {oc['mabo'] / c['mabo']:.3f}), boxes {o['boxes'] / c['boxes']:.2f}, "
                  f"wall time {o['wall'] / c['wall']:.2f}, cpu time {o['cpu'] / c['cpu']:.2f}")
            fh = segmentation_cpu(images, mode)
            print(f"ours: scikit-image's felzenszwalb alone takes {fh:.3f} cpu s/img "
                  f"({fh / o['cpu']:.0%} of ours, {fh / c['cpu']:.0%} of OpenCV's whole run)")
            print("per image, recall@0.5/MABO/boxes/cpu s, opencv | ours:")
            for name in gts:
                c1, o1 = (score({name: r[name]}, {name: gts[name]}) for r in (cv, ours))
                print(f"  {name:11s} {c1['recall']:.2f}/{c1['mabo']:.3f}/{c1['boxes']:.0f}/{c1['cpu']:.2f}"
                      f" | {o1['recall']:.2f}/{o1['mabo']:.3f}/{o1['boxes']:.0f}/{o1['cpu']:.2f}")
    worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
