"""``caffe-compat finetune --data DIR_OR_LIST -o OUTDIR [--model NAME | --prototxt P
--weights W] [--mode linear|top|all] [--layer L] [--epochs N] [--batch-size B] [--lr X]``:
transfer a pretrained classifier to new classes.

``--data``: a folder with one sub-folder per class, or a Caffe list file (``path label``
lines; ``--labels`` names the classes). A stratified 20% (``--val-fraction``) is held out
for validation unless ``--val`` gives the validation data. Modes:

  linear  softmax regression (L-BFGS) on the features of --layer (default: the blob
          the classifier reads, e.g. fc7); --epochs = L-BFGS iterations (default 100)
  top     Caffe's SGD solver trains --layer (default: the last layer below the
          classifier, e.g. fc7) and everything above it; lower layers get lr_mult 0
  all     the solver trains every layer (Caffe's flickr-style example)

The classifier (last InnerProduct, e.g. fc8) is replaced by fc8_<task> with one output
per class (lr_mult 10/20). Images get Caffe's ImageData preprocessing with the model's
mean. OUTDIR receives deploy.prototxt, weights.caffemodel, labels.txt, the train/val
lists and finetune.json; ``caffe.Classifier(OUTDIR/deploy.prototxt,
OUTDIR/weights.caffemodel, ...)`` and ``caffe-compat info`` load them.
"""
from __future__ import annotations

import argparse
import sys

from caffe_compat.cli.netargs import (MeanOption, ModelOptions, add_model_arguments, chosen_net,
                                      parse_mean_or_grey, positive_int, use_device)

NET = ModelOptions(
    "finetune", "zoo model to start from, downloaded on first use",
    default_model="bvlc_reference_caffenet",
    prototxt_help="deploy prototxt to start from (instead of --model)",
    mean=MeanOption("mean to subtract (default: the zoo model's; 104,117,123 for --prototxt)",
                    type=parse_mean_or_grey))


def load_source(args):
    from caffe_compat.recipes.finetune import SourceModel
    choice = chosen_net(args, NET)
    if choice.prototxt:
        return SourceModel.from_files(choice.prototxt, choice.weights, mean=args.mean)
    source = SourceModel.from_zoo(choice.model, progress=args.progress)
    if args.mean:
        source.mean = tuple(args.mean)
    return source


def run(args) -> int:
    from tqdm import tqdm

    from caffe_compat.recipes.finetune import finetune
    use_device(args.gpu)
    source = load_source(args)
    bar = {"bar": None}

    def progress(done: int, total: int) -> None:
        if not args.progress:
            return
        if bar["bar"] is None:
            bar["bar"] = tqdm(total=total, unit="iter", file=sys.stderr, dynamic_ncols=True,
                              leave=False)
        bar["bar"].update(done - bar["bar"].n)

    def log(message: str) -> None:
        if bar["bar"] is not None:
            bar["bar"].write(message, file=sys.stdout)
        else:
            print(message, flush=True)

    from caffe_compat.recipes.finetune.dataset import read_dataset
    data = read_dataset(args.data, root_folder=args.root_folder, labels=args.labels)
    try:
        result = finetune(source, data, args.output, mode=args.mode, layer=args.layer,
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          momentum=args.momentum, weight_decay=args.weight_decay, l2=args.l2,
                          val=args.val, val_fraction=args.val_fraction, task=args.task,
                          resize=args.resize, seed=args.seed, log=log, progress=progress)
    finally:
        if bar["bar"] is not None:
            bar["bar"].close()
    mean = ", ".join(f"{m:g}" for m in result.preprocess.mean)
    print(f"use it: caffe.Classifier('{result.deploy}', '{result.weights}', "
          f"image_dims={tuple(result.preprocess.resize)}, mean=np.array([{mean}]), "
          "raw_scale=255, channel_swap=(2, 1, 0))  "
          "# or caffe_compat.recipes.finetune.load_classifier(OUTDIR)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="transfer learning: linear classifier on features, "
                                        "fine-tune the top layers, or all layers",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, NET)
    p.add_argument("--data", required=True, metavar="DIR_OR_LIST",
                   help="folder with one sub-folder per class, or a Caffe list file")
    p.add_argument("--labels", help="class names, one per line (for a list file)")
    p.add_argument("--root-folder", help="prefix of relative paths in a list file "
                                         "(Caffe's root_folder; default: the list's folder)")
    p.add_argument("--val", metavar="DIR_OR_LIST",
                   help="validation data (default: a stratified split of --data)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of each class held out for validation (default 0.2)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--mode", choices=("linear", "top", "all"), default="top",
                   help="linear | top | all (default top)")
    p.add_argument("--layer", help="linear: feature layer; top: first layer that learns")
    p.add_argument("--epochs", type=positive_int,
                   help="passes over the data (top/all, default 10) or L-BFGS iterations "
                        "(linear, default 100)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    p.add_argument("--lr", type=float, help="solver base_lr (default 0.001; the new "
                                            "classifier learns 10x/20x faster)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0005)
    p.add_argument("--l2", type=float, default=1e-3,
                   help="linear mode: L2 penalty on the standardised-feature weights")
    p.add_argument("--task", help="name of the task (new classifier fc8_<task>; default: "
                                  "the data folder's name)")
    p.add_argument("--resize", type=positive_int,
                   help="resize images to RESIZE x RESIZE before the centre/random crop "
                        "(default 256 for 200..256-pixel inputs, else the input size)")
    p.add_argument("--seed", type=int, default=0, help="split, shuffle and filler seed")
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   default=sys.stderr.isatty(),
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=run)
