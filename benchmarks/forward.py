"""Forward (and forward+backward) speed: the pycaffe API vs the engine vs OpenCV dnn vs
MXNet's own Gluon model zoo, side by side in one run.

Same prototxt, same random weights, same input, same thread count; median of N runs after
warm-up, at batch 1 and 10, 224x224. Columns:

* ``pycaffe API``: ``net.blobs['data'].data[...] = x; net.forward()`` (what legacy
  scripts and the recipes run; its fast path runs cached segment graphs);
* ``engine``: the exact ``CaffeNet`` block, hybridized with static memory;
* ``oneDNN fused``: the engine block after ``optimize_for(x, backend="MKLDNN")`` (MXNet's
  conv+bias+ReLU / conv+BN fusions), with its drift from the exact output;
* ``cv2.dnn``, the Gluon zoo's own model where one exists, and real BVLC Caffe's CPU time
  on this machine kind (tests/golden/caffe_cpu_timing.md).

The second table times forward+backward: the API with ``force_backward: true``
(``net.forward(); net.backward()``, every blob's diff and every parameter diff, as DeepDream
or saliency use it) against the engine block recorded and differentiated with respect to
its input and parameters.

    python benchmarks/forward.py [--threads 2] [--runs 9] [--nets bvlc_googlenet,vgg16]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--runs", type=int, default=9)
parser.add_argument("--batches", default="1,10")
parser.add_argument("--nets", default="bvlc_googlenet,bvlc_alexnet,resnet50,vgg16")
parser.add_argument("--no-backward", action="store_true", help="skip the forward+backward table")
parser.add_argument("--backward-batches", default="1",
                    help="batches of the forward+backward table (a recorded batch of 10 holds "
                         "several GB on ResNet-50/VGG-16)")
args = parser.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)   # before MXNet is imported
os.environ["MXNET_ENGINE_TYPE"] = os.environ.get("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice")

import cv2  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import caffe_compat as caffe  # noqa: E402
from caffe_compat.engine.network import CaffeNet  # noqa: E402
from caffe_compat.formats.caffemodel import write_caffemodel  # noqa: E402
from test_cv2_zoo_nets import random_weights  # noqa: E402

GLUON = {"bvlc_alexnet": "alexnet", "vgg16": "vgg16", "resnet50": "resnet50_v1"}
# Real Caffe (BVLC 9b891540, 2 threads, default OpenBLAS kernel), ms: caffe_cpu_timing.md
CAFFE_MS = {("bvlc_googlenet", 1): 151, ("bvlc_googlenet", 10): 1338,
            ("bvlc_alexnet", 1): 70,
            ("bvlc_reference_caffenet", 1): 79, ("bvlc_reference_caffenet", 10): 443}


def median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def cell(value, fmt="{:.1f}", width=9) -> str:
    return (fmt.format(value) if value is not None else "-").rjust(width)


def with_force_backward(prototxt: str, tmp: str) -> str:
    path = os.path.join(tmp, os.path.basename(os.path.dirname(prototxt)) + "_fb.prototxt")
    with open(prototxt) as f, open(path, "w") as out:
        out.write("force_backward: true\n" + f.read())
    return path


def onednn_fused(net: CaffeNet, xn: mx.nd.NDArray, exact: np.ndarray):
    """(ms, drift) of the block after MXNet's oneDNN subgraph fusion, or (None, reason)."""
    try:
        fused = CaffeNet(net.graph, net.phase, input_shapes={net.input_names[0]: xn.shape})
        fused.load_layer_blobs([(n, blobs) for n, _, blobs in net.layer_blobs()])
        fused.optimize_for(xn, backend="MKLDNN", static_alloc=True, static_shape=True)
        out = fused(xn).asnumpy()
        drift = float(np.linalg.norm(out - exact) / np.linalg.norm(exact))
        return median_ms(lambda: fused(xn).wait_to_read(), args.runs), drift
    except Exception as exc:   # MXNet builds without the oneDNN backend
        return None, f"{type(exc).__name__}"


