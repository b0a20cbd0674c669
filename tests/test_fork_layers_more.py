"""Fork layers added for the corpus: YOLOv2's Reorg (Intel branch) and the SELU layers,
against numpy ports of the forks' C++ loops; and the fork layers refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from caffe_compat.engine.build import instantiate_layer
from caffe_compat.errors import LayerError
from caffe_compat.proto import caffe_pb2
from test_fork_layers import f32, forward_backward, make_layer, rel_err
from google.protobuf import text_format


def intel_reorg_cpu(bottom, stride, forward):
    """reorg_layer.hpp's reorg_cpu(bottom, b_w, b_h, b_c, b_n, stride, forward, top), as
    ReorgLayer::Forward_cpu calls it (forward = reverse_)."""
    b_n, b_c, b_h, b_w = bottom.shape
    src = bottom.ravel()
    top = np.zeros_like(src)
    t_c, t_w, t_h = b_c // (stride * stride), b_w * stride, b_h * stride
    for n in range(b_n):
        for c in range(b_c):
            for h in range(b_h):
                for w in range(b_w):
                    bottom_index = w + b_w * (h + b_h * (c + b_c * n))
                    c2, offset = c % t_c, c // t_c
                    w2, h2 = w * stride + offset % stride, h * stride + offset // stride
                    top_index = w2 + t_w * (h2 + t_h * (c2 + t_c * n))
                    if forward:
                        top[top_index] = src[bottom_index]
                    else:
                        top[bottom_index] = src[top_index]
    return top


@pytest.mark.parametrize("reverse", [False, True])
def test_reorg_matches_the_intel_branch_loop_and_backprops_the_adjoint(reverse):
    shape = (2, 8, 4, 6)
    x = np.random.default_rng(0).standard_normal(shape).astype(f32)
    layer = make_layer(f'type: "Reorg" reorg_param {{ stride: 2 reverse: {str(reverse).lower()} }}',
                       [shape])
    expected_shape = (2, 2, 8, 12) if reverse else (2, 32, 2, 3)
    assert layer.top_shapes == [expected_shape]
    g = np.random.default_rng(1).standard_normal(expected_shape).astype(f32)
    (y,), (dx,), _ = forward_backward(layer, [x], [g])
    assert np.array_equal(y.ravel(), intel_reorg_cpu(x, 2, reverse))
    # the gradient is the transpose of the permutation: <g, P x> == <P^T g, x>
    assert abs(float((g.astype(np.float64) * y).sum()) - float((dx.astype(np.float64) * x).sum())) < 1e-3
    assert np.array_equal(np.sort(dx.ravel()), np.sort(g.ravel()))


def test_reorg_checks():
    with pytest.raises(LayerError, match="needs stride"):
        make_layer('type: "Reorg"', [(1, 4, 2, 2)])
    with pytest.raises(LayerError, match="multiple of stride"):
        make_layer('type: "Reorg" reorg_param { stride: 2 }', [(1, 3, 2, 2)])


def test_selu_forward_and_in_place_gradient():
    """selu_layer.cpp; its Backward reads bottom_data, which in place is the output."""
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]], f32)
    lam, alpha = 1.050700987, 1.67326324
    y_ref = np.where(x > 0, lam * x, lam * alpha * (np.exp(x.astype(np.float64)) - 1))
    g = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], f32)
    apart = make_layer('type: "SeLu" bottom: "a" top: "b"', [x.shape])
    (y,), (dx,), _ = forward_backward(apart, [x], [g])
    assert rel_err(y, y_ref) <= 1e-6
    assert rel_err(dx, g * np.where(x > 0, lam, lam * alpha * np.exp(x.astype(np.float64)))) <= 1e-6
    in_place = make_layer('type: "SeLu" bottom: "a" top: "a"', [x.shape])
    (y2,), (dx2,), _ = forward_backward(in_place, [x], [g])
    assert rel_err(y2, y_ref) <= 1e-6
    assert rel_err(dx2, g * np.where(y_ref > 0, lam, lam * alpha * np.exp(y_ref))) <= 1e-6


def test_selu_dropout():
    x = np.random.default_rng(2).standard_normal((200, 100)).astype(f32)
    test = make_layer('type: "SeLuDropout" selu_dropout_param { dropout_ratio: 0.1 }', [x.shape])
    assert test.passes_bottom_through()
    (y,), _, _ = forward_backward(test, [x])
    assert np.array_equal(y, x)
    train = make_layer('type: "SeLuDropout" selu_dropout_param { dropout_ratio: 0.1 }', [x.shape],
                       phase=caffe_pb2.TRAIN)
    (y,), _, _ = forward_backward(train, [x])
    q, alpha = 0.9, -1.75809934
    a = (q * (1 + alpha * alpha * (1 - q))) ** -0.5
    b = -a * (1 - q) * alpha
    kept = np.isclose(y, a * x + b, atol=1e-6)
    dropped = np.isclose(y, a * alpha + b, atol=1e-6)
    assert (kept | dropped).all() and 0.85 < kept.mean() < 0.95


@pytest.mark.parametrize("type_name, words", [
    ("MultiBoxLoss", "SSD"), ("AnnotatedData", "SSD"), ("DetectionEvaluate", "SSD"),
    ("RegionLoss", "YOLO"), ("EvalDetection", "YOLO"), ("VideoData", "Intel"),
    ("SmoothL1LossOHEM", "R-FCN"), ("SoftmaxWithLossOHEM", "R-FCN"),
    ("BoxAnnotatorOHEM", "R-FCN"), ("DenseImageData", "SegNet"),
    ("ImageLabelmapData", "HED"), ("MultiStageMeanfield", "CRF-RNN"),
])
def test_refused_fork_layers_say_which_fork_and_why(type_name, words):
    param = text_format.Parse(f'name: "x" type: "{type_name}"', caffe_pb2.LayerParameter())
    with pytest.raises(LayerError) as info:
        instantiate_layer(param, caffe_pb2.TEST, ("net.prototxt", 7))
    text = str(info.value)
    assert text.startswith(f'net.prototxt:7: layer "x" (type {type_name}): ')
    assert words in text and "not supported" in text and "supported types" not in text
