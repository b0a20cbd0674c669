"""Input/Parameter/Silence, neuron, Eltwise, shape, Reduction/ArgMax and Softmax layers.

Each layer is checked against a numpy reference of Caffe's Forward and Backward (the
Backward formulas of the Caffe sources, not just the calculus), at the tolerances of
the project (forward rel. L2 1e-5, backward 1e-4), imperatively and hybridized; smooth
layers also against central finite differences. Then layer-by-layer parity with real
Caffe on every layer of these types in the golden sets.
"""
from __future__ import annotations

import os

import mxnet as mx
import numpy as np
import pytest
from google.protobuf import text_format

import golden_harness as gh
from caffe_compat.engine.build import build_layer, run_layer
from caffe_compat.errors import LayerError
from caffe_compat.proto import caffe_pb2

FWD, BWD = gh.FORWARD_TOL, gh.BACKWARD_TOL
MODES = ["imperative", "hybridized"]


# ---- helpers shared with test_layers_loss.py ------------------------------------------
def layer_param(text: str) -> caffe_pb2.LayerParameter:
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def make_layer(text_or_param, bottom_shapes, phase=caffe_pb2.TEST, mode="imperative",
               blobs=None):
    """A built layer (hybridized in mode "hybridized"), blobs optionally set."""
    param = layer_param(text_or_param) if isinstance(text_or_param, str) else text_or_param
    layer = build_layer(param, [tuple(np.shape(b)) if not isinstance(b, tuple) else b
                                for b in bottom_shapes], phase=phase)
    for p, value in zip(layer.blobs(), blobs or []):
        p.set_data(mx.nd.array(np.asarray(value, dtype=np.float32).reshape(p.shape)))
    if mode == "hybridized":
        layer.hybridize()
    return layer


def run(layer, bottoms, heads=None):
    """Forward (and backward with ``heads`` as top diffs) -> (tops, bottom grads, param
    grads) as float64 numpy arrays; tops keep MXNet's shapes."""
    xs = [mx.nd.array(np.asarray(b, dtype=np.float32)) for b in bottoms]
    for x in xs:
        x.attach_grad()
    with mx.autograd.record():
        tops = run_layer(layer, *xs)
    if heads is not None:
        outs, grads = [], []
        for t, h in zip(tops, heads):
            if h is None:
                continue
            outs.append(t)
            grads.append(mx.nd.array(np.asarray(h, dtype=np.float32).reshape(t.shape)))
        mx.autograd.backward(outs, grads)
    as64 = lambda a: a.asnumpy().astype(np.float64)
    return ([as64(t) for t in tops], [as64(x.grad) for x in xs],
            [as64(p.grad()) for p in layer.blobs()])


def assert_close(ours, ref, tol, what=""):
    ref = np.asarray(ref, dtype=np.float64)
    assert np.size(ours) == np.size(ref), f"{what}: size {np.shape(ours)} vs {ref.shape}"
    err = gh.rel_err(np.reshape(ours, ref.shape), ref)
    assert err <= tol, f"{what}: rel err {err:.3g} > {tol}"


def check(text, bottoms, forward, backward=None, mode="imperative", blobs=None,
          phase=caffe_pb2.TEST, seed=1):
    """Compare forward and (with random top diffs) backward with numpy references.

    ``forward(*bottoms) -> list of tops``; ``backward(bottoms, heads) -> (bottom grads
    (None = not checked), param grads)``.
    """
    bottoms = [as_float32(b) for b in bottoms]
    layer = make_layer(text, [np.shape(b) for b in bottoms], phase, mode, blobs)
    ref_tops = forward(*bottoms)
    rng = np.random.RandomState(seed)
    heads = [rng.randn(*np.shape(t)) for t in ref_tops]
    tops, grads, pgrads = run(layer, bottoms, heads if backward else None)
    assert len(tops) == len(ref_tops)
    for j, (t, r) in enumerate(zip(tops, ref_tops)):
        assert tuple(layer.top_shapes[j]) == tuple(np.shape(r)), f"top {j} shape"
        assert_close(t, r, FWD, f"top {j}")
    if backward:
        ref_grads, ref_pgrads = backward(bottoms, heads)
        for i, (g, r) in enumerate(zip(grads, ref_grads)):
            if r is not None:
                assert_close(g, r, BWD, f"bottom {i} diff")
        for i, (g, r) in enumerate(zip(pgrads, ref_pgrads)):
            assert_close(g, r, BWD, f"param {i} diff")
    return layer


def finite_difference(f, x, head, eps=1e-3):
    """d sum(f(x) * head) / dx by central differences in float64."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = np.sum(f(x) * head)
        x[i] = old - eps
        down = np.sum(f(x) * head)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def away_from(x, points, gap=0.02):
    """Nudge entries of x so none lies within ``gap`` of a kink."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + gap * np.sign(x[near] - p + 1e-12) * 2
    return as_float32(x)


