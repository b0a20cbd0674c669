"""``caffe-compat heatmap IMG (--model M | --prototxt P --weights W) [--class K]
-o OUT.png``: where in the image a classifier sees a class.

The classifier is made fully convolutional (Caffe's net_surgery example, done
automatically for any deploy prototxt: ``fc6`` -> ``fc6-conv`` ...), run over the whole
image (its own size, scaled up to at least the net's input, or ``--short-side N``),
and the class's map (Softmax probabilities, or ``--blob``) is upsampled to the image
and drawn over it in jet colours. Without ``--class`` the class with the highest value
anywhere is drawn. ``--save-net DIR`` also writes the converted prototxt and weights.
"""
from __future__ import annotations

import argparse
import os

from caffe_compat.cli.netargs import add_model_arguments, net_source_from_args, net_source_options

NET = net_source_options("heatmap")


def run(args) -> int:
    from caffe_compat.recipes.localize.heatmap import class_heatmap
    from caffe_compat.recipes.localize.surgery import fully_convolutional
    from caffe_compat.recipes.visualize.render import save_png
    from caffe_compat.recipes.visualize.source import load_image
    load_image(args.image)                      # a bad image fails before the net loads
    source = net_source_from_args(args, NET)
    fcn = fully_convolutional(source)
    if args.save_net:
        os.makedirs(args.save_net, exist_ok=True)
        proto = os.path.join(args.save_net, "full_conv.prototxt")
        fcn.save(proto, os.path.join(args.save_net, "full_conv.caffemodel"))
        print(f"fully convolutional net: {proto} (+ full_conv.caffemodel)")
    hm = class_heatmap(source, args.image, class_index=args.class_index, blob=args.blob,
                       short_side=args.short_side, fcn=fcn)
    save_png(args.output, hm.picture(args.alpha))
    k = hm.class_index
    cells = "x".join(str(d) for d in hm.scores.shape[1:])
    label = f" ({hm.label})" if source.labels else ""
    print(f"{args.image}: {hm.blob} class {k}{label} on a {cells} map, "
          f"max {hm.scores[k].max():.4g} -> {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("heatmap", help="class-score map of a fully convolutional classifier "
                                       "over an image",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMG", help="image file")
    add_model_arguments(p, NET)
    p.add_argument("--class", dest="class_index", type=int, metavar="K",
                   help="class to draw (default: the highest-scoring one anywhere)")
    p.add_argument("--blob", help="map to draw (default: the output Softmax, else the scores)")
    p.add_argument("--short-side", type=int, metavar="N",
                   help="resize the image so its shorter side is N pixels")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the map (default 0.5)")
    p.add_argument("--save-net", metavar="DIR",
                   help="also write the fully convolutional prototxt + caffemodel to DIR")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="picture to write")
    p.set_defaults(func=run)
