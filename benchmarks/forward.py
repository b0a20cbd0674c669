"""Forward speed: caffe-compat (hybridized) vs OpenCV dnn vs MXNet's own Gluon model zoo.

Same prototxt, same random weights, same input, same thread count; median of N runs
after warm-up, at batch 1 and 10, 224x224. Real BVLC Caffe's CPU times on this machine
kind (tests/golden/caffe_cpu_timing.md) are printed beside them for orientation.

    python benchmarks/forward.py [--threads 2] [--runs 10] [--nets bvlc_googlenet,vgg16]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--runs", type=int, default=10)
parser.add_argument("--batches", default="1,10")
parser.add_argument("--nets", default="bvlc_googlenet,bvlc_alexnet,resnet50,vgg16")
args = parser.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)   # before MXNet is imported
os.environ["MXNET_ENGINE_TYPE"] = os.environ.get("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice")

import cv2  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from caffe_compat.engine.network import CaffeNet  # noqa: E402
from caffe_compat.formats.caffemodel import write_caffemodel  # noqa: E402
from test_cv2_zoo_nets import random_weights  # noqa: E402

GLUON = {"bvlc_alexnet": "alexnet", "vgg16": "vgg16", "resnet50": "resnet50_v1"}
# Real Caffe (BVLC 9b891540, 2 threads, default OpenBLAS kernel), ms: caffe_cpu_timing.md
CAFFE_MS = {("bvlc_googlenet", 1): 151, ("bvlc_googlenet", 10): 1338,
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


def main() -> None:
    cv2.setNumThreads(args.threads)
    print(f"threads={args.threads} runs={args.runs} (median ms after 3 warm-ups); "
          f"MXNet {mx.__version__}, OpenCV {cv2.__version__}")
    header = f"{'net':16s} {'batch':>5s} {'caffe-compat':>12s} {'cv2.dnn':>9s} {'ratio cv2/ours':>14s} " \
             f"{'gluon zoo':>9s} {'ours/gluon':>10s} {'BVLC Caffe':>10s} {'Caffe/ours':>10s}"
    print("caffe-compat = exact engine (Caffe's operation order); rows marked '+fused BN' use "
          "CaffeNet.fuse_batchnorm_scale() (one affine op per BatchNorm+Scale, like Gluon)")
    print(header)
    print("-" * len(header))
    tmp = tempfile.mkdtemp()
    for name in args.nets.split(","):
        prototxt = os.path.join(REPO, "prototxt", name, "deploy.prototxt")
        net = CaffeNet.from_prototxt(prototxt)
        data = net.input_names[0]
        weights = os.path.join(tmp, f"{name}.caffemodel")
        write_caffemodel(weights, random_weights(net))
        net.hybridize(static_alloc=True, static_shape=True)
        cvnet = cv2.dnn.readNetFromCaffe(prototxt, weights)
        gluon = None
        if name in GLUON:
            gluon = mx.gluon.model_zoo.vision.get_model(GLUON[name], pretrained=False)
            gluon.initialize(mx.init.Xavier())
            gluon.hybridize(static_alloc=True, static_shape=True)
        for batch in [int(b) for b in args.batches.split(",")]:
            x = np.random.RandomState(0).uniform(-100, 100, (batch, 3, 224, 224)).astype(np.float32)
            xn = mx.nd.array(x)
            net.fuse_batchnorm_scale(False)
            ours = median_ms(lambda: net(xn).wait_to_read(), args.runs)
            fused = None
            exact = net(xn).asnumpy()
            if net.fuse_batchnorm_scale(True):
                fused = median_ms(lambda: net(xn).wait_to_read(), args.runs)
                drift = np.linalg.norm(net(xn).asnumpy() - exact) / np.linalg.norm(exact)
                net.fuse_batchnorm_scale(False)

            def run_cv():
                cvnet.setInput(x, data)
                cvnet.forward()
            theirs = median_ms(run_cv, args.runs)
            g = median_ms(lambda: gluon(xn).wait_to_read(), args.runs) if gluon else None
            caffe = CAFFE_MS.get((name, batch))
            print(f"{name:16s} {batch:5d} {ours:12.1f} {theirs:9.1f} {theirs / ours:14.2f} "
                  f"{(f'{g:9.1f}' if g else '        -')} {(f'{ours / g:10.2f}' if g else '         -')} "
                  f"{(f'{caffe:10d}' if caffe else '         -')} "
                  f"{(f'{caffe / ours:10.2f}' if caffe else '         -')}", flush=True)
            if fused is not None:
                print(f"{name + ' +fused BN':16s} {batch:5d} {fused:12.1f} {'':9s} {theirs / fused:14.2f} "
                      f"{(f'{g:9.1f}' if g else '        -')} {(f'{fused / g:10.2f}' if g else '         -')} "
                      f"{'':10s} {'':10s}  (output differs from exact by rel {drift:.1e})", flush=True)


if __name__ == "__main__":
    main()