def as_float32(a):
    """float64 values exactly representable in float32 (what the layer sees)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def rand(*shape, seed=0, scale=1.0):
    return as_float32(np.random.RandomState(seed).randn(*shape) * scale)


# ---- Input / Parameter / Silence ---------------------------------------------------
def test_input_one_shape_for_all_tops_and_pass_through():
    layer = make_layer('name: "in" type: "Input" top: "a" top: "b" '
                       'input_param { shape { dim: 2 dim: 3 } }', [])
    assert layer.top_shapes == [(2, 3), (2, 3)]
    a, b = rand(2, 3), rand(2, 3, seed=1)
    tops, _, _ = run(layer, [a, b])
    assert_close(tops[0], a, 0)
    assert_close(tops[1], b, 0)


def test_input_one_shape_per_top_and_fed_shapes():
    layer = make_layer('name: "in" type: "Input" top: "a" top: "b" '
                       'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } shape { dim: 1 } }', [])
    assert layer.top_shapes == [(1, 3, 4, 4), (1,)]
    assert layer.reshape([(5, 3, 8, 8), (5,)]) == [(5, 3, 8, 8), (5,)]
    with pytest.raises(LayerError, match="fed 1 array"):
        layer.reshape([(5, 3, 8, 8)])
    with pytest.raises(LayerError, match="one shape for all tops or one per top"):
        make_layer('name: "in" type: "Input" top: "a" top: "b" top: "c" input_param { '
                   'shape { dim: 1 } shape { dim: 2 } }', [])


@pytest.mark.parametrize("mode", MODES)
def test_parameter_blob_is_its_top(mode):
    value = rand(2, 3)
    layer = make_layer('name: "p" type: "Parameter" top: "p" '
                       'parameter_param { shape { dim: 2 dim: 3 } }', [], mode=mode, blobs=[value])
    assert layer.top_shapes == [(2, 3)]
    assert [p.shape for p in layer.blobs()] == [(2, 3)]
    head = rand(2, 3, seed=5)
    if mode == "imperative":
        with mx.autograd.record():
            top = layer()[0]
        top.backward(mx.nd.array(head))
    else:  # inside a graph the call needs some input to pick NDArray/Symbol
        with mx.autograd.record():
            top = layer(mx.nd.zeros((1,)))[0]
        top.backward(mx.nd.array(head))
    assert_close(top.asnumpy(), value, FWD)
    assert_close(layer.blobs()[0].grad().asnumpy(), head, BWD)


@pytest.mark.parametrize("mode", MODES)
def test_silence_has_no_tops(mode):
    layer = make_layer('name: "s" type: "Silence" bottom: "a" bottom: "b"', [(2,), (3,)], mode=mode)
    assert layer.top_shapes == []
    assert run_layer(layer, mx.nd.ones((2,)), mx.nd.ones((3,))) == []


# ---- neuron layers ---------------------------------------------------------------
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


NEURONS = {
    # name: (prototxt, forward(x), caffe backward(x, y, head), kinks)
    "relu": ('type: "ReLU"', lambda x: np.maximum(x, 0),
             lambda x, y, h: h * (x > 0), [0.0]),
    "leaky_relu": ('type: "ReLU" relu_param { negative_slope: 0.1 }',
                   lambda x: np.maximum(x, 0) + 0.1 * np.minimum(x, 0),
                   lambda x, y, h: h * ((x > 0) + 0.1 * (x <= 0)), [0.0]),
    "sigmoid": ('type: "Sigmoid"', sigmoid, lambda x, y, h: h * y * (1 - y), []),
    "tanh": ('type: "TanH"', np.tanh, lambda x, y, h: h * (1 - y * y), []),
    "absval": ('type: "AbsVal"', np.abs, lambda x, y, h: h * np.sign(x), [0.0]),
    "bnll": ('type: "BNLL"',
             lambda x: np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0)))),
             lambda x, y, h: h * np.exp(np.minimum(x, 50)) / (np.exp(np.minimum(x, 50)) + 1), []),
    "elu": ('type: "ELU" elu_param { alpha: 0.5 }',
            lambda x: np.maximum(x, 0) + 0.5 * (np.exp(np.minimum(x, 0)) - 1),
            lambda x, y, h: h * np.where(x > 0, 1.0, y + 0.5), [0.0]),
    "exp_e": ('type: "Exp"', np.exp, lambda x, y, h: h * y, []),
    "exp_base2": ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.3 }',
                  lambda x: np.power(2.0, 0.3 + 0.5 * x),
                  lambda x, y, h: h * y * np.log(2.0) * 0.5, []),
    "exp_e_shift": ('type: "Exp" exp_param { base: -1 scale: -1.5 shift: 0.2 }',
                    lambda x: np.exp(0.2 - 1.5 * x), lambda x, y, h: h * y * -1.5, []),
    "log_e": ('type: "Log"', np.log, lambda x, y, h: h / x, []),
    "log_base10": ('type: "Log" log_param { base: 10 scale: 2 shift: 0.5 }',
                   lambda x: np.log10(0.5 + 2 * x),
                   lambda x, y, h: h * 2 / (0.5 + 2 * x) / np.log(10), []),
    "power_sq": ('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }',
                 lambda x: (1 + 0.5 * x) ** 2, lambda x, y, h: h * 2 * 0.5 * (1 + 0.5 * x), []),
    "power_half": ('type: "Power" power_param { power: 0.5 scale: 3 shift: 0.2 }',
                   lambda x: (0.2 + 3 * x) ** 0.5, lambda x, y, h: h * 0.5 * 3 * y / (0.2 + 3 * x), []),
    "power_cube_noshift": ('type: "Power" power_param { power: 3 scale: -2 }',
                           lambda x: (-2 * x) ** 3, lambda x, y, h: h * 3 * y / x, []),
    "power_linear": ('type: "Power" power_param { scale: 2 shift: -1 }',
                     lambda x: 2 * x - 1, lambda x, y, h: h * 2, []),
    "power_zero": ('type: "Power" power_param { power: 0 scale: 2 shift: 3 }',
                   lambda x: np.ones_like(x), lambda x, y, h: 0 * h, []),
    "power_scale0": ('type: "Power" power_param { power: 3 scale: 0 shift: 2 }',
                     lambda x: np.full_like(x, 8.0), lambda x, y, h: 0 * h, []),
    "clip": ('type: "Clip" clip_param { min: -0.25 max: 0.5 }',
             lambda x: np.clip(x, -0.25, 0.5),
             lambda x, y, h: h * ((x >= -0.25) & (x <= 0.5)), [-0.25, 0.5]),
    "swish": ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * sigmoid(1.5 * x),
              lambda x, y, h: h * (1.5 * y + sigmoid(1.5 * x) * (1 - 1.5 * y)), []),
    "swish_default": ('type: "Swish"', lambda x: x * sigmoid(x),
                      lambda x, y, h: h * (y + sigmoid(x) * (1 - y)), []),
}
POSITIVE_INPUT = {"log_e", "log_base10", "power_half"}


def neuron_input(name, shape=(2, 3, 4, 5)):
    x = rand(*shape, seed=3)
    if name in POSITIVE_INPUT:
        x = np.abs(x) + 0.1
    if name == "power_cube_noshift":
        x = away_from(x, [0.0], 0.05)
    return x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(NEURONS))
def test_neuron_matches_caffe(name, mode):
    text, forward, backward, kinks = NEURONS[name]
    x = away_from(neuron_input(name), kinks)
    check(f'name: "n" {text}', [x], lambda x: [forward(x)],
          lambda b, h: ([backward(b[0], forward(b[0]), h[0])], []), mode=mode)


@pytest.mark.parametrize("name", sorted(n for n in NEURONS if not NEURONS[n][3]))
def test_smooth_neuron_gradient_matches_finite_differences(name):
    text, forward, _, _ = NEURONS[name]
    x = neuron_input(name, (2, 5))
    head = rand(2, 5, seed=7)
    layer = make_layer(f'name: "n" {text}', [(2, 5)])
    _, grads, _ = run(layer, [x], [head])
    assert_close(grads[0], finite_difference(forward, x, head), 2e-3, name)


@pytest.mark.parametrize("mode", MODES)
def test_neuron_gradients_at_kinks_follow_caffe(mode):
    x = np.array([[-1.0, 0.0, 0.5, -0.25, 0.5, 2.0]])
    cases = {
        'type: "ReLU"': [0, 0, 1, 0, 1, 1],
        'type: "ReLU" relu_param { negative_slope: 0.2 }': [0.2, 0.2, 1, 0.2, 1, 1],
        'type: "AbsVal"': [-1, 0, 1, -1, 1, 1],
        'type: "BNLL"': list(sigmoid(x[0])),
        'type: "ELU" elu_param { alpha: 0.5 }': [0.5 * np.exp(-1), 0.5, 1, 0.5 * np.exp(-0.25), 1, 1],
        'type: "Clip" clip_param { min: -0.25 max: 0.5 }': [0, 1, 1, 1, 1, 0],
    }
    for text, expected in cases.items():
        layer = make_layer(f'name: "k" {text}', [x.shape], mode=mode)
        _, grads, _ = run(layer, [x], [np.ones_like(x)])
        np.testing.assert_allclose(grads[0][0], expected, rtol=1e-6, atol=1e-7, err_msg=text)


@pytest.mark.parametrize("mode", MODES)
def test_threshold_is_strict_and_has_no_gradient(mode):
    x = np.array([[0.1, 0.2, 0.3, -1.0]])
    layer = make_layer('name: "t" type: "Threshold" threshold_param { threshold: 0.2 }',
                       [x.shape], mode=mode)
    assert not layer.allow_backward(0)
    tops, grads, _ = run(layer, [x], [np.ones_like(x)])
    np.testing.assert_array_equal(tops[0], [[0, 0, 1, 0]])
    np.testing.assert_array_equal(grads[0], 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_matches_caffe(shared, mode):
    x = away_from(rand(2, 3, 4, 5, seed=4), [0.0])
    slopes = np.array([0.3]) if shared else np.array([0.25, -0.1, 0.6])
    text = f'name: "p" type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}'

    def a(shape):
        return slopes.reshape((1, -1) + (1,) * (len(shape) - 2))

    def forward(x):
        return [np.maximum(x, 0) + a(x.shape) * np.minimum(x, 0)]

    def backward(b, h):
        x, head = b[0], h[0]
        dx = head * ((x > 0) + a(x.shape) * (x <= 0))
        ds = head * x * (x <= 0)
        ds = np.array([ds.sum()]) if shared else ds.sum(axis=(0, 2, 3))
        return [dx], [ds]

    layer = check(text, [x], forward, backward, mode=mode, blobs=[slopes])
    assert [p.shape for p in layer.blobs()] == [(1,) if shared else (3,)]
    assert layer.caffe_blob_shapes == [() if shared else (3,)]


def test_prelu_default_filler_and_2d_input():
    layer = make_layer('name: "p" type: "PReLU"', [(4, 3)])
    np.testing.assert_array_equal(layer.blobs()[0].data().asnumpy(), [0.25, 0.25, 0.25])
    x = np.array([[-1.0, 0.0, 2.0]] * 4)
    tops, grads, pgrads = run(layer, [x], [np.ones_like(x)])
    np.testing.assert_allclose(tops[0][0], [-0.25, 0, 2])
    np.testing.assert_allclose(grads[0][0], [0.25, 0.25, 1])   # x == 0 takes the slope
    np.testing.assert_allclose(pgrads[0], [-4, 0, 0])
    with pytest.raises(LayerError, match="at least 2 axes"):
        make_layer('name: "p" type: "PReLU"', [(4,)])


@pytest.mark.parametrize("train_flag", [True, False])
def test_dropout_test_phase_is_identity_whatever_autograd_says(train_flag):
    x = rand(3, 4, seed=2)
    layer = make_layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.3 }', [x.shape])
    xs = mx.nd.array(x)
    with mx.autograd.record(train_mode=train_flag):
        top = run_layer(layer, xs)[0]
    assert_close(top.asnumpy(), x, FWD)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_train_phase_inverted_scaling(mode):
    x = np.abs(rand(50, 40, seed=2)) + 0.5
    layer = make_layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
                       [x.shape], phase=caffe_pb2.TRAIN, mode=mode)
    xs = mx.nd.array(x)
    xs.attach_grad()
    with mx.autograd.predict_mode():          # MXNet's flag must not switch dropout off
        with mx.autograd.record(train_mode=False):
            top = run_layer(layer, xs)[0]
        top.backward(mx.nd.ones_like(top))
    y, g = top.asnumpy(), xs.grad.asnumpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    np.testing.assert_allclose(g, kept / 0.7, rtol=1e-6)
    assert 0.6 < kept.mean() < 0.8


@pytest.mark.parametrize("mode", MODES)
def test_dropout_scale_train_false_caffe_fast_rcnn(mode):
    """caffe-fast-rcnn's dropout_layer.cpp: TRAIN keeps x unscaled, TEST gives x * (1 - p)."""
    x = np.abs(rand(50, 40, seed=3)) + 0.5
    text = 'name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }'
    test_layer = make_layer(text, [x.shape], mode=mode)
    assert not test_layer.passes_bottom_through()
    assert_close(run_layer(test_layer, mx.nd.array(x))[0].asnumpy(), x * 0.75, FWD)
    train_layer = make_layer(text, [x.shape], phase=caffe_pb2.TRAIN, mode=mode)
    xs = mx.nd.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        top = run_layer(train_layer, xs)[0]
    top.backward(mx.nd.ones_like(top))
    y, g = top.asnumpy(), xs.grad.asnumpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept], rtol=1e-6)
    np.testing.assert_allclose(g, kept.astype(np.float32), rtol=1e-6)
    assert 0.65 < kept.mean() < 0.85
    # OpenCV's importer reads scale_train too: the same TEST numbers
    import cv2
    from caffe_compat.proto import caffe_pb2 as pb
    from google.protobuf import text_format
    net = pb.NetParameter()
    text_format.Parse('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 50 '
                      'dim: 40 } } } layer { ' + text + ' bottom: "x" top: "y" }', net)
    cv = cv2.dnn.readNetFromCaffe(bytearray(text_format.MessageToString(net).encode()))
    cv.setInput(x.astype(np.float32), "x")
    assert_close(cv.forward(), x * 0.75, FWD)


