"""``caffe-compat localize train|eval|predict``: a box-regression head on a classifier.

``train --voc-dir D (--model M | --prototxt P --weights W) -o OUTDIR``: swap the
classifier's score layer for an L2 box regressor (class-agnostic, or ``--per-class``:
four outputs per class, loss on the true class only), fine-tune it with Caffe's SGD
solver on the VOC folder's boxes (JPEGImages + Annotations/*.xml; the largest object of
each image) and write OUTDIR/{train,deploy,solver}.prototxt, localizer.caffemodel and
localizer.json.

``eval OUTDIR --voc-dir D [--split S]``: mean IoU and the fraction of images with
IoU >= 0.5, next to the mean-training-box baseline. ``predict OUTDIR IMG [--class C]``:
print the box (x0 y0 x1 y1, pixels).
"""
from __future__ import annotations

import argparse
import sys

from caffe_compat.cli.netargs import add_model_arguments, net_source_from_args, net_source_options

NET = net_source_options("localize train")


def run_train(args) -> int:
    from tqdm import tqdm
    from caffe_compat.recipes.localize.train import train_localizer
    source = net_source_from_args(args, NET)
    bar = tqdm(total=args.iters, unit="it", file=sys.stderr,
               disable=None if args.progress else True)

    def progress(i: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"loss {loss:.4g}")

    loc = train_localizer(source, args.voc_dir, args.output, split=args.split, iters=args.iters,
                          batch_size=args.batch_size, base_lr=args.lr,
                          per_class=args.per_class, freeze=args.freeze,
                          replace=args.replace, mirror=not args.no_mirror, cache=args.cache,
                          seed=args.seed, progress=progress)
    bar.close()
    losses = loc.log.losses
    print(f"trained {args.iters} iterations (loss {losses[0]:.4g} -> {losses[-1]:.4g}); "
          f"localizer in {args.output}")
    if args.eval_split is not None:
        split = None if args.eval_split == "all" else args.eval_split
        print(loc.evaluate(args.voc_dir, split).summary())
    return 0


def run_eval(args) -> int:
    from caffe_compat.recipes.localize.train import Localizer
    score = Localizer.load(args.folder).evaluate(args.voc_dir, args.split)
    print(score.summary())
    return 0


def run_predict(args) -> int:
    from caffe_compat.recipes.localize.train import Localizer
    box = Localizer.load(args.folder).predict(args.image, args.class_name)
    print(f"{args.image}: " + " ".join(f"{v:.1f}" for v in box))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("localize", help="train / evaluate a box-regression head on a classifier",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = actions.add_parser("train", help="fine-tune a localisation head on a VOC folder")
    add_model_arguments(t, NET)
    t.add_argument("--voc-dir", required=True, help="VOC-layout folder (JPEGImages, Annotations)")
    t.add_argument("--split", help="ImageSets/Main/<split>.txt to train on (default: all)")
    t.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder to write")
    t.add_argument("--iters", type=int, default=1000, help="SGD iterations (default 1000)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=0.001, help="base learning rate (default 0.001)")
    t.add_argument("--per-class", action="store_true",
                   help="one box per class, loss on the true class (default: class-agnostic)")
    t.add_argument("--freeze", metavar="LAYER",
                   help="lr_mult 0 for every layer up to and including LAYER")
    t.add_argument("--replace", metavar="LAYER",
                   help="score layer to replace (default: the InnerProduct under the Softmax)")
    t.add_argument("--no-mirror", action="store_true", help="no random horizontal flips")
    t.add_argument("--cache", action="store_true", help="keep preprocessed images in memory")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-split", metavar="S",
                   help="evaluate on ImageSets/Main/S.txt after training ('all': every image)")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   default=sys.stderr.isatty(), help="progress bar (default: on a terminal)")
    t.set_defaults(func=run_train)

    e = actions.add_parser("eval", help="mean IoU of a trained localiser on a VOC folder")
    e.add_argument("folder", metavar="OUTDIR", help="folder written by localize train")
    e.add_argument("--voc-dir", required=True)
    e.add_argument("--split", help="ImageSets/Main/<split>.txt (default: every annotation)")
    e.set_defaults(func=run_eval)

    r = actions.add_parser("predict", help="print the box of one image")
    r.add_argument("folder", metavar="OUTDIR", help="folder written by localize train")
    r.add_argument("image", metavar="IMG")
    r.add_argument("--class", dest="class_name", help="class name (per-class localisers)")
    r.set_defaults(func=run_predict)
