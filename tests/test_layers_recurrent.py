"""RNN, LSTM and LSTMUnit (Caffe's recurrent layers) and an LRCN-style net.

Each layer is checked against a float64 numpy reference written here from Caffe's
sources: the forward of the unrolled net (recurrent_layer.cpp, rnn_layer.cpp,
lstm_layer.cpp) and, for the backward, the Backward formulas of lstm_unit_layer.cpp and
of the unrolled InnerProduct/Scale/Eltwise/TanH layers, including what Caffe does not
propagate (cont, the carried state, exposed h_0/c_0 bottoms, diffs on exposed h_T/c_T
tops). The references' own gradients are checked against central finite differences.
Tolerances are the project's: forward rel. L2 1e-5, backward 1e-4; every case runs
imperatively and hybridized. Then an LRCN-style net runs through ``caffe_compat.Net``,
trains a few solver steps, and a T=1 "captioner" fed one word per forward (Caffe's
carried state) equals one T-step forward, through pycaffe and the hybridized block.
"""
from __future__ import annotations

import glob
import os
import textwrap

import mxnet as mx
import numpy as np
import pytest
from google.protobuf import text_format

import caffe_compat as caffe
from caffe_compat.engine.build import build_layer, run_layer
from caffe_compat.engine.layer import layer_class
from caffe_compat.engine.layers.recurrent import recurrent_layers
from caffe_compat.engine.network import CaffeNet
from caffe_compat.errors import LayerError
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
from caffe_compat.proto import caffe_pb2

FWD, BWD = 1e-5, 1e-4
MODES = ["imperative", "hybridized"]
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpus",
                                           "bvlc_caffe_pr2033_recurrent"))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- numpy references (float64) -------------------------------------------------------
def ref_lstm_unit(c_prev, gates, cont):
    """lstm_unit_layer.cpp Forward on (N, 4H) gates, cont (N,); returns c, h, cache."""
    hdim = c_prev.shape[-1]
    i = sigmoid(gates[:, :hdim])
    f = cont[:, None] * sigmoid(gates[:, hdim:2 * hdim])
    f[cont == 0] = 0.0
    o = sigmoid(gates[:, 2 * hdim:3 * hdim])
    g = np.tanh(gates[:, 3 * hdim:])
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return c, h, (i, f, o, g, c_prev, c)


def ref_lstm_unit_backward(cache, dc, dh):
    """lstm_unit_layer.cpp Backward: (dc_prev, dgates) with Caffe's f (1 - f)."""
    i, f, o, g, c_prev, c = cache
    tanh_c = np.tanh(c)
    c_term = dc + dh * o * (1 - tanh_c ** 2)
    dc_prev = c_term * f
    dgates = np.concatenate([c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
                             dh * tanh_c * o * (1 - o), c_term * i * (1 - g ** 2)], axis=1)
    return dc_prev, dgates


def ref_lstm(x, cont, blobs, h0, c0, x_static=None, head=None):
    """The unrolled LSTM of lstm_layer.cpp. Returns (h (T,N,H), h_T, c_T, grads) with
    grads {"x", "x_static", blob name...} for top diff ``head`` (None: no backward)."""
    T, N = cont.shape
    W_xc, b_c, W_hc = blobs["W_xc"], blobs["b_c"], blobs["W_hc"]
    X = x.reshape(T, N, -1)
    gx = X @ W_xc.T + b_c
    gs = x_static.reshape(N, -1) @ blobs["W_xc_static"].T if x_static is not None else 0.0
    h, c, hs, caches, conted = h0, c0, [], [], []
    for t in range(T):
        hc = cont[t][:, None] * h
        gates = hc @ W_hc.T + gx[t] + gs
        c, h, cache = ref_lstm_unit(c, gates, cont[t])
        hs.append(h), caches.append(cache), conted.append(hc)
    out = np.stack(hs)
    if head is None:
        return out, h, c, None
    grads = {k: np.zeros_like(v) for k, v in blobs.items()}
    dgx = np.zeros_like(gx)
    dstatic = np.zeros((N, W_hc.shape[0]))
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
    for t in reversed(range(T)):
        dc_prev, dgates = ref_lstm_unit_backward(caches[t], dc_next, head[t] + dh_next)
        grads["W_hc"] += dgates.T @ conted[t]
        dh_next = cont[t][:, None] * (dgates @ W_hc)      # Scale layer backward
        dc_next = dc_prev
        dgx[t] = dgates
        dstatic += dgates
    grads["W_xc"] = np.einsum("tnj,tnk->jk", dgx, X)
    grads["b_c"] = dgx.sum(axis=(0, 1))
    grads["x"] = (dgx @ W_xc).reshape(x.shape)
    if x_static is not None:
        grads["W_xc_static"] = dstatic.T @ x_static.reshape(N, -1)
        grads["x_static"] = (dstatic @ blobs["W_xc_static"]).reshape(x_static.shape)
    return out, h, c, grads


