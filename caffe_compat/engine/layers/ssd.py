"""The SSD fork's layers (weiliu89/caffe, branch ssd): Permute, Normalize, PriorBox and
DetectionOutput, as MobileNet-SSD, VGG-SSD and their descendants use them.

* ``Permute`` and ``Normalize`` are graph ops with autograd backward (Caffe's
  Backward is their exact derivative).
* ``PriorBox`` depends only on shapes: its top is built from ``arange`` in the graph
  (so a hybridized net keeps it), with Caffe's float/double arithmetic. No backward.
* ``DetectionOutput`` (decode, per-class NMS, keep_top_k) runs on the host with numpy,
  in float32 like the fork; it runs imperatively only (caffe.Net, an un-hybridized
  block) and says so when hybridized. Its top is ``(1, 1, num_kept, 7)`` rows
  ``[image, label, score, xmin, ymin, xmax, ymax]``. No backward.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "p" type: "PriorBox" prior_box_param { min_size: 30 '
...                       'max_size: 60 aspect_ratio: 2 flip: true }', caffe_pb2.LayerParameter())
>>> build_layer(p, [(1, 8, 3, 3), (1, 3, 96, 96)]).top_shapes   # 4 priors per cell
[(1, 2, 144)]
"""
from __future__ import annotations

import math
from typing import Sequence

import mxnet as mx
import numpy as np

from caffe_compat.boxes import box_iou
from caffe_compat.engine.fillers import default_filler
from caffe_compat.engine.layer import Layer, Shape, register_layer
from caffe_compat.proto import caffe_pb2

_ORIGIN = "SSD (weiliu89/caffe)"
_CODE = caffe_pb2.PriorBoxParameter
_F32 = np.float32


def _legacy(shape: Sequence[int], axis: int) -> int:
    """Caffe's LegacyShape: num/channels/height/width, 1 past the blob's rank."""
    return int(shape[axis]) if axis < len(shape) else 1


