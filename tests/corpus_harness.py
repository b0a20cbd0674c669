"""Run real corpus nets through the pycaffe API and OpenCV, each net isolated from a crash.

Used by ``tests/test_corpus_run.py`` (and runnable by hand: ``python tests/corpus_harness.py
NET.prototxt ...`` prints one JSON result per net). For every net file:

1. read and build it (blob shapes, no fillers drawn);
2. give every learnable blob deterministic random values (seeded by the file's relative
   path), written to a ``.caffemodel`` with caffe-compat's writer, and load the net with
   them through the pycaffe API, ``caffe_compat.Net(path, weights, TEST)``, as a user would
   (OpenCV reads the very same files);
3. feed deterministic inputs (uniform in [-1, 1]; ``im_info``/``rois`` get valid values); a
   net whose inputs are all batches of N > 1 images runs at batch 1 when it builds so
   (every layer computes a batch's images independently; OpenCV gets the same input);
4. run ``net.forward()`` and OpenCV's ``readNetFromCaffe`` on the same prototxt, weights and
   inputs, and compare every net output (rel. L2); a Softmax output is compared through
   its input, since random deep nets saturate it.

Nets run in worker processes (:class:`WorkerPool`) that each take many nets in turn: a
SIGFPE/SIGABRT/segfault or a hang is then reported as the outcome of the net that was
running (``crash``/``timeout``) and the worker is restarted, instead of ending pytest.

Outcomes (``status``):

* ``match``: every output within tolerance of OpenCV's;
* ``differs``: some output is not (``details`` names it, with the error);
* ``opencv-cannot-run``: OpenCV refuses the file or fails running it (first line of its
  error); our own forward ran and gave finite numbers;
* ``no-declared-input``: the net's inputs come from data layers reading files that are not
  in the corpus (``Data``, ``ImageData``, Python data layers...), so it cannot be fed;
* ``build-error`` / ``run-error``: caffe-compat raised (the message says why);
* ``crash`` / ``timeout``: the worker died or hung on this net.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Iterable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CORPUS = os.path.normpath(os.path.join(REPO, "..", "shared", "corpus"))
FWD_TOL = 1e-4          # the bar for random-weight whole nets vs OpenCV

#: Layer types that produce a net's inputs from files (nothing to feed them with).
FILE_SOURCES = {"Data", "ImageData", "HDF5Data", "WindowData", "AnnotatedData", "VideoData",
                "DenseImageData", "ImageLabelmapData", "MemoryData"}


def corpus_net_files(root: str = CORPUS) -> list[str]:
    """Every network definition in the corpus (not solvers, not SSD label maps)."""
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if not (name.endswith(".prototxt") or name.endswith(".pt")):
                continue
            if "solver" in name.lower():
                continue
            with open(path, "rb") as handle:
                head = handle.read()
            text = head.decode("utf-8", "replace")
            if "layer {" not in text and "layers {" not in text and "layer{" not in text \
                    and "layers{" not in text:
                continue
            out.append(path)
    return sorted(out)


# ---------------------------------------------------------------------------------------
# Worker side (runs inside the child process)
# ---------------------------------------------------------------------------------------

def _seed_for(path: str) -> int:
    rel = os.path.relpath(path, CORPUS) if path.startswith(CORPUS) else os.path.basename(path)
    return int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16)


def random_blobs(layer_type: str, shapes: list, rng) -> list:
    """O(1)-activation random blobs for one layer (statistics valid where a layer needs it)."""
    import numpy as np
    f32 = np.float32
    blobs = []
    for i, shape in enumerate(shapes):
        arr = rng.standard_normal(shape, dtype=f32)
        if layer_type == "BatchNorm":
            arr = [arr * f32(0.5), np.abs(arr) * f32(0.5) + f32(0.5), np.ones(shape, f32)][min(i, 2)]
        elif layer_type in ("BN",) or (layer_type == "Scale" and i == 0):
            arr = f32(1.0) + f32(0.2) * arr if layer_type == "Scale" else (
                np.abs(arr) * f32(0.5) + f32(0.5) if i % 2 == 0 else arr * f32(0.1))
        elif layer_type == "Normalize":
            arr = np.abs(arr) + f32(0.5)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:])) or 1
            if layer_type in ("Deconvolution",):
                fan_in = max(1, int(shape[0] * np.prod(shape[2:])))
            arr *= f32(np.sqrt(2.0 / fan_in))
        else:
            arr *= f32(0.1)
        blobs.append(np.ascontiguousarray(arr, f32))
    return blobs


def _batch_one_shapes(block) -> dict:
    """Batch-1 shapes for a net whose inputs are all batches of images (N > 1), when it
    builds at batch 1; else {}. Every layer computes a batch's images independently (and
    OpenCV gets the same batch), so one image proves what ten do at a tenth of the time."""
    shapes = {n: block.blob_shapes[n] for n in block.input_names}
    if not shapes or any(len(s) != 4 or s[0] <= 1 for s in shapes.values()):
        return {}
    wanted = {n: (1,) + tuple(s[1:]) for n, s in shapes.items()}
    try:
        block.reshape(wanted)
    except Exception:       # a net whose shapes hold the batch size: run it as declared
        block.reshape(shapes)
        return {}
    return wanted


def _feeds(net, rng) -> dict:
    import numpy as np
    feeds = {}
    shapes = {n: tuple(net.blobs[n].data.shape) for n in net.inputs}
    image = next((s for s in shapes.values() if len(s) == 4), None)
    for name, shape in shapes.items():
        if name == "im_info":
            h, w = (image[2], image[3]) if image else (224, 224)
            row = [h, w, 1.0] + [1.0] * max(0, shape[-1] - 3)
            feeds[name] = np.tile(np.array(row, np.float32), (shape[0], 1)).reshape(shape)
        elif name == "rois" and len(shape) >= 2 and shape[1] == 5:
            h, w = (image[2], image[3]) if image else (224, 224)
            n = shape[0]
            x1 = rng.uniform(0, w * 0.6, n)
            y1 = rng.uniform(0, h * 0.6, n)
            x2 = x1 + rng.uniform(8, w * 0.4, n)
            y2 = y1 + rng.uniform(8, h * 0.4, n)
            feeds[name] = np.stack([np.zeros(n), x1, y1, x2, y2], 1).astype(np.float32).reshape(shape)
        else:
            feeds[name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def _rel(a, b) -> float:
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _detection_rows(a):
    """Rows of a DetectionOutput (N x 7) or Proposal (N x 5) top, without OpenCV's
    all-zero padding rows and the SSD fork's "no detection" row, in a canonical order
    (DetectionOutput: by score, then label, then xmin; Proposal: as produced)."""
    import numpy as np
    a = np.asarray(a)
    width = 7 if a.ndim == 4 else (a.shape[-1] if a.ndim >= 2 else 1)
    a = a.reshape(-1, width)
    a = a[~np.all(a == 0, axis=1)]
    if width != 7:
        return a
    a = a[a[:, 1] != -1]
    return a[np.lexsort((np.round(a[:, 3], 5), a[:, 1], -np.round(a[:, 2], 6)))]


def run_net(path: str, workdir: str) -> dict:
    """Build, fill, run and compare one net; returns the result record."""
    import numpy as np
    import cv2
    import caffe_compat as caffe
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    from caffe_compat.recipes import fcn, py_faster_rcnn

    py_faster_rcnn.install_modules()       # rpn.proposal_layer, ... as py-faster-rcnn's lib/
    fcn.install_layer_modules()            # voc_layers, ... as fcn.berkeleyvision.org's
    result = {"path": os.path.relpath(path, CORPUS) if path.startswith(CORPUS) else path}
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # the shapes first, without drawing fillers the random weights replace
            block = CaffeNet.from_prototxt(path, caffe.TEST, fill=False)
        except Exception as exc:          # classified by the caller
            result.update(status="build-error", error=f"{type(exc).__name__}: {exc}"[:800])
            return result
    sources = sorted({l.type for l in block.caffe_layers
                      if l.type in FILE_SOURCES or (l.type == "Python" and l.name in ("data", "input-data"))})
    if sources or not block.input_names:
        result.update(status="no-declared-input", sources=sources)
        return result
    batch_one = _batch_one_shapes(block)
    rng = np.random.default_rng(_seed_for(path))
    weights, seen = [], set()
    for layer in block.caffe_layers:
        if layer.blob_names and layer.name not in seen:   # a shared-name layer appears once
            seen.add(layer.name)
            arrays = random_blobs(layer.type, [tuple(p.shape) for p in layer.blobs()], rng)
            weights.append(LayerWeights(layer.name, layer.type, arrays))
    cm = os.path.join(workdir, "weights.caffemodel")
    write_caffemodel(cm, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = caffe.Net(path, cm, caffe.TEST)      # the pycaffe API, as a user loads a net
    if batch_one:
        for name, shape in batch_one.items():
            net.blobs[name].reshape(*shape)
        net.reshape()
        result["notes_batch"] = "run at batch 1 (declared batch > 1)"
    block = net.block
    feeds = _feeds(net, rng)
    try:
        for name, value in feeds.items():
            net.blobs[name].data[...] = value
        net.forward()
    except Exception as exc:
        result.update(status="run-error", error=f"{type(exc).__name__}: {exc}"[:800])
        return result
    result["seconds_ours"] = round(time.time() - t0, 2)
    graph = block.graph
    targets, notes, deviations = comparison_targets(graph, block)
    result["notes"] = notes
    if deviations:
        result["deviations"] = deviations
    try:
        cvnet = cv2.dnn.readNetFromCaffe(path, cm)
        for name, value in feeds.items():
            cvnet.setInput(np.ascontiguousarray(value), name)
        layers = sorted({t.opencv_layer for t in targets})
        outputs = dict(zip(layers, cvnet.forwardAndRetrieve(layers))) if layers else {}
        theirs = [outputs[t.opencv_layer][t.top_index] for t in targets]
    except cv2.error as exc:
        msg = str(exc).strip().splitlines()
        result.update(status="opencv-cannot-run",
                      error=next((m for m in msg if "error:" in m), msg[-1] if msg else "")[:400])
        return result
    details, worst, compared = {}, 0.0, 0
    rows_agree: dict = {}
    for target, ref in sorted(zip(targets, theirs), key=lambda p: p[0].order):
        if any(not rows_agree.get(layer, False) for layer in target.after_rows_of):
            notes.append(f"{target.blob}: not compared, downstream of "
                         f"{'/'.join(target.after_rows_of)} whose rows differ in count")
            continue
        mine = net.blobs[target.blob].data
        if target.kind == "rows":
            a, b = _detection_rows(mine), _detection_rows(ref)
            why = _rows_not_comparable(a, b)
            rows_agree[target.layer] = why is None and a.shape == b.shape
            if why:
                notes.append(f"{target.blob}: rows not compared ({why}); its inputs were")
                continue
            if a.shape != b.shape:
                details[target.blob] = f"{len(a)} rows vs OpenCV's {len(b)}"
                worst = float("inf")
                continue
            err = _rel(*_paired_rows(a, b)) if a.size else 0.0
        else:
            if ref.size != mine.size:
                details[target.blob] = f"shape {mine.shape} vs OpenCV's {ref.shape}"
                worst = float("inf")
                continue
            if not np.isfinite(mine).all():
                result.update(status="run-error", error=f"non-finite values in {target.blob}")
                return result
            err = _rel(mine, ref.reshape(mine.shape))
        compared += 1
        worst = max(worst, err)
        if err > FWD_TOL:
            details[target.blob] = f"rel L2 {err:.3g}"
    result["worst_rel"] = worst
    result["compared"] = compared
    if details:
        result.update(status="differs", details=details)
    elif deviations:
        result["status"] = "opencv-deviation"
    else:
        result["status"] = "match" if compared else "nothing-compared"
    result["seconds"] = round(time.time() - t0, 2)
    return result


# ---------------------------------------------------------------------------------------
# What to compare, and OpenCV's proven deviations
# ---------------------------------------------------------------------------------------

#: Layers whose output size depends on the data (rows of boxes): compared as row sets,
#: and what follows them only when both sides produced the same rows.
ROW_LAYERS = {"DetectionOutput", "Proposal"}


def opencv_deviations(node, shapes: dict) -> Optional[str]:
    """Why OpenCV's Caffe importer computes this layer differently from the Caffe the
    file was written for, or None. Each rule is proven by tests/test_opencv_deviations.py."""
    p = node.param
    if node.type == "Convolution" and node.bottoms:
        shape = shapes.get(node.bottoms[0], ())
        cp = p.convolution_param
        kernel = list(cp.kernel_size) or [cp.kernel_h, cp.kernel_w]
        if (len(shape) == 4 and cp.group > 1 and cp.group == shape[1] == cp.num_output
                and min(shape[2:]) == 1 and max(kernel) > 1):
            return "depthwise convolution of a 1-pixel-wide input (OpenCV reads outside it)"
    if node.type == "LRN" and p.lrn_param.norm_region == 0 and p.lrn_param.k != 1.0:
        return "LRN k != 1 (OpenCV uses 1)"
    if node.type == "MVN" and p.mvn_param.normalize_variance and p.mvn_param.eps >= 1e-6:
        return "MVN eps (OpenCV adds it under the square root, Caffe after it)"
    if node.type == "Axpy":
        return "Axpy (OpenCV's Scale+Eltwise rewrite is not a * x + y)"
    if node.type == "PriorBox":
        sizes = list(p.prior_box_param.min_size) + list(p.prior_box_param.max_size)
        if any(s != int(s) for s in sizes):
            return "PriorBox fractional min/max_size (the SSD fork truncates to int)"
    return None


class Target:
    """One blob compared with OpenCV: ``kind`` "blob" or "rows"."""

    def __init__(self, blob, opencv_layer, top_index, kind, order, layer=None, after_rows_of=()):
        self.blob, self.opencv_layer, self.kind, self.order = blob, opencv_layer, kind, order
        self.top_index = top_index
        self.layer, self.after_rows_of = layer, tuple(after_rows_of)


def comparison_targets(graph, block):
    """(targets, notes, deviations) for one net.

    Net outputs are compared (a Softmax output through its input); so are the inputs of
    every row layer and of every layer OpenCV computes differently. Blobs downstream of a
    deviating layer are not compared; blobs downstream of a row layer only when that
    layer's rows agreed.
    """
    producer, order = {}, {}
    for node in graph.layers:
        for top in node.tops:
            producer[top] = node           # the last writer (in-place chains)
            order[top] = node.index
    upstream_dev: dict = {}                # blob -> deviating layer names upstream
    upstream_rows: dict = {}               # blob -> row layer names upstream
    deviations = {}
    for node in graph.layers:
        dev, rows = set(), set()
        for b in node.bottoms:
            dev |= upstream_dev.get(b, set())
            rows |= upstream_rows.get(b, set())
        why = opencv_deviations(node, block.blob_shapes)
        if why:
            deviations[node.name] = why
            dev = dev | {node.name}
        if node.type in ROW_LAYERS:
            rows = rows | {node.name}
        for top in node.tops:
            upstream_dev[top], upstream_rows[top] = dev, rows
    def unsaturated(blob: str) -> str:
        """A Softmax/Sigmoid output (seen through Flatten/Reshape) is compared through
        the activation's input: random deep nets saturate it, and there float32 noise in
        the logits is amplified (the issue's rule for Softmax outputs)."""
        blob = unsplit(blob)
        node = producer.get(blob)
        while node is not None and node.type in ("Flatten", "Reshape") and len(node.bottoms) == 1:
            node = producer.get(unsplit(node.bottoms[0]))
        if node is not None and node.type in ("Softmax", "Sigmoid") and node.bottoms:
            source = unsplit(node.bottoms[0])
            if producer.get(source) is not None and producer[source].type != "Input":
                return source
        return blob

    def unsplit(blob: str) -> str:
        """The blob a Caffe-inserted Split copies (OpenCV names the original)."""
        while blob in producer and producer[blob].type == "Split" and \
                producer[blob].name.endswith("_split"):
            blob = producer[blob].bottoms[0]
        return blob

    wanted = []
    for name in graph.outputs:
        node = producer[name]
        if node.type.endswith("Loss") or node.type == "Accuracy":
            wanted.append(unsaturated(node.bottoms[0]))   # OpenCV has no losses: their input
        else:
            wanted.append(unsaturated(name))
    for node in graph.layers:
        if node.type in ROW_LAYERS or node.name in deviations or node.type == "Silence":
            wanted.extend(unsaturated(b) for b in node.bottoms)
        elif not len(node.param.top) and node.bottoms:    # a top-less loss: its prediction
            wanted.append(unsaturated(node.bottoms[0]))
    notes, targets, seen = [], [], set()
    names = [node.name for node in graph.layers]
    for blob in wanted:
        if blob in seen or blob not in producer or producer[blob].type in ("Input", "Split"):
            continue
        seen.add(blob)
        if upstream_dev.get(blob):
            notes.append(f"{blob}: not compared, downstream of {sorted(upstream_dev[blob])} "
                         "(OpenCV deviates there)")
            continue
        node = producer[blob]
        if names.count(node.name) > 1:
            notes.append(f"{blob}: not compared, {names.count(node.name)} layers are named "
                         f"'{node.name}' and OpenCV addresses only one of them by name")
            continue
        rows_before = upstream_rows.get(blob, set()) - {node.name}
        kind = "rows" if node.type in ROW_LAYERS else "blob"
        targets.append(Target(blob, node.name, node.tops.index(blob), kind, order[blob], node.name,
                              sorted(rows_before)))
    return targets, notes, deviations


def _paired_rows(a, b):
    """The two row sets in matching order: each of our rows paired with the nearest
    OpenCV row (same image and label for detections), so rows whose scores differ in
    the last bits and swap places in a sort are still compared with each other."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment
    cost = np.abs(a[:, None, :].astype(np.float64) - b[None, :, :]).sum(-1)
    if a.shape[1] == 7:
        cost[(a[:, None, 0] != b[None, :, 0]) | (a[:, None, 1] != b[None, :, 1])] = 1e30
    rows, cols = linear_sum_assignment(cost)
    return a[rows], b[cols]


def _rows_not_comparable(a, b) -> Optional[str]:
    """Why two row sets cannot be compared as sets (or None)."""
    import numpy as np
    for rows in (a, b):
        if not np.isfinite(rows).all():
            return "non-finite boxes: random box deltas overflow exp(), in Caffe too"
        scores = rows[:, 2] if rows.shape[1] == 7 else (rows[:, 0] if rows.shape[1] == 1 else None)
        if scores is not None and len(np.unique(scores)) != len(scores):
            return "tied scores: random weights saturate the softmax, so the order is arbitrary"
        if rows.shape[1] == 5 and ((rows[:, 3] <= rows[:, 1]) | (rows[:, 4] <= rows[:, 2])).any():
            return "degenerate boxes: random box deltas clip boxes to the image border"
    return None


def _worker_main() -> None:
    """Child loop: one path per stdin line, one JSON result per stdout line."""
    import cv2
    cv2.setNumThreads(1)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                          # stray prints from libraries go to stderr
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        # weights files in memory when the system has a tmpfs (VGG-sized: 0.5 GB per net)
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        with tempfile.TemporaryDirectory(dir=shm) as workdir:
            try:
                result = run_net(path, workdir)
            except Exception as exc:       # a harness bug must not end the run
                result = {"path": path, "status": "harness-error",
                          "error": f"{type(exc).__name__}: {exc}"[:800]}
        gc.collect()        # free this net's arrays now, before the next (VGG-sized) net
        out.write(json.dumps(result) + "\n")


# ---------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------

class _Worker:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-X", "faulthandler", __file__, "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, text=True, bufsize=1)
        self.path: Optional[str] = None
        self.started = 0.0
        self.stderr_tail: list[str] = []
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("corpus worker failed to start: " + self.proc.stderr.read()[-2000:])

    def send(self, path: str) -> None:
        self.path, self.started = path, time.time()
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()


def _innermost_frames(stderr_lines: list, count: int = 4) -> str:
    """The fatal error line and the innermost Python frames of faulthandler's dump."""
    for i, line in enumerate(stderr_lines):
        if line.startswith("Fatal Python error"):
            frames = [l.strip() for l in stderr_lines[i:] if l.strip().startswith("File ")]
            # faulthandler lists the other threads first; the current one comes last
            current = [j for j, l in enumerate(stderr_lines) if "most recent call first" in l]
            if current:
                frames = [l.strip() for l in stderr_lines[current[-1]:]
                          if l.strip().startswith("File ")]
            return (line.strip() + ": " + " <- ".join(frames[:count]))[:800]
    return " | ".join(l for l in stderr_lines[-6:] if l.strip())[:800]


def run_nets(paths: Iterable[str], workers: int = 2, timeout: float = 300.0,
             threads_per_worker: int = 1) -> dict:
    """Run every net in ``paths`` across ``workers`` processes; returns {path: result}."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads_per_worker), MKL_NUM_THREADS=str(threads_per_worker),
               MXNET_CPU_WORKER_NTHREADS="1", PYTHONFAULTHANDLER="1")
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in [env.get("PYTHONPATH")] if p])
    queue = list(paths)
    results: dict = {}
    pool: list[_Worker] = []
    try:
        while queue or any(w.path for w in pool):
            while len(pool) < workers and queue:
                pool.append(_Worker(env))
            for w in pool:
                if w.path is None and queue:
                    w.send(queue.pop(0))
            busy = [w for w in pool if w.path]
            ready, _, _ = select.select([w.proc.stdout for w in busy] +
                                        [w.proc.stderr for w in busy], [], [], 1.0)
            for w in list(busy):
                if w.proc.stderr in ready:
                    chunk = os.read(w.proc.stderr.fileno(), 65536).decode("utf-8", "replace")
                    w.stderr_tail = (w.stderr_tail + chunk.splitlines())[-400:]
                if w.proc.stdout in ready:
                    line = w.proc.stdout.readline()
                    if line:
                        rec = json.loads(line)
                        results[w.path] = rec
                        w.path = None
                        w.stderr_tail = []
                        continue
                if w.proc.poll() is not None:      # died mid-net: a crash of that net
                    results[w.path] = {"path": os.path.relpath(w.path, CORPUS), "status": "crash",
                                       "error": f"worker died with status {w.proc.returncode}: "
                                                + _innermost_frames(w.stderr_tail)}
                    pool.remove(w)
                elif time.time() - w.started > timeout:
                    results[w.path] = {"path": os.path.relpath(w.path, CORPUS), "status": "timeout",
                                       "error": f"no result after {timeout:.0f} s"}
                    w.kill()
                    pool.remove(w)
    finally:
        for w in pool:
            w.kill()
    return results


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker_main()
    else:
        paths = [os.path.abspath(p) for p in sys.argv[1:]] or corpus_net_files()
        for rec in run_nets(paths).values():
            print(json.dumps(rec))
