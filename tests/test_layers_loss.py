"""Loss layers and Accuracy against numpy re-implementations of Caffe's Forward and
Backward (softmax_loss_layer.cpp, euclidean_loss_layer.cpp, hinge_loss_layer.cpp,
contrastive_loss_layer.cpp, infogain_loss_layer.cpp, multinomial_logistic_loss_layer.cpp,
sigmoid_cross_entropy_loss_layer.cpp, accuracy_layer.cpp), imperatively and hybridized.

The backward uses a random top diff on the loss (Caffe's top diff of a loss blob is its
loss weight), so the gradients are checked scaled, not only at weight 1.
"""
from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest

from caffe_compat.errors import LayerError
from caffe_compat.proto import caffe_pb2
from test_layers_elementwise import (MODES, as_float32, assert_close, check,
                                     finite_difference, make_layer, rand, run)

FLT_MIN = float(np.finfo(np.float32).tiny)
N = caffe_pb2.LossParameter


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def caffe_normalizer(mode, outer, inner, valid):
    value = {N.FULL: outer * inner, N.VALID: valid, N.BATCH_SIZE: outer, N.NONE: 1}[mode]
    return max(1.0, float(value))


def class_layout(x, axis):
    """(outer, C, inner) view, as Caffe indexes ``i * dim + c * inner + j``."""
    outer = int(np.prod(x.shape[:axis]))
    return x.reshape(outer, x.shape[axis], -1)


# ---- SoftmaxWithLoss -------------------------------------------------------------------
def caffe_softmax_loss(x, label, axis=1, ignore=None, mode=N.VALID):
    prob = softmax(x, axis)
    p3 = class_layout(prob, axis)
    outer, classes, inner = p3.shape
    labels = label.reshape(outer, inner)
    grad = p3.copy()
    loss, valid = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            lab = int(labels[i, j])
            if ignore is not None and lab == ignore:
                grad[i, :, j] = 0
                continue
            loss -= math.log(max(p3[i, lab, j], FLT_MIN))
            grad[i, lab, j] -= 1
            valid += 1
    norm = caffe_normalizer(mode, outer, inner, valid)
    return loss / norm, prob, grad.reshape(x.shape) / norm


def softmax_loss_case(mode_text, ignore, mode, axis=1, layer_mode="imperative", two_tops=False):
    x = rand(2, 4, 3, 5, scale=2)
    label_shape = tuple(s for d, s in enumerate(x.shape) if d != axis)
    label = np.random.RandomState(3).randint(0, x.shape[axis], size=label_shape).astype(np.float64)
    if ignore is not None:
        label.flat[::3] = ignore
    tops = ' top: "loss" top: "prob"' if two_tops else ' top: "loss"'
    text = (f'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y"{tops} '
            f'softmax_param {{ axis: {axis} }} {mode_text}')

    def forward(x, y):
        loss, prob, _ = caffe_softmax_loss(x, y, axis, ignore, mode)
        return [np.array(loss), prob] if two_tops else [np.array(loss)]

    def backward(b, h):
        _, _, grad = caffe_softmax_loss(b[0], b[1], axis, ignore, mode)
        return [grad * h[0], np.zeros_like(b[1])], []

    return check(text, [x, label], forward, backward, mode=layer_mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,ignore,norm", [
    ("", None, N.VALID),
    ("loss_param { ignore_label: 2 }", 2, N.VALID),
    ("loss_param { ignore_label: 2 normalization: FULL }", 2, N.FULL),
    ("loss_param { ignore_label: 2 normalization: BATCH_SIZE }", 2, N.BATCH_SIZE),
    ("loss_param { normalization: NONE }", None, N.NONE),
    ("loss_param { ignore_label: 1 normalize: false }", 1, N.BATCH_SIZE),
    ("loss_param { ignore_label: 1 normalize: true }", 1, N.VALID),
    ("loss_param { ignore_label: 1 normalize: false normalization: FULL }", 1, N.FULL),
])
def test_softmax_with_loss(text, ignore, norm, mode):
    layer = softmax_loss_case(text, ignore, norm, layer_mode=mode)
    assert layer.top_shapes == [()]
    assert layer.loss_weights(1) == [1.0]
    assert not layer.allow_backward(1) and layer.allow_backward(0)


