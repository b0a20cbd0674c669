"""The command-line options that say which net a subcommand loads, declared once.

Three forms, each for the commands whose users expect it:

* **a zoo model or your own files** (the recipe commands: detect, dream, segment, style,
  finetune, saliency, heatmap, localize, fcn-score, fcn-train): ``--model NAME`` (a
  per-command default) or ``--prototxt P --weights W``, in one argument group, resolved
  by :func:`net_choice` with one set of one-line errors;
* **Caffe's own tool** (train, test, time): ``--model`` is the prototxt and ``--weights``
  the caffemodel(s), as ``caffe test --model=... --weights=...``
  (:func:`add_caffe_tool_arguments`);
* **positional files** (info, convert, draw, upgrade): ``PROTOTXT [WEIGHTS]`` with the
  net-state options (:func:`add_net_arguments`).

>>> p = argparse.ArgumentParser(prog="segment")
>>> _ = add_net_choice_arguments(p, default_model="voc-fcn8s")
>>> net_choice(p.parse_args([]), "segment", "voc-fcn8s")
NetChoice(model='voc-fcn8s', prototxt=None, weights=None)
>>> net_choice(p.parse_args(["--prototxt", "x.prototxt"]), "segment", "voc-fcn8s")
Traceback (most recent call last):
...
caffe_compat.errors.CaffeCompatError: segment: --prototxt needs --weights
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Optional

from caffe_compat.errors import CaffeCompatError

#: The title every recipe command's net options are grouped under (``--help``).
NET_GROUP_TITLE = "net: a zoo model (--model) or your own files (--prototxt + --weights)"


@dataclass(frozen=True)
class NetChoice:
    """What the net options named: a zoo ``model`` (its default applied), or a
    ``prototxt`` with its ``weights``; ``weights`` may also come with a model where the
    command scores or starts from given weights (fcn-score, fcn-train)."""
    model: Optional[str]
    prototxt: Optional[str]
    weights: Optional[str]

    @property
    def from_files(self) -> bool:
        return self.prototxt is not None


def add_net_choice_arguments(p: argparse.ArgumentParser, default_model: Optional[str] = None,
                             model_help: str = "zoo model name (weights downloaded on first use)",
                             prototxt_help: str = "deploy prototxt (instead of --model)",
                             weights_help: str = ".caffemodel for --prototxt",
                             prototxt: bool = True, model_required: bool = False,
                             weights_required: bool = False) -> argparse._ArgumentGroup:
    """``--model NAME`` | ``--prototxt P --weights W`` in one group; returns the group so
    a command can add the options that describe its net (mean, labels)."""
    g = p.add_argument_group(NET_GROUP_TITLE)
    if default_model:
        model_help += f" (default {default_model})"
    g.add_argument("--model", metavar="NAME", required=model_required, help=model_help)
    if prototxt:
        g.add_argument("--prototxt", help=prototxt_help)
    g.add_argument("--weights", required=weights_required, help=weights_help)
    return g


def net_choice(args, command: str, default_model: Optional[str] = None,
               weights_with_model: bool = False) -> NetChoice:
    """The net the options of :func:`add_net_choice_arguments` name, or a one-line
    :class:`CaffeCompatError` (``command: ...``); given files must exist."""
    model, weights = args.model, args.weights
    prototxt = getattr(args, "prototxt", None)
    if prototxt:
        if model:
            raise CaffeCompatError(f"{command}: give --model or --prototxt"
                                   f"{'' if weights_with_model else '/--weights'}, not both")
        if not weights:
            raise CaffeCompatError(f"{command}: --prototxt needs --weights")
    elif weights and not weights_with_model:
        raise CaffeCompatError(f"{command}: --weights goes with --prototxt "
                               "(or give --model NAME alone)")
    for path in (prototxt, weights):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file or directory", path)
    if not prototxt:
        model = model or default_model
        if not model:
            raise CaffeCompatError(f"{command}: give --model NAME or --prototxt P --weights W")
    return NetChoice(model if not prototxt else None, prototxt or None, weights or None)


def parse_floats(text: str) -> tuple:
    """An argparse type: comma-separated numbers (a mean in the net's channel order)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad list {text!r}: use e.g. 104,117,123") from None


def add_net_source_arguments(p: argparse.ArgumentParser,
                             default_model: Optional[str] = None) -> argparse._ArgumentGroup:
    """The net options plus how images enter a user's net (--mean, --raw-scale, --rgb,
    --labels), for the visualisation and localisation commands (a ``NetSource``)."""
    g = add_net_choice_arguments(p, default_model)
    g.add_argument("--mean", type=parse_floats, metavar="B,G,R",
                   help="per-channel mean in the net's channel order (--prototxt; default none)")
    g.add_argument("--raw-scale", type=float, default=255.0,
                   help="scale of [0, 1] pixels before the mean (--prototxt; default 255)")
    g.add_argument("--rgb", action="store_true",
                   help="the net takes RGB (default BGR, Caffe's order) (--prototxt)")
    g.add_argument("--labels", help="class names, one a line (--prototxt)")
    return g


def net_source_from_args(args, command: str, default_model: Optional[str] = None):
    """The :class:`~caffe_compat.recipes.visualize.source.NetSource` the options of
    :func:`add_net_source_arguments` name."""
    from caffe_compat.recipes.visualize.source import NetSource, Preprocessing
    net = net_choice(args, command, default_model)
    if not net.from_files:
        return NetSource.from_zoo(net.model, progress=True)
    labels = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            labels = [line.rstrip("\n") for line in f if line.strip()]
    pre = Preprocessing(mean=args.mean or None, raw_scale=args.raw_scale,
                        channel_swap=None if args.rgb else (2, 1, 0))
    return NetSource.from_files(net.prototxt, net.weights, pre, labels)


def add_caffe_tool_arguments(p: argparse.ArgumentParser, model: bool = True,
                             weights_help: str = ".caffemodel or .caffemodel.h5") -> None:
    """Caffe's tool options: ``--model`` (the net prototxt) and ``--weights``."""
    g = p.add_argument_group("net (as Caffe's tool: caffe test --model=... --weights=...)")
    if model:
        g.add_argument("--model", metavar="PROTOTXT", help="net prototxt")
    g.add_argument("--weights", help=weights_help)


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
