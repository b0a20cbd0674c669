"""Caffe's loss layers and the Accuracy layer.

A loss top is a 0-d blob in Caffe (shape ``()``, as ``reshape`` reports); MXNet's legacy
NDArray cannot hold 0 axes, so ``hybrid_forward`` returns it with shape ``(1,)``.
Every ``*Loss`` type has loss_weight 1 by default. The label bottom gets no gradient.

Where Caffe's Backward is not the exact derivative of its Forward (the clamps
``max(p, FLT_MIN)``/``max(p, 1e-20)`` are ignored by it, ContrastiveLoss adds 1e-4 to a
denominator), the layer emits Caffe's own gradient: :func:`with_caffe_gradient` keeps
the forward value bit-exact while autograd returns ``top_diff * caffe_grad``.

    >>> from google.protobuf import text_format
    >>> import mxnet as mx
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer, run_layer
    >>> p = text_format.Parse('name: "loss" type: "SoftmaxWithLoss"', caffe_pb2.LayerParameter())
    >>> layer = build_layer(p, [(2, 3), (2,)])
    >>> layer.top_shapes
    [()]
    >>> loss = run_layer(layer, mx.nd.zeros((2, 3)), mx.nd.array([0, 2]))[0]
    >>> round(float(loss.asscalar()), 6)    # -log(1/3)
    1.098612
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from caffe_compat.engine.layer import Layer, Shape, canonical_axis, count, register_layer
from caffe_compat.proto import caffe_pb2

_NORM = caffe_pb2.LossParameter
FLT_MIN = float(np.finfo(np.float32).tiny)   # softmax_loss_layer.cpp's log clamp
LOG_THRESHOLD = 1e-20                        # kLOG_THRESHOLD (loss_layer.hpp)


# ---- shared pieces ---------------------------------------------------------------
def with_caffe_gradient(F, value, pairs):
    """``value`` in the forward; in the backward each ``bottom`` of ``pairs`` gets
    ``top_diff * grad`` (``pairs`` = [(bottom, grad)], grad shaped like bottom).

    Compute ``value`` and the grads from ``F.BlockGrad``-stopped bottoms, so autograd
    never walks their graphs: MXNet 1.9's imperative backward can crash when a zero
    gradient (BlockGrad, comparisons) reaches ``where``/``concat``/``Dropout`` through
    another op (apache/mxnet#20691). ``s - BlockGrad(s)`` is exactly 0 for finite ``s``,
    so the forward value stays bit-exact.
    """
    surrogate = None
    for bottom, grad in pairs:
        term = F.sum(bottom * F.BlockGrad(grad))
        surrogate = term if surrogate is None else surrogate + term
    return F.BlockGrad(value) + (surrogate - F.BlockGrad(surrogate))


def label_values(F, label, shape):
    """Labels as Caffe reads them (``static_cast<int>``: truncation), reshaped, no grad."""
    return F.reshape(F.trunc(F.BlockGrad(label)), shape=shape)


def normalization_mode(layer: Layer, unset_default: int, allow_normalize: bool = True) -> int:
    """Caffe's choice of NormalizationMode: ``normalization`` when given, else the
    deprecated ``normalize`` (true = VALID, false = BATCH_SIZE), else ``unset_default``."""
    lp = layer.param.loss_param
    if lp.HasField("normalize") and not allow_normalize:
        raise layer.error('loss_param.normalize is deprecated here; use "normalization"')
    if lp.HasField("normalization"):
        return lp.normalization
    if lp.HasField("normalize"):
        return _NORM.VALID if lp.normalize else _NORM.BATCH_SIZE
    return unset_default


def normalizer(F, mode: int, outer: int, inner: int, valid):
    """loss_layer.cpp's GetNormalizer, never below 1: a Python float, or for VALID an
    array of shape (1,) counting the non-ignored ``valid`` entries."""
    if mode == _NORM.FULL:
        return float(max(1, outer * inner))
    if mode == _NORM.VALID:
        return F.maximum(F.sum(valid), 1.0)
    if mode == _NORM.BATCH_SIZE:
        return float(max(1, outer))
    if mode == _NORM.NONE:
        return 1.0
    if mode == _NORM.PRE_FIXED:
        raise ValueError("normalization PRE_FIXED (R-FCN's Caffe) exists only for "
                         "SmoothL1Loss")
    raise ValueError(f"unknown normalization mode {mode}")


def divide(F, array, norm, ndim: int):
    """``array / norm`` for a float or a (1,)-shaped normalizer."""
    if isinstance(norm, float):
        return array / norm
    return F.broadcast_div(array, F.reshape(norm, shape=(1,) * ndim))


def ignore_mask(F, labels, ignore_label):
    """1 where the label counts, 0 where it equals ``ignore_label`` (None: all count)."""
    if ignore_label is None:
        return F.ones_like(labels)
    return labels != float(ignore_label)


def loss_ignore_label(layer: Layer):
    """loss_param.ignore_label when set, else None."""
    lp = layer.param.loss_param
    return int(lp.ignore_label) if lp.HasField("ignore_label") else None


def num_tops(layer: Layer) -> int:
    return max(len(layer.param.top), 1)


def check_tops(layer: Layer, at_most: int) -> None:
    if num_tops(layer) > at_most:
        raise layer.error(f"takes at most {at_most} top blob(s), got {num_tops(layer)}")


class LossLayer(Layer):
    """Caffe's LossLayer: loss weight 1 by default, no gradient to the label (bottom 1),
    bottoms 0 and 1 share their first dimension, top 0 is 0-d."""

    default_loss_weight = 1.0
    auto_top_blobs = 1          # a LossLayer: AutoTopBlobs()

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index != 1

    def check_loss_bottoms(self, bottom_shapes: Sequence[Shape], exactly: int = 2) -> None:
        self.check_bottoms(bottom_shapes, exactly=exactly)
        a, b = bottom_shapes[0], bottom_shapes[1]
        if not a or not b or a[0] != b[0]:
            raise self.error(f"the data {tuple(a)} and label {tuple(b)} must have the same "
                             "first dimension")


class ClassAxisLayer(Layer):
    """Shapes and label layout of layers scoring C classes along an axis with one label
    per other position (SoftmaxWithLoss, InfogainLoss, Accuracy)."""

    def ignore_label(self):
        return loss_ignore_label(self)

    def class_axis_shapes(self, bottom_shapes: Sequence[Shape], axis_field: int) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        self.axis = canonical_axis(axis_field, len(shape))
        self.outer = count(shape, 0, self.axis)
        self.inner = count(shape, self.axis + 1)
        self.classes = shape[self.axis]
        if self.outer * self.inner != count(bottom_shapes[1]):
            raise self.error(
                f"number of labels ({count(bottom_shapes[1])}) must match number of "
                f"predictions ({self.outer * self.inner}); e.g. for axis 1 and prediction "
                "shape (N, C, H, W) the label count must be N*H*W, values in {0, ..., C-1}")
        check_tops(self, 2)
        return [()] + ([shape] if num_tops(self) == 2 else [])

    def class_layout(self, F, x, label):
        """(x as (outer, C, inner), valid mask (outer, inner), labels with ignored ones
        replaced by 0)."""
        x3 = F.reshape(x, shape=(self.outer, self.classes, self.inner))
        labels = label_values(F, label, (self.outer, self.inner))
        valid = ignore_mask(F, labels, self.ignore_label())
        return x3, valid, labels * valid

    def one_hot(self, F, safe_labels):
        """(outer, C, inner) one-hot of the labels."""
        return F.transpose(F.one_hot(safe_labels, depth=self.classes), axes=(0, 2, 1))


# ---- softmax losses ----------------------------------------------------------------
@register_layer("SoftmaxWithLoss", origin="BVLC")
class SoftmaxWithLoss(LossLayer, ClassAxisLayer):
    """softmax_loss_layer.cpp: softmax along ``softmax_param.axis`` (default 1), then
    ``-sum log(max(prob[label], FLT_MIN)) / normalizer`` over non-ignored positions.

    Normalization (loss_param): VALID (default; non-ignored count), FULL, BATCH_SIZE
    (outer count), NONE; deprecated ``normalize: false`` = BATCH_SIZE, true = VALID; the
    normalizer is at least 1. Gradient ``(prob - onehot(label)) / normalizer``, zero at
    ignored positions. Optional top 1 is the softmax (Caffe sends no gradient from it).

    SegNet's ``weight_by_label_freqs`` (alexgkendall/caffe-segnet softmax_loss_layer.cpp)
    weights each position's loss, and its gradient, by ``class_weighting[label]`` (one
    weight per class); the normalizer stays the position count.
    """

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes)
        self.mode = normalization_mode(self, _NORM.VALID)
        tops = self.class_axis_shapes(bottom_shapes, self.param.softmax_param.axis)
        lp = self.param.loss_param
        self.class_weights = list(lp.class_weighting) if lp.weight_by_label_freqs else None
        if self.class_weights is not None and len(self.class_weights) != self.classes:
            raise self.error(f"Number of class weight values ({len(self.class_weights)}) does "
                             f"not match the number of classes ({self.classes}).")
        return tops

    def hybrid_forward(self, F, x, label):
        prob = F.softmax(F.BlockGrad(x), axis=self.axis)
        prob3, valid, safe = self.class_layout(F, prob, label)
        picked = F.pick(prob3, safe, axis=1)
        norm = normalizer(F, self.mode, self.outer, self.inner, valid)
        weight = valid
        if self.class_weights is not None:     # SegNet: class_weighting[label] per position
            weight = valid * sum((safe == c) * w for c, w in enumerate(self.class_weights))
        value = -F.sum(F.log(F.maximum(picked, FLT_MIN)) * weight) / norm
        grad = divide(F, F.broadcast_mul(prob3 - self.one_hot(F, safe),
                                         F.expand_dims(weight, axis=1)), norm, 3)
        loss = with_caffe_gradient(F, value, [(x, F.reshape_like(grad, x))])
        if num_tops(self) == 2:
            return loss, prob
        return (loss,)


@register_layer("InfogainLoss", origin="BVLC")
class InfogainLoss(LossLayer, ClassAxisLayer):
    """infogain_loss_layer.cpp: softmax along ``infogain_loss_param.axis``, then
    ``-sum_l H[label, l] * log(max(prob_l, 1e-20)) / normalizer``.

    H (C x C) is bottom 2, or read once from ``infogain_loss_param.source`` (a
    .binaryproto). Normalization as SoftmaxWithLoss (``normalize`` is rejected, as Caffe
    does). Gradient ``(prob * sum_l H[label, l] - H[label, :]) / normalizer``; none to
    the label or to H. Optional top 1 is the softmax.
    """

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        if not 2 <= len(bottom_shapes) <= 3:
            raise self.error(f"takes 2 or 3 bottom blobs, got {len(bottom_shapes)}")
        self.mode = normalization_mode(self, _NORM.VALID, allow_normalize=False)
        if len(bottom_shapes) == 2:
            matrix = self.read_matrix()
            self.infogain_matrix = self.params.get_constant("infogain_matrix",
                                                            matrix.reshape(-1))

    def read_matrix(self) -> np.ndarray:
        p = self.param.infogain_loss_param
        if not p.HasField("source"):
            raise self.error("infogain matrix source must be specified (or give H as a "
                             "third bottom)")
        try:
            from caffe_compat.formats.binaryproto import read_binaryproto
        except ImportError as exc:
            raise self.error(f"cannot read infogain matrix {p.source!r}: the binaryproto "
                             f"reader is unavailable ({exc})") from exc
        try:
            return np.asarray(read_binaryproto(p.source), dtype=np.float32)
        except OSError as exc:
            raise self.error(f"cannot read infogain matrix {p.source!r}: {exc}") from exc

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes, exactly=len(bottom_shapes))
        tops = self.class_axis_shapes(bottom_shapes, self.param.infogain_loss_param.axis)
        h_count = (count(bottom_shapes[2]) if len(bottom_shapes) == 3
                   else self.infogain_matrix.shape[0])
        if h_count != self.classes * self.classes:
            raise self.error(f"H has {h_count} entries; it must be {self.classes}x"
                             f"{self.classes}")
        return tops

    def hybrid_forward(self, F, x, label, *matrix, **constants):
        h = matrix[0] if matrix else constants["infogain_matrix"]
        h = F.reshape(F.BlockGrad(h), shape=(self.classes, self.classes))
        prob = F.softmax(F.BlockGrad(x), axis=self.axis)
        prob3, valid, safe = self.class_layout(F, prob, label)
        rows = F.transpose(F.take(h, safe, axis=0), axes=(0, 2, 1))   # H[label, l]
        norm = normalizer(F, self.mode, self.outer, self.inner, valid)
        per_position = F.sum(rows * F.log(F.maximum(prob3, LOG_THRESHOLD)), axis=1)
        value = -F.sum(per_position * valid) / norm
        row_sums = F.take(F.sum(h, axis=1), safe)                        # (outer, inner)
        grad = (F.broadcast_mul(prob3, F.expand_dims(row_sums, axis=1)) - rows)
        grad = divide(F, F.broadcast_mul(grad, F.expand_dims(valid, axis=1)), norm, 3)
        loss = with_caffe_gradient(F, value, [(x, F.reshape_like(grad, x))])
        if num_tops(self) == 2:
            return loss, prob
        return (loss,)


# ---- other losses ------------------------------------------------------------------
@register_layer("EuclideanLoss", origin="BVLC")
class EuclideanLoss(LossLayer):
    """euclidean_loss_layer.cpp: ``sum (a - b)^2 / (2 N)``, N = a.shape[0]; gradient
    ``+-(a - b) / N`` to both bottoms (b may be the target: Caffe allows both)."""

    def allow_backward(self, bottom_index: int) -> bool:
        return True

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes)
        a, b = bottom_shapes
        if count(a, 1) != count(b, 1):
            raise self.error(f"inputs must have the same dimension: {tuple(a)} vs {tuple(b)}")
        check_tops(self, 1)
        self.num = a[0]
        return [()]

    def hybrid_forward(self, F, a, b):
        diff = a - F.reshape_like(b, a)
        return (F.sum(F.square(diff)) / float(self.num) / 2.0,)


@register_layer("HingeLoss", origin="BVLC")
class HingeLoss(LossLayer):
    """hinge_loss_layer.cpp: with t = x negated at the label, ``m = max(0, 1 + t)``;
    L1: ``sum m / N``, L2: ``sum m^2 / N`` (N = shape[0], classes = count / N).
    Gradients: ``sign`` of the negated-at-label m (0 where m == 0) / N, and 2 m / N."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes)
        shape = bottom_shapes[0]
        self.num, self.dim = shape[0], count(shape, 1)
        if count(bottom_shapes[1]) != self.num:
            raise self.error(f"needs one label per item ({self.num}), got "
                             f"{count(bottom_shapes[1])}")
        check_tops(self, 1)
        return [()]

    def hybrid_forward(self, F, x, label):
        x2 = F.reshape(x, shape=(self.num, self.dim))
        labels = label_values(F, label, (self.num,))
        sign = 1.0 - 2.0 * F.one_hot(labels, depth=self.dim)
        margin = F.relu(1.0 + sign * x2)
        if self.param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2:
            return (F.sum(F.square(margin)) / float(self.num),)
        return (F.sum(margin) / float(self.num),)