@pytest.mark.parametrize("mode", MODES)
def test_softmax_with_loss_other_axis_and_prob_top(mode):
    layer = softmax_loss_case("loss_param { ignore_label: 0 }", 0, N.VALID, axis=2,
                              layer_mode=mode, two_tops=True)
    assert layer.top_shapes == [(), (2, 4, 3, 5)]
    assert layer.loss_weights(2) == [1.0, 0.0]


def segnet_weighted_softmax_loss(x, label, weights, ignore):
    """alexgkendall/caffe-segnet softmax_loss_layer.cpp with weight_by_label_freqs:
    -sum w[label] log p / count; gradient (p - onehot) * w[label] / count."""
    p3 = class_layout(softmax(x, 1), 1)
    outer, classes, inner = p3.shape
    labels = label.reshape(outer, inner)
    grad, loss, count = p3.copy(), 0.0, 0
    for i in range(outer):
        for j in range(inner):
            lab = int(labels[i, j])
            if lab == ignore:
                grad[i, :, j] = 0
                continue
            loss -= math.log(max(p3[i, lab, j], FLT_MIN)) * weights[lab]
            grad[i, lab, j] -= 1
            grad[i, :, j] *= weights[lab]
            count += 1
    return loss / count, grad.reshape(x.shape) / count


@pytest.mark.parametrize("mode", MODES)
def test_softmax_with_loss_segnet_class_weighting(mode):
    x = rand(2, 4, 3, 5, scale=2)
    label = np.random.RandomState(5).randint(0, 4, size=(2, 3, 5)).astype(np.float64)
    label.flat[::4] = 3
    weights = [0.2, 1.5, 0.7, 2.0]
    text = ('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
            'loss_param { ignore_label: 3 weight_by_label_freqs: true '
            + " ".join(f"class_weighting: {w}" for w in weights) + " }")
    check(text, [x, label],
          lambda x, y: [np.array(segnet_weighted_softmax_loss(x, y, weights, 3)[0])],
          lambda b, h: ([segnet_weighted_softmax_loss(b[0], b[1], weights, 3)[1] * h[0],
                         np.zeros_like(b[1])], []), mode=mode)
    with pytest.raises(LayerError, match="class weight values"):
        make_layer(text.replace("class_weighting: 2.0", ""), [x.shape, label.shape])


def test_softmax_with_loss_all_ignored_and_clamp():
    layer = make_layer('name: "l" type: "SoftmaxWithLoss" loss_param { ignore_label: 0 }',
                       [(2, 3), (2,)])
    tops, grads, _ = run(layer, [rand(2, 3), np.zeros(2)], [np.ones(1)])
    assert tops[0].shape == (1,)                  # MXNet holds Caffe's 0-d loss as (1,)
    assert tops[0][0] == 0 and not grads[0].any()     # normalizer max(1, 0) = 1
    # prob[label] underflows: the loss is -log(FLT_MIN), Caffe's gradient stays prob - 1.
    x = np.array([[0.0, 200.0, 0.0]])
    layer = make_layer('name: "l" type: "SoftmaxWithLoss"', [(1, 3), (1,)])
    tops, grads, _ = run(layer, [x, np.zeros(1)], [np.ones(1)])
    np.testing.assert_allclose(tops[0], [-math.log(FLT_MIN)], rtol=1e-6)
    np.testing.assert_allclose(grads[0], [[-1, 1, 0]], atol=1e-6)


def test_softmax_with_loss_gradient_matches_finite_differences():
    x, label = rand(3, 4), np.array([0.0, 3.0, 1.0])
    layer = make_layer('name: "l" type: "SoftmaxWithLoss"', [(3, 4), (3,)])
    _, grads, _ = run(layer, [x, label], [np.array([1.7])])
    fd = finite_difference(lambda v: caffe_softmax_loss(v, label)[0], x, 1.7)
    assert_close(grads[0], fd, 2e-3)


