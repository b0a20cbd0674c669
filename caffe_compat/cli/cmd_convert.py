"""``caffe-compat convert NET WEIGHTS -o PREFIX``: Caffe -> MXNet deployment files.

Writes ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` (plain
``mx.gluon.SymbolBlock.imports`` loads them) or, with ``--params-only``, a Gluon
``PREFIX.params`` for ``CaffeNet.load_parameters``.
"""
from __future__ import annotations

import argparse

from caffe_compat.cli.netargs import add_net_arguments, load_net


def run(args) -> int:
    from caffe_compat.engine.export import export_params, export_symbol
    if not args.weights:
        raise SystemExit("caffe-compat convert: WEIGHTS (.caffemodel) is required")
    net = load_net(args, args.weights)
    if args.params_only:
        path = export_params(net, args.output + ".params")
        print(f"wrote {path}")
    else:
        sym, params = export_symbol(net, args.output)
        print(f"wrote {sym} and {params} (inputs: {', '.join(net.input_names)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="write MXNet symbol JSON + params (or Gluon .params)")
    add_net_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="PREFIX")
    p.add_argument("--params-only", action="store_true", help="write a Gluon .params file only")
    p.set_defaults(func=run)