@register_layer("ContrastiveLoss", origin="BVLC")
class ContrastiveLoss(LossLayer):
    """contrastive_loss_layer.cpp on bottoms (a, b, similar), a and b (N, C[, 1, 1]):
    d^2 = ||a - b||^2; similar pairs add d^2, dissimilar ones ``max(margin - d, 0)^2``
    (``max(margin - d^2, 0)`` with legacy_version); total / (2 N).

    Gradient as Caffe's Backward: similar ``(a - b) / N``; dissimilar (when the hinge is
    active) ``-(a - b) / N`` (legacy) or ``-(margin - d) / (d + 1e-4) * (a - b) / N``;
    negated for b; none for the similarity bottom.
    """

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index != 2

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes, exactly=3)
        a, b, sim = bottom_shapes
        for name, s in (("bottom 0", a), ("bottom 1", b)):
            if len(s) < 2 or count(s, 2) != 1 or len(s) > 4:
                raise self.error(f"{name} must be (N, C) or (N, C, 1, 1), got {tuple(s)}")
        if a[1] != b[1]:
            raise self.error(f"bottoms 0 and 1 differ in channels: {tuple(a)} vs {tuple(b)}")
        if count(sim, 1) != 1 or len(sim) > 4 or sim[0] != a[0]:
            raise self.error(f"the similarity bottom must be (N,) or (N, 1, 1, 1), got "
                             f"{tuple(sim)}")
        check_tops(self, 1)
        self.num, self.channels = a[0], a[1]
        return [()]

    def hybrid_forward(self, F, a, b, similar):
        p = self.param.contrastive_loss_param
        margin = float(p.margin)
        n = float(self.num)
        diff = (F.reshape(F.BlockGrad(a), shape=(self.num, self.channels))
                - F.reshape(F.BlockGrad(b), shape=(self.num, self.channels)))
        dist_sq = F.sum(F.square(diff), axis=1)
        is_similar = label_values(F, similar, (self.num,)) != 0
        if p.legacy_version:
            hinge = margin - dist_sq
            dissimilar_loss = F.relu(hinge)
            coeff = -F.ones_like(dist_sq)
        else:
            dist = F.sqrt(dist_sq)
            hinge = margin - dist
            dissimilar_loss = F.square(F.relu(hinge))
            coeff = -hinge / (dist + 1e-4)
        value = F.sum(F.where(is_similar, dist_sq, dissimilar_loss)) / n / 2.0
        coeff = F.where(is_similar, F.ones_like(dist_sq), coeff * (hinge > 0))
        grad = F.broadcast_mul(diff, F.expand_dims(coeff, axis=1)) / n
        loss = with_caffe_gradient(F, value, [(a, F.reshape_like(grad, a)),
                                              (b, F.reshape_like(-grad, b))])
        return (loss,)