def ref_rnn(x, cont, blobs, h0, x_static=None, head=None):
    """The unrolled RNN of rnn_layer.cpp: returns (o (T,N,H), h_T, grads)."""
    T, N = cont.shape
    X = x.reshape(T, N, -1)
    gx = X @ blobs["W_xh"].T + blobs["b_h"]
    gs = x_static.reshape(N, -1) @ blobs["W_xh_static"].T if x_static is not None else 0.0
    h, hs, conted = h0, [], []
    for t in range(T):
        hc = cont[t][:, None] * h
        h = np.tanh(hc @ blobs["W_hh"].T + gx[t] + gs)
        hs.append(h), conted.append(hc)
    H = np.stack(hs)
    o = np.tanh(H @ blobs["W_ho"].T + blobs["b_o"])
    if head is None:
        return o, h, None
    grads = {k: np.zeros_like(v) for k, v in blobs.items()}
    do_pre = head * (1 - o ** 2)
    grads["W_ho"] = np.einsum("tnj,tnk->jk", do_pre, H)
    grads["b_o"] = do_pre.sum(axis=(0, 1))
    dH = do_pre @ blobs["W_ho"]
    dpre_all = np.zeros_like(gx)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(T)):
        dpre = (dH[t] + dh_next) * (1 - hs[t] ** 2)
        grads["W_hh"] += dpre.T @ conted[t]
        dh_next = cont[t][:, None] * (dpre @ blobs["W_hh"])
        dpre_all[t] = dpre
    grads["W_xh"] = np.einsum("tnj,tnk->jk", dpre_all, X)
    grads["b_h"] = dpre_all.sum(axis=(0, 1))
    grads["x"] = (dpre_all @ blobs["W_xh"]).reshape(x.shape)
    if x_static is not None:
        dstatic = dpre_all.sum(axis=0)
        grads["W_xh_static"] = dstatic.T @ x_static.reshape(N, -1)
        grads["x_static"] = (dstatic @ blobs["W_xh_static"]).reshape(x_static.shape)
    return o, h, grads


# ---- helpers ----------------------------------------------------------------------------
def layer_param(text: str) -> caffe_pb2.LayerParameter:
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def recurrent_text(kind: str, num_output: int, expose: bool = False) -> str:
    return (f'name: "{kind.lower()}" type: "{kind}" recurrent_param {{ num_output: {num_output} '
            f'weight_filler {{ type: "uniform" min: -0.5 max: 0.5 }} '
            f'bias_filler {{ type: "uniform" min: -0.5 max: 0.5 }} '
            f'expose_hidden: {"true" if expose else "false"} }}')


def build(text, bottoms, mode):
    layer = build_layer(layer_param(text), [b.shape for b in bottoms])
    if mode == "hybridized":
        layer.hybridize()
    return layer


def run(layer, bottoms, heads):
    """Forward + backward with ``heads`` as top diffs; returns (tops, bottom grads)."""
    xs = [mx.nd.array(b.astype(np.float32)) for b in bottoms]
    for x in xs:
        x.attach_grad()
    with mx.autograd.record():
        tops = run_layer(layer, *xs)
    mx.autograd.backward(tops, [mx.nd.array(h.astype(np.float32)) for h in heads])
    return [t.asnumpy() for t in tops], [x.grad.asnumpy() for x in xs]


