"""Training speed on CPU: images per second for CaffeNet- and GoogLeNet-sized SGD
iterations, printed beside ``caffe-compat time``'s forward/backward split.

Each net is the zoo's deploy prototxt with a label input and SoftmaxWithLoss added
(random data, random weights from the prototxt's fillers); the solver is plain SGD with
momentum. Median seconds per iteration over N iterations after warm-up.

    python benchmarks/train.py [--batch 10] [--iters 5] [--nets bvlc_reference_caffenet,bvlc_googlenet]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--batch", type=int, default=10)
parser.add_argument("--iters", type=int, default=5)
parser.add_argument("--nets", default="bvlc_reference_caffenet,bvlc_googlenet")
args = parser.parse_args()

import caffe_compat as caffe  # noqa: E402
from caffe_compat.cli.cmd_time import time_layers  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES = {"bvlc_reference_caffenet": ("fc8", 227), "bvlc_googlenet": ("loss3/classifier", 224)}


def train_prototxt(name: str, folder: str) -> str:
    scores, size = SCORES[name]
    text = open(os.path.join(REPO, "prototxt", name, "deploy.prototxt")).read()
    text = text.replace("dim: 10", f"dim: {args.batch}", 1)
    text += (f'\nlayer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: {args.batch} }} }} }}\n'
             f'layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "{scores}" bottom: "label" top: "loss" }}\n')
    path = os.path.join(folder, f"{name}_train.prototxt")
    with open(path, "w") as f:
        f.write(text)
    return path


def main() -> None:
    folder = tempfile.mkdtemp()
    print(f"batch {args.batch}, {args.iters} timed iterations after 1 warm-up, CPU")
    print(f"{'net':26s} {'s/iter':>8s} {'img/s':>8s} {'fwd ms':>9s} {'bwd ms':>9s}  (caffe-compat time split)")
    for name in args.nets.split(","):
        net_path = train_prototxt(name, folder)
        solver_path = os.path.join(folder, f"{name}_solver.prototxt")
        with open(solver_path, "w") as f:
            f.write(f'net: "{net_path}"\nbase_lr: 0.001\nmomentum: 0.9\nweight_decay: 0.0005\n'
                    f'lr_policy: "fixed"\nmax_iter: 1000\ndisplay: 0\nsnapshot_prefix: "{folder}/s"\n'
                    'random_seed: 0\n')
        caffe.set_random_seed(0)
        solver = caffe.get_solver(solver_path)
        size = SCORES[name][1]
        rng = np.random.RandomState(0)
        solver.net.blobs["data"].reshape(args.batch, 3, size, size)
        solver.net.blobs["data"].data[...] = rng.uniform(-100, 100, (args.batch, 3, size, size))
        solver.net.blobs["label"].data[...] = rng.randint(0, 1000, args.batch)
        solver.step(1)
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            solver.step(1)
            times.append(time.perf_counter() - t)
        per_iter = float(np.median(times))
        split = time_layers(solver.net, max(1, args.iters // 2))
        print(f"{name:26s} {per_iter:8.3f} {args.batch / per_iter:8.1f} "
              f"{split['forward_pass']:9.1f} {split['backward_pass']:9.1f}", flush=True)


if __name__ == "__main__":
    main()
