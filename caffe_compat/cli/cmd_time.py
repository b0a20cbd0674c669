"""``caffe-compat time --model=M [--iterations=N]``: Caffe's ``caffe time``.

Times every layer's forward and backward (TRAIN phase, as Caffe's tool) with the
device synchronised after each layer, and prints Caffe's report: per-layer averages,
then the average forward, backward and forward-backward pass and the total.
"""
from __future__ import annotations

import argparse
import time

import mxnet as mx
import numpy as np

from caffe_compat.cli.netargs import add_caffe_tool_arguments, caffe_tool_model, use_device


def time_layers(net, iterations: int, backward: bool = True) -> dict:
    """{'forward': [ms per layer], 'backward': [...], 'forward_pass': ms, ...}."""
    n = len(net.layers)
    fwd = np.zeros(n)
    bwd = np.zeros(n)
    fwd_pass = bwd_pass = 0.0
    net.forward()                      # warm-up (allocations, first reshape)
    net.forward()
    if backward:
        net.backward()
    for _ in range(iterations):
        net._begin_call()
        try:
            t_pass = time.perf_counter()
            for i in range(n):
                t = time.perf_counter()
                net._forward(i, i)
                mx.nd.waitall()
                fwd[i] += time.perf_counter() - t
            fwd_pass += time.perf_counter() - t_pass
            if backward:
                t_pass = time.perf_counter()
                for i in range(n - 1, -1, -1):
                    t = time.perf_counter()
                    net._backward(i, i)
                    mx.nd.waitall()
                    bwd[i] += time.perf_counter() - t
                bwd_pass += time.perf_counter() - t_pass
        finally:
            net._end_call()
    k = 1000.0 / iterations
    return {"forward": fwd * k, "backward": bwd * k, "forward_pass": fwd_pass * k,
            "backward_pass": bwd_pass * k}


def run(args) -> int:
    import caffe_compat as caffe
    model = caffe_tool_model(args, "time")
    use_device(args.gpu)
    net = caffe.Net(model, args.phase, weights=args.weights, stages=args.stage or None,
                    level=args.level)
    print(f"Testing for {args.iterations} iterations.")
    t0 = time.perf_counter()
    r = time_layers(net, args.iterations, backward=not args.forward_only)
    total = (time.perf_counter() - t0) * 1000.0
    print("Average time per layer: ")
    for name, f, b in zip(net._layer_names, r["forward"], r["backward"]):
        print(f"{name:>20s}\tforward: {f:.5g} ms.")
        if not args.forward_only:
            print(f"{name:>20s}\tbackward: {b:.5g} ms.")
    print(f"Average Forward pass: {r['forward_pass']:.5g} ms.")
    if not args.forward_only:
        print(f"Average Backward pass: {r['backward_pass']:.5g} ms.")
        print(f"Average Forward-Backward: {r['forward_pass'] + r['backward_pass']:.5g} ms.")
    print(f"Total Time: {total:.5g} ms.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("time", help="per-layer forward/backward timing (caffe time)")
    add_caffe_tool_arguments(p, "optional weights", model_help="net prototxt",
                             phase_default=0)     # TRAIN, Caffe's default
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--forward-only", action="store_true")
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.set_defaults(func=run)