def blob_values(layer) -> dict:
    return {n: getattr(layer, n).data().asnumpy().astype(np.float64) for n in layer.blob_names}


def blob_grads(layer) -> dict:
    return {n: getattr(layer, n).grad().asnumpy() for n in layer.blob_names}


def sequence_data(rng, T=5, N=3, in_shape=(2, 3), static_shape=(4,), fractional=False):
    x = rng.uniform(-1, 1, (T, N) + in_shape)
    cont = np.ones((T, N))
    cont[0, :] = 0            # every stream starts a sequence
    cont[2, 1 % N] = 0        # a reset mid-sequence in stream 1
    cont[3, 2 % N] = 0        # and another one in stream 2
    if fractional:
        cont[4, 0] = 0.5      # not a Caffe convention, but Caffe's formulas still apply
    x_static = rng.uniform(-1, 1, (N,) + static_shape)
    return x, cont, x_static


# ---- the references are the calculus (binary cont) ---------------------------------------
def numeric_grad(fn, array, eps=1e-6):
    g = np.zeros_like(array)
    flat, gflat = array.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = fn()
        flat[k] = old - eps
        down = fn()
        flat[k] = old
        gflat[k] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_numpy_references_match_finite_differences(kind):
    rng = np.random.RandomState(3)
    T, N, K, S, H = 4, 2, 3, 2, 3
    x, cont, x_static = sequence_data(rng, T, N, (K,), (S,))
    gates = 4 if kind == "LSTM" else 1
    blobs = {"W_xc": (gates * H, K), "b_c": (gates * H,), "W_xc_static": (gates * H, S),
             "W_hc": (gates * H, H)}
    if kind == "RNN":
        blobs = {"W_xh": (H, K), "b_h": (H,), "W_xh_static": (H, S), "W_hh": (H, H),
                 "W_ho": (H, H), "b_o": (H,)}
    blobs = {k: rng.uniform(-0.8, 0.8, s) for k, s in blobs.items()}
    h0 = rng.uniform(-1, 1, (N, H))
    c0 = rng.uniform(-1, 1, (N, H))
    cont[0, 1] = 1            # stream 1 continues from h0/c0: those terms are exercised
    head = rng.uniform(-1, 1, (T, N, H))

    def forward(backward=False):
        if kind == "LSTM":
            out, _, _, grads = ref_lstm(x, cont, blobs, h0, c0, x_static, head if backward else None)
        else:
            out, _, grads = ref_rnn(x, cont, blobs, h0, x_static, head if backward else None)
        return grads if backward else float((out * head).sum())

    grads = forward(backward=True)
    for name, array in list(blobs.items()) + [("x", x), ("x_static", x_static)]:
        assert rel_err(grads[name], numeric_grad(forward, array)) < 1e-7, name


def test_lstm_unit_reference_matches_finite_differences_for_binary_cont():
    rng = np.random.RandomState(4)
    c_prev, gates = rng.uniform(-1, 1, (3, 2)), rng.uniform(-2, 2, (3, 8))
    cont = np.array([1.0, 0.0, 1.0])
    dc, dh = rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, (3, 2))

    def loss():
        c, h, _ = ref_lstm_unit(c_prev, gates, cont)
        return float((c * dc).sum() + (h * dh).sum())

    dc_prev, dgates = ref_lstm_unit_backward(ref_lstm_unit(c_prev, gates, cont)[2], dc, dh)
    assert rel_err(dc_prev, numeric_grad(loss, c_prev)) < 1e-7
    assert rel_err(dgates, numeric_grad(loss, gates)) < 1e-7


# ---- LSTM and RNN layers against the references ------------------------------------------
CASES = [(static, expose) for static in (False, True) for expose in (False, True)]


def _layer_case(kind, mode, static, expose, fractional=False):
    rng = np.random.RandomState(11 + static + 2 * expose)
    T, N, H = 5, 3, 4
    x, cont, x_static = sequence_data(rng, T, N, fractional=fractional)
    states = ["h", "c"] if kind == "LSTM" else ["h"]
    initial = {s: rng.uniform(-1, 1, (1, N, H)) for s in states}
    bottoms = [x, cont] + ([x_static] if static else [])
    if expose:
        cont[0, 1] = 1        # stream 1 continues from the given h_0 (c_0)
        bottoms += [initial[s] for s in states]
    layer = build(recurrent_text(kind, H, expose), bottoms, mode)
    return rng, layer, bottoms, x, cont, (x_static if static else None), initial, states


