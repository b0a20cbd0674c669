"""Vision layers: Convolution, Deconvolution, Im2col, Pooling, SPP, LRN, InnerProduct,
Embed, BatchNorm, MVN, Scale, Bias, Crop.

Two kinds of checks, each run imperatively and hybridized:

1. numpy references written here from Caffe's definitions (float64), forward and
   backward (autograd gradient of sum(top * R) against the reference gradient);
2. golden parity: every layer of these types in the real-Caffe golden sets, fed Caffe's
   own bottoms, blobs and top diffs, compared with Caffe's tops (<= 1e-5) and bottom /
   param diffs (<= 1e-4).
"""
from __future__ import annotations

import itertools
import math
import os
import sys

import mxnet as mx
import numpy as np
import pytest
from google.protobuf import text_format

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_harness as gh  # noqa: E402

from caffe_compat.engine.build import build_layer, run_layer  # noqa: E402
from caffe_compat.errors import LayerError  # noqa: E402
from caffe_compat.proto import caffe_pb2  # noqa: E402

FWD_TOL = gh.FORWARD_TOL
BWD_TOL = gh.BACKWARD_TOL
MODES = ["imperative", "hybrid"]
TRAIN, TEST = 0, 1


# ---------------------------------------------------------------------------------------
# running a layer
# ---------------------------------------------------------------------------------------
def make_layer(text: str, bottom_shapes, phase: int = TEST):
    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    if not param.name:
        param.name = "layer"
    return build_layer(param, [tuple(s) for s in bottom_shapes], phase=phase)


def set_blobs(layer, values):
    for p, v in zip(layer.blobs(), values):
        p.set_data(mx.nd.array(np.asarray(v, dtype=np.float32).reshape(p.shape)))


def run(layer, bottoms, mode, head_grads=None, seed=0, train=True):
    """Forward + backward of sum(top * head) -> (tops, bottom grads, blob grads).

    Recorded with MXNet's train_mode (the autograd default; the layers' behaviour comes
    from their Caffe phase, never from that flag; oneDNN max pooling needs it, see
    pooling.py).
    """
    if mode == "hybrid":
        layer.hybridize()
    xs = [mx.nd.array(np.asarray(b, dtype=np.float32)) for b in bottoms]
    for x in xs:
        x.attach_grad()
    with mx.autograd.record(train_mode=train):
        tops = run_layer(layer, *xs)
    if head_grads is None:
        rs = np.random.RandomState(seed + 100)
        head_grads = [rs.randn(*t.shape).astype(np.float32) for t in tops]
    mx.autograd.backward(tops, [mx.nd.array(h) for h in head_grads])
    blob_grads = [p.grad().asnumpy() if p.grad_req != "null" else None for p in layer.blobs()]
    return ([t.asnumpy() for t in tops], [x.grad.asnumpy() for x in xs], blob_grads,
            head_grads)


def assert_close(ours, ref, tol, what):
    err = gh.rel_err(ours, ref)
    assert err <= tol, f"{what}: rel err {err:.3e} > {tol:.0e}"


def rand(rs, *shape, scale=1.0):
    return (rs.randn(*shape) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------
# numpy references: convolution family (im2col gather / col2im scatter)
# ---------------------------------------------------------------------------------------
def window_index(in_sp, kernel, stride, pad, dilation):
    """Flat indices into the zero-padded input of every (kernel offset, output pos)."""
    nd = len(in_sp)
    padded = tuple(i + 2 * p for i, p in zip(in_sp, pad))
    out = tuple((i + 2 * p - (d * (k - 1) + 1)) // s + 1
                for i, k, s, p, d in zip(in_sp, kernel, stride, pad, dilation))
    offs = np.array(list(itertools.product(*[range(k) for k in kernel]))).reshape(-1, nd)
    pos = np.array(list(itertools.product(*[range(o) for o in out]))).reshape(-1, nd)
    coords = pos[None] * np.array(stride) + offs[:, None] * np.array(dilation)
    flat = np.ravel_multi_index(tuple(coords[..., i] for i in range(nd)), padded)
    return flat, out, padded                          # flat: (K, P)


def im2col_ref(x, kernel, stride, pad, dilation):
    x = np.asarray(x, np.float64)
    n, c = x.shape[:2]
    flat, out, _ = window_index(x.shape[2:], kernel, stride, pad, dilation)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad]).reshape(n, c, -1)
    return xp[:, :, flat], out                        # (N, C, K, P)


def col2im_ref(cols, in_shape, kernel, stride, pad, dilation):
    n, c = in_shape[:2]
    flat, _, padded = window_index(in_shape[2:], kernel, stride, pad, dilation)
    acc = np.zeros((int(np.prod(padded)), n, c))
    np.add.at(acc, flat.ravel(), cols.reshape(n, c, -1).transpose(2, 0, 1))
    xp = acc.transpose(1, 2, 0).reshape((n, c) + padded)
    crop = tuple(slice(p, p + i) for p, i in zip(pad, in_shape[2:]))
    return xp[(slice(None), slice(None)) + crop]


