"""Shared command-line arguments for commands that load a net (prototxt + weights)."""
from __future__ import annotations

import argparse
from typing import Optional


def parse_shape(text: str) -> tuple:
    """'1,3,224,224' -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: use e.g. 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: dims must be positive")
    return dims


def positive_int(text: str) -> int:
    """An argparse type: a whole number > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def _mean_values(text: str, counts: tuple) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad mean {text!r}: use B,G,R, e.g. 104,117,123") from None
    if len(values) not in counts:
        raise argparse.ArgumentTypeError("the mean takes 3 values (B,G,R)"
                                         + (" or 1 (grey)" if 1 in counts else ""))
    return values


def parse_mean(text: str) -> tuple:
    """An argparse type: a per-channel mean ``B,G,R``."""
    return _mean_values(text, (3,))


def parse_mean_or_grey(text: str) -> tuple:
    """An argparse type: ``B,G,R`` or one value for grey inputs."""
    return _mean_values(text, (1, 3))


def use_device(gpu) -> None:
    """Make a ``--gpu`` flag's first device the one new nets are built on (None: keep)."""
    if gpu is None:
        return
    from caffe_compat.context import context_from_flag, use_context
    use_context(context_from_flag(gpu)[0])


def parse_phase(text: str) -> int:
    t = text.upper()
    if t not in ("TRAIN", "TEST"):
        raise argparse.ArgumentTypeError("phase must be TRAIN or TEST")
    return 0 if t == "TRAIN" else 1


def add_net_arguments(p: argparse.ArgumentParser, weights_positional: bool = True,
                      prototxt_optional: bool = False) -> None:
    p.add_argument("prototxt", nargs="?" if prototxt_optional else None,
                   help="network definition (.prototxt, any Caffe generation)")
    if weights_positional:
        p.add_argument("weights", nargs="?", help=".caffemodel or .caffemodel.h5 weights")
    p.add_argument("--input-shape", type=parse_shape, action="append", default=[],
                   metavar="N,C,H,W",
                   help="shape of an input blob (repeat for several inputs, in order)")
    p.add_argument("--phase", type=parse_phase, default=1, help="TRAIN or TEST (default TEST)")
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--stage", action="append", default=[])


def load_net(args, weights: Optional[str] = None):
    """Build the engine's CaffeNet from parsed arguments."""
    from caffe_compat.engine.network import CaffeNet
    net = CaffeNet.from_prototxt(args.prototxt, phase=args.phase, weights=weights,
                                 level=args.level, stages=args.stage)
    if args.input_shape:
        if len(args.input_shape) > len(net.input_names):
            raise SystemExit(f"--input-shape given {len(args.input_shape)} times but the net has "
                             f"{len(net.input_names)} input(s): {net.input_names}")
        net.reshape(dict(zip(net.input_names, args.input_shape)))
    return net