def _reference(kind, x, cont, blobs, init, x_static, head):
    if kind == "LSTM":
        out, h_T, c_T, grads = ref_lstm(x, cont, blobs, init["h"][0], init["c"][0], x_static, head)
        return out, [h_T[None], c_T[None]], grads
    out, h_T, grads = ref_rnn(x, cont, blobs, init["h"][0], x_static, head)
    return out, [h_T[None]], grads


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("static,expose", CASES, ids=[f"static{s:d}-expose{e:d}" for s, e in CASES])
@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_recurrent_layer_matches_caffe_reference(kind, mode, static, expose):
    rng, layer, bottoms, x, cont, x_static, initial, states = _layer_case(kind, mode, static, expose)
    T, N = cont.shape
    H = layer.num_output
    blobs = blob_values(layer)
    expected_names = (["W_xc", "b_c"] + (["W_xc_static"] if static else []) + ["W_hc"]
                      if kind == "LSTM" else
                      ["W_xh", "b_h"] + (["W_xh_static"] if static else []) + ["W_hh", "W_ho", "b_o"])
    assert layer.blob_names == expected_names
    head = rng.uniform(-1, 1, (T, N, H))
    # Diffs arriving at exposed h_T/c_T tops are dropped by Caffe: give them some anyway.
    heads = [head] + ([rng.uniform(-1, 1, (1, N, H)) for _ in states] if expose else [])
    init = initial if expose else {s: np.zeros((1, N, H)) for s in states}

    tops, bottom_grads = run(layer, bottoms, heads)
    out, finals, grads = _reference(kind, x, cont, blobs, init, x_static, head)
    assert len(tops) == (1 + len(states) if expose else 1)
    assert rel_err(tops[0], out) < FWD
    for top, final in zip(tops[1:], finals):
        assert rel_err(top, final) < FWD
    assert rel_err(bottom_grads[0], grads["x"]) < BWD
    assert not bottom_grads[1].any()                        # cont
    if static:
        assert rel_err(bottom_grads[2], grads["x_static"]) < BWD
    for g in bottom_grads[2 + static:]:                     # exposed h_0 / c_0
        assert not g.any()
    for name, g in blob_grads(layer).items():
        assert rel_err(g, grads[name]) < BWD, name

    if expose:
        return
    # Caffe carries h_T (c_T) into the next forward's h_0 (c_0): a second batch whose
    # streams 0 and 2 continue uses them (and W_hc/W_hh get that step's gradient).
    for s, final in zip(states, finals):
        assert rel_err(getattr(layer, f"{s}_carry").data().asnumpy(), final) < FWD
    x2 = rng.uniform(-1, 1, x.shape)
    cont2 = np.ones_like(cont)
    cont2[0, 1] = 0
    bottoms2 = [x2, cont2] + ([x_static] if static else [])
    tops2, bottom_grads2 = run(layer, bottoms2, [head])
    out2, finals2, grads2 = _reference(kind, x2, cont2, blobs, dict(zip(states, finals)),
                                       x_static, head)
    assert rel_err(tops2[0], out2) < FWD
    assert rel_err(bottom_grads2[0], grads2["x"]) < BWD
    for name, g in blob_grads(layer).items():
        assert rel_err(g, grads2[name]) < BWD, name
    layer.reset_state()
    for s in states:
        assert not getattr(layer, f"{s}_carry").data().asnumpy().any()