def conv_ref(x, w, b, geom, group):
    cols, out = im2col_ref(x, *geom)
    n, c, k, p = cols.shape
    o = w.shape[0]
    y = np.einsum("gok,ngkp->ngop", np.asarray(w, np.float64).reshape(group, o // group, -1),
                  cols.reshape(n, group, c // group * k, p)).reshape((n, o) + out)
    if b is not None:
        y += np.asarray(b, np.float64).reshape((1, o) + (1,) * len(out))
    return y


def conv_bwd_ref(x, w, dy, geom, group):
    """(dx, dw, db) of Caffe's convolution for top gradient dy."""
    cols, out = im2col_ref(x, *geom)
    n, c, k, p = cols.shape
    o = w.shape[0]
    dyg = np.asarray(dy, np.float64).reshape(n, group, o // group, p)
    colsg = cols.reshape(n, group, c // group * k, p)
    dw = np.einsum("ngop,ngkp->gok", dyg, colsg).reshape(w.shape)
    wg = np.asarray(w, np.float64).reshape(group, o // group, -1)
    dcols = np.einsum("gok,ngop->ngkp", wg, dyg).reshape(n, c, k, p)
    dx = col2im_ref(dcols, x.shape, *geom)
    db = np.asarray(dy, np.float64).sum(axis=(0,) + tuple(range(2, dy.ndim)))
    return dx, dw, db


def deconv_out_size(in_sp, kernel, stride, pad, dilation):
    return tuple(s * (i - 1) + d * (k - 1) + 1 - 2 * p
                 for i, k, s, p, d in zip(in_sp, kernel, stride, pad, dilation))


def deconv_ref(x, w, b, geom, group, num_output):
    """Caffe's Deconvolution = data-gradient of the convolution whose weight is ``w``."""
    out = deconv_out_size(x.shape[2:], *geom)
    y_shape = (x.shape[0], num_output) + out
    cols_grad = np.einsum(
        "gok,ngop->ngkp",
        np.asarray(w, np.float64).reshape(group, w.shape[0] // group, -1),
        np.asarray(x, np.float64).reshape(x.shape[0], group, w.shape[0] // group, -1))
    k = int(np.prod(geom[0]))
    y = col2im_ref(cols_grad.reshape(x.shape[0], num_output, k, -1), y_shape, *geom)
    if b is not None:
        y += np.asarray(b, np.float64).reshape((1, num_output) + (1,) * len(out))
    return y


def deconv_bwd_ref(x, w, dy, geom, group):
    dx = conv_ref(dy, w, None, geom, group)
    _, dw, _ = conv_bwd_ref(dy, w, x, geom, group)
    db = np.asarray(dy, np.float64).sum(axis=(0,) + tuple(range(2, dy.ndim)))
    return dx, dw, db


# ---------------------------------------------------------------------------------------
# numpy references: pooling (Caffe's loops)
# ---------------------------------------------------------------------------------------
def caffe_pool_size(size, k, s, p, ceil_mode=True, padded=None):
    padded = p > 0 if padded is None else padded
    out = int((math.ceil if ceil_mode else math.floor)((size + 2 * p - k) / s)) + 1
    if padded and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_ref(x, kernel, stride, pad, method, ceil_mode=True):
    """Caffe forward and a backward closure: MAX (first max), AVE, STOCHASTIC at TEST."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    padded = ph > 0 or pw > 0
    oh = caffe_pool_size(h, kh, sh, ph, ceil_mode, padded)
    ow = caffe_pool_size(w, kw, sw, pw, ceil_mode, padded)
    y = np.zeros((n, c, oh, ow))
    regions = {}
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs0, ws0 = max(hs, 0), max(ws, 0)
                win = x[:, :, hs0:he, ws0:we].reshape(n, c, -1)
                arg = win.argmax(-1)                      # first maximum, row-major
                y[:, :, i, j] = win.max(-1)
                regions[i, j] = (hs0 + arg // (we - ws0), ws0 + arg % (we - ws0))
            elif method == "AVE":
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs0, ws0, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs0:he, ws0:we].sum((2, 3)) / size
                regions[i, j] = (hs0, he, ws0, we, size)
            else:                                         # STOCHASTIC, TEST
                he, we = min(hs + kh, h), min(ws + kw, w)
                win = x[:, :, hs:he, ws:we]
                y[:, :, i, j] = (win ** 2).sum((2, 3)) / (np.finfo(np.float32).tiny
                                                          + win.sum((2, 3)))

    def backward(dy):
        dy = np.asarray(dy, np.float64)
        dx = np.zeros_like(x)
        nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
        for (i, j), r in regions.items():
            if method == "MAX":
                np.add.at(dx, (nn, cc, r[0], r[1]), dy[:, :, i, j])
            else:
                hs0, he, ws0, we, size = r
                dx[:, :, hs0:he, ws0:we] += dy[:, :, i, j][:, :, None, None] / size
        return dx
    return y, backward


def max_mask_ref(x, kernel, stride, pad, ceil_mode=True):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    padded = ph > 0 or pw > 0
    oh = caffe_pool_size(h, kh, sh, ph, ceil_mode, padded)
    ow = caffe_pool_size(w, kw, sw, pw, ceil_mode, padded)
    mask = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = max(i * sh - ph, 0), max(j * sw - pw, 0)
            he, we = min(i * sh - ph + kh, h), min(j * sw - pw + kw, w)
            arg = x[:, :, hs:he, ws:we].reshape(n, c, -1).argmax(-1)
            mask[:, :, i, j] = (hs + arg // (we - ws)) * w + ws + arg % (we - ws)
    return mask


def spp_ref(x, height, method):
    outs, backs = [], []
    for level in range(height):
        bins = 2 ** level
        kernel, pad = [], []
        for size in x.shape[2:]:
            k = int(math.ceil(size / bins))
            kernel.append(k)
            pad.append((k * bins - size + 1) // 2)
        y, back = pool_ref(x, tuple(kernel), tuple(kernel), tuple(pad), method)
        outs.append(y)
        backs.append(back)
    if height == 1:
        return outs[0], backs[0]
    n = x.shape[0]
    flat = np.concatenate([o.reshape(n, -1) for o in outs], axis=1)

    def backward(dy):
        dx, at = 0, 0
        for o, back in zip(outs, backs):
            size = o[0].size
            dx = dx + back(dy[:, at:at + size].reshape(o.shape))
            at += size
        return dx
    return flat, backward


# ---------------------------------------------------------------------------------------
# numpy references: LRN
# ---------------------------------------------------------------------------------------
def channel_window_sum(a, size):
    pre = (size - 1) // 2
    padded = np.zeros((a.shape[0], a.shape[1] + size - 1) + a.shape[2:])
    padded[:, pre:pre + a.shape[1]] = a
    return sum(padded[:, i:i + a.shape[1]] for i in range(size))


def spatial_window_sum(a, size):
    pre = (size - 1) // 2
    h, w = a.shape[2:]
    padded = np.pad(a, [(0, 0), (0, 0), (pre, pre), (pre, pre)])
    return sum(padded[:, :, i:i + h, j:j + w] for i in range(size) for j in range(size))


def lrn_ref(x, dy, size, alpha, beta, k, region):
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    if region == "ACROSS_CHANNELS":
        scale = k + alpha / size * channel_window_sum(x ** 2, size)
        y = x * scale ** -beta
        dx = dy * scale ** -beta - 2 * alpha * beta / size * x * channel_window_sum(
            dy * y / scale, size)
    else:
        scale = 1 + alpha / size ** 2 * spatial_window_sum(x ** 2, size)
        y = x * scale ** -beta
        dx = dy * scale ** -beta - 2 * alpha * beta / size ** 2 * x * spatial_window_sum(
            dy * y / scale, size)
    return y, dx


# ---------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------
CONV_CASES = [
    # (prototxt convolution_param, bottom shape, group, kernel, stride, pad, dilation)
    ("num_output: 6 kernel_size: 3 pad: 1", (2, 4, 7, 9), 1, (3, 3), (1, 1), (1, 1), (1, 1)),
    ("num_output: 8 kernel_size: 3 pad: 2 dilation: 2 group: 2", (2, 4, 9, 8), 2,
     (3, 3), (1, 1), (2, 2), (2, 2)),
    ("num_output: 6 kernel_h: 3 kernel_w: 5 pad_h: 0 pad_w: 2 stride_h: 2 stride_w: 1",
     (2, 3, 9, 8), 1, (3, 5), (2, 1), (0, 2), (1, 1)),
    ("num_output: 4 kernel_size: 2 kernel_size: 3 stride: 2 stride: 1 pad: 1 pad: 0 "
     "dilation: 1 dilation: 2", (1, 2, 8, 9), 1, (2, 3), (2, 1), (1, 0), (1, 2)),
    ("num_output: 6 kernel_size: 3 stride: 2 group: 3 bias_term: false", (2, 6, 7, 7), 3,
     (3, 3), (2, 2), (0, 0), (1, 1)),
    ("num_output: 4 kernel_size: 3 pad: 1 stride: 2", (2, 3, 9), 1, (3,), (2,), (1,), (1,)),
    ("num_output: 4 kernel_size: 2 pad: 1 group: 2", (1, 4, 4, 5, 3), 2,
     (2, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_convolution_matches_reference(case, mode):
    text, shape, group, kernel, stride, pad, dil = CONV_CASES[case]
    rs = np.random.RandomState(case)
    layer = make_layer(f'type: "Convolution" convolution_param {{ {text} }}', [shape])
    x = rand(rs, *shape)
    w = rand(rs, *layer.weight.shape)
    b = rand(rs, layer.num_output) if layer.bias_term else None
    assert layer.weight.shape == (layer.num_output, shape[1] // group) + kernel
    set_blobs(layer, [w] + ([b] if b is not None else []))
    (y,), (dx,), grads, (dy,) = run(layer, [x], mode)
    geom = (kernel, stride, pad, dil)
    assert_close(y, conv_ref(x, w, b, geom, group), FWD_TOL, "forward")
    rdx, rdw, rdb = conv_bwd_ref(x, w, dy, geom, group)
    assert_close(dx, rdx, BWD_TOL, "bottom diff")
    assert_close(grads[0], rdw, BWD_TOL, "weight diff")
    if b is not None:
        assert_close(grads[1], rdb, BWD_TOL, "bias diff")


@pytest.mark.parametrize("mode", MODES)
def test_convolution_channel_axis_2_and_two_bottoms(mode):
    rs = np.random.RandomState(3)
    shape = (2, 3, 4, 6, 5)          # axis 2: batch axes (2, 3), 4 channels, 6x5 spatial
    layer = make_layer('type: "Convolution" bottom: "a" bottom: "b" top: "a2" top: "b2" '
                       'convolution_param { num_output: 5 kernel_size: 3 pad: 1 axis: 2 }',
                       [shape, shape])
    assert layer.top_shapes == [(2, 3, 5, 6, 5)] * 2
    x1, x2 = rand(rs, *shape), rand(rs, *shape)
    w, b = rand(rs, 5, 4, 3, 3), rand(rs, 5)
    set_blobs(layer, [w, b])
    (y1, y2), (dx1, dx2), grads, (dy1, dy2) = run(layer, [x1, x2], mode)
    geom = ((3, 3), (1, 1), (1, 1), (1, 1))
    dws = 0
    for x, y, dx, dy in ((x1, y1, dx1, dy1), (x2, y2, dx2, dy2)):
        ref = conv_ref(x.reshape(6, 4, 6, 5), w, b, geom, 1).reshape(y.shape)
        assert_close(y, ref, FWD_TOL, "forward")
        rdx, rdw, _ = conv_bwd_ref(x.reshape(6, 4, 6, 5), w, dy.reshape(6, 5, 6, 5), geom, 1)
        assert_close(dx, rdx.reshape(dx.shape), BWD_TOL, "bottom diff")
        dws = dws + rdw
    assert_close(grads[0], dws, BWD_TOL, "shared weight diff sums both bottoms")


def test_convolution_defaults_and_errors():
    layer = make_layer('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 }',
                       [(1, 3, 4, 4)])
    # Caffe's default fillers: constant 0 for weight and bias
    assert not layer.weight.data().asnumpy().any() and not layer.bias.data().asnumpy().any()
    with pytest.raises(LayerError, match="multiple"):
        make_layer('type: "Convolution" convolution_param { num_output: 3 kernel_size: 1 '
                   'group: 2 }', [(1, 4, 4, 4)])
    with pytest.raises(LayerError, match="kernel_size"):
        make_layer('type: "Convolution" convolution_param { num_output: 3 }', [(1, 4, 4, 4)])
    with pytest.raises(LayerError, match="not both"):
        make_layer('type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
                   'kernel_h: 3 kernel_w: 3 }', [(1, 4, 4, 4)])
    with pytest.raises(LayerError, match="once per spatial"):
        make_layer('type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
                   'kernel_size: 3 kernel_size: 3 }', [(1, 4, 4, 4)])
    with pytest.raises(LayerError, match="2D"):
        make_layer('type: "Convolution" convolution_param { num_output: 3 kernel_h: 3 '
                   'kernel_w: 3 }', [(1, 4, 4, 4, 4)])


# ---------------------------------------------------------------------------------------
# Deconvolution
# ---------------------------------------------------------------------------------------
DECONV_CASES = [
    ("num_output: 5 kernel_size: 4 stride: 2 pad: 1", (2, 3, 5, 6), 1, (4, 4), (2, 2),
     (1, 1), (1, 1)),
    ("num_output: 6 kernel_size: 3 stride: 2 group: 2 dilation: 2", (1, 4, 4, 5), 2,
     (3, 3), (2, 2), (0, 0), (2, 2)),
    ("num_output: 4 group: 4 kernel_size: 4 stride: 2 bias_term: false "
     "weight_filler { type: 'bilinear' }", (2, 4, 5, 5), 4, (4, 4), (2, 2), (0, 0), (1, 1)),
    ("num_output: 3 kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 3 pad_h: 1 pad_w: 0",
     (1, 2, 4, 3), 1, (2, 3), (1, 3), (1, 0), (1, 1)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(len(DECONV_CASES)))
def test_deconvolution_matches_reference(case, mode):
    text, shape, group, kernel, stride, pad, dil = DECONV_CASES[case]
    rs = np.random.RandomState(10 + case)
    layer = make_layer(f'type: "Deconvolution" convolution_param {{ {text} }}', [shape])
    assert layer.weight.shape == (shape[1], layer.num_output // group) + kernel
    geom = (kernel, stride, pad, dil)
    assert layer.top_shapes[0][2:] == deconv_out_size(shape[2:], *geom)
    x = rand(rs, *shape)
    w = (layer.weight.data().asnumpy() if "bilinear" in text
         else rand(rs, *layer.weight.shape))
    b = rand(rs, layer.num_output) if layer.bias_term else None
    set_blobs(layer, [w] + ([b] if b is not None else []))
    (y,), (dx,), grads, (dy,) = run(layer, [x], mode)
    assert_close(y, deconv_ref(x, w, b, geom, group, layer.num_output), FWD_TOL, "forward")
    rdx, rdw, rdb = deconv_bwd_ref(x, w, dy, geom, group)
    assert_close(dx, rdx, BWD_TOL, "bottom diff")
    assert_close(grads[0], rdw, BWD_TOL, "weight diff")
    if b is not None:
        assert_close(grads[1], rdb, BWD_TOL, "bias diff")


# ---------------------------------------------------------------------------------------
# Im2col
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,shape,geom", [
    ("kernel_size: 3 pad: 1 stride: 2", (2, 3, 7, 8), ((3, 3), (2, 2), (1, 1), (1, 1))),
    ("kernel_h: 2 kernel_w: 3 dilation: 2 pad_h: 1 pad_w: 0", (1, 2, 6, 7),
     ((2, 3), (1, 1), (1, 0), (2, 2))),
    ("kernel_size: 3 stride: 2", (2, 2, 9), ((3,), (2,), (0,), (1,))),
])
def test_im2col_channels_major_layout(text, shape, geom, mode):
    rs = np.random.RandomState(5)
    layer = make_layer(f'type: "Im2col" convolution_param {{ {text} }}', [shape])
    x = rand(rs, *shape)
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    cols, out = im2col_ref(x, *geom)
    n, c, k, _ = cols.shape
    assert y.shape == (n, c * k) + out
    assert_close(y, cols.reshape((n, c * k) + out), FWD_TOL, "forward")
    assert np.array_equal(y, cols.reshape(y.shape).astype(np.float32)), "Im2col is a copy"
    rdx = col2im_ref(dy.reshape(n, c, k, -1).astype(np.float64), x.shape, *geom)
    assert_close(dx, rdx, BWD_TOL, "bottom diff")


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------
POOL_CASES = [
    # (pooling_param, bottom shape, kernel, stride, pad, ceil, what it exercises)
    ("kernel_size: 3 stride: 2", (2, 3, 13, 15), (3, 3), (2, 2), (0, 0), True, "exact"),
    ("kernel_size: 3 stride: 2 pad: 1", (2, 3, 7, 8), (3, 3), (2, 2), (1, 1), True,
     "ceil overhang in W"),
    ("kernel_size: 2 stride: 2 pad: 1", (2, 3, 7, 8), (2, 2), (2, 2), (1, 1), True,
     "clip rule in H"),
    ("kernel_h: 2 kernel_w: 3 stride: 2 pad: 1", (2, 3, 7, 8), (2, 3), (2, 2), (1, 1), True,
     "clip in H, ceil in W (MXNet output sliced)"),
    ("kernel_size: 3 stride: 2", (1, 2, 6, 7), (3, 3), (2, 2), (0, 0), True,
     "ceil overhang without padding"),
    ("kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 0 pad_w: 1", (2, 3, 6, 15),
     (2, 3), (1, 2), (0, 1), True, "asymmetric"),
    ("kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR", (2, 3, 7, 8), (3, 3), (2, 2),
     (1, 1), False, "floor rounding"),
    ("kernel_size: 3 stride: 2 ceil_mode: false", (1, 2, 6, 7), (3, 3), (2, 2), (0, 0), False,
     "BVLC PR #3057 ceil_mode: false (shicai DenseNet, soeaver)"),
    ("kernel_size: 3 stride: 2 pad: 1 ceil_mode: false", (2, 3, 8, 8), (3, 3), (2, 2), (1, 1),
     False, "ceil_mode: false with padding"),
    ("kernel_size: 4 stride: 3 pad: 2", (1, 2, 10, 11), (4, 4), (3, 3), (2, 2), True,
     "large pad with overhang"),
    ("kernel_size: 3 stride: 1 pad: 1", (1, 4, 8, 8), (3, 3), (1, 1), (1, 1), True,
     "inception pool"),
    ("kernel_size: 2 stride: 2", (1, 3, 1, 1), (2, 2), (2, 2), (0, 0), True,
     "kernel larger than the input (OpenPose's declared 1x1 input)"),
    ("kernel_size: 3 stride: 2 pad: 1", (2, 2, 2, 1), (3, 3), (2, 2), (1, 1), True,
     "kernel larger than the padded width"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pooling_matches_caffe_loops(case, method, mode):
    text, shape, kernel, stride, pad, ceil_mode, _ = POOL_CASES[case]
    rs = np.random.RandomState(20 + case)
    # integer values in a small range: many exact ties inside MAX windows
    x = rs.randint(-3, 3, size=shape).astype(np.float32)
    layer = make_layer(f'type: "Pooling" pooling_param {{ pool: {method} {text} }}', [shape])
    ref, backward = pool_ref(x, kernel, stride, pad, method, ceil_mode)
    assert layer.top_shapes == [ref.shape]
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    assert_close(y, ref, FWD_TOL, "forward")
    assert_close(dx, backward(dy), BWD_TOL, "bottom diff")


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_backward_after_inference_mode_forward(method):
    # oneDNN's raw max pooling gets this wrong; the imperative layer must not
    rs = np.random.RandomState(6)
    x = rs.randint(-3, 3, size=(2, 3, 9, 11)).astype(np.float32)
    layer = make_layer(f'type: "Pooling" pooling_param {{ pool: {method} kernel_size: 3 '
                       f'stride: 2 pad: 1 }}', [x.shape])
    ref, backward = pool_ref(x, (3, 3), (2, 2), (1, 1), method)
    (y,), (dx,), _, (dy,) = run(layer, [x], "imperative", train=False)
    assert_close(y, ref, FWD_TOL, "forward")
    assert_close(dx, backward(dy), BWD_TOL, "bottom diff")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(method, mode):
    rs = np.random.RandomState(7)
    x = rs.randint(0, 4, size=(2, 3, 5, 6)).astype(np.float32)
    layer = make_layer(f'type: "Pooling" pooling_param {{ pool: {method} global_pooling: true }}',
                       [x.shape])
    ref, backward = pool_ref(x, (5, 6), (1, 1), (0, 0), method)
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    assert y.shape == (2, 3, 1, 1)
    assert_close(y, ref, FWD_TOL, "forward")
    assert_close(dx, backward(dy), BWD_TOL, "bottom diff")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,kernel,stride,pad,is_global", [
    ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), False),
    ("kernel_h: 2 kernel_w: 3 stride: 2 pad: 1", (2, 3), (2, 2), (1, 1), False),
    ("global_pooling: true", None, (1, 1), (0, 0), True),
])
def test_max_pooling_mask_top(text, kernel, stride, pad, is_global, mode):
    rs = np.random.RandomState(8)
    x = rs.randint(-2, 2, size=(2, 3, 7, 8)).astype(np.float32)
    layer = make_layer(f'type: "Pooling" top: "p" top: "mask" pooling_param {{ pool: MAX {text} }}',
                       [x.shape])
    kernel = (7, 8) if is_global else kernel
    ref, backward = pool_ref(x, kernel, stride, pad, "MAX")
    heads = [rs.randn(*ref.shape).astype(np.float32), np.zeros(ref.shape, np.float32)]
    (y, mask), (dx,), _, _ = run(layer, [x], mode, head_grads=heads)
    assert_close(y, ref, FWD_TOL, "forward")
    assert np.array_equal(mask, max_mask_ref(x, kernel, stride, pad))
    assert_close(dx, backward(heads[0]), BWD_TOL, "bottom diff")


@pytest.mark.parametrize("mode", MODES)
def test_stochastic_pooling_test_phase(mode):
    rs = np.random.RandomState(9)
    x = rs.rand(2, 3, 8, 8).astype(np.float32)     # ceil: the last windows overhang
    x[0, 0, :3, :3] = 0                      # an all-zero window: 0 / FLT_MIN = 0
    layer = make_layer('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 '
                       'stride: 2 }', [x.shape], phase=TEST)
    ref, _ = pool_ref(x, (3, 3), (2, 2), (0, 0), "STOCHASTIC")
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    assert y.shape == ref.shape == (2, 3, 4, 4)
    assert_close(y, ref, FWD_TOL, "forward")
    # backward (undefined in Caffe): gradient of the weighted average, 0 on zero windows
    rdx = np.zeros(x.shape)
    for i in range(4):
        for j in range(4):
            win = x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].astype(np.float64)
            total = win.sum((2, 3), keepdims=True)
            grad = np.where(total > 0, (2 * win - ref[:, :, i:i + 1, j:j + 1])
                            / np.where(total > 0, total, 1), 0)
            rdx[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += grad * dy[:, :, i:i + 1, j:j + 1]
    assert_close(dx, rdx, BWD_TOL, "bottom diff")


@pytest.mark.parametrize("mode", MODES)
def test_stochastic_pooling_train_samples_by_value(mode):
    # windows [a, b] (kernel 1x2, stride 2) over many channels; P(pick b) = b / (a + b)
    channels = 4000
    x = np.zeros((1, channels, 1, 4), np.float32)
    x[..., 0], x[..., 1] = 1.0, 3.0          # first window: P(3) = 0.75
    x[..., 2], x[..., 3] = 0.0, 2.0          # second window: always the 2
    layer = make_layer('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_h: 1 '
                       'kernel_w: 2 stride: 2 }', [x.shape], phase=TRAIN)
    mx.random.seed(1234)
    heads = [np.ones((1, channels, 1, 2), np.float32)]
    (y,), (dx,), _, _ = run(layer, [x], mode, head_grads=heads, train=True)
    assert set(np.unique(y[..., 0])) <= {1.0, 3.0}
    assert np.all(y[..., 1] == 2.0)
    share = np.mean(y[..., 0] == 3.0)
    assert abs(share - 0.75) < 0.03, share
    # the gradient goes to the sampled element only
    picked_b = (y[0, :, 0, 0] == 3.0)
    assert np.array_equal(dx[0, :, 0, 1], picked_b.astype(np.float32))
    assert np.array_equal(dx[0, :, 0, 0], (~picked_b).astype(np.float32))
    assert np.all(dx[..., 2] == 0) and np.all(dx[..., 3] == 1)


def test_pooling_errors():
    with pytest.raises(LayerError, match="Global"):
        make_layer('type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }',
                   [(1, 1, 4, 4)])
    with pytest.raises(LayerError, match="pad = 0"):
        make_layer('type: "Pooling" pooling_param { global_pooling: true pad: 1 }',
                   [(1, 1, 4, 4)])
    with pytest.raises(LayerError, match="Padding implemented only"):
        make_layer('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }',
                   [(1, 1, 6, 6)])
    with pytest.raises(LayerError, match="4 axes"):
        make_layer('type: "Pooling" pooling_param { kernel_size: 2 }', [(1, 1, 6)])
    with pytest.raises(LayerError, match="outside the input"):
        make_layer('type: "Pooling" pooling_param { kernel_size: 1 stride: 2 }', [(1, 1, 6, 6)])
    with pytest.raises(LayerError, match="smaller than kernel"):
        make_layer('type: "Pooling" pooling_param { kernel_size: 2 pad: 2 }', [(1, 1, 6, 6)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("height,shape", [(1, (2, 3, 5, 7)), (3, (2, 3, 13, 10)),
                                          (2, (1, 2, 6, 6))])
def test_spp(height, shape, method, mode):
    rs = np.random.RandomState(height)
    x = rs.randint(-3, 4, size=shape).astype(np.float32)
    layer = make_layer(f'type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}',
                       [shape])
    ref, backward = spp_ref(x, height, method)
    assert layer.top_shapes == [ref.shape]
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    assert_close(y, ref, FWD_TOL, "forward")
    assert_close(dx, backward(dy), BWD_TOL, "bottom diff")


# ---------------------------------------------------------------------------------------
# LRN
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,size,alpha,beta,k,region,shape", [
    ("local_size: 5 alpha: 0.0001 beta: 0.75", 5, 1e-4, 0.75, 1.0, "ACROSS_CHANNELS",
     (2, 8, 6, 7)),
    ("local_size: 3 alpha: 0.5 beta: 0.5 k: 2", 3, 0.5, 0.5, 2.0, "ACROSS_CHANNELS",
     (1, 16, 5, 5)),
    ("local_size: 5 alpha: 0.01 beta: 1.5", 5, 0.01, 1.5, 1.0, "ACROSS_CHANNELS",
     (1, 3, 4, 4)),
    ("norm_region: WITHIN_CHANNEL local_size: 3 alpha: 5e-05 beta: 0.75", 3, 5e-5, 0.75,
     1.0, "WITHIN_CHANNEL", (2, 4, 6, 7)),
    ("norm_region: WITHIN_CHANNEL local_size: 5 alpha: 0.3 beta: 0.75 k: 7", 5, 0.3, 0.75,
     7.0, "WITHIN_CHANNEL", (1, 2, 6, 5)),
])
def test_lrn_matches_formula(text, size, alpha, beta, k, region, shape, mode):
    rs = np.random.RandomState(size)
    x = rand(rs, *shape, scale=30.0 if alpha < 1e-3 else 2.0)
    layer = make_layer(f'type: "LRN" lrn_param {{ {text} }}', [shape])
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    ry, rdx = lrn_ref(x, dy, size, alpha, beta, k, region)
    assert_close(y, ry, FWD_TOL, "forward")
    assert_close(dx, rdx, BWD_TOL, "bottom diff")


def test_lrn_even_size_rejected():
    with pytest.raises(LayerError, match="odd"):
        make_layer('type: "LRN" lrn_param { local_size: 4 }', [(1, 4, 4, 4)])


# ---------------------------------------------------------------------------------------
# InnerProduct and Embed
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,shape,axis", [
    ("num_output: 5", (2, 4, 3, 3), 1),
    ("num_output: 7 axis: 2", (2, 6, 3, 3), 2),
    ("num_output: 4 axis: -1", (3, 2, 5), 2),
    ("num_output: 3 transpose: true", (4, 6), 1),
    ("num_output: 3 transpose: true axis: 2 bias_term: false", (2, 3, 2, 4), 2),
    ("num_output: 2 axis: 0", (3, 4), 0),
])
def test_inner_product(text, shape, axis, mode):
    rs = np.random.RandomState(len(shape) + axis)
    layer = make_layer(f'type: "InnerProduct" inner_product_param {{ {text} }}', [shape])
    n_out, k = layer.num_output, int(np.prod(shape[axis:]))
    transpose = "transpose: true" in text
    assert layer.weight.shape == ((k, n_out) if transpose else (n_out, k))
    x, w = rand(rs, *shape), rand(rs, *layer.weight.shape)
    b = rand(rs, n_out) if layer.bias_term else None
    set_blobs(layer, [w] + ([b] if b is not None else []))
    (y,), (dx,), grads, (dy,) = run(layer, [x], mode)
    wm = (w.T if transpose else w).astype(np.float64)          # (N, K)
    x2 = x.reshape(int(np.prod(shape[:axis])), k).astype(np.float64)
    ref = x2 @ wm.T + (b if b is not None else 0)
    assert y.shape == shape[:axis] + (n_out,)
    assert_close(y, ref.reshape(y.shape), FWD_TOL, "forward")
    dy2 = dy.reshape(-1, n_out).astype(np.float64)
    assert_close(dx, (dy2 @ wm).reshape(shape), BWD_TOL, "bottom diff")
    dw = dy2.T @ x2
    assert_close(grads[0], dw.T if transpose else dw, BWD_TOL, "weight diff")
    if b is not None:
        assert_close(grads[1], dy2.sum(0), BWD_TOL, "bias diff")


def test_inner_product_rejects_other_input_size():
    layer = make_layer('type: "InnerProduct" inner_product_param { num_output: 2 }',
                       [(2, 3, 4)])
    from caffe_compat.engine.build import shape_layer
    with pytest.raises(LayerError, match="incompatible"):
        shape_layer(layer, [(2, 3, 5)], first=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bias", [True, False])
def test_embed(bias, mode):
    rs = np.random.RandomState(4)
    idx = np.array([[0, 3, 3], [4.0, 1, 3]], np.float32)     # repeated indices accumulate
    layer = make_layer(f'type: "Embed" embed_param {{ input_dim: 5 num_output: 6 '
                       f'bias_term: {str(bias).lower()} }}', [idx.shape])
    assert layer.weight.shape == (5, 6)
    assert not layer.allow_backward(0)
    w = rand(rs, 5, 6)
    b = rand(rs, 6) if bias else None
    set_blobs(layer, [w] + ([b] if bias else []))
    (y,), (dx,), grads, (dy,) = run(layer, [idx], mode)
    ref = w[idx.astype(int)] + (b if bias else 0)
    assert y.shape == (2, 3, 6)
    assert_close(y, ref, FWD_TOL, "forward")
    dw = np.zeros((5, 6))
    np.add.at(dw, idx.astype(int).ravel(), dy.reshape(-1, 6))
    assert_close(grads[0], dw, BWD_TOL, "weight diff")
    if bias:
        assert_close(grads[1], dy.reshape(-1, 6).sum(0), BWD_TOL, "bias diff")
    assert not dx.any(), "Embed sends no gradient to its indices"


# ---------------------------------------------------------------------------------------
# BatchNorm and MVN
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("factor,shape", [(999.982, (2, 4, 5, 6)), (1.0, (3, 5)),
                                          (0.0, (2, 3, 4)), (2.5, (2, 3, 2, 2, 3))])
def test_batchnorm_global_stats(factor, shape, mode):
    rs = np.random.RandomState(int(factor) % 7)
    c = shape[1]
    layer = make_layer('type: "BatchNorm" batch_norm_param { eps: 0.001 }', [shape], phase=TEST)
    assert layer.use_global_stats
    assert all(p.grad_req == "null" and p.lr_mult == 0 for p in layer.blobs())
    mean = rand(rs, c) * max(factor, 1)
    var = (rs.rand(c).astype(np.float32) + 0.5) * max(factor, 1)
    set_blobs(layer, [mean, var, [factor]])
    x = rand(rs, *shape) + 3
    (y,), (dx,), grads, (dy,) = run(layer, [x], mode)
    f = 0.0 if factor == 0 else 1.0 / np.float32(factor)
    bshape = (1, c) + (1,) * (len(shape) - 2)
    std = np.sqrt(var.astype(np.float64) * f + 1e-3).reshape(bshape)
    assert_close(y, (x - (mean.astype(np.float64) * f).reshape(bshape)) / std, FWD_TOL,
                 "forward")
    assert_close(dx, dy / std, BWD_TOL, "bottom diff")
    assert grads == [None, None, None]


def bn_train_ref(x, dy, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    mean = x.mean(axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    dx = (dy - dy.mean(axes, keepdims=True)
          - y * (dy * y).mean(axes, keepdims=True)) / np.sqrt(var + eps)
    return y, dx, mean.ravel(), var.ravel()


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (6, 4)])
def test_batchnorm_train_batch_stats_and_running_update(shape):
    rs = np.random.RandomState(11)
    c = shape[1]
    layer = make_layer('type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 0 } '
                       'param { lr_mult: 0 } batch_norm_param { moving_average_fraction: 0.9 }',
                       [shape], phase=TRAIN)
    assert not layer.use_global_stats
    b0, b1, b2 = rand(rs, c), rs.rand(c).astype(np.float32) + 1, np.float32(3.0)
    set_blobs(layer, [b0, b1, [b2]])
    x = rand(rs, *shape, scale=2.0) + 1
    (y,), (dx,), _, (dy,) = run(layer, [x], "imperative", train=True)
    ry, rdx, mean, var = bn_train_ref(x, dy, 1e-5)
    assert_close(y, ry, FWD_TOL, "forward")
    assert_close(dx, rdx, BWD_TOL, "bottom diff")
    m = x.size // c
    blobs = [p.data().asnumpy() for p in layer.blobs()]
    assert_close(blobs[2], [b2 * 0.9 + 1], 1e-6, "scale factor update")
    assert_close(blobs[0], 0.9 * b0 + mean, 1e-6, "mean update")
    assert_close(blobs[1], 0.9 * b1 + m / (m - 1) * var, 1e-6, "variance update")
    assert_close(layer.batch_mean.asnumpy(), mean, 1e-6, "exposed batch mean")


def test_batchnorm_train_hybridized_and_explicit_update():
    rs = np.random.RandomState(12)
    shape = (4, 3, 3, 3)
    layer = make_layer('type: "BatchNorm"', [shape], phase=TRAIN)
    set_blobs(layer, [np.zeros(3), np.zeros(3), [0]])
    x = rand(rs, *shape)
    (y,), (dx,), _, (dy,) = run(layer, [x], "hybrid", train=True)
    ry, rdx, mean, var = bn_train_ref(x, dy, 1e-5)
    assert_close(y, ry, FWD_TOL, "forward")
    assert_close(dx, rdx, BWD_TOL, "bottom diff")
    # a hybridized graph cannot touch the blobs: the explicit hook does Caffe's update
    assert not layer.scale_factor.data().asnumpy().any()
    layer.update_running_stats(mx.nd.array(x))
    m = x.size // 3
    blobs = [p.data().asnumpy() for p in layer.blobs()]
    assert_close(blobs[0], mean, 1e-6, "mean update")
    assert_close(blobs[1], m / (m - 1) * var, 1e-6, "variance update")
    assert blobs[2][0] == 1.0


def test_batchnorm_use_global_stats_override_and_lr_check():
    layer = make_layer('type: "BatchNorm" batch_norm_param { use_global_stats: false }',
                       [(2, 3, 4, 4)], phase=TEST)
    assert not layer.use_global_stats
    with pytest.raises(LayerError, match="lr_mult"):
        make_layer('type: "BatchNorm" param { lr_mult: 1 }', [(2, 3, 4, 4)])


def mvn_ref(x, dy, normalize_variance, across_channels, eps):
    n = x.shape[0]
    groups = (n, -1) if across_channels else (n * x.shape[1], -1)
    g, dg = x.reshape(groups).astype(np.float64), dy.reshape(groups).astype(np.float64)
    c = g - g.mean(1, keepdims=True)
    if not normalize_variance:
        return c.reshape(x.shape), (dg - dg.mean(1, keepdims=True)).reshape(x.shape)
    s = np.sqrt((c ** 2).mean(1, keepdims=True)) + eps
    y = c / s
    dx = (dg - dg.mean(1, keepdims=True) - y * (dg * y).mean(1, keepdims=True)) / s
    return y.reshape(x.shape), dx.reshape(x.shape)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,nv,ac", [
    ("", True, False),
    ("normalize_variance: false", False, False),
    ("across_channels: true", True, True),
    ("across_channels: true normalize_variance: false eps: 0.01", False, True),
])
def test_mvn(text, nv, ac, mode):
    rs = np.random.RandomState(13)
    x = rand(rs, 2, 3, 4, 5, scale=3.0) + 2
    x[1, 2] = 1.5                            # a constant instance: finite, Caffe's gradient
    layer = make_layer(f'type: "MVN" mvn_param {{ {text} }}', [x.shape])
    (y,), (dx,), _, (dy,) = run(layer, [x], mode)
    ry, rdx = mvn_ref(x, dy, nv, ac, 1e-9)
    assert_close(y, ry, FWD_TOL, "forward")
    assert np.isfinite(dx).all()
    assert_close(dx, rdx, BWD_TOL, "bottom diff")


# ---------------------------------------------------------------------------------------
# Scale and Bias
# ---------------------------------------------------------------------------------------
SCALE_CASES = [
    # (scale_param text, bottom shapes, operand axis, operand shape)
    ("", [(2, 4, 3, 3)], 1, (4,)),
    ("bias_term: true", [(2, 4, 3, 3)], 1, (4,)),
    ("axis: 1 num_axes: 2 bias_term: true", [(2, 4, 3, 5)], 1, (4, 3)),
    ("axis: 0 num_axes: -1", [(2, 3, 4)], 0, (2, 3, 4)),
    ("num_axes: 0 bias_term: true", [(2, 3, 4)], 0, ()),
    ("axis: -1", [(2, 3, 5)], 2, (5,)),
    ("axis: 2", [(2, 3, 4, 5)], 2, (4,)),
    ("axis: 1", [(2, 4, 3, 3), (4,)], 1, (4,)),
    ("axis: 0 bias_term: true", [(2, 4, 3, 3), (2, 4)], 0, (2, 4)),
    ("axis: 1", [(3, 4, 2, 5), (4, 2)], 1, (4, 2)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(len(SCALE_CASES)))
def test_scale(case, mode):
    text, shapes, axis, oshape = SCALE_CASES[case]
    rs = np.random.RandomState(30 + case)
    second = 'bottom: "s"' if len(shapes) > 1 else ""
    layer = make_layer(f'type: "Scale" bottom: "x" {second} scale_param {{ {text} }}', shapes)
    blob_shape = oshape or (1,)
    two = len(shapes) == 2
    if not two:
        assert layer.scale.shape == blob_shape
        assert np.all(layer.scale.data().asnumpy() == 1), "Scale's default filler is 1"
    has_bias = "bias_term: true" in text
    if has_bias:
        assert layer.bias.shape == blob_shape
        assert not layer.bias.data().asnumpy().any()
    x = rand(rs, *shapes[0])
    s = rand(rs, *blob_shape)
    b = rand(rs, *blob_shape) if has_bias else None
    set_blobs(layer, ([] if two else [s]) + ([b] if has_bias else []))
    bottoms = [x, s] if two else [x]
    (y,), dxs, grads, (dy,) = run(layer, bottoms, mode)
    bshape = (1,) * axis + oshape + (1,) * (x.ndim - axis - len(oshape))
    sb = s.reshape(bshape).astype(np.float64)
    ref = x * sb + (b.reshape(bshape) if has_bias else 0)
    assert_close(y, ref, FWD_TOL, "forward")
    assert_close(dxs[0], dy * sb, BWD_TOL, "bottom diff")
    red = tuple(i for i in range(x.ndim) if bshape[i] == 1)
    ds = (dy.astype(np.float64) * x).sum(axis=red).reshape(blob_shape)
    db = dy.astype(np.float64).sum(axis=red).reshape(blob_shape)
    if two:
        assert_close(dxs[1], ds, BWD_TOL, "scale (bottom[1]) diff")
    else:
        assert_close(grads[0], ds, BWD_TOL, "scale diff")
    if has_bias:
        assert_close(grads[-1], db, BWD_TOL, "bias diff")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,shapes,axis,oshape", [
    ("", [(2, 4, 3, 3)], 1, (4,)),
    ("axis: 2 num_axes: 2", [(2, 4, 3, 5)], 2, (3, 5)),
    ("num_axes: 0", [(2, 3)], 0, ()),
    ("axis: 1", [(2, 4, 3, 3), (4, 3)], 1, (4, 3)),
    ("axis: 1", [(2, 4, 3, 3), (4,)], 1, (4,)),
])
def test_bias(text, shapes, axis, oshape, mode):
    rs = np.random.RandomState(len(text))
    second = 'bottom: "b"' if len(shapes) > 1 else ""
    layer = make_layer(f'type: "Bias" bottom: "x" {second} bias_param {{ {text} }}', shapes)
    blob_shape = oshape or (1,)
    two = len(shapes) == 2
    if not two:
        assert layer.bias.shape == blob_shape
        assert not layer.bias.data().asnumpy().any()
    x, b = rand(rs, *shapes[0]), rand(rs, *blob_shape)
    if not two:
        set_blobs(layer, [b])
    (y,), dxs, grads, (dy,) = run(layer, [x, b] if two else [x], mode)
    bshape = (1,) * axis + oshape + (1,) * (x.ndim - axis - len(oshape))
    assert_close(y, x + b.reshape(bshape).astype(np.float64), FWD_TOL, "forward")
    assert_close(dxs[0], dy, BWD_TOL, "bottom diff")
    red = tuple(i for i in range(x.ndim) if bshape[i] == 1)
    db = dy.astype(np.float64).sum(axis=red).reshape(blob_shape)
    assert_close(dxs[1] if two else grads[0], db, BWD_TOL, "bias diff")


@pytest.mark.parametrize("mode", MODES)
def test_scale_by_a_0d_bottom(mode):
    # a Caffe 0-d blob (shape () in shape inference) is held as a (1,) array
    rs = np.random.RandomState(16)
    layer = make_layer('type: "Scale" bottom: "x" bottom: "s" scale_param { bias_term: true }',
                       [(2, 3, 4), ()])
    assert layer.bias.shape == (1,)
    x, s, b = rand(rs, 2, 3, 4), rand(rs, 1), rand(rs, 1)
    set_blobs(layer, [b])
    (y,), (dx, ds), grads, (dy,) = run(layer, [x, s], mode)
    assert_close(y, x * np.float64(s[0]) + b[0], FWD_TOL, "forward")
    assert_close(dx, dy * np.float64(s[0]), BWD_TOL, "bottom diff")
    assert_close(ds, [(dy.astype(np.float64) * x).sum()], BWD_TOL, "scale diff")
    assert_close(grads[0], [dy.astype(np.float64).sum()], BWD_TOL, "bias diff")


def test_scale_shape_mismatch():
    with pytest.raises(LayerError, match="dimension mismatch"):
        make_layer('type: "Scale" bottom: "a" bottom: "b" scale_param { axis: 1 }',
                   [(2, 4, 3), (3,)])


# ---------------------------------------------------------------------------------------
# Crop
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,big,small,begin", [
    ("", (2, 3, 8, 9), (1, 1, 5, 6), (0, 0, 0, 0)),
    ("offset: 2", (2, 3, 8, 9), (1, 1, 5, 6), (0, 0, 2, 2)),
    ("axis: 2 offset: 3 offset: 1", (2, 3, 8, 9), (2, 3, 5, 6), (0, 0, 3, 1)),
    ("axis: 1 offset: 1", (2, 4, 8, 9), (1, 2, 5, 6), (0, 1, 1, 1)),
    ("axis: -1 offset: 2", (2, 3, 8, 9), (1, 1, 1, 6), (0, 0, 0, 2)),
    ("axis: 1 offset: 0 offset: 2 offset: 1", (2, 4, 8, 9), (1, 3, 5, 6), (0, 0, 2, 1)),
])
def test_crop(text, big, small, begin, mode):
    rs = np.random.RandomState(14)
    layer = make_layer(f'type: "Crop" bottom: "a" bottom: "b" crop_param {{ {text} }}',
                       [big, small])
    assert not layer.allow_backward(1)
    x, ref_blob = rand(rs, *big), rand(rs, *small)
    axis = len(big) - 1 if "axis: -1" in text else (1 if "axis: 1" in text else 2)
    shape = big[:axis] + small[axis:]
    region = tuple(slice(o, o + s) for o, s in zip(begin, shape))
    (y,), (dx, dref), _, (dy,) = run(layer, [x, ref_blob], mode)
    assert y.shape == shape
    assert np.array_equal(y, x[region])
    expected = np.zeros_like(x)
    expected[region] = dy
    assert np.array_equal(dx, expected)
    assert not dref.any()


def test_crop_errors():
    with pytest.raises(LayerError, match="invalid crop"):
        make_layer('type: "Crop" bottom: "a" bottom: "b" crop_param { offset: 4 }',
                   [(1, 1, 8, 8), (1, 1, 5, 5)])
    with pytest.raises(LayerError, match="number of offset"):
        make_layer('type: "Crop" bottom: "a" bottom: "b" crop_param { offset: 1 offset: 1 '
                   'offset: 1 }', [(1, 1, 8, 8), (1, 1, 5, 5)])


# ---------------------------------------------------------------------------------------
# reshaping: a layer serves new input sizes (the net re-runs reshape, then calls it)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_layers_follow_reshape(mode):
    from caffe_compat.engine.build import shape_layer
    rs = np.random.RandomState(15)
    pool = make_layer('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 '
                      'pad: 1 }', [(1, 2, 8, 8)])
    crop = make_layer('type: "Crop" bottom: "a" bottom: "b" crop_param { offset: 1 }',
                      [(1, 2, 8, 8), (1, 1, 5, 5)])
    for shape in [(1, 2, 8, 8), (3, 2, 7, 10), (2, 2, 12, 9)]:
        shape_layer(pool, [shape], first=False)
        x = rand(rs, *shape)
        ref, backward = pool_ref(x, (3, 3), (2, 2), (1, 1), "AVE")
        (y,), (dx,), _, (dy,) = run(pool, [x], mode)
        assert_close(y, ref, FWD_TOL, f"pool forward {shape}")
        assert_close(dx, backward(dy), BWD_TOL, f"pool bottom diff {shape}")
        small = (shape[0], 1, shape[2] - 2, shape[3] - 3)
        shape_layer(crop, [shape, small], first=False)
        (y,), _, _, _ = run(crop, [x, rand(rs, *small)], mode)
        assert np.array_equal(y, x[:, :, 1:1 + small[2], 1:1 + small[3]])


# ---------------------------------------------------------------------------------------
# golden parity with real Caffe
# ---------------------------------------------------------------------------------------
VISION_TYPES = {"Convolution", "Deconvolution", "Im2col", "Pooling", "SPP", "LRN",
                "InnerProduct", "Embed", "BatchNorm", "MVN", "Scale", "Bias", "Crop"}
GOLDEN_SETS = ["layers_basic", "layers_more", "fcn_tiny", "googlenet_tiny", "resnet_tiny",
               "caffenet_tiny"]
_GOLDEN_PRESENT = os.path.isdir(gh.GOLDEN_DIR)
_golden_cache: dict = {}


def _layer_params(gs):
    if gs.name != "caffenet_tiny":
        return gh.layer_params_by_name(gs.prototxt)
    # legacy V1 text format: read and upgraded to V2 the way Caffe does
    import warnings
    from caffe_compat.formats.prototxt import read_net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = read_net(gs.prototxt)
    return {lp.name: lp for lp in net.param.layer}


def _golden(name):
    if name not in _golden_cache:
        gs = gh.load(name)
        _golden_cache[name] = (gs, {c.name: c for c in gs.layer_cases()}, _layer_params(gs))
    return _golden_cache[name]


def _golden_ids():
    if not _GOLDEN_PRESENT:
        return []
    ids = []
    for name in GOLDEN_SETS:
        gs, cases, _ = _golden(name)
        ids += [(name, c.name) for c in cases.values() if c.type in VISION_TYPES]
    return ids


GOLDEN_IDS = _golden_ids()


@pytest.mark.skipif(not _GOLDEN_PRESENT, reason="tests/golden is missing")
def test_golden_sets_cover_every_vision_family():
    covered = {_golden(s)[1][n].type for s, n in GOLDEN_IDS}
    assert {"Convolution", "Deconvolution", "Pooling", "LRN", "InnerProduct", "BatchNorm",
            "Scale", "Bias", "Crop"} <= covered
    assert len(GOLDEN_IDS) >= 100


@pytest.mark.skipif(not _GOLDEN_PRESENT, reason="tests/golden is missing")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("set_name,layer_name", GOLDEN_IDS,
                         ids=[f"{s}:{n}" for s, n in GOLDEN_IDS])
def test_golden_layer_parity(set_name, layer_name, mode):
    gs, cases, params = _golden(set_name)
    case = cases[layer_name]
    # every golden set ran in phase TEST (see its README.txt)
    layer = build_layer(params[layer_name], [b.shape for b in case.bottom_data], phase=TEST)
    assert len(layer.blobs()) == len(case.params)
    for p, v in zip(layer.blobs(), case.params):
        assert p.shape == v.shape, f"blob shape {p.shape} vs Caffe's {v.shape}"
    set_blobs(layer, case.params)
    tops, bottom_grads, blob_grads, _ = run(layer, case.bottom_data, mode,
                                            head_grads=list(case.top_diff))
    for j, (ours, ref) in enumerate(zip(tops, case.top_data)):
        assert_close(ours, ref, FWD_TOL, f"top {j}")
    if case.backward_skipped:
        return
    for i, (ours, ref) in enumerate(zip(bottom_grads, case.bottom_diff)):
        if ref is None or not layer.allow_backward(i):
            continue
        assert_close(ours, ref, BWD_TOL, f"bottom {i} diff")
    for i, (ours, ref) in enumerate(zip(blob_grads, case.param_diffs)):
        if ref is None:
            continue
        assert_close(np.zeros(ref.shape) if ours is None else ours, ref, BWD_TOL,
                     f"blob {i} diff")