def test_softmax_with_loss_shape_errors():
    with pytest.raises(LayerError, match="number of labels"):
        make_layer('name: "l" type: "SoftmaxWithLoss"', [(2, 3, 4), (2, 3)])
    with pytest.raises(LayerError, match="same first dimension"):
        make_layer('name: "l" type: "SoftmaxWithLoss"', [(2, 3), (3,)])


# ---- EuclideanLoss ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_euclidean_loss(mode):
    a, b = rand(3, 2, 4), rand(3, 8, seed=1)
    n = a.shape[0]

    def backward(bt, h):
        diff = bt[0] - bt[1].reshape(bt[0].shape)
        return [h[0] * diff / n, -(h[0] * diff / n).reshape(bt[1].shape)], []

    layer = check('name: "l" type: "EuclideanLoss"', [a, b],
                  lambda a, b: [np.array(((a - b.reshape(a.shape)) ** 2).sum() / n / 2)],
                  backward, mode=mode)
    assert layer.allow_backward(0) and layer.allow_backward(1)
    assert layer.loss_weights(1) == [1.0]
    with pytest.raises(LayerError, match="same dimension"):
        make_layer('name: "l" type: "EuclideanLoss"', [(3, 4), (3, 5)])


# ---- HingeLoss ---------------------------------------------------------------------------
def caffe_hinge(x, label, l2):
    n = x.shape[0]
    t = x.reshape(n, -1).copy()
    for i in range(n):
        t[i, int(label[i])] *= -1
    m = np.maximum(0, 1 + t)
    loss = (m * m).sum() / n if l2 else m.sum() / n
    g = m.copy()
    for i in range(n):
        g[i, int(label[i])] *= -1
    grad = 2 * g / n if l2 else np.sign(g) / n
    return loss, grad.reshape(x.shape)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(norm, mode):
    x = rand(4, 5, 1, 1)
    label = np.array([0.0, 4.0, 2.0, 2.9])          # 2.9 -> class 2 (static_cast<int>)
    x[0, 0, 0, 0], x[0, 1, 0, 0] = 1.0, -1.0         # exactly on the hinge: gradient 0
    l2 = norm == "L2"
    check(f'name: "l" type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', [x, label],
          lambda x, y: [np.array(caffe_hinge(x, y, l2)[0])],
          lambda b, h: ([h[0] * caffe_hinge(b[0], b[1], l2)[1], np.zeros(4)], []), mode=mode)


# ---- ContrastiveLoss -------------------------------------------------------------------
def caffe_contrastive(a, b, sim, margin, legacy):
    n = a.shape[0]
    diff = (a - b).reshape(n, -1)
    loss = 0.0
    grad = np.zeros_like(diff)
    for i in range(n):
        d2 = float(diff[i] @ diff[i])
        if int(sim.flat[i]):
            loss += d2
            grad[i] = diff[i] / n
        else:
            if legacy:
                mdist = margin - d2
                loss += max(mdist, 0.0)
                beta = -1.0 / n
            else:
                dist = math.sqrt(d2)
                mdist = margin - dist
                loss += max(mdist, 0.0) ** 2
                beta = -mdist / (dist + 1e-4) / n
            if mdist > 0:
                grad[i] = beta * diff[i]
    return loss / n / 2, grad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy, mode):
    a, b = rand(6, 3, 1, 1, scale=0.6), rand(6, 3, 1, 1, seed=1, scale=0.6)
    sim = np.array([1.0, 0.0, 0.0, 2.7, 0.5, 0.0]).reshape(6, 1, 1, 1)   # 0.5 -> dissimilar
    b[5] = a[5] + 3.0                   # far apart: the hinge is off, no gradient
    margin = 1.5
    text = (f'name: "l" type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
            f'legacy_version: {str(legacy).lower()} }}')

    def backward(bt, h):
        _, g = caffe_contrastive(bt[0], bt[1], bt[2], margin, legacy)
        g = h[0] * g.reshape(bt[0].shape)
        return [g, -g, np.zeros_like(bt[2])], []

    layer = check(text, [a, b, sim],
                  lambda a, b, s: [np.array(caffe_contrastive(a, b, s, margin, legacy)[0])],
                  backward, mode=mode)
    assert layer.allow_backward(0) and layer.allow_backward(1) and not layer.allow_backward(2)
    with pytest.raises(LayerError, match="similarity bottom"):
        make_layer(text, [(6, 3), (6, 3), (6, 2)])