@pytest.mark.parametrize("mode", MODES)
def test_lstm_fractional_cont_follows_caffe_formulas(mode):
    rng, layer, bottoms, x, cont, _, _, states = _layer_case("LSTM", mode, False, False,
                                                             fractional=True)
    head = rng.uniform(-1, 1, (5, 3, 4))
    tops, bottom_grads = run(layer, bottoms, [head])
    zeros = {s: np.zeros((1, 3, 4)) for s in states}
    out, _, grads = _reference("LSTM", x, cont, blob_values(layer), zeros, None, head)
    assert rel_err(tops[0], out) < FWD
    assert rel_err(bottom_grads[0], grads["x"]) < BWD
    for name, g in blob_grads(layer).items():
        assert rel_err(g, grads[name]) < BWD, name


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_hybridized_equals_imperative_over_carried_state(kind):
    rng = np.random.RandomState(5)
    x, cont, x_static = sequence_data(rng)
    cont[0, :] = [0, 1, 1]
    outs = {}
    for mode in MODES:
        caffe.set_random_seed(9)
        layer = build(recurrent_text(kind, 4), [x, cont, x_static], mode)
        outs[mode] = [run(layer, [x * k, cont, x_static], [np.ones((5, 3, 4))])[0][0]
                      for k in (1.0, -0.5, 2.0)]
    for a, b in zip(outs["imperative"], outs["hybridized"]):
        assert rel_err(b, a) < 1e-6


def test_stream_count_change_keeps_or_restarts_the_carried_state():
    rng = np.random.RandomState(6)
    x, cont, _ = sequence_data(rng, N=4)
    layer = build(recurrent_text("LSTM", 3), [x, cont], "imperative")
    run(layer, [x, cont], [np.ones((5, 4, 3))])
    carried = layer.h_carry.data().asnumpy().copy()
    from caffe_compat.engine.build import shape_layer
    shape_layer(layer, [(5, 2, 2, 3), (5, 2)], first=False)       # N shrinks: first 2 kept
    assert np.array_equal(layer.h_carry.data().asnumpy(), carried[:, :2])
    tops, _ = run(layer, [x[:, :2], cont[:, :2]], [np.ones((5, 2, 3))])
    assert tops[0].shape == (5, 2, 3)
    shape_layer(layer, [(5, 6, 2, 3), (5, 6)], first=False)       # N grows: zeros
    assert layer.h_carry.shape == (1, 6, 3) and not layer.h_carry.data().asnumpy().any()


# ---- LSTMUnit ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_lstm_unit_layer_matches_caffe_backward(mode):
    rng = np.random.RandomState(8)
    N, H = 5, 3
    c_prev = rng.uniform(-1, 1, (1, N, H))
    gates = rng.uniform(-2, 2, (1, N, 4 * H))
    cont = np.array([[1.0, 0.0, 1.0, 0.25, 2.0]])      # fractional: Caffe's f (1 - f)
    layer = build('name: "unit" type: "LSTMUnit"', [c_prev, gates, cont], mode)
    assert layer.blob_names == [] and layer.top_shapes == [(1, N, H), (1, N, H)]
    dc, dh = rng.uniform(-1, 1, (1, N, H)), rng.uniform(-1, 1, (1, N, H))
    (c, h), grads = run(layer, [c_prev, gates, cont], [dc, dh])
    ref_c, ref_h, cache = ref_lstm_unit(c_prev[0], gates[0], cont[0])
    assert rel_err(c[0], ref_c) < FWD and rel_err(h[0], ref_h) < FWD
    dc_prev, dgates = ref_lstm_unit_backward(cache, dc[0], dh[0])
    assert rel_err(grads[0][0], dc_prev) < BWD
    assert rel_err(grads[1][0], dgates) < BWD
    assert not grads[2].any()
    # Caffe's forget-gate derivative is not the calculus for cont = 0.25 or 2
    f_cols = slice(H, 2 * H)
    s = sigmoid(gates[0][:, f_cols])
    true_df = (dc[0] + dh[0] * cache[2] * (1 - np.tanh(ref_c) ** 2)) * c_prev[0] \
        * cont[0][:, None] * s * (1 - s)
    assert rel_err(grads[1][0][3:, f_cols], true_df[3:]) > 1e-2


