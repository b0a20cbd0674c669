"""pycaffe's fast path (cached segment graphs) against its layer-by-layer path.

Both paths must show the same blobs, diffs and parameter diffs after every kind of call
pycaffe scripts make: full forward/backward, ``forward(end=)`` + ``backward(start=)``
(DeepDream), a forward of part of the net after a full one, ``backward(end=)``, repeated
backwards (accumulating parameter diffs), a net cut by a Python layer, reshapes and user
writes to inputs and parameters between calls. The golden tests check the fast path
against real Caffe; these check that every pycaffe call shape reaches it exactly.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import caffe_compat as caffe
import golden_harness as gh
from caffe_compat.pycaffe import fast_path

TOL = 1e-6


def make_net(prototxt: str, weights, fast: bool) -> caffe.Net:
    net = caffe.Net(prototxt, weights, caffe.TEST) if weights else caffe.Net(prototxt, caffe.TEST)
    net.fast_path = fast
    return net


def state(net: caffe.Net) -> dict:
    out = {}
    for name, blob in net.blobs.items():
        out[f"data/{name}"] = blob.data.copy()
        out[f"diff/{name}"] = blob.diff.copy()
    for name, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            out[f"param_diff/{name}/{i}"] = blob.diff.copy()
    return out


def assert_same(slow: dict, fast: dict) -> None:
    assert slow.keys() == fast.keys()
    for key in slow:
        err = gh.rel_err(fast[key], slow[key])
        assert err <= TOL, f"{key}: fast path differs by {err:.2e}"


def force_backward(src: str, tmp_path) -> str:
    path = os.path.join(str(tmp_path), os.path.basename(os.path.dirname(src)) + ".prototxt")
    with open(src) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write("force_backward: true\n" + text)
    return path


def set_output_diffs(net: caffe.Net, scale: float) -> None:
    """Random top diffs on the outputs (not constants: a Softmax's gradient of a constant
    is zero); a loss output keeps its loss weight."""
    rng = np.random.RandomState(1)
    for name in net.outputs:
        if not net.blob_loss_weights[name]:
            net.blobs[name].diff[...] = scale * rng.randn(*net.blobs[name].shape)


def run_script(net: caffe.Net, gs: gh.GoldenSet, script: str) -> dict:
    """One pycaffe call sequence; returns the net's state after it."""
    names = list(net._layer_names)
    mid = names[len(names) // 2]
    low = names[len(names) // 4]
    for name in net.inputs:
        net.blobs[name].data[...] = gs.npz[f"input/{name}"]
    if script == "full":
        net.forward()
        set_output_diffs(net, 1.0)
        net.backward()
        net.backward()                      # parameter diffs accumulate
    elif script == "dream":                 # forward(end=L), diff = data, backward(start=L)
        net.forward(end=mid)
        top = net.top_names[mid][0]
        net.blobs[top].diff[...] = net.blobs[top].data
        net.backward(start=mid)
    elif script == "partial":               # full forward, part re-run, backward down to low
        net.forward()
        net.blobs[net.inputs[0]].data[...] *= 0.5
        net.forward(start=low, end=mid)
        net.forward(start=names[names.index(mid) + 1] if mid != names[-1] else mid)
        set_output_diffs(net, 0.25)
        net.backward(end=low)
    elif script == "stale":                 # the layers above `end` keep the first recording
        net.forward()
        net.blobs[net.inputs[0]].data[...] *= -1
        net.forward(end=mid)
        set_output_diffs(net, 0.5)
        net.backward()
    elif script == "chain":                 # backward from an in-place layer (ReLU on a conv)
        inplace = [n for n in names if net.top_names[n] and net.top_names[n] == net.bottom_names[n]]
        net.forward()
        net.blobs[net.top_names[inplace[-1]][0]].diff[...] = 1.0
        net.backward(start=inplace[-1], end=inplace[0])
    elif script == "staged":                # DeepDream's several ends: diffs added between
        net.forward()
        i = names.index(mid)
        set_output_diffs(net, 1.0)
        net.backward(end=names[i + 1])
        for top in net.top_names[mid]:
            net.blobs[top].diff[...] += net.blobs[top].data
        net.backward(start=mid)
    return state(net)


@pytest.mark.parametrize("script", ["full", "dream", "partial", "stale", "chain", "staged"])
@pytest.mark.parametrize("name", gh.SETS)
def test_fast_path_equals_layer_by_layer(name, script, tmp_path):
    gs = gh.load(name)
    prototxt = force_backward(gs.prototxt, tmp_path)
    slow = run_script(make_net(prototxt, gs.weights, fast=False), gs, script)
    net = make_net(prototxt, gs.weights, fast=True)
    fast = run_script(net, gs, script)
    assert_same(slow, fast)
    assert any(kind == "segment" for kind, _ in net._steps(0, len(net.layers) - 1))


PY_LAYER = '''
import caffe_compat as caffe

class Double(caffe.Layer):
    def setup(self, bottom, top): pass
    def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top): top[0].data[...] = 2 * bottom[0].data
    def backward(self, top, propagate_down, bottom): bottom[0].diff[...] = 2 * top[0].diff
'''

NET_WITH_PYTHON_LAYER = '''
force_backward: true
input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "double" type: "Python" bottom: "conv1" top: "doubled"
        python_param { module: "fastpath_double" layer: "Double" } }
layer { name: "conv2" type: "Convolution" bottom: "doubled" top: "conv2"
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "pool" type: "Pooling" bottom: "conv2" top: "pool" pooling_param { pool: AVE kernel_size: 3 } }
'''


def test_python_layer_cuts_the_net_into_segments(tmp_path, monkeypatch):
    (tmp_path / "fastpath_double.py").write_text(PY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET_WITH_PYTHON_LAYER)
    x = np.random.RandomState(0).randn(2, 3, 8, 8).astype(np.float32)
    states = []
    for fast in (False, True):
        caffe.set_random_seed(3)
        net = make_net(str(proto), None, fast)
        if fast:
            net.params["conv1"][0].data[...] = states[0]["w1"]
            net.params["conv2"][0].data[...] = states[0]["w2"]
        net.blobs["data"].data[...] = x
        net.forward()
        net.blobs["pool"].diff[...] = 1.0
        net.backward()
        s = state(net)
        s["w1"] = net.params["conv1"][0].data.copy()
        s["w2"] = net.params["conv2"][0].data.copy()
        states.append(s)
    assert_same(states[0], states[1])
    kinds = [k for k, _ in net._steps(0, len(net.layers) - 1)]
    assert kinds == ["source", "segment", "layer", "segment"]
    sys.modules.pop("fastpath_double", None)


def test_writes_and_reshapes_between_calls_reach_the_graph(tmp_path):
    gs = gh.load("caffenet_tiny")
    net = make_net(gs.prototxt, gs.weights, fast=True)
    ref = make_net(gs.prototxt, gs.weights, fast=False)
    data = net.inputs[0]
    x = gs.npz[f"input/{data}"]
    conv = next(n for n in net.params)
    for step in range(3):
        for n in (net, ref):
            if step == 1:       # a user write to a parameter reaches the next call
                n.params[conv][0].data[...] *= -1
            if step == 2:       # a new batch size: reshape, new graph
                n.blobs[data].reshape(1, *x.shape[1:])
                n.reshape()
            n.blobs[data].data[...] = x[:n.blobs[data].shape[0]]
            n.forward()
        assert_same(state(ref), state(net))


def test_parameters_are_not_uploaded_when_untouched(tmp_path, monkeypatch):
    """A plain forward copies no parameter and allocates no gradient per call."""
    gs = gh.load("caffenet_tiny")
    net = make_net(gs.prototxt, gs.weights, fast=True)
    net.blobs[net.inputs[0]].data[...] = gs.npz[f"input/{net.inputs[0]}"]
    net.params[next(iter(net.params))][0].data      # exported once, then dropped
    net.forward()
    uploads = []
    from caffe_compat.pycaffe import synced
    real = synced.ParamArray._upload
    monkeypatch.setattr(synced.ParamArray, "_upload",
                        lambda self: uploads.append(self) or real(self))
    for _ in range(3):
        net.forward()
    assert uploads == []
    held = net.params[next(iter(net.params))][0].data   # held: may be written any time
    held[...] += 0
    net.forward()
    assert len(uploads) == 1


def test_blobs_not_returned_are_computed_on_first_read_with_that_calls_inputs():
    """Outside recording a call returns only the blobs it needs; the others are computed
    on first read from the call's own inputs, then returned by later calls."""
    gs = gh.load("caffenet_tiny")
    net = make_net(gs.prototxt, gs.weights, fast=True)
    ref = make_net(gs.prototxt, gs.weights, fast=False)
    data = net.inputs[0]
    x = gs.npz[f"input/{data}"]
    middle = net._layer_names[len(net.layers) // 2]
    blob = net.top_names[middle][0]
    for n in (net, ref):
        n.blobs[data].data[...] = x
        n.forward()
        n.blobs[data].data[...] = -x          # written, not yet run: the blob keeps x's value
    assert net._data[blob]._lazy is not None
    np.testing.assert_allclose(net.blobs[blob].data, ref.blobs[blob].data, rtol=1e-6, atol=1e-6)
    for n in (net, ref):
        n.forward()
    assert net._data[blob]._lazy is None      # read once: returned from now on
    np.testing.assert_allclose(net.blobs[blob].data, ref.blobs[blob].data, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("between", ["nothing", "new input", "param write", "copy_from",
                                     "reshape", "second backward"])
def test_diffs_not_tapped_are_computed_on_first_read_as_the_backward_saw_it(between, tmp_path):
    """A backward taps only the diffs the user has read before; the others are computed
    on first read from that backward's inputs, heads and weights, whatever ran between
    (a forward on new data, a parameter write, new weights, a reshape), and add nothing
    to the parameter diffs."""
    gs = gh.load("caffenet_tiny")
    prototxt = force_backward(gs.prototxt, tmp_path)
    other = str(tmp_path / "other.caffemodel")
    donor = make_net(prototxt, gs.weights, fast=False)
    for blobs in donor.params.values():
        blobs[0].data[...] *= 0.5
    donor.save(other)
    nets = [make_net(prototxt, gs.weights, fast) for fast in (False, True)]
    data = nets[0].inputs[0]
    x = gs.npz[f"input/{data}"]
    middle = nets[0]._layer_names[len(nets[0].layers) // 2]
    blob = nets[0].bottom_names[middle][0]
    for n in nets:
        n.blobs[data].data[...] = x
        n.forward()
        for name in n.outputs:      # (not all ones: a Softmax's gradient of ones is zero)
            n.blobs[name].diff[...] = np.random.RandomState(1).randn(*n.blobs[name].shape)
        n.backward()
    assert nets[1]._diff[blob].is_lazy()
    assert np.abs(nets[0].blobs[blob].diff).max() > 1e-3
    for n in nets:
        if between == "new input":
            n.blobs[data].data[...] = -x
            n.forward()
        elif between == "param write":
            n.params[middle if middle in n.params else next(iter(n.params))][0].data[...] *= -1
            n.forward()
        elif between == "copy_from":
            n.copy_from(other)
        elif between == "reshape":
            n.blobs[data].reshape(1, *x.shape[1:])
            n.reshape()
        elif between == "second backward":   # parameter diffs accumulate once per backward
            n.backward()
    assert_same(state(nets[0]), state(nets[1]))
    if between == "nothing":                # read once: tapped from the next recording on
        nets[1].forward()
        nets[1].backward()
        assert not nets[1]._diff[blob].is_lazy()


def test_a_held_parameter_buffer_is_not_a_write_and_a_loop_of_writes_turns_lazy_off(tmp_path):
    """Holding ``net.params[...][0].data`` re-uploads it at every call but computes
    nothing pending; a script that writes weights at every call gets eager recordings
    after its second write (each write would otherwise compute the pending values)."""
    gs = gh.load("caffenet_tiny")
    net = make_net(force_backward(gs.prototxt, tmp_path), gs.weights, fast=True)
    data = net.inputs[0]
    net.blobs[data].data[...] = gs.npz[f"input/{data}"]
    layer = next(iter(net.params))
    held = net.params[layer][0].data
    settled = []
    real = type(net)._settle_lazy
    type(net)._settle_lazy = lambda self: settled.append(1) or real(self)
    try:
        for _ in range(3):
            net.forward()
            set_output_diffs(net, 1.0)
            net.backward()
        assert settled == [] and net.lazy_blobs
        for step in range(2):
            held *= 0.9                     # a training loop's update
            net.forward()
            set_output_diffs(net, 1.0)
            net.backward()
            assert len(settled) == step + 1
        assert not net.lazy_blobs
    finally:
        type(net)._settle_lazy = real