# ---- InfogainLoss ------------------------------------------------------------------------
def caffe_infogain(x, label, h_matrix, axis=1, ignore=None, mode=N.VALID):
    prob = softmax(x, axis)
    p3 = class_layout(prob, axis)
    outer, classes, inner = p3.shape
    labels = label.reshape(outer, inner)
    H = h_matrix.reshape(classes, classes)
    grad = np.zeros_like(p3)
    loss, valid = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            lab = int(labels[i, j])
            if ignore is not None and lab == ignore:
                continue
            for l in range(classes):
                loss -= H[lab, l] * math.log(max(p3[i, l, j], 1e-20))
            grad[i, :, j] = p3[i, :, j] * H[lab].sum() - H[lab]
            valid += 1
    norm = caffe_normalizer(mode, outer, inner, valid)
    return loss / norm, prob, grad.reshape(x.shape) / norm


def infogain_inputs():
    x = rand(3, 4, 2, scale=2)
    label = np.array([[0.0, 3.0], [1.0, 1.0], [2.0, 3.0]])
    H = as_float32(np.abs(rand(4, 4, seed=5)) + np.eye(4))
    return x, label, H


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,ignore,norm", [
    ("", None, N.VALID),
    ("loss_param { ignore_label: 3 }", 3, N.VALID),
    ("loss_param { ignore_label: 3 normalization: BATCH_SIZE }", 3, N.BATCH_SIZE),
])
def test_infogain_loss_with_h_bottom(text, ignore, norm, mode):
    x, label, H = infogain_inputs()

    def backward(b, h):
        _, _, g = caffe_infogain(b[0], b[1], b[2], 1, ignore, norm)
        return [h[0] * g, np.zeros_like(b[1]), np.zeros_like(b[2])], []

    layer = check(f'name: "l" type: "InfogainLoss" top: "loss" top: "prob" {text}', [x, label, H],
                  lambda x, y, H: [np.array(caffe_infogain(x, y, H, 1, ignore, norm)[0]),
                                   caffe_infogain(x, y, H, 1, ignore, norm)[1]],
                  backward, mode=mode)
    assert [layer.allow_backward(i) for i in range(3)] == [True, False, False]


def write_blob_proto(path, array):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(array.shape)
    blob.data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    with open(path, "wb") as f:
        f.write(blob.SerializeToString())


@pytest.mark.parametrize("mode", MODES)
def test_infogain_loss_matrix_from_file_and_axis(tmp_path, mode):
    x, label, H = infogain_inputs()
    x = np.ascontiguousarray(np.moveaxis(x, 1, 2))        # classes on axis 2: (3, 2, 4)
    path = str(tmp_path / "H.binaryproto")
    write_blob_proto(path, H.reshape(1, 1, 4, 4))
    text = (f'name: "l" type: "InfogainLoss" infogain_loss_param {{ source: "{path}" axis: 2 }}')
    check(text, [x, label],
          lambda x, y: [np.array(caffe_infogain(x, y, H, 2)[0])],
          lambda b, h: ([h[0] * caffe_infogain(b[0], b[1], H, 2)[2], np.zeros_like(b[1])], []),
          mode=mode)


