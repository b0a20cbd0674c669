"""``caffe-compat saliency IMG (--model M | --prototxt P --weights W) [--class K |
--layer L --unit U [--position Y,X]] [--method saliency|deconvnet|guided] -o OUT.png``:
what in the image drives a class score or one neuron.

The picture is the image as the net sees it (resized to the input) next to the map:
``saliency`` (Simonyan et al. 2014) shows max over colour channels of |d score / d
pixel| in gray; ``deconvnet`` (Zeiler & Fergus 2013) and ``guided`` (guided
backpropagation, Springenberg et al. 2015) show the signed image-space gradient in
colour, computed through the engine's backward with that method's ReLU rule. Without
``--class`` or ``--layer`` the predicted class is explained; ``--layer L --unit U``
projects channel U of L at its strongest position (or ``--position Y,X``).
"""
from __future__ import annotations

import argparse

from caffe_compat.cli.netargs import add_model_arguments, net_source_from_args, net_source_options
from caffe_compat.errors import CaffeCompatError

NET = net_source_options("saliency")


def _position(text: str) -> tuple:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad position {text!r}: use Y,X") from None
    return (y, x)


def run(args) -> int:
    from caffe_compat.recipes.visualize.render import save_png
    from caffe_compat.recipes.visualize.saliency import explain_image, explanation_picture
    if args.position is not None and args.layer is None:
        raise CaffeCompatError("saliency: --position needs --layer and --unit")
    source = net_source_from_args(args, NET)
    ex = explain_image(source, args.image, class_index=args.class_index, layer=args.layer,
                       unit=args.unit, position=args.position, method=args.method,
                       score_layer=args.score_layer)
    swap = source.preprocessing.channel_swap
    save_png(args.output, explanation_picture(ex, swap))
    label = f" ({ex.label})" if ex.label and source.labels else ""
    print(f"{args.image}: {args.method} of {ex.target}{label} (score {ex.score:.4g}) "
          f"-> {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from caffe_compat.recipes.visualize.saliency import PICTURE_METHODS
    p = sub.add_parser("saliency",
                       help="saliency / deconvnet / guided-backprop picture of an image",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMG", help="image file")
    add_model_arguments(p, NET)
    p.add_argument("--class", dest="class_index", type=int, metavar="K",
                   help="class index to explain (default: the predicted class)")
    p.add_argument("--score-layer", metavar="L",
                   help="class score blob/layer (default: the one under the output Softmax)")
    p.add_argument("--layer", metavar="L", help="blob or layer of the neuron to project")
    p.add_argument("--unit", type=int, metavar="U", help="channel of --layer")
    p.add_argument("--position", type=_position, metavar="Y,X",
                   help="spatial position of the unit (default: its strongest activation)")
    p.add_argument("--method", choices=PICTURE_METHODS, default="saliency",
                   help="saliency (|gradient|), deconvnet or guided (default saliency)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="picture to write")
    p.set_defaults(func=run)