# ---- errors -------------------------------------------------------------------------------
def test_bad_shapes_and_parameters_name_the_layer():
    lstm = build(recurrent_text("LSTM", 3), [np.zeros((4, 2, 5)), np.zeros((4, 2))], "imperative")
    from caffe_compat.engine.build import shape_layer
    with pytest.raises(LayerError, match='"lstm".*timesteps changed'):
        shape_layer(lstm, [(5, 2, 5), (5, 2)], first=False)
    with pytest.raises(LayerError, match="cont"):
        shape_layer(lstm, [(4, 2, 5), (4, 3)], first=False)
    with pytest.raises(LayerError, match="weights expect 5"):
        shape_layer(lstm, [(4, 2, 6), (4, 2)], first=False)
    with pytest.raises(LayerError, match="num_output must be positive"):
        build_layer(layer_param('name: "r" type: "RNN"'), [(4, 2, 5), (4, 2)])
    with pytest.raises(LayerError, match="at least 3 axes"):
        build_layer(layer_param(recurrent_text("RNN", 2)), [(4, 2), (4, 2)])
    with pytest.raises(LayerError, match="at least 4 bottom"):
        build_layer(layer_param(recurrent_text("LSTM", 2, expose=True)),
                    [(4, 2, 5), (4, 2), (1, 2, 2)])
    with pytest.raises(LayerError, match=r"hidden state input shape: \(1, 2, 2\)"):
        build_layer(layer_param(recurrent_text("RNN", 2, expose=True)),
                    [(4, 2, 5), (4, 2), (1, 2, 3)])
    with pytest.raises(LayerError, match="4 \\* 3"):
        build_layer(layer_param('name: "u" type: "LSTMUnit"'), [(1, 2, 3), (1, 2, 11), (1, 2)])
    for name in ("LSTM", "RNN", "LSTMUnit"):
        assert layer_class(name).origin == "BVLC"


# ---- an LRCN-style net through pycaffe and the solver ----------------------------------------
T, N, VOCAB, EMBED, HIDDEN, FEAT = 6, 4, 11, 5, 7, 3


def lrcn_net(steps: int) -> str:
    """Words -> Embed -> LSTM (lstm1) -> LSTM with a static image feature (lstm2) ->
    InnerProduct(axis 2) -> SoftmaxWithLoss(axis 2), like LRCN's factored captioner."""
    uniform = 'weight_filler { type: "uniform" min: -0.3 max: 0.3 }'
    return textwrap.dedent(f'''
        name: "lrcn_tiny"
        layer {{ name: "input" type: "Input" top: "words" top: "cont" top: "target" top: "image"
                input_param {{ shape {{ dim: {steps} dim: {N} }} shape {{ dim: {steps} dim: {N} }}
                               shape {{ dim: {steps} dim: {N} }} shape {{ dim: {N} dim: {FEAT} }} }} }}
        layer {{ name: "embed" type: "Embed" bottom: "words" top: "embedded"
                embed_param {{ input_dim: {VOCAB} num_output: {EMBED} bias_term: false {uniform} }} }}
        layer {{ name: "lstm1" type: "LSTM" bottom: "embedded" bottom: "cont" top: "lstm1"
                recurrent_param {{ num_output: {HIDDEN} {uniform}
                                   bias_filler {{ type: "constant" value: 0 }} }} }}
        layer {{ name: "lstm2" type: "LSTM" bottom: "lstm1" bottom: "cont" bottom: "image"
                top: "lstm2"
                recurrent_param {{ num_output: {HIDDEN} {uniform}
                                   bias_filler {{ type: "constant" value: 0 }} }} }}
        layer {{ name: "predict" type: "InnerProduct" bottom: "lstm2" top: "predict"
                inner_product_param {{ num_output: {VOCAB} axis: 2 {uniform}
                                       bias_filler {{ type: "constant" value: 0 }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "predict" bottom: "target"
                top: "loss" loss_param {{ ignore_label: -1 }} softmax_param {{ axis: 2 }} }}
    ''')


def lrcn_batch(seed=0, steps=T):
    rng = np.random.RandomState(seed)
    words = rng.randint(0, VOCAB, (steps, N)).astype(np.float32)
    cont = np.ones((steps, N), np.float32)
    cont[0] = 0
    cont[3, 1] = 0
    target = np.roll(words, -1, axis=0)
    target[-1] = -1                       # ignored
    target[2, 1] = -1
    image = rng.uniform(-1, 1, (N, FEAT)).astype(np.float32)
    return dict(words=words, cont=cont, target=target, image=image)