def test_infogain_loss_errors(tmp_path):
    with pytest.raises(LayerError, match="source must be specified"):
        make_layer('name: "l" type: "InfogainLoss"', [(3, 4), (3,)])
    with pytest.raises(LayerError, match="cannot read infogain matrix"):
        make_layer(f'name: "l" type: "InfogainLoss" infogain_loss_param {{ source: '
                   f'"{tmp_path}/missing.binaryproto" }}', [(3, 4), (3,)])
    with pytest.raises(LayerError, match="normalize is deprecated"):
        make_layer('name: "l" type: "InfogainLoss" loss_param { normalize: true }',
                   [(3, 4), (3,), (4, 4)])
    with pytest.raises(LayerError, match="H has 9 entries"):
        make_layer('name: "l" type: "InfogainLoss"', [(3, 4), (3,), (3, 3)])


# ---- MultinomialLogisticLoss ---------------------------------------------------------
def caffe_multinomial(p, label):
    n = p.shape[0]
    p2 = p.reshape(n, -1)
    loss = 0.0
    grad = np.zeros_like(p2)
    for i in range(n):
        lab = int(label.flat[i])
        prob = max(p2[i, lab], 1e-20)
        loss -= math.log(prob)
        grad[i, lab] = -1.0 / prob / n
    return loss / n, grad.reshape(p.shape)


@pytest.mark.parametrize("mode", MODES)
def test_multinomial_logistic_loss(mode):
    p = softmax(rand(4, 5), 1).reshape(4, 5, 1, 1)
    label = np.array([1.0, 0.0, 4.0, 2.0]).reshape(4, 1, 1, 1)
    check('name: "l" type: "MultinomialLogisticLoss"', [p, label],
          lambda p, y: [np.array(caffe_multinomial(p, y)[0])],
          lambda b, h: ([h[0] * caffe_multinomial(b[0], b[1])[1], np.zeros(4)], []), mode=mode)


def test_multinomial_logistic_loss_clamp_keeps_caffe_gradient():
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    layer = make_layer('name: "l" type: "MultinomialLogisticLoss"', [(2, 2), (2,)])
    tops, grads, _ = run(layer, [p, np.array([0.0, 1.0])], [np.ones(1)])
    np.testing.assert_allclose(tops[0], [(-math.log(1e-20) - math.log(0.5)) / 2], rtol=1e-6)
    np.testing.assert_allclose(grads[0], [[-0.5e20, 0], [0, -1.0]], rtol=1e-6)


# ---- SigmoidCrossEntropyLoss ---------------------------------------------------------
def caffe_sigmoid_ce(x, t, ignore=None, mode=N.BATCH_SIZE):
    t = t.reshape(x.shape)
    pos = (x >= 0).astype(np.float64)
    term = x * (t - pos) - np.log1p(np.exp(x - 2 * x * pos))
    valid = np.ones_like(x) if ignore is None else (np.trunc(t) != ignore).astype(np.float64)
    norm = caffe_normalizer(mode, x.shape[0], x[0].size, valid.sum())
    grad = (1 / (1 + np.exp(-x)) - t) * valid / norm
    return -(term * valid).sum() / norm, grad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,ignore,norm", [
    ("", None, N.BATCH_SIZE),                                     # this layer's default
    ("loss_param { ignore_label: -1 normalization: VALID }", -1, N.VALID),
    ("loss_param { ignore_label: -1 }", -1, N.BATCH_SIZE),
    ("loss_param { normalize: true }", None, N.VALID),
    ("loss_param { normalization: FULL }", None, N.FULL),
])
def test_sigmoid_cross_entropy_loss(text, ignore, norm, mode):
    x = rand(3, 4, 2, scale=3)
    x[0, 0, 0] = 0.0
    t = (np.random.RandomState(4).rand(3, 8) > 0.5).astype(np.float64)
    if ignore is not None:
        t[:, ::3] = ignore
    check(f'name: "l" type: "SigmoidCrossEntropyLoss" {text}', [x, t],
          lambda x, t: [np.array(caffe_sigmoid_ce(x, t, ignore, norm)[0])],
          lambda b, h: ([h[0] * caffe_sigmoid_ce(b[0], b[1], ignore, norm)[1],
                         np.zeros_like(b[1])], []), mode=mode)


