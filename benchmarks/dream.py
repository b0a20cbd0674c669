"""Seconds per DeepDream ``make_step`` on bvlc_googlenet: device fast path vs pycaffe path.

    .venv/bin/python benchmarks/dream.py                 # 224x224 and 500x375, CPU (+GPU)
    .venv/bin/python benchmarks/dream.py --repeats 10 --end inception_4c/output

The full bvlc_googlenet architecture (``prototxt/bvlc_googlenet/deploy.prototxt``) with
random weights (Caffe's fillers; speed does not depend on the values), dreaming at the
notebook's ``inception_4c/output`` with jitter 32. The pycaffe path is the notebook's
``make_step`` through numpy blob views (per-layer forward/backward, parameter diffs
accumulated as Caffe does); the fast path is :class:`FastDreamer.make_step` (cut and
hybridized block, autograd, ``mx.nd`` jitter/normalisation/clip), also timed without
hybridizing. All take the same steps from the same seed; the table also shows how far
apart the images end up after them (not hybridized: bit-identical to pycaffe; the
hybridized graph's sums differ in the last bit, which can flip an exact max-pooling
tie). Timings are medians over ``--repeats`` steps after warm-up steps.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "prototxt" / "bvlc_googlenet" / "deploy.prototxt"
SIZES = [(224, 224), (500, 375)]   # (width, height)


def _time_steps(step, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_device(ctx_name: str, weights: str, end: str, repeats: int, warmup: int) -> list[dict]:
    import mxnet as mx
    from caffe_compat import context
    from caffe_compat.recipes.deepdream import FastDreamer, load_dream_net, notebook
    if ctx_name == "gpu":
        context.set_mode_gpu()
    else:
        context.set_mode_cpu()
    rows = []
    net = load_dream_net(DEPLOY, weights, end=end)
    dreamers = {hyb: FastDreamer.from_files(DEPLOY, weights, end=end, hybridize=hyb,
                                           ctx=context.current_context())
                for hyb in (True, False)}
    for w, h in SIZES:
        img = np.random.RandomState(0).uniform(0, 255, (h, w, 3)).astype(np.float32)
        x0 = notebook.preprocess(net, img)
        net.blobs["data"].reshape(1, 3, h, w)
        net.blobs["data"].data[0] = x0

        def slow_step():
            notebook.make_step(net, end=end)

        np.random.seed(0)
        slow_step()                      # one step from x0: the reference image
        ref = net.blobs["data"].data[0].copy()
        row = {"device": ctx_name, "size": f"{w}x{h}",
               "pycaffe": _time_steps(slow_step, repeats, warmup)}
        for hyb, dreamer in dreamers.items():
            key = "hybrid" if hyb else "imperative"
            np.random.seed(0)
            one = dreamer.make_step(mx.nd.array(x0[None], ctx=dreamer.ctx)).asnumpy()[0]
            row[key + "_rel"] = float(np.linalg.norm(one - ref) / np.linalg.norm(ref))
            state = {"x": mx.nd.array(x0[None], ctx=dreamer.ctx)}

            def fast_step():
                state["x"] = dreamer.make_step(state["x"])
                state["x"].wait_to_read()

            row[key] = _time_steps(fast_step, repeats, warmup)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--end", default="inception_4c/output")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from caffe_compat.context import gpu_count
    from caffe_compat.engine.network import CaffeNet
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "googlenet_random.caffemodel")
        CaffeNet.from_prototxt(str(DEPLOY), 1).save_caffemodel(weights)
        devices = ["cpu"] + (["gpu"] if gpu_count() else [])
        rows = []
        for device in devices:
            rows += bench_device(device, weights, args.end, args.repeats, args.warmup)
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"DeepDream make_step on bvlc_googlenet (random weights), end={args.end}, jitter 32; "
          f"median of {args.repeats} steps after {args.warmup} warm-up; {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={threads}")
    print(f"{'device':6s} {'image':>8s} {'pycaffe':>8s} {'fast':>7s} {'ratio':>6s} "
          f"{'fast, not hybridized':>21s} {'ratio':>6s}   (s/step; image rel. diff to pycaffe "
          f"after one step)")
    for r in rows:
        print(f"{r['device']:6s} {r['size']:>8s} {r['pycaffe']:8.3f} {r['hybrid']:7.3f} "
              f"{r['pycaffe'] / r['hybrid']:5.2f}x {r['imperative']:21.3f} "
              f"{r['pycaffe'] / r['imperative']:5.2f}x   "
              f"(fast {r['hybrid_rel']:.1e}, not hybridized {r['imperative_rel']:.1e})")
    if "gpu" not in devices:
        print("(no GPU visible to MXNet: GPU rows skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
