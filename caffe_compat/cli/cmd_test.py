"""``caffe-compat test --model=M --weights=W --iterations=N``: Caffe's ``caffe test``.

Runs the TEST-phase net N times and reports each output, batch by batch and averaged
(loss outputs also as ``(* weight = loss)``), exactly as Caffe's tool prints them.
"""
from __future__ import annotations

import argparse

import numpy as np

from caffe_compat.cli.netargs import add_caffe_tool_arguments, caffe_tool_model, use_device


def run(args) -> int:
    import caffe_compat as caffe
    model = caffe_tool_model(args, "test")
    use_device(args.gpu)
    net = caffe.Net(model, caffe.TEST, weights=args.weights,
                    stages=args.stage or None, level=args.level)
    print(f"Running for {args.iterations} iterations.")
    scores: list[float] = []
    names: list[str] = []
    loss = 0.0
    weights = net.blob_loss_weights
    for i in range(args.iterations):
        outs = net.forward()
        loss += sum(w * float(np.sum(net.blobs[b].data)) for b, w in weights.items() if w)
        idx = 0
        for name in net.outputs:
            for v in np.ravel(outs[name]):
                if i == 0:
                    scores.append(float(v))
                    names.append(name)
                else:
                    scores[idx] += float(v)
                idx += 1
                print(f"Batch {i}, {name} = {float(v):.6g}")
    loss /= max(args.iterations, 1)
    print(f"Loss: {loss:.6g}")
    for name, total in zip(names, scores):
        mean = total / args.iterations
        w = weights.get(name, 0.0)
        extra = f" (* {w:g} = {w * mean:.6g} loss)" if w else ""
        print(f"{name} = {mean:.6g}{extra}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="score a model: average each output over N batches (caffe test)")
    add_caffe_tool_arguments(p, ".caffemodel or .caffemodel.h5",
                             model_help="net prototxt (TEST phase is used)")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.set_defaults(func=run)
