"""``caffe-compat convert NET WEIGHTS -o OUT [--to mxnet|onnx]``: deployment files.

``--to mxnet`` (default) writes ``OUT-symbol.json`` + ``OUT-0000.params`` (plain
``mx.gluon.SymbolBlock.imports`` loads them) or, with ``--params-only``, a Gluon
``OUT.params`` for ``CaffeNet.load_parameters``. ``--to onnx`` writes ``OUT`` (``.onnx``
added when missing) with Caffe's exact semantics (``caffe_compat.onnx_export``);
``--verify`` then runs it in onnxruntime against caffe-compat.
"""
from __future__ import annotations

import argparse
import sys

from caffe_compat.cli.netargs import add_net_arguments, load_net

#: rel. L2 error between onnxruntime and caffe-compat above which --verify fails.
VERIFY_TOLERANCE = 1e-4


def _blob_list(text: str) -> list:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give blob names, e.g. --outputs fc7,prob")
    return names


def _to_onnx(args, net) -> int:
    from caffe_compat.onnx_export import check_with_onnxruntime, export_onnx
    path = args.output if args.output.endswith(".onnx") else args.output + ".onnx"
    export_onnx(net, path)
    shapes = ", ".join(f"{n} {'x'.join(map(str, net.blob_shapes[n]))}" for n in net.input_names)
    print(f"wrote {path} (inputs: {shapes}; outputs: {', '.join(net.output_names)})")
    if args.verify:
        errors = check_with_onnxruntime(net, path)
        worst = max(errors.values())
        print("onnxruntime vs caffe-compat, rel. L2: "
              + ", ".join(f"{n} {e:.2g}" for n, e in errors.items()))
        if not worst <= VERIFY_TOLERANCE:
            print(f"caffe-compat convert: error: outputs differ by more than {VERIFY_TOLERANCE}",
                  file=sys.stderr)
            return 1
    return 0


def run(args) -> int:
    from caffe_compat.engine.export import export_params, export_symbol
    if not args.weights:
        raise SystemExit("caffe-compat convert: WEIGHTS (.caffemodel) is required")
    net = load_net(args, args.weights)
    if args.outputs:
        try:
            net.set_outputs([b for group in args.outputs for b in group])
        except KeyError as exc:
            raise SystemExit(f"caffe-compat convert: --outputs: {exc.args[0]}") from None
    if args.to == "onnx":
        if args.params_only:
            raise SystemExit("caffe-compat convert: --params-only is for --to mxnet")
        return _to_onnx(args, net)
    if args.verify:
        raise SystemExit("caffe-compat convert: --verify is for --to onnx")
    if args.params_only:
        path = export_params(net, args.output + ".params")
        print(f"wrote {path}")
    else:
        sym, params = export_symbol(net, args.output)
        print(f"wrote {sym} and {params} (inputs: {', '.join(net.input_names)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="write MXNet symbol JSON + params, Gluon .params, or ONNX")
    add_net_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="file prefix (mxnet) or .onnx file (onnx)")
    p.add_argument("--to", choices=("mxnet", "onnx"), default="mxnet",
                   help="target format (default mxnet)")
    p.add_argument("--outputs", type=_blob_list, action="append", default=[], metavar="BLOBS",
                   help="comma-separated blobs to output instead of the net's outputs")
    p.add_argument("--params-only", action="store_true", help="write a Gluon .params file only")
    p.add_argument("--verify", action="store_true",
                   help="(onnx) run the file in onnxruntime and compare with caffe-compat")
    p.set_defaults(func=run)
