"""``caffe-compat segment IMG... [--model voc-fcn8s | --prototxt P --weights W]
[-o OUT.png | -o OUTDIR] [--overlay]``: FCN semantic segmentation.

Every image goes through one loaded net (fcn.berkeleyvision.org's infer.py: BGR, mean
subtracted, any size, argmax over classes). Each result is an indexed PNG whose pixel
values are the class indices (VOC palette for viewing); ``--overlay`` also writes the
image blended with the class colours. Output names: ``-o OUT.png`` for a single image;
otherwise ``OUTDIR/<image name>.png`` (default OUTDIR: the current directory) and
``<image name>_overlay.png``.
"""
from __future__ import annotations

import argparse
import os
import sys

from caffe_compat.cli.netargs import MeanOption, ModelOptions, add_model_arguments, chosen_net
from caffe_compat.errors import CaffeCompatError

NET = ModelOptions("segment", "zoo model, downloaded on first use", default_model="voc-fcn8s",
                   prototxt_help="deploy prototxt of a FCN (instead of --model)",
                   mean=MeanOption("BGR mean to subtract (default: the model's; FCN's VOC mean)"))


def output_paths(images: list[str], out: str | None, overlay: bool) -> list[tuple]:
    """(segmentation path, overlay path or None) for each image."""
    single_file = out is not None and out.lower().endswith(".png") and not os.path.isdir(out)
    if single_file and len(images) != 1:
        raise CaffeCompatError(f"segment: -o {out} names one file but {len(images)} images "
                               "were given; pass a folder")
    paths = []
    for image in images:
        if single_file:
            seg = out
        else:
            stem = os.path.splitext(os.path.basename(image))[0]
            seg = os.path.join(out or ".", stem + ".png")
        over = os.path.splitext(seg)[0] + "_overlay.png" if overlay else None
        paths.append((seg, over))
    targets = [p for pair in paths for p in pair if p]
    if len(set(targets)) != len(targets):
        raise CaffeCompatError("segment: two images would write the same output file "
                               "(same file name in different folders); segment them separately")
    clash = [img for img, pair in zip(images, paths)
             if os.path.abspath(img) in {os.path.abspath(p) for p in pair if p}]
    if clash:
        raise CaffeCompatError(f"segment: the output would overwrite the input {clash[0]}; "
                               "pass -o OUTDIR")
    return paths


def load_segmenter(args):
    from caffe_compat.recipes.fcn.infer import FCN_MEAN, Segmenter
    ctx = None
    if args.gpu is not None:
        from caffe_compat.context import context_from_flag
        ctx = context_from_flag(args.gpu)[0]
    kwargs = {"output": args.blob}
    if args.mean:
        kwargs["mean"] = args.mean
    choice = chosen_net(args, NET)
    if choice.prototxt:
        kwargs.setdefault("mean", FCN_MEAN)
        return Segmenter.from_files(choice.prototxt, choice.weights, ctx=ctx, **kwargs)
    return Segmenter.from_zoo(choice.model, ctx=ctx, **kwargs)


def run(args) -> int:
    from tqdm import tqdm
    for image in args.images:
        if not os.path.isfile(image):
            raise FileNotFoundError(2, "No such file or directory", image)
    paths = output_paths(args.images, args.output, args.overlay)
    segmenter = load_segmenter(args)
    bar = tqdm(list(zip(args.images, paths)), unit="img", file=sys.stderr,
               disable=None if args.progress else True)
    for image, (seg, over) in bar:
        bar.set_postfix_str(os.path.basename(image))
        try:
            segmenter.save(image, seg, overlay_path=over)
        except OSError as exc:
            if exc.filename:
                raise
            raise CaffeCompatError(f"segment: {image}: {exc}") from exc
        if not args.progress:
            print(f"{image} -> {seg}" + (f", {over}" if over else ""))
    return 0



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="FCN semantic segmentation of images (indexed PNGs)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMG", help="image files")
    add_model_arguments(p, NET)
    p.add_argument("-o", "--output", help="OUT.png (one image) or an output folder")
    p.add_argument("--overlay", action="store_true",
                   help="also write <name>_overlay.png: the image blended with the classes")
    p.add_argument("--blob", help="score blob (default: 'score', else the net's first output)")
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   default=sys.stderr.isatty(),
                   help="progress bar (default: when stderr is a terminal); without it each "
                        "output is printed")
    p.set_defaults(func=run)