@register_layer("Permute", origin=_ORIGIN)
class Permute(Layer):
    """permute_layer.cpp: top axis ``i`` is bottom axis ``order[i]``; axes not listed
    follow in their original order. Backward: the inverse permutation."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        self.num_axes = len(bottom_shapes[0])
        order: list[int] = []
        for axis in self.param.permute_param.order:
            if axis >= self.num_axes:
                raise self.error(f"order {axis} should be less than the input dimension "
                                 f"{self.num_axes}")
            if axis in order:
                raise self.error(f"there are duplicate orders ({axis})")
            order.append(int(axis))
        self.order = tuple(order + [a for a in range(self.num_axes) if a not in order])

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) != self.num_axes:
            raise self.error(f"bottom rank changed from {self.num_axes} to {len(shape)}")
        return [tuple(shape[a] for a in self.order)]

    def hybrid_forward(self, F, x):
        return (F.transpose(x, axes=self.order),)


@register_layer("Normalize", origin=_ORIGIN)
class Normalize(Layer):
    """normalize_layer.cpp: ``x / sqrt(sum x^2 + eps)`` with the sum over (C, H, W) per
    image (``across_spatial``) or over C per position, times a learned scale: blob 0
    of shape (C,), or one shared value (Caffe's 0-d blob, (1,) here). Default filler:
    constant 1.

    Backward as Caffe's: the bottom gets ``scale * P^T top_diff`` with P the Jacobian of
    the normalisation (the exact derivative only when the scale is shared); the scale
    gets ``sum(top_diff * x / norm)`` (Caffe writes ``dot(top, top_diff) / scale``, NaN
    for a zero scale).
    """

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = tuple(bottom_shapes[0])
        if len(shape) < 2:
            raise self.error(f"Number of axes of bottom blob must be >=2; got {shape}")
        np_ = self.param.norm_param
        self.across_spatial = bool(np_.across_spatial)
        self.channel_shared = bool(np_.channel_shared)
        self.eps = float(np_.eps)
        self.channels = int(shape[1])
        filler = np_.scale_filler if np_.HasField("scale_filler") else default_filler(1.0)
        self.add_blob("scale", (1,) if self.channel_shared else (self.channels,), filler)
        #: Caffe's blob shapes (the shared scale is 0-d in Caffe).
        self.caffe_blob_shapes = [() if self.channel_shared else (self.channels,)]

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        shape = tuple(bottom_shapes[0])
        if len(shape) < 2 or shape[1] != self.channels:
            raise self.error(f"bottom must be (N, {self.channels}, ...); got {shape}")
        self.rank = len(shape)
        return [shape]

    def hybrid_forward(self, F, x, scale):
        axes = tuple(range(1, self.rank)) if self.across_spatial else (1,)
        shape = (1,) * self.rank if self.channel_shared else (1, -1) + (1,) * (self.rank - 2)
        s = F.reshape(scale, shape=shape)
        # Caffe's bottom gradient is scale * (d normalize(x) / dx)^T top_diff: the scale
        # multiplies after the projection, which differs from the exact derivative when
        # the scale varies per channel. Feeding normalize() x0 + s * (x - x0) (== x0,
        # exactly) and the unscaled top_diff gives that gradient; the value is Caffe's.
        x0 = F.BlockGrad(x)
        x = F.broadcast_add(x0, F.broadcast_mul(x - x0, F.BlockGrad(s)))
        norm = F.sqrt(F.sum(F.square(x), axis=axes, keepdims=True) + self.eps)
        z = F.broadcast_div(x, norm)
        z0 = F.BlockGrad(z)
        s0 = F.BlockGrad(s)
        value = F.BlockGrad(F.broadcast_mul(z, s0))
        return (value + (z - z0) + F.broadcast_mul(z0, s - s0),)


class _PriorSpec:
    """PriorBox's per-cell boxes (width, height in pixels, float32) in the fork's order:
    for each min_size, the min box, the sqrt(min * max) box, then each other ratio."""

    def __init__(self, layer: Layer):
        pp = layer.param.prior_box_param
        if not len(pp.min_size):
            raise layer.error("must provide min_size.")
        # The fork stores min/max sizes as float but reads them into ints (truncation).
        mins = [int(v) for v in pp.min_size]
        if any(v <= 0 for v in pp.min_size):
            raise layer.error("min_size must be positive.")
        ratios = [1.0]
        for ar in pp.aspect_ratio:
            if any(abs(float(ar) - r) < 1e-6 for r in ratios):
                continue
            ratios.append(float(_F32(ar)))
            if pp.flip:                              # 1. / ar in double, kept as float
                ratios.append(float(_F32(1.0 / float(_F32(ar)))))
        maxs = [int(v) for v in pp.max_size]
        if maxs:
            if len(maxs) != len(mins):
                raise layer.error("max_size must be given once per min_size")
            if any(mx_ <= mn for mn, mx_ in zip(pp.min_size, pp.max_size)):
                raise layer.error("max_size must be greater than min_size.")
        boxes = []
        for s, mn in enumerate(mins):
            boxes.append((_F32(mn), _F32(mn)))
            if maxs:
                side = _F32(math.sqrt(mn * maxs[s]))
                boxes.append((side, side))
            for ar in ratios:
                if abs(ar - 1.0) < 1e-6:
                    continue
                # The released SSD sizes every ratio box from min_size (a variant in
                # weiliu89's history used sqrt(min * max); no published model does).
                root = np.sqrt(_F32(ar))              # float sqrt of a float ratio
                boxes.append((_F32(mn) * root, _F32(mn) / root))
        self.boxes = boxes
        variance = [float(_F32(v)) for v in pp.variance]
        if len(variance) > 1 and len(variance) != 4:
            raise layer.error("Must and only provide 4 variance.")
        if any(v <= 0 for v in variance):
            raise layer.error("variance must be positive")
        if not variance:
            variance = [float(_F32(0.1))]
        self.variance = variance * 4 if len(variance) == 1 else variance
        if pp.HasField("img_h") or pp.HasField("img_w"):
            if pp.HasField("img_size"):
                raise layer.error("Either img_size or img_h/img_w should be specified; "
                                  "not both.")
            self.img = (int(pp.img_h), int(pp.img_w))
        elif pp.HasField("img_size"):
            self.img = (int(pp.img_size), int(pp.img_size))
        else:
            self.img = None
        if self.img is not None and min(self.img) <= 0:
            raise layer.error("img_size/img_h/img_w should be larger than 0.")
        if pp.HasField("step_h") or pp.HasField("step_w"):
            if pp.HasField("step"):
                raise layer.error("Either step or step_h/step_w should be specified; "
                                  "not both.")
            self.step = (float(_F32(pp.step_h)), float(_F32(pp.step_w)))
        elif pp.HasField("step"):
            self.step = (float(_F32(pp.step)), float(_F32(pp.step)))
        else:
            self.step = None
        if self.step is not None and min(self.step) <= 0:
            raise layer.error("step/step_h/step_w should be larger than 0.")
        self.offset = float(_F32(pp.offset))
        self.clip = bool(pp.clip)


@register_layer("PriorBox", origin=_ORIGIN)
class PriorBox(Layer):
    """prior_box_layer.cpp: top ``(1, 2, H * W * P * 4)``, channel 0 the boxes
    ``[xmin, ymin, xmax, ymax]`` normalised by the image size (cells row-major, P boxes
    per cell in the fork's order), channel 1 their variances. The image size comes
    from img_size/img_h/img_w or bottom[1]; the step from step/step_h/step_w or
    image / feature size. Cell centres are float ``(w + offset) * step``; each
    coordinate is ``(centre -+ side / 2) / image`` in double, stored as float.
    """

    has_backward = False

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, at_least=1, at_most=2)
        self.spec = _PriorSpec(self)
        if self.spec.img is None and len(bottom_shapes) < 2:
            raise self.error("needs the image as bottom[1] (or img_size / img_h, img_w)")

    def allow_backward(self, bottom_index: int) -> bool:
        return False

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        feat = (_legacy(bottom_shapes[0], 2), _legacy(bottom_shapes[0], 3))
        img = self.spec.img or (_legacy(bottom_shapes[1], 2), _legacy(bottom_shapes[1], 3))
        step = self.spec.step or (float(_F32(img[0]) / _F32(feat[0])),
                                  float(_F32(img[1]) / _F32(feat[1])))
        plan = (feat, img, step)
        if getattr(self, "plan", plan) != plan:
            self._clear_cached_op()
        self.plan = plan
        dim = feat[0] * feat[1] * len(self.spec.boxes) * 4
        return [(1, 2, dim)]

    def hybrid_forward(self, F, feature, image=None):
        (fh, fw), (ih, iw), (sh, sw) = self.plan
        off = self.spec.offset
        cx = F.cast((F.arange(0, fw, dtype="float32") + off) * sw, dtype="float64")
        cy = F.cast((F.arange(0, fh, dtype="float32") + off) * sh, dtype="float64")
        cx = F.broadcast_to(F.reshape(cx, shape=(1, fw)), shape=(fh, fw))
        cy = F.broadcast_to(F.reshape(cy, shape=(fh, 1)), shape=(fh, fw))
        coords, variances = [], []
        for bw, bh in self.spec.boxes:
            half_w, half_h = float(bw) / 2.0, float(bh) / 2.0
            for centre, half, size in ((cx, half_w, iw), (cy, half_h, ih),
                                       (cx, -half_w, iw), (cy, -half_h, ih)):
                coords.append(F.cast((centre - half) / float(size), dtype="float32"))
            for v in self.spec.variance:
                variances.append(F.ones((fh, fw), dtype="float32") * v)
        boxes = F.reshape(F.stack(*coords, axis=2), shape=(1, 1, -1))
        if self.spec.clip:
            boxes = F.clip(boxes, 0.0, 1.0)
        var = F.reshape(F.stack(*variances, axis=2), shape=(1, 1, -1))
        return (F.BlockGrad(F.concat(boxes, var, dim=1)),)


def decode_boxes(loc: np.ndarray, prior: np.ndarray, variance: np.ndarray,
                 code_type: int, variance_in_target: bool) -> np.ndarray:
    """bbox_util.cpp DecodeBBox for (P, 4) float32 arrays (float arithmetic as the fork).

    >>> prior = np.array([[0.25, 0.25, 0.75, 0.5]], np.float32)
    >>> decode_boxes(np.zeros((1, 4), np.float32), prior, np.full((1, 4), 0.1, np.float32),
    ...              2, False)            # CENTER_SIZE with zero offsets: the prior
    array([[0.25, 0.25, 0.75, 0.5 ]], dtype=float32)
    """
    loc, prior, variance = (np.asarray(a, _F32) for a in (loc, prior, variance))
    scale = np.ones_like(variance) if variance_in_target else variance
    if code_type == _CODE.CORNER:
        return prior + scale * loc
    pw = prior[:, 2] - prior[:, 0]
    ph = prior[:, 3] - prior[:, 1]
    if code_type == _CODE.CORNER_SIZE:
        size = np.stack([pw, ph, pw, ph], axis=1)
        return prior + scale * loc * size
    if code_type != _CODE.CENTER_SIZE:
        raise ValueError(f"Unknown code_type {code_type}")
    pcx = (prior[:, 0] + prior[:, 2]) / _F32(2)
    pcy = (prior[:, 1] + prior[:, 3]) / _F32(2)
    cx = scale[:, 0] * loc[:, 0] * pw + pcx
    cy = scale[:, 1] * loc[:, 1] * ph + pcy
    w = np.exp(scale[:, 2] * loc[:, 2]) * pw
    h = np.exp(scale[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / _F32(2), cy - h / _F32(2), cx + w / _F32(2), cy + h / _F32(2)],
                    axis=1).astype(_F32)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
             nms_threshold: float, eta: float, top_k: int) -> list[int]:
    """ApplyNMSFast: scores above the threshold, stable-sorted descending, the first
    top_k, then greedy suppression of overlaps above the (adaptive) threshold."""
    candidates = np.nonzero(scores > _F32(score_threshold))[0]
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if -1 < top_k < len(order):
        order = order[:top_k]
    keep: list[int] = []
    threshold = _F32(nms_threshold)
    for idx in order:
        # JaccardOverlap (normalized boxes, float32 like the fork's float)
        if keep and not np.all(box_iou(boxes[idx:idx + 1], boxes[keep])[0] <= threshold):
            continue
        keep.append(int(idx))
        if eta < 1 and threshold > 0.5:
            threshold = _F32(threshold * _F32(eta))
    return keep


@register_layer("DetectionOutput", origin=_ORIGIN)
class DetectionOutput(Layer):
    """detection_output_layer.cpp (CPU path) with bottoms ``loc (N, P*L*4)``,
    ``conf (N, P*C)`` (class scores, usually softmaxed) and ``prior (1, 2, P*4)``.

    Per image and class (background skipped): decode (CORNER, CENTER_SIZE or
    CORNER_SIZE; ``variance_encoded_in_target``), keep scores > confidence_threshold,
    NMS (nms_threshold, top_k, eta); then, if more than keep_top_k survive, the best
    keep_top_k over all classes. Rows are per image, by ascending label, then as NMS
    kept them. With no detection at all: one row ``[i, -1, -1, ...]`` per image.
    Not saving files (save_output_param) nor visualizing.
    """

    has_backward = False

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=3)
        dp = self.param.detection_output_param
        if not dp.HasField("num_classes"):
            raise self.error("Must specify num_classes")
        self.num_classes = int(dp.num_classes)
        self.share_location = bool(dp.share_location)
        self.num_loc_classes = 1 if self.share_location else self.num_classes
        self.background = int(dp.background_label_id)
        self.code_type = int(dp.code_type)
        if self.code_type not in (_CODE.CORNER, _CODE.CENTER_SIZE, _CODE.CORNER_SIZE):
            raise self.error(f"Unknown code_type {self.code_type}")
        self.variance_in_target = bool(dp.variance_encoded_in_target)
        self.keep_top_k = int(dp.keep_top_k)
        self.confidence_threshold = (float(dp.confidence_threshold)
                                     if dp.HasField("confidence_threshold")
                                     else -float(np.finfo(_F32).max))
        nms = dp.nms_param
        self.nms_threshold = float(nms.nms_threshold)
        if self.nms_threshold < 0:
            raise self.error("nms_threshold must be non negative.")
        self.eta = float(nms.eta)
        if not 0 < self.eta <= 1:
            raise self.error("eta must be in (0, 1]")
        self.top_k = int(nms.top_k) if nms.HasField("top_k") else -1

    def allow_backward(self, bottom_index: int) -> bool:
        return False

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        loc, conf, prior = bottom_shapes
        if _legacy(loc, 0) != _legacy(conf, 0):
            raise self.error(f"loc {tuple(loc)} and conf {tuple(conf)} differ in batch size")
        self.num_priors = _legacy(prior, 2) // 4
        if self.num_priors * self.num_loc_classes * 4 != _legacy(loc, 1):
            raise self.error(f"Number of priors ({self.num_priors}) must match number of "
                             f"location predictions ({_legacy(loc, 1)})")
        if self.num_priors * self.num_classes != _legacy(conf, 1):
            raise self.error(f"Number of priors ({self.num_priors}) must match number of "
                             f"confidence predictions ({_legacy(conf, 1)})")
        # The number of detections is known only after NMS: Caffe reports 1.
        return [(1, 1, 1, 7)]

    def forward(self, *args):
        if any(isinstance(a, mx.sym.Symbol) for a in args):
            raise self.error("DetectionOutput runs on the host (numpy) and cannot be "
                             "hybridized or exported; run the net imperatively")
        loc, conf, prior = (a.asnumpy().astype(_F32) for a in args)
        return (mx.nd.array(self.detect(loc, conf, prior), ctx=args[0].context,
                            dtype="float32"),)

    def hybrid_forward(self, F, *bottoms):  # pragma: no cover - forward() handles calls
        raise self.error("DetectionOutput cannot run inside a symbolic graph")

    def detect(self, loc: np.ndarray, conf: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """The layer's top for host arrays (see the class docstring)."""
        num, P, L, C = loc.shape[0], self.num_priors, self.num_loc_classes, self.num_classes
        loc = loc.reshape(num, P, L, 4)
        conf = conf.reshape(num, P, C)
        flat = prior.reshape(-1)
        prior_boxes = flat[:P * 4].reshape(P, 4)
        prior_var = flat[P * 4:P * 8].reshape(P, 4)
        rows = []
        for i in range(num):
            decoded = {}
            for c in range(L):
                # The CPU path skips decoding label == background_label_id, which with
                # shared locations (label -1) and background -1 is a LOG(FATAL); the GPU
                # path, which the models ran on, decodes them: so do we.
                label = -1 if self.share_location else c
                if label == self.background and not self.share_location:
                    continue
                decoded[label] = decode_boxes(loc[i, :, c], prior_boxes, prior_var,
                                              self.code_type, self.variance_in_target)
            kept: dict[int, list[int]] = {}
            for c in range(C):
                if c == self.background:
                    continue
                boxes = decoded[-1 if self.share_location else c]
                kept[c] = nms_fast(boxes, conf[i, :, c], self.confidence_threshold,
                                   self.nms_threshold, self.eta, self.top_k)
            total = sum(len(v) for v in kept.values())
            if -1 < self.keep_top_k < total:
                pairs = [(conf[i, idx, c], c, idx) for c in sorted(kept) for idx in kept[c]]
                order = np.argsort([-p[0] for p in pairs], kind="stable")[:self.keep_top_k]
                kept = {}
                for j in order:
                    kept.setdefault(pairs[j][1], []).append(pairs[j][2])
            for c in sorted(kept):
                boxes = decoded[-1 if self.share_location else c]
                for idx in kept[c]:
                    rows.append([i, c, conf[i, idx, c], *boxes[idx]])
        if not rows:
            empty = np.full((num, 7), -1, _F32)
            empty[:, 0] = np.arange(num)
            return empty.reshape(1, 1, num, 7)
        return np.asarray(rows, _F32).reshape(1, 1, -1, 7)