def test_dropout_sample_weights_test_segnet():
    """SegNet's Bayesian SegNet: dropout samples at TEST too (a new mask each forward)."""
    x = np.abs(rand(50, 40, seed=4)) + 0.5
    layer = make_layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.5 '
                       'sample_weights_test: true }', [x.shape])
    a, b = (run_layer(layer, mx.nd.array(x))[0].asnumpy() for _ in range(2))
    for y in (a, b):
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / 0.5, rtol=1e-6)
        assert 0.4 < kept.mean() < 0.6
    assert (a != b).any()


def test_neuron_parameter_errors():
    with pytest.raises(LayerError, match="base must be positive"):
        make_layer('name: "e" type: "Exp" exp_param { base: -2 }', [(2,)])
    with pytest.raises(LayerError, match="base must be positive"):
        make_layer('name: "l" type: "Log" log_param { base: 0 }', [(2,)])
    with pytest.raises(LayerError, match="greater than max"):
        make_layer('name: "c" type: "Clip" clip_param { min: 1 max: 0 }', [(2,)])
    with pytest.raises(LayerError, match="dropout_ratio"):
        make_layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 1 }', [(2,)])
    with pytest.raises(LayerError, match="exactly 1 bottom"):
        make_layer('name: "r" type: "ReLU"', [(2,), (2,)])