@register_layer("MultinomialLogisticLoss", origin="BVLC")
class MultinomialLogisticLoss(LossLayer):
    """multinomial_logistic_loss_layer.cpp on probabilities (N, C[, 1, 1]) and labels (N):
    ``-sum log(max(p[label], 1e-20)) / N``; gradient ``-1 / max(p[label], 1e-20) / N``
    at the label (Caffe's Backward keeps it where the clamp is active)."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes)
        label = bottom_shapes[1]
        if count(label, 1) != 1 or len(label) > 4:
            raise self.error(f"the label must be (N,) or (N, 1, 1, 1), got {tuple(label)}")
        check_tops(self, 1)
        self.num, self.dim = bottom_shapes[0][0], count(bottom_shapes[0], 1)
        return [()]

    def hybrid_forward(self, F, prob, label):
        p2 = F.reshape(F.BlockGrad(prob), shape=(self.num, self.dim))
        labels = label_values(F, label, (self.num,))
        clamped = F.maximum(F.pick(p2, labels, axis=1), LOG_THRESHOLD)
        n = float(self.num)
        value = -F.sum(F.log(clamped)) / n
        grad = F.broadcast_div(-F.one_hot(labels, depth=self.dim),
                               F.expand_dims(clamped, axis=1)) / n
        return (with_caffe_gradient(F, value, [(prob, F.reshape_like(grad, prob))]),)


@register_layer("SigmoidCrossEntropyLoss", origin="BVLC")
class SigmoidCrossEntropyLoss(LossLayer):
    """sigmoid_cross_entropy_loss_layer.cpp, stable form
    ``-sum [x (t - (x >= 0)) - log(1 + exp(x - 2 x (x >= 0)))] / normalizer`` over
    targets not equal to loss_param.ignore_label.

    Normalization: ``normalization`` when set, else deprecated ``normalize``, else
    BATCH_SIZE (shape[0]) - this layer's own default, unlike SoftmaxWithLoss. Gradient
    ``(sigmoid(x) - t) / normalizer``, zero at ignored targets.
    """

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_loss_bottoms(bottom_shapes)
        if count(bottom_shapes[0]) != count(bottom_shapes[1]):
            raise self.error(f"inputs must have the same count: {tuple(bottom_shapes[0])} vs "
                             f"{tuple(bottom_shapes[1])}")
        check_tops(self, 1)
        self.mode = normalization_mode(self, _NORM.BATCH_SIZE)
        self.outer, self.inner = bottom_shapes[0][0], count(bottom_shapes[0], 1)
        self.ndim = len(bottom_shapes[0])
        return [()]

    def hybrid_forward(self, F, x, target):
        t = F.reshape_like(F.BlockGrad(target), x)
        valid = ignore_mask(F, F.trunc(t), loss_ignore_label(self))
        live, x = x, F.BlockGrad(x)
        positive = x >= 0
        term = x * (t - positive) - F.log1p(F.exp(x - 2 * x * positive))
        norm = normalizer(F, self.mode, self.outer, self.inner, valid)
        value = -F.sum(term * valid) / norm
        grad = divide(F, (F.sigmoid(x) - t) * valid, norm, self.ndim)
        return (with_caffe_gradient(F, value, [(live, grad)]),)


# ---- accuracy ----------------------------------------------------------------------
@register_layer("Accuracy", origin="BVLC")
class Accuracy(ClassAxisLayer):
    """accuracy_layer.cpp: a position is correct when fewer than ``top_k`` classes score
    >= the true class's score besides itself (ties count against); accuracy = correct /
    non-ignored count (0 when none; ``accuracy_param.ignore_label``). Optional top 1:
    per-class accuracy (C,), 0 for classes without labels. Not a loss, no gradient
    (Caffe has no Backward for it).
    """

    has_backward = False    # Caffe has no Backward: pycaffe skips the layer

    def allow_backward(self, bottom_index: int) -> bool:
        return False

    def ignore_label(self):
        p = self.param.accuracy_param
        return int(p.ignore_label) if p.HasField("ignore_label") else None

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=2)
        p = self.param.accuracy_param
        tops = self.class_axis_shapes(bottom_shapes, p.axis)
        if p.top_k > count(bottom_shapes[0]) // max(count(bottom_shapes[1]), 1):
            raise self.error(f"top_k ({p.top_k}) must be less than or equal to the number "
                             "of classes")
        return tops[:1] + ([(self.classes,)] if len(tops) == 2 else [])

    def hybrid_forward(self, F, x, label):
        x3, valid, safe = self.class_layout(F, F.BlockGrad(x), label)
        true_score = F.expand_dims(F.pick(x3, safe, axis=1), axis=1)
        at_least_as_good = F.sum(F.broadcast_greater_equal(x3, true_score), axis=1)
        correct = (at_least_as_good <= float(self.param.accuracy_param.top_k)) * valid
        accuracy = F.sum(correct) / F.maximum(F.sum(valid), 1.0)
        if num_tops(self) == 1:
            return (accuracy,)
        hot = F.broadcast_mul(F.one_hot(safe, depth=self.classes), F.expand_dims(valid, axis=2))
        per_class_count = F.sum(hot, axis=(0, 1))
        per_class_hits = F.sum(F.broadcast_mul(hot, F.expand_dims(correct, axis=2)),
                               axis=(0, 1))
        return accuracy, per_class_hits / F.maximum(per_class_count, 1.0)
