"""``caffe-compat plot-log LOG -o curve.png``: loss/accuracy curves from a training log.

Reads glog-format logs written by ``caffe-compat train`` or by Caffe itself (the lines
Caffe's ``tools/extra/parse_log.py`` reads: ``Iteration N``, ``Train net output #k:
name = v``, ``Test net output #k: name = v``, ``lr = x``) and draws train loss and
every test output against iterations, like ``plot_training_log.py``.
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict

from caffe_compat.errors import CaffeCompatError

_ITER = re.compile(r"Iteration (\d+)")
_TRAIN = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+|nan|inf)")
_TEST = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+|nan|inf)")
_LR = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def parse_log(path: str) -> dict:
    """{'train': {name: [(iter, value)]}, 'test': {...}, 'lr': [(iter, lr)]}."""
    train, test, lr = defaultdict(list), defaultdict(list), []
    it = None
    with open(path, errors="replace") as f:
        for line in f:
            m = _ITER.search(line)
            if m:
                it = int(m.group(1))
            if it is None:
                continue
            m = _TRAIN.search(line)
            if m:
                train[m.group(2)].append((it, float(m.group(3))))
                continue
            m = _TEST.search(line)
            if m:
                test[m.group(2)].append((it, float(m.group(3))))
                continue
            m = _LR.search(line)
            if m and "Iteration" in line:
                lr.append((it, float(m.group(1))))
    return {"train": dict(train), "test": dict(test), "lr": lr}


def run(args) -> int:
    curves = parse_log(args.log)
    if not curves["train"] and not curves["test"]:
        raise CaffeCompatError(f"{args.log}: no 'Train net output' or 'Test net output' lines")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, style in (("train", "-"), ("test", "o-")):
        for name, points in curves[kind].items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, style, label=f"{kind} {name}", markersize=3)
    ax.set_xlabel("iteration")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-log", help="draw loss/accuracy curves from a training log")
    p.add_argument("log")
    p.add_argument("-o", "--output", default="curve.png")
    p.set_defaults(func=run)