def test_sigmoid_cross_entropy_loss_gradient_matches_finite_differences():
    x, t = rand(2, 3, scale=2), np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    layer = make_layer('name: "l" type: "SigmoidCrossEntropyLoss"', [(2, 3), (2, 3)])
    _, grads, _ = run(layer, [x, t], [np.array([0.6])])
    assert_close(grads[0], finite_difference(lambda v: caffe_sigmoid_ce(v, t)[0], x, 0.6), 2e-3)


@pytest.mark.parametrize("type_name", ["SoftmaxWithLoss", "EuclideanLoss", "HingeLoss",
                                       "InfogainLoss", "MultinomialLogisticLoss",
                                       "SigmoidCrossEntropyLoss", "ContrastiveLoss"])
def test_every_loss_defaults_to_loss_weight_one(type_name):
    from caffe_compat.engine.layer import layer_class
    assert layer_class(type_name).default_loss_weight == 1.0


# ---- Accuracy ----------------------------------------------------------------------------
def caffe_accuracy(x, label, top_k=1, axis=1, ignore=None):
    x3 = class_layout(x, axis)
    outer, classes, inner = x3.shape
    labels = label.reshape(outer, inner)
    hits, count = 0, 0
    per_hits, per_count = np.zeros(classes), np.zeros(classes)
    for i in range(outer):
        for j in range(inner):
            lab = int(labels[i, j])
            if ignore is not None and lab == ignore:
                continue
            per_count[lab] += 1
            better = -1
            for k in range(classes):
                better += x3[i, k, j] >= x3[i, lab, j]
            if better < top_k:
                hits += 1
                per_hits[lab] += 1
            count += 1
    per_class = np.where(per_count == 0, 0, per_hits / np.maximum(per_count, 1))
    return (hits / count if count else 0.0), per_class


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,kw", [
    ("", {}),
    ("accuracy_param { top_k: 2 }", dict(top_k=2)),
    ("accuracy_param { ignore_label: 1 }", dict(ignore=1)),
    ("accuracy_param { axis: 2 top_k: 3 ignore_label: 0 }", dict(axis=2, top_k=3, ignore=0)),
])
def test_accuracy(text, kw, mode):
    x = np.round(rand(4, 5, 3), 0)                 # integer scores: many ties
    axis = kw.get("axis", 1)
    label_shape = tuple(s for d, s in enumerate(x.shape) if d != axis)
    label = np.random.RandomState(1).randint(0, x.shape[axis], size=label_shape).astype(np.float64)
    layer = check(f'name: "a" type: "Accuracy" top: "acc" top: "per_class" {text}', [x, label],
                  lambda x, y: [np.array(caffe_accuracy(x, y, **kw)[0]), caffe_accuracy(x, y, **kw)[1]],
                  mode=mode)
    assert layer.loss_weights(2) == [0.0, 0.0]
    assert not layer.allow_backward(0)
    _, grads, _ = run(layer, [x, label], [np.ones(1), np.ones(x.shape[axis])])
    assert not grads[0].any()


def test_accuracy_ties_count_against_and_all_ignored():
    layer = make_layer('name: "a" type: "Accuracy"', [(2, 3), (2,)])
    tops, _, _ = run(layer, [np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]), np.array([0.0, 1.0])])
    assert tops[0][0] == 0.5                        # the tie at item 0 is not a hit
    layer = make_layer('name: "a" type: "Accuracy" accuracy_param { ignore_label: 1 }',
                       [(2, 3), (2,)])
    tops, _, _ = run(layer, [rand(2, 3), np.array([1.0, 1.0])])
    assert tops[0][0] == 0
    with pytest.raises(LayerError, match="top_k"):
        make_layer('name: "a" type: "Accuracy" accuracy_param { top_k: 4 }', [(2, 3), (2,)])
