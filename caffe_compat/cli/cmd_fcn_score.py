"""``caffe-compat fcn-score --model voc-fcn8s --weights W --voc-dir D
[--split seg11valid] [--save-dir DIR] [--per-class]``: score a FCN as score.py does.

Builds the model's val net (caffe-compat's Python data layer over the split, the
unnormalised loss) or takes ``--prototxt`` (a val/test prototxt with its data layer;
the original ``module: "voc_layers"`` names work too), loads the weights, forwards
every image of the split and prints score.py's numbers: mean loss, overall accuracy,
mean accuracy, mean IU and frequency-weighted IU (SIFT Flow: for both heads).
``--save-dir`` writes each prediction as ``<id>.png`` (VOC palette).
"""
from __future__ import annotations

import argparse
import os
import tempfile

from caffe_compat.cli.netargs import (WEIGHTS_REQUIRED, ModelOptions, add_model_arguments,
                                      chosen_net, use_device)
from caffe_compat.errors import CaffeCompatError

NET = ModelOptions("fcn-score", "voc-fcn8s, ... (the val net is built for it)",
                   prototxt_help="a val prototxt with its data layer (instead of --model)",
                   weights_help=".caffemodel to score", weights=WEIGHTS_REQUIRED)

DIR_OPTIONS = {"voc_dir": "--voc-dir", "context_dir": "--context-dir",
               "nyud_dir": "--nyud-dir", "siftflow_dir": "--siftflow-dir"}


def _val_prototxt(args, name: str, folder: str) -> tuple[str, tuple, str]:
    """(prototxt path, (score, label) pairs, split) for FCN ``name`` and the options."""
    from caffe_compat.recipes.fcn import nets
    from caffe_compat.recipes.fcn.solve import absolute_dirs
    try:
        model = nets.get_model(name)
    except ValueError as exc:
        raise CaffeCompatError(f"fcn-score: {exc}") from None
    dirs = {}
    for key in model.dataset_dirs:
        if key == "sbdd_dir":
            dirs[key] = None             # score on VOC's own annotations
            continue
        value = getattr(args, key)
        if not value:
            raise CaffeCompatError(f"fcn-score: {model.name} needs {DIR_OPTIONS[key]}")
        if not os.path.isdir(value):
            raise FileNotFoundError(2, "No such directory", value)
        dirs[key] = value
    split = args.split or model.splits[1]
    param = nets.build(model.name, split, module=nets.LAYERS_MODULE, **absolute_dirs(dirs))
    path = os.path.join(folder, "val.prototxt")
    with open(path, "w") as f:
        f.write(str(param))
    return path, model.scores, split


def run(args) -> int:
    import caffe_compat as caffe
    from caffe_compat.formats.prototxt import read_net
    from caffe_compat.recipes.fcn import install_layer_modules, score
    from caffe_compat.recipes.fcn.layers import data_layer_ids
    choice = chosen_net(args, NET)
    use_device(args.gpu)
    with tempfile.TemporaryDirectory() as tmp:
        if choice.prototxt:
            install_layer_modules()
            prototxt, split = choice.prototxt, os.path.basename(choice.prototxt)
            blobs = ((args.blob or "score", args.label or "label"),)
        else:
            prototxt, blobs, split = _val_prototxt(args, choice.model, tmp)
            if args.blob:
                blobs = ((args.blob, args.label or "label"),)
        data_layers = [l for l in read_net(prototxt).param.layer if l.type == "Python"]
        if not data_layers:
            raise CaffeCompatError(f"fcn-score: {prototxt} has no Python data layer")
        try:
            ids = data_layer_ids(data_layers[0])
        except ValueError as exc:
            raise CaffeCompatError(f"fcn-score: {exc}") from None
        net = caffe.Net(prototxt, choice.weights, caffe.TEST)
        label = f"{choice.model or split} {args.split or ''}".strip()
        for layer, gt in blobs:
            if layer not in net.blobs or gt not in net.blobs:
                raise CaffeCompatError(f"fcn-score: the net has no blob {layer!r} or {gt!r}")
            save = os.path.join(args.save_dir, layer) if args.save_dir and len(blobs) > 1 \
                else args.save_dir
            hist, loss = score.compute_hist(net, save, ids, layer, gt)
            metrics = score.segmentation_metrics(hist)
            where = label if len(blobs) == 1 else f"{label} {layer}"
            for line in score.report_lines(where, loss, metrics):
                print(line)
            if args.per_class:
                print(f"per-class IU: {metrics.per_class_iu.tolist()}")
                print(f"per-class accuracy: {metrics.per_class_acc.tolist()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fcn-score", help="mean IU etc. of a FCN on a split (score.py)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, NET)
    for key, option in DIR_OPTIONS.items():
        p.add_argument(option, dest=key, metavar="DIR")
    p.add_argument("--split", help="split to score (default: the model's val split, "
                                   "seg11valid for VOC)")
    p.add_argument("--blob", help="score blob (default: the model's)")
    p.add_argument("--label", help="label blob (default: label)")
    p.add_argument("--save-dir", help="write the predictions as <id>.png here")
    p.add_argument("--per-class", action="store_true", help="also print per-class IU/accuracy")
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.set_defaults(func=run)
