"""Deployment: a CaffeNet as a plain MXNet symbol + params, loadable without caffe-compat.

``export_symbol(net, prefix)`` writes ``PREFIX-symbol.json`` and ``PREFIX-0000.params``
with the Caffe input names kept (``data``, ``im_info``), so plain MXNet runs it::

    import mxnet as mx
    block = mx.gluon.SymbolBlock.imports("alexnet-symbol.json", ["data"], "alexnet-0000.params")
    prob = block(mx.nd.array(image_batch))
"""
from __future__ import annotations

import json

import mxnet as mx

from caffe_compat.engine.network import CaffeNet


def net_symbol(net: CaffeNet) -> mx.sym.Symbol:
    """The net's outputs as one symbol whose inputs carry the Caffe input blob names."""
    inputs = [mx.sym.var(name) for name in net.input_names]
    out = net(*inputs)
    if isinstance(out, (list, tuple)):
        out = mx.sym.Group(list(out))
    return out


def export_symbol(net: CaffeNet, prefix: str, epoch: int = 0) -> tuple[str, str]:
    """Write ``prefix-symbol.json`` and ``prefix-%04d.params``; returns both paths."""
    sym = net_symbol(net)
    sym_path = f"{prefix}-symbol.json"
    params_path = f"{prefix}-{epoch:04d}.params"
    sym.save(sym_path)
    wanted_args = set(sym.list_arguments())
    wanted_aux = set(sym.list_auxiliary_states())
    arrays = {}
    for p in net.collect_params().values():
        if p.name in wanted_args:
            arrays[f"arg:{p.name}"] = p.data().as_in_context(mx.cpu())
        elif p.name in wanted_aux:
            arrays[f"aux:{p.name}"] = p.data().as_in_context(mx.cpu())
    mx.nd.save(params_path, arrays)
    return sym_path, params_path


def export_params(net: CaffeNet, path: str) -> str:
    """A Gluon ``.params`` file (``net.save_parameters``) keyed by Caffe-derived names."""
    net.save_parameters(path)
    return path


def symbol_inputs(sym_path: str) -> list[str]:
    """Input variable names of an exported symbol (arguments that are not parameters)."""
    with open(sym_path) as f:
        graph = json.load(f)
    heads = graph["arg_nodes"]
    return [graph["nodes"][i]["name"] for i in heads]
