"""``caffe-compat draw NET.prototxt OUT.png``: Caffe's ``python/draw_net.py``.

Draws a net's layers and blobs with Graphviz (see :mod:`caffe_compat.draw`); the
image format is the output file's extension (``.png``, ``.svg``, ``.pdf``, ...;
``.raw`` writes the DOT text without running Graphviz)::

    caffe-compat draw train_val.prototxt net.png --rankdir TB --phase TRAIN
    caffe-compat draw deploy.prototxt net.svg --display-lrm

Unlike draw_net.py, legacy (V0/V1) nets are upgraded first, so they draw too.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from caffe_compat import draw
from caffe_compat.cli.netargs import add_net_arguments
from caffe_compat.errors import CaffeCompatError
from caffe_compat.formats.prototxt import UnknownFieldWarning, read_net

PHASES = {"TRAIN": 0, "TEST": 1, "ALL": None}


def _phase(text: str) -> str:
    name = text.upper()
    if name not in PHASES:
        raise argparse.ArgumentTypeError("phase must be TRAIN, TEST or ALL")
    return name


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "draw", help="draw a net as an image (Caffe's draw_net.py)",
        description="Draw a net prototxt as a graph image with Graphviz, as Caffe's "
                    "python/draw_net.py does. The format is OUT's extension.")
    add_net_arguments(parser, weights_positional=False, net_state=False)
    parser.add_argument("output", metavar="OUT.png",
                        help="image to write (.png, .svg, .pdf, ...; .raw for DOT text)")
    parser.add_argument("--rankdir", default="LR", choices=["LR", "RL", "TB", "BT"],
                        help="graph direction: LR/RL horizontal, TB/BT vertical (default LR)")
    parser.add_argument("--phase", type=_phase, default="ALL", metavar="TRAIN|TEST|ALL",
                        help="draw only the layers of this phase (default ALL)")
    parser.add_argument("--display-lrm", action="store_true",
                        help="show the lr multipliers of learning layers")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownFieldWarning)
        net = read_net(args.prototxt).param
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"Drawing net to {args.output}")
    try:
        draw.draw_net_to_file(net, args.output, args.rankdir, PHASES[args.phase],
                              args.display_lrm)
    except ValueError as exc:     # a layer with both include and exclude rules
        raise CaffeCompatError(f"{args.prototxt}: {exc}") from None
    return 0
