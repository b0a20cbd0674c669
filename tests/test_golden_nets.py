"""End-to-end parity with real BVLC Caffe on the golden nets, blob by blob.

Forward: every blob's data (and every in-place intermediate, via forward(end=layer))
within rel. L2 1e-5. Backward: every blob diff and parameter diff within 1e-4, through
the pycaffe API (layer by layer) and through the hybridized HybridBlock (one graph).
"""
from __future__ import annotations

import os
import tempfile

import mxnet as mx
import numpy as np
import pytest

import golden_harness as gh

pytestmark = pytest.mark.skipif(not os.path.isdir(gh.GOLDEN_DIR), reason="tests/golden missing")


def force_backward_prototxt(gs: gh.GoldenSet, tmp_path) -> str:
    # The golden run re-serialised the net with force_backward: true (see README.txt).
    path = os.path.join(tmp_path, f"{gs.name}.prototxt")
    with open(gs.prototxt) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write("force_backward: true\n" + text)
    return path


def make_net(gs, tmp_path):
    import caffe_compat as caffe
    net = caffe.Net(force_backward_prototxt(gs, tmp_path), gs.weights, caffe.TEST)
    for b in gs.meta["inputs"]:
        net.blobs[b].data[...] = gs.npz[f"input/{b}"]
    return net


def block_gradient_errors(block, inputs, gs) -> list[str]:
    """Input and parameter gradients of a block backward that differ from Caffe's."""
    bad = []
    for b, x in zip(block.input_names, inputs):
        e = gh.rel_err(x.grad.asnumpy(), gs.npz[f"diff/{b}"])
        if not e <= gh.BACKWARD_TOL:
            bad.append(f"diff {b}: {e:.3g}")
    skipped = set(gs.meta.get("backward_skipped_layers", []))
    for layer in block.caffe_layers:
        if layer.name in skipped:
            continue
        for i, p in enumerate(layer.blobs()):
            ref = gs.npz.get(f"param_diff/{layer.name}/{i}")
            if ref is None or p.grad_req == "null":
                continue
            e = gh.rel_err(p.grad().asnumpy(), ref)
            if not e <= gh.BACKWARD_TOL:
                bad.append(f"param_diff {layer.name}/{i}: {e:.3g}")
    return bad


def check_forward(net, gs) -> list[str]:
    bad = []
    net.forward()
    for key, ref in gs.npz.items():
        if key.startswith("data/"):
            blob = key[5:]
            e = gh.rel_err(net.blobs[blob].data, ref)
            if not e <= gh.FORWARD_TOL:
                bad.append(f"data {blob}: {e:.3g}")
    return bad


@pytest.mark.parametrize("name", gh.SETS)
def test_forward_every_blob(name, tmp_path):
    gs = gh.load(name)
    net = make_net(gs, str(tmp_path))
    assert check_forward(net, gs) == []


@pytest.mark.parametrize("name", gh.SETS)
def test_forward_in_place_intermediates(name, tmp_path):
    gs = gh.load(name)
    net = make_net(gs, str(tmp_path))
    bad = []
    for key, ref in gs.npz.items():
        if key.startswith("top/"):
            _, layer, j = key.split("/")[0], "/".join(key.split("/")[1:-1]), int(key.split("/")[-1])
            net.forward(end=layer)
            blob = net.top_names[layer][j]
            e = gh.rel_err(net.blobs[blob].data, ref)
            if not e <= gh.FORWARD_TOL:
                bad.append(f"{key}: {e:.3g}")
    assert bad == []


@pytest.mark.parametrize("name", gh.SETS)
def test_backward_every_blob_and_param(name, tmp_path):
    gs = gh.load(name)
    net = make_net(gs, str(tmp_path))
    net.forward()
    for b in gs.meta["outputs"]:
        net.blobs[b].diff[...] = gs.npz[f"topdiff/{b}"]
    net.backward()
    bad = []
    skipped = set(gs.meta.get("backward_skipped_layers", []))
    for key, ref in gs.npz.items():
        if key.startswith("diff/"):
            blob = key[5:]
            e = gh.rel_err(net.blobs[blob].diff, ref)
            if not e <= gh.BACKWARD_TOL:
                bad.append(f"diff {blob}: {e:.3g}")
        elif key.startswith("param_diff/"):
            parts = key.split("/")
            layer, i = "/".join(parts[1:-1]), int(parts[-1])
            if layer in skipped:
                continue
            e = gh.rel_err(net.params[layer][i].diff, ref)
            if not e <= gh.BACKWARD_TOL:
                bad.append(f"{key}: {e:.3g}")
    assert bad == []


@pytest.mark.parametrize("name", gh.SETS)
def test_hybridized_block_forward_and_backward(name, tmp_path):
    """The whole net as one hybridized graph: every blob forward, input/param grads."""
    gs = gh.load(name)
    net = make_net(gs, str(tmp_path))
    block = net.block
    blobs = [b for b in block.graph.blob_names if f"data/{b}" in gs.npz]
    block.set_outputs(blobs)
    block.hybridize()
    inputs = [mx.nd.array(gs.npz[f"input/{b}"]) for b in block.input_names]
    for x in inputs:
        x.attach_grad()
    with mx.autograd.record():
        outs = block(*inputs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    bad = []
    for b, out in zip(blobs, outs):
        e = gh.rel_err(out.asnumpy(), gs.npz[f"data/{b}"])
        if not e <= gh.FORWARD_TOL:
            bad.append(f"data {b}: {e:.3g}")
    heads = [mx.nd.array(gs.npz[f"topdiff/{b}"]) if b in gs.meta["outputs"]
             else mx.nd.zeros(out.shape) for b, out in zip(blobs, outs)]
    for p in block.collect_params().values():
        if p.grad_req != "null":
            p.zero_grad()
    mx.autograd.backward(outs, head_grads=heads)
    bad += block_gradient_errors(block, inputs, gs)
    assert bad == []


@pytest.mark.parametrize("name", gh.SETS)
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_whole_graph_backward_from_outputs_only(name, hybridize, tmp_path):
    """Backward through the whole block with head gradients on the net outputs only
    (as DeepDream's fast path and training do): every input and parameter gradient is
    Caffe's. (With every blob an output, zero heads would mask layout bugs such as
    oneDNN LRN's.)"""
    gs = gh.load(name)
    net = make_net(gs, str(tmp_path))
    block = net.block
    block.set_outputs(gs.meta["outputs"])
    if hybridize:
        block.hybridize()
    inputs = [mx.nd.array(gs.npz[f"input/{b}"]) for b in block.input_names]
    for x in inputs:
        x.attach_grad()
    for p in block.collect_params().values():
        if p.grad_req != "null":
            p.zero_grad()
    with mx.autograd.record():
        outs = block(*inputs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    heads = [mx.nd.array(gs.npz[f"topdiff/{b}"]) for b in gs.meta["outputs"]]
    mx.autograd.backward(outs, head_grads=heads)
    bad = block_gradient_errors(block, inputs, gs)
    assert bad == []