# ---- Eltwise ----------------------------------------------------------------------
def eltwise_bottoms(n, shape=(2, 3, 4), seed=0):
    return [rand(*shape, seed=seed + i) for i in range(n)]


@pytest.mark.parametrize("mode", MODES)
def test_eltwise_sum_with_coefficients(mode):
    bs = eltwise_bottoms(3)
    coeffs = [0.5, -1.5, 2.0]
    check('name: "e" type: "Eltwise" eltwise_param { operation: SUM coeff: 0.5 coeff: -1.5 coeff: 2 }',
          bs, lambda *b: [sum(c * x for c, x in zip(coeffs, b))],
          lambda b, h: ([c * h[0] for c in coeffs], []), mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_eltwise_sum_default_coefficients(mode):
    bs = eltwise_bottoms(2)
    check('name: "e" type: "Eltwise"', bs, lambda a, b: [a + b],
          lambda b, h: ([h[0], h[0]], []), mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stable", ["true", "false"])
def test_eltwise_prod(stable, mode):
    bs = eltwise_bottoms(3)

    def backward(b, h):
        return [h[0] * np.prod([b[j] for j in range(3) if j != i], axis=0) for i in range(3)], []

    check(f'name: "e" type: "Eltwise" eltwise_param {{ operation: PROD stable_prod_grad: {stable} }}',
          bs, lambda *b: [b[0] * b[1] * b[2]], backward, mode=mode)


def caffe_eltwise_max(bottoms):
    """eltwise_layer.cpp's forward with its max_idx_ mask."""
    a, b = bottoms[0], bottoms[1]
    top = np.where(a > b, a, b)
    mask = np.where(a > b, 0, 1)
    for k in range(2, len(bottoms)):
        better = bottoms[k] > top
        top = np.where(better, bottoms[k], top)
        mask = np.where(better, k, mask)
    return top, mask


@pytest.mark.parametrize("mode", MODES)
def test_eltwise_max_random(mode):
    bs = eltwise_bottoms(3)

    def backward(b, h):
        _, mask = caffe_eltwise_max(b)
        return [h[0] * (mask == i) for i in range(3)], []

    check('name: "e" type: "Eltwise" eltwise_param { operation: MAX }', bs,
          lambda *b: [caffe_eltwise_max(b)[0]], backward, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_eltwise_max_ties_follow_caffe(mode):
    # columns: a==b (> c) ; a==b==c ; a<b==c ; a>b, c==a ; c strictly largest
    a = np.array([[1.0, 2.0, 0.0, 3.0, 0.0]])
    b = np.array([[1.0, 2.0, 4.0, 1.0, 0.0]])
    c = np.array([[0.0, 2.0, 4.0, 3.0, 5.0]])
    layer = make_layer('name: "e" type: "Eltwise" eltwise_param { operation: MAX }',
                       [a.shape] * 3, mode=mode)
    tops, grads, _ = run(layer, [a, b, c], [np.ones_like(a)])
    np.testing.assert_array_equal(tops[0], [[1, 2, 4, 3, 5]])
    np.testing.assert_array_equal(grads[0], [[0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(grads[1], [[1, 1, 1, 0, 0]])   # a 0/1 tie goes to bottom 1
    np.testing.assert_array_equal(grads[2], [[0, 0, 0, 0, 1]])   # later ties keep the earlier


def test_eltwise_errors():
    with pytest.raises(LayerError, match="one coefficient per bottom"):
        make_layer('name: "e" type: "Eltwise" eltwise_param { coeff: 1 }', [(2,), (2,)])
    with pytest.raises(LayerError, match="only allowed for SUM"):
        make_layer('name: "e" type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 }',
                   [(2,), (2,)])
    with pytest.raises(LayerError, match="bottom 1 has shape"):
        make_layer('name: "e" type: "Eltwise"', [(2, 3), (3, 2)])


# ---- shape layers ------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis_text,axis", [("", 1), ("concat_param { axis: 0 }", 0),
                                            ("concat_param { axis: -1 }", 2),
                                            ("concat_param { concat_dim: 2 }", 2)])
def test_concat(axis_text, axis, mode):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, n in zip(shapes, (1, 2, 3)):
        s[axis] = n
    bs = [rand(*s, seed=i) for i, s in enumerate(shapes)]

    def backward(b, h):
        cuts = np.cumsum([x.shape[axis] for x in b])[:-1]
        return np.split(h[0], cuts, axis=axis), []

    check(f'name: "c" type: "Concat" {axis_text}', bs,
          lambda *b: [np.concatenate(b, axis=axis)], backward, mode=mode)


def test_concat_errors_and_single_bottom():
    with pytest.raises(LayerError, match="either axis or concat_dim"):
        make_layer('name: "c" type: "Concat" concat_param { axis: 1 concat_dim: 1 }', [(2, 3), (2, 3)])
    with pytest.raises(LayerError, match="except on axis 1"):
        make_layer('name: "c" type: "Concat"', [(2, 3), (3, 3)])
    x = rand(2, 3)
    check('name: "c" type: "Concat"', [x], lambda x: [x], lambda b, h: ([h[0]], []))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,axis,cuts", [
    ('slice_param { axis: 1 slice_point: 1 slice_point: 4 }', 1, [1, 4]),
    ('slice_param { axis: -1 }', 2, [2, 4]),            # 3 equal parts of 6
    ('slice_param { slice_dim: 0 slice_point: 1 }', 0, [1]),
])
def test_slice(text, axis, cuts, mode):
    x = rand(2, 6, 6, seed=3)
    tops = " ".join(f'top: "t{i}"' for i in range(len(cuts) + 1))
    check(f'name: "s" type: "Slice" bottom: "x" {tops} {text}', [x],
          lambda x: np.split(x, cuts, axis=axis),
          lambda b, h: ([np.concatenate(h, axis=axis)], []), mode=mode)


def test_slice_errors():
    with pytest.raises(LayerError, match="slice_point"):
        make_layer('name: "s" type: "Slice" top: "a" top: "b" top: "c" slice_param { slice_point: 2 }',
                   [(2, 6)])
    with pytest.raises(LayerError, match="must increase"):
        make_layer('name: "s" type: "Slice" top: "a" top: "b" top: "c" '
                   'slice_param { slice_point: 4 slice_point: 2 }', [(2, 6)])
    with pytest.raises(LayerError, match="evenly divide"):
        make_layer('name: "s" type: "Slice" top: "a" top: "b" top: "c" top: "d"', [(2, 6)])


@pytest.mark.parametrize("mode", MODES)
def test_split_copies_and_sums_gradients(mode):
    x = rand(2, 3, seed=1)
    check('name: "s" type: "Split" bottom: "x" top: "a" top: "b" top: "c"', [x],
          lambda x: [x, x, x], lambda b, h: ([h[0] + h[1] + h[2]], []), mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,top_shape", [
    ("", (2, 60)), ("flatten_param { axis: 2 }", (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5)),
    ("flatten_param { axis: 0 end_axis: -2 }", (24, 5)),
])
def test_flatten(text, top_shape, mode):
    x = rand(2, 3, 4, 5)
    check(f'name: "f" type: "Flatten" {text}', [x], lambda x: [x.reshape(top_shape)],
          lambda b, h: ([h[0].reshape(b[0].shape)], []), mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,top_shape", [
    ("shape { dim: 0 dim: -1 dim: 4 }", (2, 15, 4)),
    ("shape { dim: 3 dim: 2 dim: 0 dim: -1 }", (3, 2, 4, 5)),    # 0 copies bottom dim 2
    ("shape { dim: -1 }", (120,)),
    ("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (2, 2, 2, 5, 3)),   # on a (2, 4, 5, 3) bottom
    ("shape { dim: 1 dim: -1 } axis: -1", (2, 3, 4, 5, 1, 1)),
    ("shape { dim: 1 } axis: 0 num_axes: 0", (1, 2, 3, 4, 5)),
    ("shape { dim: 0 dim: 0 dim: 20 } axis: 0 num_axes: 4", (2, 3, 20)),
    ("shape { dim: 0 dim: 2 dim: 2 } axis: 1 num_axes: 2", (2, 3, 2, 2, 5)),
])
def test_reshape(text, top_shape, mode):
    x = rand(2, 3, 4, 5)
    if "axis: 1 num_axes: 1" in text:
        x = rand(2, 4, 5, 3)           # axis 1 (4) becomes 2 x 2
    check(f'name: "r" type: "Reshape" reshape_param {{ {text} }}', [x],
          lambda x: [x.reshape(top_shape)], lambda b, h: ([h[0].reshape(b[0].shape)], []), mode=mode)


def test_reshape_errors():
    with pytest.raises(LayerError, match="more than one -1"):
        make_layer('name: "r" type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }', [(2, 3)])
    with pytest.raises(LayerError, match="output count"):
        make_layer('name: "r" type: "Reshape" reshape_param { shape { dim: 5 } }', [(2, 3)])
    with pytest.raises(LayerError, match="no corresponding"):
        make_layer('name: "r" type: "Reshape" reshape_param { shape { dim: 0 dim: 0 dim: 0 } }', [(6, 1)])
    with pytest.raises(LayerError, match="cannot infer"):
        make_layer('name: "r" type: "Reshape" reshape_param { shape { dim: 4 dim: -1 } }', [(2, 3)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis,tiles", [(1, 3), (0, 2), (2, 2), (-1, 3)])
def test_tile(axis, tiles, mode):
    x = rand(2, 3, 4)
    ax = axis % 3

    def forward(x):
        outer = int(np.prod(x.shape[:ax]))
        block = x.reshape(outer, 1, -1)
        shape = list(x.shape)
        shape[ax] *= tiles
        return [np.repeat(block, tiles, axis=1).reshape(shape)]

    def backward(b, h):
        shape = b[0].shape
        outer = int(np.prod(shape[:ax]))
        return [h[0].reshape(outer, tiles, -1).sum(axis=1).reshape(shape)], []

    check(f'name: "t" type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}', [x],
          forward, backward, mode=mode)
    with pytest.raises(LayerError, match="tiles"):
        make_layer('name: "t" type: "Tile"', [(2, 3)])


@pytest.mark.parametrize("mode", MODES)
def test_batch_reindex_accumulates_gradient(mode):
    x = rand(4, 2, 3)
    idx = np.array([3, 0, 3, 1, 3])

    def backward(b, h):
        g = np.zeros_like(b[0])
        for i, j in enumerate(idx):
            g[j] += h[0][i]
        return [g, np.zeros(5)], []

    layer = check('name: "b" type: "BatchReindex"', [x, idx], lambda x, i: [x[idx]], backward, mode=mode)
    assert layer.allow_backward(0) and not layer.allow_backward(1)


@pytest.mark.parametrize("mode", MODES)
def test_filter_keeps_selected_items(mode):
    a, b = rand(5, 3), rand(5, 2, 2, seed=1)
    sel = np.array([[1.0], [0.0], [0.0], [2.0], [-1.0]])
    layer = make_layer('name: "f" type: "Filter" bottom: "a" bottom: "b" bottom: "s" top: "fa" top: "fb"',
                       [a.shape, b.shape, sel.shape], mode=mode)
    assert layer.top_shapes == [(5, 3), (5, 2, 2)]       # Caffe's first Reshape: full batch
    assert not layer.allow_backward(2) and layer.allow_backward(0)
    keep = [0, 3, 4]
    ha, hb = rand(3, 3, seed=2), rand(3, 2, 2, seed=3)
    tops, grads, _ = run(layer, [a, b, sel], [ha, hb])
    assert_close(tops[0], a[keep], FWD)
    assert_close(tops[1], b[keep], FWD)
    ga, gb = np.zeros_like(a), np.zeros_like(b)
    ga[keep], gb[keep] = ha, hb
    assert_close(grads[0], ga, BWD)
    assert_close(grads[1], gb, BWD)
    np.testing.assert_array_equal(grads[2], 0)
    # the same layer again with another number of kept items
    tops, grads, _ = run(layer, [a, b, np.array([[0.0], [5.0], [0.0], [0.0], [0.0]])],
                         [np.ones((1, 3)), np.ones((1, 2, 2))])
    assert_close(tops[0], a[[1]], FWD)
    np.testing.assert_array_equal(grads[0], np.eye(5)[[1]].T * np.ones((5, 3)))
    with pytest.raises(LayerError, match="selector"):
        make_layer('name: "f" type: "Filter" top: "x"', [(5, 3), (5, 2)])


def test_filter_keeping_nothing_imperative():
    layer = make_layer('name: "f" type: "Filter" bottom: "a" bottom: "s" top: "fa"', [(4, 3), (4,)])
    tops, grads, _ = run(layer, [rand(4, 3), np.zeros(4)], [np.ones((0, 3))])
    assert tops[0].shape == (0, 3) and not grads[0].any()


# ---- Reduction / ArgMax / Softmax --------------------------------------------------------
REDUCE = {
    "SUM": (lambda r: r.sum(1), lambda r, h: np.ones_like(r) * h),
    "ASUM": (lambda r: np.abs(r).sum(1), lambda r, h: np.sign(r) * h),
    "SUMSQ": (lambda r: (r * r).sum(1), lambda r, h: 2 * r * h),
    "MEAN": (lambda r: r.mean(1), lambda r, h: np.ones_like(r) * h / r.shape[1]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", sorted(REDUCE))
@pytest.mark.parametrize("axis,coeff", [(0, 1.0), (1, 0.5), (2, -2.0), (-1, 1.0)])
def test_reduction(op, axis, coeff, mode):
    x = rand(2, 3, 4)
    ax = axis % 3
    f, df = REDUCE[op]

    def forward(x):
        return [coeff * f(x.reshape(int(np.prod(x.shape[:ax])), -1)).reshape(x.shape[:ax])]

    def backward(b, h):
        rows = b[0].reshape(int(np.prod(b[0].shape[:ax])), -1)
        return [coeff * df(rows, np.reshape(h[0], (-1, 1))).reshape(b[0].shape)], []

    text = f'name: "r" type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: {coeff} }}'
    layer = check(text, [x], forward, backward, mode=mode)
    assert layer.top_shapes == [x.shape[:ax]]          # () for axis 0: a 0-d Caffe blob


def caffe_argmax(x, top_k, out_max_val, axis=None):
    """argmax_layer.cpp with std::partial_sort over (value, index) pairs, greater<>."""
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        rows = []
        for r in flat:
            order = sorted(((v, j) for j, v in enumerate(r)), reverse=True)[:top_k]
            idx = [j for _, j in order]
            rows.append([idx, [v for v, _ in order]] if out_max_val else [idx])
        out = np.array(rows, dtype=np.float64)
        return out.reshape(out.shape + (1,) * max(0, x.ndim - 3))
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1] + (top_k,))
    for i in np.ndindex(moved.shape[:-1]):
        order = sorted(((v, j) for j, v in enumerate(moved[i])), reverse=True)[:top_k]
        out[i] = [v for v, _ in order] if out_max_val else [j for _, j in order]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,kw", [
    ("argmax_param { }", dict(top_k=1, out_max_val=False)),
    ("argmax_param { top_k: 3 out_max_val: true }", dict(top_k=3, out_max_val=True)),
    ("argmax_param { axis: 1 top_k: 2 }", dict(top_k=2, out_max_val=False, axis=1)),
    ("argmax_param { axis: -1 top_k: 2 out_max_val: true }", dict(top_k=2, out_max_val=True, axis=3)),
])
def test_argmax(text, kw, mode):
    x = np.round(rand(2, 4, 3, 5), 1)          # rounding makes ties
    layer = check(f'name: "a" type: "ArgMax" {text}', [x], lambda x: [caffe_argmax(x, **kw)], mode=mode)
    assert not layer.allow_backward(0)
    _, grads, _ = run(layer, [x], [np.ones(layer.top_shapes[0])])
    np.testing.assert_array_equal(grads[0], 0)


def test_argmax_ties_prefer_higher_index():
    layer = make_layer('name: "a" type: "ArgMax" argmax_param { top_k: 4 out_max_val: true }', [(1, 5)])
    tops, _, _ = run(layer, [np.array([[1.0, 7.0, 3.0, 7.0, 3.0]])])
    np.testing.assert_array_equal(tops[0], [[[3, 1, 4, 2], [7, 7, 3, 3]]])
    with pytest.raises(LayerError, match="top_k"):
        make_layer('name: "a" type: "ArgMax" argmax_param { top_k: 6 }', [(1, 5)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [1, 0, -1, 2])
def test_softmax(axis, mode):
    x = rand(2, 3, 4, 5, scale=3)
    ax = axis % 4

    def forward(x):
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        return [e / e.sum(axis=ax, keepdims=True)]

    def backward(b, h):
        y = forward(b[0])[0]
        return [(h[0] - (h[0] * y).sum(axis=ax, keepdims=True)) * y], []

    check(f'name: "s" type: "Softmax" softmax_param {{ axis: {axis} }}', [x], forward, backward, mode=mode)


def test_softmax_gradient_matches_finite_differences():
    x = rand(2, 4)
    head = rand(2, 4, seed=3)
    layer = make_layer('name: "s" type: "Softmax"', [x.shape])
    _, grads, _ = run(layer, [x], [head])

    def f(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    assert_close(grads[0], finite_difference(f, x, head), 2e-3)


# ---- golden parity with real Caffe -------------------------------------------------
GOLDEN_SETS = ["layers_basic", "layers_more", "fcn_tiny", "googlenet_tiny", "resnet_tiny"]
MY_TYPES = {"Input", "Parameter", "Silence", "ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU",
            "Exp", "Log", "Power", "Threshold", "Clip", "Swish", "PReLU", "Dropout", "Eltwise",
            "Concat", "Slice", "Split", "Flatten", "Reshape", "Tile", "BatchReindex", "Filter",
            "Reduction", "ArgMax", "Softmax", "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss",
            "ContrastiveLoss", "InfogainLoss", "MultinomialLogisticLoss",
            "SigmoidCrossEntropyLoss", "Accuracy"}


def golden_cases():
    if not os.path.isdir(gh.GOLDEN_DIR):
        return []
    out = []
    for name in GOLDEN_SETS:
        if not os.path.isdir(os.path.join(gh.GOLDEN_DIR, name)):
            continue
        for case in gh.load(name).layer_cases():
            if case.type in MY_TYPES:
                out.append(pytest.param(name, case.name, id=f"{name}-{case.name}"))
    return out


_LOADED: dict = {}


def golden_case(set_name, layer_name):
    if set_name not in _LOADED:
        gs = gh.load(set_name)
        _LOADED[set_name] = (gs, {c.name: c for c in gs.layer_cases()},
                             gh.layer_params_by_name(gs.prototxt))
    gs, cases, params = _LOADED[set_name]
    return cases[layer_name], params


def golden_param(case, params):
    """The case's LayerParameter; Caffe-inserted Splits and the Input made from a legacy
    ``input_dim`` header are not in the prototxt's layer list, so they are rebuilt."""
    if case.name in params:
        return params[case.name]
    p = caffe_pb2.LayerParameter(name=case.name, type=case.type, bottom=case.bottoms, top=case.tops)
    if case.type == "Input":
        for t in case.top_data:
            p.input_param.shape.add().dim.extend(t.shape)
    elif case.type != "Split":
        raise AssertionError(f"no LayerParameter for {case.name} ({case.type})")
    return p


pytestmark_golden = pytest.mark.skipif(not os.path.isdir(gh.GOLDEN_DIR), reason="tests/golden missing")


@pytestmark_golden
def test_golden_sets_contain_layers_of_these_types():
    assert len(golden_cases()) >= 60


@pytestmark_golden
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("set_name,layer_name", golden_cases())
def test_golden_layer_parity(set_name, layer_name, mode):
    case, params = golden_case(set_name, layer_name)
    param = golden_param(case, params)
    if case.type == "Input":
        layer = make_layer(param, [], mode=mode)
        assert layer.top_shapes == [t.shape for t in case.top_data]
        tops, _, _ = run(layer, case.top_data)
        for t, ref in zip(tops, case.top_data):
            assert_close(t, ref, 0, "input pass-through")
        return
    layer = make_layer(param, [b.shape for b in case.bottom_data], mode=mode, blobs=case.params)
    assert layer.top_shapes == [t.shape for t in case.top_data]
    backward = not case.backward_skipped
    heads = None
    if backward:
        heads = [np.zeros(t.shape) if d is None else d for t, d in zip(case.top_data, case.top_diff)]
    tops, grads, pgrads = run(layer, case.bottom_data, heads)
    for j, (t, ref) in enumerate(zip(tops, case.top_data)):
        assert_close(t, ref, FWD, f"{layer_name} top {j}")
    if not backward:
        return
    checked = 0
    for i, (g, ref) in enumerate(zip(grads, case.bottom_diff)):
        if ref is not None and layer.allow_backward(i):
            assert_close(g, ref, BWD, f"{layer_name} bottom {i} diff")
            checked += 1
    for i, (g, ref) in enumerate(zip(pgrads, case.param_diffs)):
        if ref is not None:
            assert_close(g, ref, BWD, f"{layer_name} param {i} diff")
            checked += 1
    assert checked, "nothing to compare in backward"
