"""``caffe-compat fcn-train --model voc-fcn8s --voc-dir D [--sbdd-dir S] [--iters N]
[--snapshot-dir DIR] [--gpu ID]``: train a FCN as fcn.berkeleyvision.org's solve.py.

Writes the model's train/val prototxts (caffe-compat's Python data layers) and its
solver.prototxt (SGD, fixed lr, momentum 0.99, unnormalised loss) into ``--work-dir``;
initialises the net from the zoo's VGG-16 (AlexNet for voc-fcn-alexnet) by transplant,
or from ``--weights`` (e.g. the previous stage), or (shapes-fcn8s, the demo's model on
synthetic scenes) from its own fillers; makes the ``up*`` layers bilinear;
then alternates ``solver.step(--test-interval)`` and seg_tests (loss, overall
accuracy, mean accuracy, mean IU, fwavacc on the val split), and snapshots at the end.

VOC models train on SBDD's ``train`` split when ``--sbdd-dir`` is given (as the
original), else on VOC's ``ImageSets/Segmentation/train.txt``; they are scored on
``--val-split`` (default seg11valid). Other families take ``--context-dir``
(with --voc-dir), ``--nyud-dir`` or ``--siftflow-dir``.
"""
from __future__ import annotations

import argparse

from caffe_compat.cli.netargs import (WEIGHTS_OPTIONAL, ModelOptions, add_model_arguments,
                                      chosen_net, use_device)
from caffe_compat.errors import CaffeCompatError

NET = ModelOptions("fcn-train", "voc-fcn8s, voc-fcn32s, ..., siftflow-fcn8s", prototxt_help=None,
                   weights_help="initialise by copy_from these weights instead",
                   weights=WEIGHTS_OPTIONAL)

#: Command-line option -> the builders' keyword.
DIR_OPTIONS = {"voc_dir": "--voc-dir", "sbdd_dir": "--sbdd-dir", "context_dir": "--context-dir",
               "nyud_dir": "--nyud-dir", "siftflow_dir": "--siftflow-dir"}


def dataset_dirs(model, args) -> dict:
    """The builder keywords for ``model`` from the options (clear error when missing)."""
    import os
    dirs = {}
    for key in model.dataset_dirs:
        value = getattr(args, key)
        if key == "sbdd_dir":
            dirs[key] = value            # optional: None trains on VOC's train split
            continue
        if not value:
            raise CaffeCompatError(f"fcn-train: {model.name} needs {DIR_OPTIONS[key]}")
        dirs[key] = value
    for key, value in dirs.items():
        if value is not None and not os.path.isdir(value):
            raise FileNotFoundError(2, "No such directory", value)
    return dirs


def run(args) -> int:
    from caffe_compat.recipes.fcn import nets, solve
    choice = chosen_net(args, NET)
    try:
        model = nets.get_model(choice.model)
    except ValueError as exc:
        raise CaffeCompatError(f"fcn-train: {exc}") from None
    dirs = dataset_dirs(model, args)
    splits = (model.splits[0], args.val_split) if args.val_split else None
    use_device(args.gpu if args.gpu is not None else "-1")
    init = args.init or model.init
    solver = solve.solve(model.name, args.work_dir, iters=args.iters,
                         test_interval=args.test_interval, init=init, weights=choice.weights,
                         snapshot_dir=args.snapshot_dir, splits=splits,
                         save_format=args.save_format, **dirs)
    print(f"fcn-train: {solver.iter} iterations; snapshot in "
          f"{solver.param.snapshot_prefix}_iter_{solver.iter}.caffemodel")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fcn-train", help="train a FCN (fcn.berkeleyvision.org's solve.py)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, NET)
    for key, option in DIR_OPTIONS.items():
        p.add_argument(option, dest=key, metavar="DIR")
    p.add_argument("--val-split", help="split scored during training (default: the model's, "
                                       "seg11valid for VOC)")
    p.add_argument("--iters", type=int, default=100000, help="iterations (default 100000)")
    p.add_argument("--test-interval", type=int,
                   help="iterations between seg_tests (default 4000; 2000 NYUDv2/SIFT Flow)")
    p.add_argument("--init", help="zoo classifier to transplant from (default vgg16)")
    p.add_argument("--work-dir", default=".", help="where the prototxts go (default .)")
    p.add_argument("--snapshot-dir", help="where snapshots go (default WORK_DIR/snapshot)")
    p.add_argument("--save-format", help="folder pattern for the val predictions, "
                                         "formatted with the iteration, e.g. seg_{}")
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.set_defaults(func=run)
