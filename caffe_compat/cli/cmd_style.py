"""``caffe-compat style CONTENT STYLE -o OUT.png [--model vgg19 | --prototxt P --weights W]
[--content-weight 1] [--style-weight 1e4] [--tv-weight 1e-3] [--size 512] [--iters 500]
[--scales 1] [--optimizer lbfgs|adam]``: neural style transfer (Gatys et al. 2015).

Content layer conv4_2, style layers conv1_1, conv2_1, conv3_1, conv4_1, conv5_1
(``--content-layers`` / ``--style-layers`` pick others, e.g. for a net with other layer
names). Losses as the paper: content 0.5 |F - P|^2; style sum |G - A|^2 / (4 N^2 M^2)
per layer, 1/5 each; squared total variation. L-BFGS-B (default) or Adam on the pixels;
``--scales S`` optimises at size/2^(S-1) ... size, coarse to fine, --iters at each.
"""
from __future__ import annotations

import argparse
import os
import sys

from caffe_compat.cli.netargs import (MeanOption, ModelOptions, add_model_arguments, chosen_net,
                                      positive_int, use_device)

NET = ModelOptions("style", "zoo model, downloaded on first use; vgg16 works too",
                   default_model="vgg19",
                   mean=MeanOption("mean to subtract (default: the zoo model's; VGG's for "
                                   "--prototxt)"))


def _layers(text: str) -> dict:
    """'conv1_1,conv2_1' (equal weights summing to 1) or 'conv1_1:0.5,conv2_1:0.5'."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one layer")
    out = {}
    for item in items:
        name, _, weight = item.partition(":")
        try:
            out[name] = float(weight) if weight else 1.0 / len(items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad layer weight in {item!r}") from None
    return out



def load_style_net(args):
    from caffe_compat.recipes.style import CONTENT_LAYERS, STYLE_LAYERS, VGG_MEAN, NeuralStyle
    weights = dict(content_weight=args.content_weight, style_weight=args.style_weight,
                   tv_weight=args.tv_weight)
    layers = dict(content_layers=args.content_layers or CONTENT_LAYERS,
                  style_layers=args.style_layers or STYLE_LAYERS, pool=args.pool)
    choice = chosen_net(args, NET)
    if choice.prototxt:
        return NeuralStyle.from_files(choice.prototxt, choice.weights, mean=args.mean or VGG_MEAN,
                                      **layers, **weights)
    return NeuralStyle.from_zoo(choice.model, progress=args.progress, mean=args.mean,
                                **layers, **weights)


def run(args) -> int:
    from tqdm import tqdm

    from caffe_compat.recipes.style import load_image, save_image
    for path in (args.content, args.style):
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file or directory", path)
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "No such directory", folder)
    if args.gpu is not None:
        use_device(args.gpu)
    content, style = load_image(args.content), load_image(args.style)
    ns = load_style_net(args)
    bar = tqdm(total=args.iters * args.scales, unit="iter", file=sys.stderr, dynamic_ncols=True,
               disable=None if args.progress else True)

    def progress(level: int, i: int, loss: float) -> None:
        bar.set_postfix_str(f"scale {level + 1}/{args.scales} loss {loss:.4g}")
        bar.update(level * args.iters + i - bar.n)

    try:
        out = ns.transfer(content, style, size=args.size, iters=args.iters, scales=args.scales,
                          optimizer=args.optimizer, lr=args.lr, init=args.init,
                          style_scale=args.style_scale, seed=args.seed, progress=progress)
    finally:
        bar.close()
    save_image(out, args.output)
    print(f"wrote {args.output} ({out.shape[1]} x {out.shape[0]})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from caffe_compat.recipes.style.transfer import ADAM_LR, DEFAULTS
    p = sub.add_parser("style", help="neural style transfer (Gatys et al.) with VGG",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("content", help="content image")
    p.add_argument("style", help="style image")
    p.add_argument("-o", "--output", required=True, help="output image (e.g. OUT.png)")
    add_model_arguments(p, NET)
    p.add_argument("--content-weight", type=float, default=DEFAULTS["content_weight"])
    p.add_argument("--style-weight", type=float, default=DEFAULTS["style_weight"])
    p.add_argument("--tv-weight", type=float, default=DEFAULTS["tv_weight"])
    p.add_argument("--content-layers", type=_layers, metavar="L[:W],...",
                   help="default conv4_2")
    p.add_argument("--style-layers", type=_layers, metavar="L[:W],...",
                   help="default conv1_1,conv2_1,conv3_1,conv4_1,conv5_1 (0.2 each)")
    p.add_argument("--size", type=positive_int, default=512,
                   help="long edge of the result in pixels (default 512)")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="style image size relative to the result (default 1)")
    p.add_argument("--iters", type=positive_int, default=500, help="iterations per scale")
    p.add_argument("--scales", type=positive_int, default=1,
                   help="coarse-to-fine levels, each twice the size of the previous")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--lr", type=float, default=ADAM_LR, help="Adam's step size (pixels)")
    p.add_argument("--init", choices=("content", "noise"), default="content")
    p.add_argument("--pool", choices=("net", "max", "avg"), default="net",
                   help="pooling: the net's own, or all max / all average (Gatys et al.)")
    p.add_argument("--seed", type=int, default=0, help="seed for --init noise")
    p.add_argument("--gpu", help="GPU id (default: CPU)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   default=sys.stderr.isatty(),
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=run)
