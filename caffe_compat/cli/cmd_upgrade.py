"""``caffe-compat upgrade IN OUT [--binary]``: Caffe's upgrade_net_proto_text / _binary.

Reads a net in any legacy format (V0, V1, ``input:`` headers, old BatchNorm),
applies Caffe's upgrades and writes the current format::

    caffe-compat upgrade old_deploy.prototxt deploy.prototxt
    caffe-compat upgrade --binary old.caffemodel new.caffemodel

Like Caffe's tools, a file already in the latest format is still written (with a
note), and the exit status is 1 when the upgrade had to drop settings (listed as
warnings), 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from google.protobuf.message import DecodeError

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.prototxt import (UnknownFieldWarning, net_layer_origins, parse_net,
                                           write_net)
from caffe_compat.formats.upgrade import LayerOrigins, net_needs_upgrade, upgrade_net_as_needed
from caffe_compat.proto import caffe_pb2


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "upgrade", help="upgrade a legacy net (prototxt or caffemodel) to the current format",
        description="Upgrade a V0/V1/legacy-input net to the current Caffe format, as Caffe's "
                    "upgrade_net_proto_text and upgrade_net_proto_binary do.")
    parser.add_argument("input", metavar="IN", help="net to upgrade")
    parser.add_argument("output", metavar="OUT", help="where to write the upgraded net")
    parser.add_argument("--binary", action="store_true",
                        help="IN and OUT are binary NetParameters (.caffemodel)")
    parser.add_argument("--strict", action="store_true",
                        help="text input: fail on fields not in BVLC caffe.proto instead of "
                             "dropping them")
    parser.set_defaults(func=run)


def _read_binary(path: str) -> caffe_pb2.NetParameter:
    with open(path, "rb") as fh:
        data = fh.read()
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except DecodeError:
        raise WeightsFormatError(path, None, "a binary NetParameter (.caffemodel)") from None
    return net


def run(args: argparse.Namespace) -> int:
    problems: list = []
    where = args.input

    def report(message: str, line) -> None:
        problems.append(f"{where}:{line}: {message}" if line else f"{where}: {message}")

    if args.binary:
        net = _read_binary(args.input)
        origins = LayerOrigins.blank(net)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnknownFieldWarning)
            parsed = parse_net(args.input, strict=args.strict)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        net, origins = parsed.message, net_layer_origins(parsed)

    if not net_needs_upgrade(net):
        print(f"File already in latest proto format: {args.input}", file=sys.stderr)
    steps = upgrade_net_as_needed(net, origins=origins, report=report)
    for message in problems:
        print(f"warning: {message}", file=sys.stderr)

    if args.binary:
        with open(args.output, "wb") as fh:
            fh.write(net.SerializeToString())
    else:
        write_net(net, args.output)
    kind = "binary" if args.binary else "text"
    done = f" ({', '.join(steps)})" if steps else ""
    print(f"Wrote upgraded NetParameter {kind} proto to {args.output}{done}", file=sys.stderr)
    if problems:
        print("Encountered error(s) while upgrading; see the warnings above.", file=sys.stderr)
        return 1
    return 0
