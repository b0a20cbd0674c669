"""``caffe-compat train``: Caffe's ``caffe train`` on MXNet.

    caffe-compat train --solver=S [--weights=a.caffemodel,b.caffemodel]
                       [--snapshot=X.solverstate] [--gpu=0,1|all] [--kvstore=dist_sync]

Logs in glog's format to stderr (Caffe's parse_log.py / plot_training_log.py and
``caffe-compat plot-log`` read them), a tqdm bar with loss and learning rate, and
Ctrl-C snapshots before exiting, as Caffe's SIGINT handling does.
"""
from __future__ import annotations

import argparse
import sys

from caffe_compat.cli.netargs import add_caffe_tool_arguments
from caffe_compat.errors import CaffeCompatError


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=total, unit="iter", dynamic_ncols=True, file=sys.stderr)

    def update(solver):
        rate, _ = solver.param.base_lr, None
        from caffe_compat.solvers.lr_policy import learning_rate
        rate, _ = learning_rate(solver.param, solver.iter, solver.current_step)
        bar.set_postfix(loss=f"{solver.smoothed_loss:.4g}", lr=f"{rate:.3g}")
        bar.update(1)
    return bar, update


def run(args) -> int:
    from caffe_compat.context import context_from_flag
    from caffe_compat.solvers.gradient_sync import DeviceReplicas, KVStoreGradientSync
    from caffe_compat.solvers.solver import Solver, log_like_caffe
    if not args.solver:
        raise CaffeCompatError("train: --solver=SOLVER.prototxt is required")
    if args.weights and args.snapshot:
        raise CaffeCompatError("train: give --snapshot or --weights, not both (as Caffe)")
    log_like_caffe()
    contexts = context_from_flag(args.gpu)

    def make_solver():
        solver = Solver(args.solver)
        for w in (args.weights.split(",") if args.weights else []):
            solver.net.copy_from(w)
        return solver

    if len(contexts) > 1:
        group = DeviceReplicas(make_solver, contexts)
        solver = group.lead
    else:
        group = None
        from caffe_compat.context import use_context
        use_context(contexts[0])
        solver = make_solver()
    if args.kvstore:
        sync = KVStoreGradientSync(args.kvstore)
        solver.gradient_sync = sync
        sync.broadcast_params(solver)
    if args.snapshot:
        for s in (group.solvers if group else [solver]):
            s.restore(args.snapshot)
    solver.install_sigint_snapshot()
    bar, update = _progress_bar(solver.param.max_iter - solver.iter, args.progress)
    try:
        if group is not None:
            group.solve()
        else:
            solver.solve_with_progress(update) if update else solver.solve()
    finally:
        if bar is not None:
            bar.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune from a solver.prototxt (caffe train)")
    p.add_argument("--solver", required=False, help="solver.prototxt")
    add_caffe_tool_arguments(p, "comma-separated .caffemodel files to initialise from")
    p.add_argument("--snapshot", help=".solverstate to resume from")
    p.add_argument("--gpu", help="GPU ids: 0 | 0,1 | all (default: CPU)")
    p.add_argument("--kvstore", help="MXNet kvstore for several machines, e.g. dist_sync "
                                     "(launch with DMLC_ROLE etc., see README)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                   help="show a progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=run)