def feed(net, batch):
    for name, value in batch.items():
        net.blobs[name].data[...] = value


def ref_lrcn(net, batch):
    """Loss and LSTM parameter diffs of the LRCN net, from the numpy references."""
    p = {name: [b.data.astype(np.float64) for b in blobs] for name, blobs in net.params.items()}
    words, cont = batch["words"].astype(int), batch["cont"].astype(np.float64)
    target, image = batch["target"].astype(int), batch["image"].astype(np.float64)
    zeros = np.zeros((N, HIDDEN))
    blobs1 = dict(zip(["W_xc", "b_c", "W_hc"], p["lstm1"]))
    blobs2 = dict(zip(["W_xc", "b_c", "W_xc_static", "W_hc"], p["lstm2"]))
    emb = p["embed"][0][words]
    h1 = ref_lstm(emb, cont, blobs1, zeros, zeros)[0]
    h2 = ref_lstm(h1, cont, blobs2, zeros, zeros, image)[0]
    logits = h2 @ p["predict"][0].T + p["predict"][1]
    prob = np.exp(logits - logits.max(axis=2, keepdims=True))
    prob /= prob.sum(axis=2, keepdims=True)
    valid = target >= 0
    picked = prob[valid, target[valid]]
    loss = -np.log(np.maximum(picked, np.finfo(np.float32).tiny)).sum() / valid.sum()
    dlogits = prob.copy()
    dlogits[valid, target[valid]] -= 1
    dlogits[~valid] = 0
    dlogits /= valid.sum()
    _, _, _, g2 = ref_lstm(h1, cont, blobs2, zeros, zeros, image, head=dlogits @ p["predict"][0])
    _, _, _, g1 = ref_lstm(emb, cont, blobs1, zeros, zeros, head=g2["x"])
    return loss, g1, g2


def test_lrcn_net_forward_backward_through_pycaffe(tmp_path):
    path = tmp_path / "lrcn.prototxt"
    path.write_text("force_backward: true\n" + lrcn_net(T))    # diffs for the image input too
    caffe.set_random_seed(1)
    net = caffe.Net(str(path), caffe.TRAIN)
    assert [b.data.shape for b in net.params["lstm2"]] == [
        (4 * HIDDEN, HIDDEN), (4 * HIDDEN,), (4 * HIDDEN, FEAT), (4 * HIDDEN, HIDDEN)]
    batch = lrcn_batch()
    feed(net, batch)
    loss = float(net.forward()["loss"])
    net.backward()
    ref_loss, g1, g2 = ref_lrcn(net, batch)
    assert abs(loss - ref_loss) / ref_loss < FWD
    for layer, names, grads in (("lstm1", ["W_xc", "b_c", "W_hc"], g1),
                                ("lstm2", ["W_xc", "b_c", "W_xc_static", "W_hc"], g2)):
        for blob, name in zip(net.params[layer], names):
            assert rel_err(blob.diff, grads[name]) < BWD, (layer, name)
    assert rel_err(net.blobs["image"].diff, g2["x_static"]) < BWD
    assert not net.blobs["cont"].diff.any()


def test_lrcn_net_trains_with_the_solver(tmp_path):
    (tmp_path / "lrcn.prototxt").write_text(lrcn_net(T))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(f'net: "{tmp_path / "lrcn.prototxt"}"\nbase_lr: 0.5\n'
                           'momentum: 0.9\nlr_policy: "fixed"\nclip_gradients: 5\n'
                           'display: 0\nrandom_seed: 3\n'
                           f'snapshot_prefix: "{tmp_path / "snap"}"\n')
    solver = caffe.SGDSolver(str(solver_path))
    feed(solver.net, lrcn_batch(seed=2))
    first = float(solver.net.forward()["loss"])
    solver.step(60)
    last = float(solver.net.forward()["loss"])
    assert np.isfinite(last) and last < 0.5 * first


