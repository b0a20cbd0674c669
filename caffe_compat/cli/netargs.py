"""Every command-line option that says which net a subcommand loads, declared once.

A subcommand that loads a net takes it in exactly one of three forms, each declared
here in an argparse group whose title starts with :data:`GROUP_TITLE`:

* positional -- ``info NET.prototxt [W.caffemodel] [--input-shape ...] [--phase] [--level]
  [--stage]`` (info, convert, draw): :func:`add_net_arguments`, :func:`load_net`;
* Caffe's tool flags -- ``test --model=NET.prototxt --weights=W.caffemodel`` (train, test,
  time), with BVLC ``tools/caffe.cpp``'s meaning of each flag:
  :func:`add_caffe_tool_arguments`, :func:`caffe_tool_model`;
* a recipe's net -- ``--model NAME`` or ``--prototxt P --weights W`` plus the preprocessing
  the command needs (dream, detect, segment, fcn-score, fcn-train, finetune, style, saliency,
  heatmap, localize train): a :class:`ModelOptions` per command, :func:`add_model_arguments`,
  and one resolver, :func:`chosen_net` (or :func:`net_source_from_args` for a ``NetSource``)::

      SEGMENT_NET = ModelOptions("segment", "zoo FCN (downloaded on first use)",
                                 default_model="voc-fcn8s", mean=MeanOption("BGR mean"))
      add_model_arguments(parser, SEGMENT_NET)
      ...
      choice = chosen_net(args, SEGMENT_NET)      # NetChoice(model="voc-fcn8s", ...)
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from caffe_compat.errors import CaffeCompatError

if TYPE_CHECKING:
    from caffe_compat.recipes.visualize.source import NetSource

#: Every "which net" argparse group's title starts with this.
GROUP_TITLE = "which net"


# --------------------------------------------------------------------------- value types

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


def _mean_values(text: str, counts: Optional[tuple]) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad mean {text!r}: use B,G,R, e.g. 104,117,123") from None
    if not values or (counts is not None and len(values) not in counts):
        raise argparse.ArgumentTypeError(
            "the mean takes one value per channel" if counts is None else
            "the mean takes 3 values (B,G,R)" + (" or 1 (grey)" if 1 in counts else ""))
    return values


def parse_mean(text: str) -> tuple:
    """An argparse type: a per-channel mean ``B,G,R``."""
    return _mean_values(text, (3,))


def parse_mean_or_grey(text: str) -> tuple:
    """An argparse type: ``B,G,R`` or one value for grey inputs."""
    return _mean_values(text, (1, 3))


def parse_channel_mean(text: str) -> tuple:
    """An argparse type: one mean value per channel, any number of channels."""
    return _mean_values(text, None)


def parse_phase(text: str) -> int:
    """An argparse type: ``TRAIN`` -> 0, ``TEST`` -> 1 (caffe_pb2's Phase)."""
    t = text.upper()
    if t not in ("TRAIN", "TEST"):
        raise argparse.ArgumentTypeError("phase must be TRAIN or TEST")
    return 0 if t == "TRAIN" else 1


def use_device(gpu) -> None:
    """Make a ``--gpu`` flag's first device the one new nets are built on (None: keep)."""
    if gpu is None:
        return
    from caffe_compat.context import context_from_flag, use_context
    use_context(context_from_flag(gpu)[0])


def _add_net_state(group, phase_default: Optional[int]) -> None:
    """``--phase`` (not when ``phase_default`` is None), ``--level``, ``--stage``: NetState."""
    if phase_default is not None:
        name = ("TRAIN", "TEST")[phase_default]
        group.add_argument("--phase", type=parse_phase, default=phase_default,
                           help=f"TRAIN or TEST (default {name})")
    group.add_argument("--level", type=int, default=0, help="NetState level (default 0)")
    group.add_argument("--stage", action="append", default=[],
                       help="NetState stage (repeat for several)")


# --------------------------------------------------------------------------- positional form

def add_net_arguments(p: argparse.ArgumentParser, weights_positional: bool = True,
                      prototxt_optional: bool = False, net_state: bool = True) -> None:
    """``NET.prototxt [WEIGHTS] [--input-shape N,C,H,W] [--phase] [--level] [--stage]``
    (``net_state=False``: the prototxt, and the weights, only)."""
    g = p.add_argument_group(f"{GROUP_TITLE}: NET.prototxt" + (" [WEIGHTS]" if weights_positional
                                                               else ""))
    g.add_argument("prototxt", nargs="?" if prototxt_optional else None, metavar="NET.prototxt",
                   help="network definition (.prototxt, any Caffe generation)")
    if weights_positional:
        g.add_argument("weights", nargs="?", metavar="WEIGHTS",
                       help=".caffemodel or .caffemodel.h5 weights")
    if net_state:
        g.add_argument("--input-shape", type=parse_shape, action="append", default=[],
                       metavar="N,C,H,W",
                       help="shape of an input blob (repeat for several inputs, in order)")
        _add_net_state(g, phase_default=1)


def load_net(args, weights: Optional[str] = None):
    """Build the engine's CaffeNet from :func:`add_net_arguments`' parsed arguments."""
    from caffe_compat.engine.network import CaffeNet
    net = CaffeNet.from_prototxt(args.prototxt, phase=args.phase, weights=weights,
                                 level=args.level, stages=args.stage)
    if args.input_shape:
        if len(args.input_shape) > len(net.input_names):
            raise SystemExit(f"--input-shape given {len(args.input_shape)} times but the net has "
                             f"{len(net.input_names)} input(s): {net.input_names}")
        net.reshape(dict(zip(net.input_names, args.input_shape)))
    return net


# --------------------------------------------------------------------------- Caffe's tool form

def add_caffe_tool_arguments(p: argparse.ArgumentParser, weights_help: str,
                             model_help: Optional[str] = None,
                             phase_default: Optional[int] = None) -> None:
    """BVLC ``caffe``'s net flags: ``--model=NET.prototxt`` (with ``--level``/``--stage``,
    and ``--phase`` when ``phase_default`` is given, as ``caffe time``) and ``--weights``.
    ``model_help=None``: no ``--model`` (``caffe train`` reads the net from the solver)."""
    g = p.add_argument_group(f"{GROUP_TITLE} (Caffe's flags)")
    if model_help is not None:
        g.add_argument("--model", metavar="NET.prototxt", help=model_help)
    g.add_argument("--weights", help=weights_help)
    if model_help is not None:
        _add_net_state(g, phase_default)


def caffe_tool_model(args, command: str) -> str:
    """The ``--model`` prototxt of :func:`add_caffe_tool_arguments` (required, as Caffe)."""
    if not args.model:
        raise CaffeCompatError(f"{command}: --model=NET.prototxt is required")
    return args.model


# --------------------------------------------------------------------------- recipe form

#: ``ModelOptions.weights``: how ``--weights`` goes with ``--model`` / ``--prototxt``.
WEIGHTS_FOR_PROTOTXT = "for-prototxt"   # required with --prototxt; a --model brings its own
WEIGHTS_REQUIRED = "required"           # always: --model/--prototxt only name the net
WEIGHTS_OPTIONAL = "optional"           # optional, with --model (initial weights)


@dataclass(frozen=True)
class MeanOption:
    """A command's ``--mean`` (the mean the net's input has subtracted)."""
    help: str
    type: Callable = parse_mean
    metavar: str = "B,G,R"
    default: object = None


@dataclass(frozen=True)
class ModelOptions:
    """How one command takes its net: ``--model NAME`` or ``--prototxt P --weights W``.

    ``command`` names the command in errors (``"localize train"``); ``model_help`` says what
    ``--model`` names (the default is appended); ``prototxt_help=None``: no ``--prototxt``.
    """
    command: str
    model_help: str
    default_model: Optional[str] = None
    prototxt_help: Optional[str] = "deploy prototxt (instead of --model)"
    weights_help: str = ".caffemodel for --prototxt"
    weights: str = WEIGHTS_FOR_PROTOTXT
    labels_help: Optional[str] = None      # --labels: class names for --prototxt
    labels_required: bool = False
    mean: Optional[MeanOption] = None
    image_scaling: bool = False            # --raw-scale and --rgb for --prototxt (NetSource)

    def usage(self) -> str:
        """``--model NAME | --prototxt P --weights W`` as this command takes it."""
        if self.prototxt_help is None:
            return "--model NAME" + (" [--weights W]" if self.weights == WEIGHTS_OPTIONAL else "")
        if self.weights == WEIGHTS_FOR_PROTOTXT:
            return "--model NAME | --prototxt P --weights W"
        return "(--model NAME | --prototxt P) --weights W"


@dataclass(frozen=True)
class NetChoice:
    """The net a command's options name: a ``model`` name, or a ``prototxt`` (+ files)."""
    model: Optional[str]
    prototxt: Optional[str] = None
    weights: Optional[str] = None
    labels: Optional[str] = None


def add_model_arguments(p: argparse.ArgumentParser, options: ModelOptions) -> None:
    """Declare ``options``' ``--model``, ``--prototxt``, ``--weights`` (+ ``--labels``,
    ``--mean``, ``--raw-scale``, ``--rgb``) in one group titled ``which net: ...``."""
    g = p.add_argument_group(f"{GROUP_TITLE}: {options.usage()}")
    model_help = options.model_help
    if options.default_model:
        model_help += f" (default {options.default_model})"
    g.add_argument("--model", metavar="NAME", required=options.prototxt_help is None
                   and options.default_model is None, help=model_help)
    if options.prototxt_help is not None:
        g.add_argument("--prototxt", metavar="P", help=options.prototxt_help)
    g.add_argument("--weights", metavar="W", required=options.weights == WEIGHTS_REQUIRED,
                   help=options.weights_help)
    if options.labels_help is not None:
        g.add_argument("--labels", metavar="FILE", help=options.labels_help)
    if options.mean is not None:
        g.add_argument("--mean", type=options.mean.type, metavar=options.mean.metavar,
                       default=options.mean.default, help=options.mean.help)
    if options.image_scaling:
        g.add_argument("--raw-scale", type=float, default=255.0,
                       help="scale of [0, 1] pixels before the mean (--prototxt; default 255)")
        g.add_argument("--rgb", action="store_true",
                       help="the net takes RGB (default BGR, Caffe's order) (--prototxt)")


def chosen_net(args, options: ModelOptions) -> NetChoice:
    """The net :func:`add_model_arguments`' parsed arguments name (files checked to exist);
    a contradiction or a missing piece is a one-line ``CaffeCompatError``."""
    command, prototxt = options.command, getattr(args, "prototxt", None)
    labels = getattr(args, "labels", None) if options.labels_help is not None else None
    if prototxt and args.model:
        files = "--prototxt/--weights" if options.weights == WEIGHTS_FOR_PROTOTXT else "--prototxt"
        raise CaffeCompatError(f"{command}: give --model or {files}, not both")
    if options.weights == WEIGHTS_FOR_PROTOTXT:
        if prototxt and not args.weights:
            raise CaffeCompatError(f"{command}: --prototxt needs --weights")
        if args.weights and not prototxt:
            raise CaffeCompatError(f"{command}: --weights goes with --prototxt "
                                   "(--model NAME brings its own weights)")
    if labels and not prototxt:
        raise CaffeCompatError(f"{command}: --labels goes with --prototxt")
    if prototxt and options.labels_required and not labels:
        raise CaffeCompatError(f"{command}: --prototxt needs --labels (a class name per line)")
    model = None if prototxt else (args.model or options.default_model)
    if not prototxt and not model:
        raise CaffeCompatError(f"{command}: give {options.usage()}")
    for path in (prototxt, args.weights, labels):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file or directory", path)
    return NetChoice(model, prototxt, args.weights, labels)


def net_source_options(command: str) -> ModelOptions:
    """The options of the commands that take a ``NetSource`` (saliency, heatmap, localize):
    a zoo model, or a prototxt + weights with their preprocessing and class names."""
    return ModelOptions(
        command, "zoo model name (weights downloaded on first use)",
        labels_help="class names, one a line (--prototxt)",
        mean=MeanOption("per-channel mean in the net's channel order (--prototxt; default none)",
                        type=parse_channel_mean),
        image_scaling=True)


def net_source_from_args(args, options: ModelOptions) -> "NetSource":
    """The :class:`NetSource` (``recipes.visualize.source``) :func:`net_source_options`'
    arguments name: the zoo model's, or the files with ``--mean``/``--raw-scale``/``--rgb``."""
    from caffe_compat.recipes.rcnn.labels import read_labels
    from caffe_compat.recipes.visualize.source import NetSource, Preprocessing
    choice = chosen_net(args, options)
    if choice.model is not None:
        return NetSource.from_zoo(choice.model, progress=True)
    pre = Preprocessing(mean=args.mean or None, raw_scale=args.raw_scale,
                        channel_swap=None if args.rgb else (2, 1, 0))
    labels = read_labels(choice.labels) if choice.labels else None
    return NetSource.from_files(choice.prototxt, choice.weights, pre, labels)
