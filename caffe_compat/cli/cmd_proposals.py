"""``caffe-compat proposals IMG [--mode fast|quality|single] [--max-boxes N] [-o boxes.json]``.

Selective search object proposals (Uijlings et al. 2013; R-CNN's region proposals) for
one image, written as JSON ``{"boxes": [[xmin, ymin, xmax, ymax], ...]}``: 0-based pixel
coordinates of the image, max inclusive, best-ranked first. Without ``-o`` the JSON goes
to stdout.

    caffe-compat proposals street.jpg --max-boxes 2000 -o street_boxes.json
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def run(args: argparse.Namespace) -> int:
    from caffe_compat.images import read_bgr
    from caffe_compat.recipes.rcnn.selective_search import selective_search

    image = np.ascontiguousarray(read_bgr(args.image)[:, :, ::-1])
    boxes = selective_search(image, mode=args.mode, min_size=args.min_size,
                             max_boxes=args.max_boxes, seed=args.seed,
                             max_side=args.max_side or None)
    text = json.dumps({"boxes": boxes.tolist()})
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        print(f"{len(boxes)} boxes -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text + "\n")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "proposals", help="selective search object proposals for an image (R-CNN)",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="image file (anything OpenCV decodes: jpg, png, ...)")
    parser.add_argument("--mode", choices=["fast", "quality", "single"], default="fast",
                        help="diversification strategies of the paper (default: fast, as R-CNN)")
    parser.add_argument("--max-boxes", type=int, default=None, metavar="N",
                        help="keep the N best-ranked boxes")
    parser.add_argument("--min-size", type=int, default=0, metavar="PX",
                        help="drop boxes narrower or lower than PX pixels (R-CNN used 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the ranking (default 0)")
    parser.add_argument("--max-side", type=int, default=500, metavar="PX",
                        help="downscale images whose longer side exceeds PX for the search; "
                             "boxes are mapped back (default 500; 0 = never)")
    parser.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    parser.set_defaults(func=run)