def main() -> None:
    cv2.setNumThreads(args.threads)
    print(f"threads={args.threads} runs={args.runs} (median ms after 3 warm-ups); "
          f"MXNet {mx.__version__}, OpenCV {cv2.__version__}\n")
    head = (f"{'net':15s} {'batch':>5s} {'pycaffe API':>11s} {'engine':>9s} {'API/engine':>10s} "
            f"{'oneDNN fused':>12s} {'drift':>8s} {'cv2.dnn':>9s} {'engine/cv2':>10s} "
            f"{'gluon zoo':>9s} {'BVLC Caffe':>10s}")
    print("Forward")
    print(head)
    print("-" * len(head))
    tmp = tempfile.mkdtemp()
    backward_rows = []
    for name in args.nets.split(","):
        prototxt = os.path.join(REPO, "prototxt", name, "deploy.prototxt")
        block = CaffeNet.from_prototxt(prototxt, fill=False)   # random_weights sets every blob
        data = block.input_names[0]
        weights = os.path.join(tmp, f"{name}.caffemodel")
        write_caffemodel(weights, random_weights(block))
        block.copy_from(weights)
        block.hybridize(static_alloc=True, static_shape=True)
        api = caffe.Net(prototxt, weights, caffe.TEST)
        cvnet = cv2.dnn.readNetFromCaffe(prototxt, weights)
        gluon = None
        if name in GLUON:
            gluon = mx.gluon.model_zoo.vision.get_model(GLUON[name], pretrained=False)
            gluon.initialize(mx.init.Xavier())
            gluon.hybridize(static_alloc=True, static_shape=True)
        for batch in [int(b) for b in args.batches.split(",")]:
            x = np.random.RandomState(0).uniform(-100, 100, (batch, 3, 224, 224)).astype(np.float32)
            xn = mx.nd.array(x)
            engine = median_ms(lambda: block(xn).wait_to_read(), args.runs)
            exact = block(xn).asnumpy()
            api.blobs[data].reshape(*x.shape)
            api.reshape()

            def run_api():
                api.blobs[data].data[...] = x
                return api.forward()
            out = run_api()[block.output_names[0]]
            assert np.allclose(out, exact, rtol=1e-5, atol=1e-6), "API and engine disagree"
            ms_api = median_ms(run_api, args.runs)
            fused_ms, drift = onednn_fused(block, xn, exact)

            def run_cv():
                cvnet.setInput(x, data)
                cvnet.forward()
            ms_cv = median_ms(run_cv, args.runs)
            ms_gluon = median_ms(lambda: gluon(xn).wait_to_read(), args.runs) if gluon else None
            drift_cell = f"{drift:.1e}" if isinstance(drift, float) else str(drift)
            print(f"{name:15s} {batch:5d} {cell(ms_api, width=11)} {cell(engine)} "
                  f"{cell(ms_api / engine, '{:.2f}', 10)} {cell(fused_ms, width=12)} "
                  f"{drift_cell:>8s} {cell(ms_cv)} {cell(engine / ms_cv, '{:.2f}', 10)} "
                  f"{cell(ms_gluon)} {cell(CAFFE_MS.get((name, batch)), '{:d}', 10)}", flush=True)
            if not args.no_backward and str(batch) in args.backward_batches.split(","):
                backward_rows.append((name, batch, *time_backward(prototxt, weights, x, tmp)))
    if backward_rows:
        print("\nForward + backward (force_backward: every blob diff and parameter diff)")
        head = f"{'net':15s} {'batch':>5s} {'pycaffe API':>11s} {'engine':>9s} {'API/engine':>10s}"
        print(head)
        print("-" * len(head))
        for name, batch, ms_api, engine in backward_rows:
            print(f"{name:15s} {batch:5d} {cell(ms_api, width=11)} {cell(engine)} "
                  f"{cell(ms_api / engine, '{:.2f}', 10)}", flush=True)


def time_backward(prototxt: str, weights: str, x: np.ndarray, tmp: str) -> tuple:
    fb = with_force_backward(prototxt, tmp)
    api = caffe.Net(fb, weights, caffe.TEST)
    data = api.inputs[0]
    api.blobs[data].reshape(*x.shape)
    api.reshape()
    outs = api.outputs

    def run_api():
        api.blobs[data].data[...] = x
        api.forward()
        for o in outs:
            api.blobs[o].diff[...] = 1.0
        api.backward()
        return api.blobs[data].diff
    ms_api = median_ms(run_api, args.runs)

    block = CaffeNet.from_prototxt(fb, weights=weights, input_shapes={data: x.shape})
    block.hybridize(static_alloc=True, static_shape=True)
    for p in block.collect_params().values():
        if p.grad_req != "null":
            p.grad_req = "add"
    xn = mx.nd.array(x)
    xn.attach_grad()

    def run_engine():
        with mx.autograd.record():
            out = block(xn)
        out.backward(mx.nd.ones_like(out))
        xn.grad.wait_to_read()
    return ms_api, median_ms(run_engine, args.runs)


if __name__ == "__main__":
    main()