@pytest.mark.filterwarnings("ignore:The 2-th input to HybridBlock is not used")  # target
def test_one_word_per_forward_equals_one_sequence_forward(tmp_path):
    """Caffe's captioner feeds a T=1 net one word per forward; the carried state makes
    that equal to one T-step forward, in pycaffe and in the hybridized block."""
    full_path, step_path = tmp_path / "full.prototxt", tmp_path / "step.prototxt"
    full_path.write_text(lrcn_net(T))
    step_path.write_text(lrcn_net(1))
    caffe.set_random_seed(4)
    full = caffe.Net(str(full_path), caffe.TEST)
    weights = str(tmp_path / "w.caffemodel")
    write_caffemodel(weights, [LayerWeights(name, full.layer_dict[name].type,
                                            [b.data.copy() for b in blobs])
                               for name, blobs in full.params.items()])
    batch = lrcn_batch(seed=5)
    feed(full, batch)
    expected = full.forward(blobs=["predict"])["predict"].copy()

    step_net = caffe.Net(str(step_path), weights, caffe.TEST)
    block = CaffeNet.from_prototxt(str(step_path), caffe.TEST, weights=weights)
    block.set_outputs(["predict"])
    block.hybridize(static_alloc=True)
    for t in range(T):
        step = {k: v[t:t + 1] if k != "image" else v for k, v in batch.items()}
        feed(step_net, step)
        got = step_net.forward(blobs=["predict"])["predict"]
        assert rel_err(got[0], expected[t]) < FWD, t
        inputs = [mx.nd.array(step[name]) for name in block.input_names]
        assert rel_err(block(*inputs).asnumpy()[0], expected[t]) < FWD, t
    for layer in recurrent_layers(block):
        layer.reset_state()
        assert not layer.h_carry.data().asnumpy().any()


# ---- real LRCN prototxts (PR #2033), when the shared corpus is present ------------------------
def corpus_prototxts():
    if not os.path.isdir(CORPUS_DIR):
        return []
    return sorted(glob.glob(os.path.join(CORPUS_DIR, "**", "*.prototxt"), recursive=True))


def solver_states(net_path):
    """(phase, stages) as the solvers beside a net build it (their train_state and
    test_state): the LRCN nets include no LSTM stack without their stages. A net no
    solver names is built without stages."""
    from caffe_compat.formats.solver_files import read_solver
    states = []
    folder = os.path.dirname(net_path)
    for name in sorted(os.listdir(folder)):
        if "solver" not in name:
            continue
        solver = read_solver(os.path.join(folder, name))
        nets = {os.path.basename(n) for n in [solver.net, solver.train_net, *solver.test_net] if n}
        if os.path.basename(net_path) not in nets:
            continue
        states.append((caffe.TRAIN, tuple(solver.train_state.stage)))
        states += [(caffe.TEST, tuple(t.stage)) for t in solver.test_state]
    return sorted(set(states)) or [(caffe.TRAIN, ()), (caffe.TEST, ())]



@pytest.mark.skipif(not corpus_prototxts(), reason="../shared/corpus/bvlc_caffe_pr2033_recurrent absent")
@pytest.mark.parametrize("path", corpus_prototxts() or [None])
def test_pr2033_prototxts_build(path):
    if "solver" in os.path.basename(path):
        pytest.skip("a solver definition")
    from caffe_compat.engine.graph import SOURCE_TYPES
    states = solver_states(path)
    for phase, stages in states:
        try:
            net = CaffeNet.from_prototxt(path, phase, stages=stages)
        except LayerError as exc:
            if exc.layer_type in SOURCE_TYPES - {"Input"}:
                continue      # its data files are not part of the corpus
            raise
        if not recurrent_layers(net):
            continue
        rng = np.random.RandomState(0)
        inputs = []
        for name in net.input_names:
            shape = net.blob_shapes[name]
            value = rng.randint(0, 2, shape) if "cont" in name else rng.uniform(0, 1, shape)
            inputs.append(mx.nd.array(value))
        outs = net(*inputs)
        for out in outs if isinstance(outs, (list, tuple)) else [outs]:
            assert np.isfinite(out.asnumpy()).all()
