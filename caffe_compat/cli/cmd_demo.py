"""``caffe-compat demo`` (what ``make demo`` runs): each recipe's demo, one after another.

    caffe-compat demo                      # every stage, outputs under ./demo-out/
    caffe-compat demo --only deepdream     # one stage
    caffe-compat demo --quick              # smaller pictures, fewer steps (the tests use it)

Works offline: a stage whose model cannot be downloaded says so in one line and uses
a small model shipped with caffe-compat (the R-CNN and FCN stages run their shipped
shapes models first in any case and print ``rcnn: mAP@0.5 X`` / ``fcn: mean IU X``). A recipe adds its demo by appending a
:class:`Stage` to :data:`STAGES`; its function takes a :class:`DemoContext` and returns
the files it wrote (under ``ctx.out_dir``).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

QUICK_ENV = "CAFFE_COMPAT_DEMO_QUICK"


@dataclass
class DemoContext:
    """What a stage gets: where to write, whether to be quick, how to talk."""
    out_dir: Path
    quick: bool

    def log(self, message: str) -> None:
        print(message, flush=True)


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[DemoContext], list]


def _deepdream(ctx: DemoContext) -> list:
    from caffe_compat.recipes.deepdream.demo import run_demo
    return run_demo(ctx.out_dir, quick=ctx.quick, log=ctx.log)


def _rcnn(ctx: DemoContext) -> list:
    from caffe_compat.recipes.rcnn.demo import demo_stage
    return demo_stage(str(ctx.out_dir), quick=ctx.quick, log=ctx.log)


def _fcn(ctx: DemoContext) -> list:
    from caffe_compat.recipes.fcn.demo import run_demo
    return run_demo(ctx.out_dir, quick=ctx.quick, log=ctx.log)


def _visualize(ctx: DemoContext) -> list:
    from caffe_compat.recipes.visualize.demo import run_demo
    return run_demo(ctx.out_dir, quick=ctx.quick, log=ctx.log)


def _localize(ctx: DemoContext) -> list:
    from caffe_compat.recipes.localize.demo import run_demo
    return run_demo(ctx.out_dir, quick=ctx.quick, log=ctx.log)


#: The demo stages in the order they run (one per recipe).
STAGES: list[Stage] = [
    Stage("deepdream", "Google's DeepDream notebook on the sample picture (bvlc_googlenet; "
                       "the embedded model offline)", _deepdream),
    Stage("rcnn", "R-CNN detection: the shipped shapes R-CNN on the bundled test scenes, "
                  "then bvlc_reference_rcnn_ilsvrc13 on the sample picture (when online)", _rcnn),
    Stage("fcn", "FCN segmentation: the shipped shapes FCN-8s on the bundled test scenes, "
                 "then voc-fcn8s on the sample picture (when online)", _fcn),
    Stage("visualize", "saliency and guided backprop on the sample picture", _visualize),
    Stage("localize", "FC->conv class heat map on the sample picture", _localize),
]


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run every recipe's demo (what `make demo` runs)",
                              description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--out", default="demo-out", help="output folder (default ./demo-out)")
    p.add_argument("--only", action="append", metavar="STAGE",
                   help="run only this stage (repeatable); see --list")
    p.add_argument("--list", action="store_true", help="list the stages and exit")
    p.add_argument("--quick", action="store_true",
                   help=f"small and fast (also when ${QUICK_ENV}=1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from caffe_compat.errors import CaffeCompatError
    if args.list:
        for stage in STAGES:
            print(f"{stage.name:12s} {stage.description}")
        return 0
    known = {s.name: s for s in STAGES}
    wanted = args.only or list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise CaffeCompatError(f"unknown demo stage(s) {', '.join(unknown)}; stages: "
                               f"{', '.join(known)}")
    quick = args.quick or os.environ.get(QUICK_ENV, "") not in ("", "0")
    root = Path(args.out).resolve()
    started = time.time()
    for i, name in enumerate(wanted, 1):
        stage = known[name]
        print(f"== [{i}/{len(wanted)}] {stage.name}: {stage.description}", flush=True)
        ctx = DemoContext(root / stage.name, quick)
        t0 = time.time()
        files = stage.run(ctx)
        print(f"== {stage.name} done in {time.time() - t0:.0f}s: {len(files)} file(s) in "
              f"{ctx.out_dir}", flush=True)
    print(f"demo finished in {time.time() - started:.0f}s; outputs are in {root}", file=sys.stdout)
    return 0
