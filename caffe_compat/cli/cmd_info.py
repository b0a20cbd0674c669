"""``caffe-compat info NET [WEIGHTS] [--input-shape 1,3,224,224]``: one row per layer.

Columns: name, type, bottoms -> tops, output shapes, parameter count, multiply-adds;
then totals. ``caffe-compat info --layers`` lists the supported layer types and where
each comes from (BVLC or a fork).
"""
from __future__ import annotations

import argparse

import numpy as np

from caffe_compat.cli.netargs import add_net_arguments, load_net


def multiply_adds(layer) -> int:
    """Multiply-accumulates of one forward of a layer (conv/deconv/inner product)."""
    blobs = layer.blobs()
    if not blobs or not layer.top_shapes:
        return 0
    w = blobs[0].shape
    wsize = int(np.prod(w))
    if layer.type in ("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution"):
        return int(np.prod(layer.top_shapes[0])) * (wsize // w[0])
    if layer.type == "Deconvolution":
        return int(np.prod(layer.bottom_shapes[0])) * (wsize // w[0])
    if layer.type == "InnerProduct":
        n_out = layer.param.inner_product_param.num_output
        return int(np.prod(layer.top_shapes[0])) * (wsize // max(n_out, 1))
    return 0


def _fmt(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def run(args) -> int:
    if args.layers:
        from caffe_compat.engine.layer import LAYER_TYPES, supported_types
        for name in supported_types():
            print(f"{name:28s} {LAYER_TYPES[name].origin}")
        return 0
    if not args.prototxt:
        raise SystemExit("caffe-compat info: a prototxt is required (or --layers)")
    net = load_net(args, args.weights)
    rows = []
    total_params = total_macs = 0
    counted = set()
    for node, layer in zip(net.graph.layers, net.caffe_layers):
        n_params = 0
        for p in layer.blobs():
            if id(p) not in counted:
                counted.add(id(p))
                n_params += int(np.prod(p.shape))
        macs = multiply_adds(layer)
        total_params += n_params
        total_macs += macs
        tops = ["x".join(str(d) for d in net.blob_shapes[t]) or "()" for t in node.tops]
        shapes = f"{len(tops)} x {tops[0]}" if len(tops) > 1 and len(set(tops)) == 1 else " ".join(tops)
        blobs = ",".join(node.bottoms) + " -> " + ",".join(node.tops)
        if len(blobs) > 60:     # e.g. an inception Concat: keep the table readable
            blobs = blobs[:28] + "..." + blobs[-29:]
        rows.append((node.name, node.type, blobs, shapes, _fmt(n_params) if n_params else "",
                     _fmt(macs) if macs else ""))
    widths = [max(len(r[i]) for r in rows + [("layer", "type", "blobs", "output", "params", "MACs")])
              for i in range(6)]
    header = ("layer", "type", "bottoms -> tops", "output shape", "params", "mult-adds")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"\n{len(rows)} layers, inputs {net.input_names}, outputs {net.output_names}")
    print(f"total parameters: {total_params:,}   total multiply-adds: {total_macs:,} ({_fmt(total_macs)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="per-layer table: shapes, parameters, multiply-adds")
    add_net_arguments(p, prototxt_optional=True)
    p.add_argument("--layers", action="store_true", help="list supported layer types")
    p.set_defaults(func=run)
