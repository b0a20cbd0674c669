"""The region-based detection forks' layers: Fast/Faster R-CNN's ROIPooling and
SmoothL1Loss (rbgirshick/caffe-fast-rcnn), R-FCN's PSROIPooling
(daijifeng001/caffe-rfcn) and the C++ RPN ``Proposal`` layer (PVANet's
caffe-fast-rcnn, the one OpenCV imports), plus the numpy box helpers py-faster-rcnn's
Python layers are made of (anchors, box decoding, clipping, NMS; see
``caffe_compat.recipes.py_faster_rcnn``).

* ROIPooling and PSROIPooling are MXNet's ``ROIPooling``/``contrib.PSROIPooling``,
  which are ports of the forks' kernels (checked in the tests against numpy
  transcriptions of the fork code): Caffe's rounding of ROI corners, floor/ceil bin
  edges, the first maximum (ROI) or the bin average (PS-ROI), empty bins 0; backward
  to the argmax / spread over the bin. ROIs get no gradient.
* ``Proposal`` has a data-dependent output size: host numpy, imperative only, no
  backward. Top ``(R, 5)`` rows ``[0, x1, y1, x2, y2]`` (R <= post_nms_topn).

>>> import numpy as np
>>> generate_anchors(16, [0.5, 1, 2], [8])      # py-faster-rcnn's anchors, scale 8
array([[-84., -40.,  99.,  55.],
       [-56., -56.,  71.,  71.],
       [-36., -80.,  51.,  95.]])
"""
from __future__ import annotations

from typing import Sequence

import mxnet as mx
import numpy as np

from caffe_compat.boxes import nms as boxes_nms
from caffe_compat.engine.layer import Layer, Shape, count, register_layer
from caffe_compat.proto import caffe_pb2

_F32 = np.float32
_FAST_RCNN = "py-faster-rcnn (rbgirshick/caffe-fast-rcnn)"


# ---- numpy box helpers (py-faster-rcnn's lib/rpn and lib/fast_rcnn) ------------------
def _round_half_away(values: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero (numpy's round goes to even)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def generate_anchors(base_size: int = 16, ratios: Sequence[float] = (0.5, 1, 2),
                     scales: Sequence[float] = (8, 16, 32),
                     half_away: bool = False) -> np.ndarray:
    """py-faster-rcnn's generate_anchors: a ``base_size`` square at the origin,
    re-shaped to each ratio (area kept, sides rounded), then scaled; one row
    ``[x1, y1, x2, y2]`` per (ratio, scale), ratio-major.

    ``half_away`` rounds sides as C's round() (the C++ Proposal layer) instead of
    numpy's round-half-to-even (the Python layer); they differ only on exact halves.
    """
    rnd = _round_half_away if half_away else np.round
    ratios = np.asarray(ratios, np.float64)
    scales = np.asarray(scales, np.float64)
    side = float(base_size)
    centre = (side - 1) / 2.0
    widths = rnd(np.sqrt(side * side / ratios))
    heights = rnd(widths * ratios)
    rows = []
    for w, h in zip(widths, heights):
        ws, hs = w * scales, h * scales
        rows.append(np.stack([centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1),
                              centre + 0.5 * (ws - 1), centre + 0.5 * (hs - 1)], axis=1))
    return np.vstack(rows)


def bbox_transform_inv(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """py-faster-rcnn's bbox_transform_inv: apply ``(dx, dy, dw, dh)`` deltas (4 per
    class) to boxes with the ``+1`` pixel widths; computed in the deltas' dtype."""
    if boxes.shape[0] == 0:
        return np.zeros((0, deltas.shape[1]), dtype=deltas.dtype)
    boxes = boxes.astype(deltas.dtype, copy=False)
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    dx, dy, dw, dh = (deltas[:, k::4] for k in range(4))
    pred_x = dx * widths[:, None] + ctr_x[:, None]
    pred_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = np.exp(dw) * widths[:, None]
    pred_h = np.exp(dh) * heights[:, None]
    out = np.zeros(deltas.shape, dtype=deltas.dtype)
    out[:, 0::4] = pred_x - 0.5 * pred_w
    out[:, 1::4] = pred_y - 0.5 * pred_h
    out[:, 2::4] = pred_x + 0.5 * pred_w
    out[:, 3::4] = pred_y + 0.5 * pred_h
    return out


def clip_boxes(boxes: np.ndarray, im_shape: Sequence[float]) -> np.ndarray:
    """Clip ``[x1, y1, x2, y2]`` (4 per class) to ``[0, width - 1] x [0, height - 1]``
    with ``im_shape = (height, width)``; in place, returned."""
    height, width = im_shape[0], im_shape[1]
    boxes[:, 0::4] = np.maximum(np.minimum(boxes[:, 0::4], width - 1), 0)
    boxes[:, 1::4] = np.maximum(np.minimum(boxes[:, 1::4], height - 1), 0)
    boxes[:, 2::4] = np.maximum(np.minimum(boxes[:, 2::4], width - 1), 0)
    boxes[:, 3::4] = np.maximum(np.minimum(boxes[:, 3::4], height - 1), 0)
    return boxes


def nms(dets: np.ndarray, thresh: float) -> list[int]:
    """py-faster-rcnn's ``py_cpu_nms`` on ``[x1, y1, x2, y2, score]`` rows: visit in
    ``scores.argsort()[::-1]`` order, drop the boxes whose IoU (``+1`` pixel areas) with
    a kept box exceeds ``thresh``. Returns kept row indices in visiting order."""
    scores = dets[:, 4]
    return boxes_nms(dets[:, :4], scores, thresh, pixel_offset=1,
                     order=scores.argsort()[::-1]).tolist()


def rpn_proposals(fg_scores: np.ndarray, deltas: np.ndarray, im_info: np.ndarray,
                  anchors: np.ndarray, feat_stride: float, pre_nms_topn: int,
                  post_nms_topn: int, nms_thresh: float, min_size: float):
    """The RPN proposal step of py-faster-rcnn's ProposalLayer.forward for one image.

    ``fg_scores (A, H, W)``, ``deltas (4A, H, W)``, ``im_info = [height, width, scale
    (, scale_h)]``. Anchors shifted over the (H, W) grid in (h, w, a) order, decoded,
    clipped, boxes with a side below ``min_size * scale`` dropped, the best
    pre_nms_topn by score, NMS, the first post_nms_topn. Returns (boxes (R, 4),
    scores (R,)) as float32.
    """
    num_anchors = anchors.shape[0]
    height, width = fg_scores.shape[-2:]
    shift_x, shift_y = np.meshgrid(np.arange(width) * feat_stride,
                                   np.arange(height) * feat_stride)
    shifts = np.stack([shift_x.ravel(), shift_y.ravel(),
                       shift_x.ravel(), shift_y.ravel()], axis=1)
    shifted = (anchors[None, :, :] + shifts[:, None, :]).reshape(-1, 4)
    deltas = deltas.reshape(num_anchors * 4, height, width).transpose(1, 2, 0).reshape(-1, 4)
    scores = fg_scores.reshape(num_anchors, height, width).transpose(1, 2, 0).reshape(-1)
    boxes = clip_boxes(bbox_transform_inv(shifted, deltas), im_info[:2])
    scale_w = im_info[2]
    scale_h = im_info[3] if len(im_info) > 3 else im_info[2]
    ws = boxes[:, 2] - boxes[:, 0] + 1
    hs = boxes[:, 3] - boxes[:, 1] + 1
    keep = np.where((ws >= min_size * scale_w) & (hs >= min_size * scale_h))[0]
    boxes, scores = boxes[keep], scores[keep]
    order = scores.argsort()[::-1]
    if pre_nms_topn > 0:
        order = order[:pre_nms_topn]
    boxes, scores = boxes[order], scores[order]
    keep = nms(np.hstack([boxes, scores[:, None]]), nms_thresh)
    if post_nms_topn > 0:
        keep = keep[:post_nms_topn]
    return boxes[keep].astype(_F32), scores[keep].astype(_F32)


# ---- layers ---------------------------------------------------------------------------
# Inputs that get no gradient (ROIs, masks, weights) are cut with BlockGrad *before* any
# other op: MXNet 1.9's imperative backward segfaults when a BlockGrad's zero gradient
# flows back through another op into a custom autograd Function (a Python layer such as
# py-faster-rcnn's ProposalLayer feeding the ROIs).
def _check_rois(layer: Layer, rois: Shape) -> None:
    if count(rois, 1) != 5:
        raise layer.error(f"ROI blob must be (R, 5) [batch, x1, y1, x2, y2]; got {tuple(rois)}")


def _check_some_rois(layer: Layer, F, rois) -> None:
    """MXNet's pooling ops cannot take zero ROIs (Caffe outputs an empty blob): say so."""
    if F is mx.nd and rois.shape[0] == 0:
        raise layer.error("got no ROIs (every proposal was filtered out); caffe-compat "
                          "cannot pool an empty ROI blob")


@register_layer("ROIPooling", origin=_FAST_RCNN)
class ROIPooling(Layer):
    """roi_pooling_layer.cpp: bottoms ``(features (N, C, H, W), rois (R, 5))``, top
    ``(R, C, pooled_h, pooled_w)``. ROI corners ``round(x * spatial_scale)``, size
    ``max(end - start + 1, 1)``, bin ``[floor(i * size / pooled), ceil((i + 1) *
    size / pooled))`` offset and clipped; max with the first maximum, empty bin 0.
    Backward (the fork's GPU kernel; its CPU one is not implemented): each bin's
    gradient to its argmax."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=2)
        rp = self.param.roi_pooling_param
        if rp.pooled_h <= 0 or rp.pooled_w <= 0:
            raise self.error("pooled_h and pooled_w must be > 0")
        self.pooled = (int(rp.pooled_h), int(rp.pooled_w))
        self.spatial_scale = float(rp.spatial_scale)

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        data, rois = (tuple(s) for s in bottom_shapes)
        if len(data) != 4:
            raise self.error(f"features must be (N, C, H, W); got {data}")
        _check_rois(self, rois)
        return [(rois[0], data[1]) + self.pooled]

    def hybrid_forward(self, F, data, rois):
        _check_some_rois(self, F, rois)
        rois = F.reshape(F.BlockGrad(rois), shape=(-1, 5))      # no gradient (see above)
        return (F.ROIPooling(data, rois, pooled_size=self.pooled,
                             spatial_scale=self.spatial_scale),)


@register_layer("PSROIPooling", origin="R-FCN (daijifeng001/caffe-rfcn)")
class PSROIPooling(Layer):
    """psroi_pooling_layer.cu: bottoms ``(scores (N, output_dim * group^2, H, W), rois)``,
    top ``(R, output_dim, group, group)``. ROI ``[round(x1), round(x2) + 1) *
    spatial_scale`` (at least 0.1 wide), bin ``(i, j)`` of output channel ``d`` averages
    channel ``(d * group + i) * group + j`` over ``[floor, ceil)`` of its edges,
    clipped; empty bin 0. Backward: the bin's gradient / its area to each cell."""

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=2)
        pp = self.param.psroi_pooling_param
        for name in ("spatial_scale", "output_dim", "group_size"):
            if not pp.HasField(name):
                raise self.error(f"psroi_pooling_param.{name} is required")
        if pp.output_dim <= 0 or pp.group_size <= 0:
            raise self.error("output_dim and group_size must be > 0")
        self.output_dim = int(pp.output_dim)
        self.group = int(pp.group_size)
        self.spatial_scale = float(pp.spatial_scale)

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        data, rois = (tuple(s) for s in bottom_shapes)
        if len(data) != 4:
            raise self.error(f"score maps must be (N, C, H, W); got {data}")
        if data[1] != self.output_dim * self.group * self.group:
            raise self.error(f"input channel number ({data[1]}) does not match layer "
                             f"parameters (output_dim {self.output_dim} x group_size^2 "
                             f"{self.group ** 2})")
        _check_rois(self, rois)
        return [(rois[0], self.output_dim, self.group, self.group)]

    def hybrid_forward(self, F, data, rois):
        _check_some_rois(self, F, rois)
        rois = F.reshape(F.BlockGrad(rois), shape=(-1, 5))
        return (F.contrib.PSROIPooling(data, rois, spatial_scale=self.spatial_scale,
                                       output_dim=self.output_dim, pooled_size=self.group,
                                       group_size=self.group),)


@register_layer("SmoothL1Loss", origin=_FAST_RCNN)
class SmoothL1Loss(Layer):
    """smooth_L1_loss_layer.cu (py-faster-rcnn): with ``d = w_in * (pred - target)``,
    ``loss = sum(w_out * f(d)) / N``, ``f(x) = 0.5 (sigma x)^2`` if ``|x| < 1 /
    sigma^2`` else ``|x| - 0.5 / sigma^2``, N = bottom[0]'s first axis. Bottoms 3 and 4
    (inside and outside weights) are optional together; three bottoms are the original
    Fast R-CNN layer (rbgirshick/fast-rcnn's smooth_L1_loss_layer.cu, also R-FCN's
    MATLAB fork), whose third bottom is the inside weights alone. Gradient
    ``+-w_in * w_out * f'(d) * top_diff / N`` to prediction and target (f' = sigma^2 x or
    sign x); none to the weights. Loss weight 1 by default; top is 0-d.
    """

    default_loss_weight = 1.0
    auto_top_blobs = 1          # a LossLayer: AutoTopBlobs()

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, at_least=2, at_most=4)
        sigma = float(self.param.smooth_l1_loss_param.sigma)
        self.sigma2 = sigma * sigma

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index != 1        # LossLayer: the target is not forced

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        first = tuple(bottom_shapes[0])
        for i, shape in enumerate(bottom_shapes[1:], start=1):
            if (_legacy_chw(shape) != _legacy_chw(first)) or shape[0] != first[0]:
                raise self.error(f"bottom[{i}] {tuple(shape)} must match bottom[0] {first}")
        self.num = self._normalizer(first)
        return [()]

    def _normalizer(self, shape: Sequence[int]) -> float:
        """N (py-faster-rcnn); with a loss_param normalization, R-FCN's Caffe's
        get_normalizer (smooth_L1_loss_layer.cpp of daijifeng001/caffe-rfcn): FULL and
        VALID N*H*W, BATCH_SIZE N, PRE_FIXED pre_fixed_normalizer, NONE 1; at least 1."""
        lp = self.param.loss_param
        n = int(shape[0])
        if not lp.HasField("normalization"):
            return float(n)
        spatial = _legacy_chw(shape)[1] * _legacy_chw(shape)[2]
        mode = lp.normalization
        value = {caffe_pb2.LossParameter.FULL: n * spatial,
                 caffe_pb2.LossParameter.VALID: n * spatial,
                 caffe_pb2.LossParameter.BATCH_SIZE: n,
                 caffe_pb2.LossParameter.PRE_FIXED: lp.pre_fixed_normalizer,
                 caffe_pb2.LossParameter.NONE: 1}[mode]
        return float(max(1.0, value))

    def hybrid_forward(self, F, pred, target, inside=None, outside=None):
        diff = pred - F.reshape_like(target, pred)
        if inside is not None:
            diff = F.reshape_like(F.BlockGrad(inside), pred) * diff
        small = F.abs(F.BlockGrad(diff)) < 1.0 / self.sigma2
        errors = (small * (0.5 * self.sigma2) * F.square(diff)
                  + (1 - small) * (F.abs(diff) - 0.5 / self.sigma2))
        if outside is not None:
            errors = F.reshape_like(F.BlockGrad(outside), pred) * errors
        return (F.sum(errors) / float(self.num),)


def _legacy_chw(shape: Sequence[int]) -> tuple:
    return tuple(int(shape[a]) if a < len(shape) else 1 for a in (1, 2, 3))


@register_layer("Proposal", origin="Faster R-CNN C++ RPN (PVANet's caffe-fast-rcnn; OpenCV)")
class Proposal(Layer):
    """The C++ RPN Proposal layer: bottoms ``rpn_cls_prob_reshape (1, 2A, H, W)``
    (background scores, then foreground), ``rpn_bbox_pred (1, 4A, H, W)``, ``im_info
    (1, 3)`` ``[height, width, scale]`` (a 4th value, if present, scales min_size
    vertically); anchors from base_size, ``ratio`` and ``scale`` (default 0.5, 1, 2 and
    8, 16, 32 as OpenCV), then py-faster-rcnn's proposal step (:func:`rpn_proposals`)
    with min_size, pre_nms_topn, post_nms_topn and nms_thresh. Tops: rois ``(R, 5)``
    and optionally scores ``(R,)``. Single-image batches only, as the fork.
    """

    has_backward = False

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.check_bottoms(bottom_shapes, exactly=3)
        if len(self.param.top) not in (1, 2):
            raise self.error("takes 1 or 2 tops (rois [, scores])")
        pp = self.param.proposal_param
        ratios = list(pp.ratio) or [0.5, 1.0, 2.0]
        scales = list(pp.scale) or [8.0, 16.0, 32.0]
        self.anchors = generate_anchors(int(pp.base_size), ratios, scales, half_away=True)
        self.feat_stride = int(pp.feat_stride)
        self.settings = dict(pre_nms_topn=int(pp.pre_nms_topn),
                             post_nms_topn=int(pp.post_nms_topn),
                             nms_thresh=float(_F32(pp.nms_thresh)),
                             min_size=float(pp.min_size))

    def allow_backward(self, bottom_index: int) -> bool:
        return False

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        scores, deltas, info = (tuple(s) for s in bottom_shapes)
        if scores[0] != 1:
            raise self.error("Only single item batches are supported")
        num_anchors = self.anchors.shape[0]
        if len(scores) != 4 or scores[1] != 2 * num_anchors:
            raise self.error(f"scores must be (1, {2 * num_anchors}, H, W) for "
                             f"{num_anchors} anchors; got {scores}")
        if deltas != (1, 4 * num_anchors) + scores[2:]:
            raise self.error(f"bbox deltas must be (1, {4 * num_anchors}, "
                             f"{scores[2]}, {scores[3]}); got {deltas}")
        if count(info) < 3:
            raise self.error(f"im_info must hold [height, width, scale]; got {info}")
        # The number of proposals is known only after NMS (the fork starts at 1).
        return [(1, 5), (1,)][:len(self.param.top)]

    def forward(self, *args):
        if any(isinstance(a, mx.sym.Symbol) for a in args):
            raise self.error("Proposal runs on the host (numpy) and cannot be hybridized "
                             "or exported; run the net imperatively")
        scores, deltas, info = (a.asnumpy().astype(_F32) for a in args)
        num_anchors = self.anchors.shape[0]
        boxes, kept_scores = rpn_proposals(scores[0, num_anchors:], deltas[0],
                                           info.reshape(-1), self.anchors, self.feat_stride,
                                           **self.settings)
        rois = np.hstack([np.zeros((boxes.shape[0], 1), _F32), boxes])
        ctx = args[0].context
        tops = (mx.nd.array(rois, ctx=ctx, dtype="float32"),
                mx.nd.array(kept_scores, ctx=ctx, dtype="float32"))
        return tops[:len(self.param.top)]

    def hybrid_forward(self, F, *bottoms):  # pragma: no cover - forward() handles calls
        raise self.error("Proposal cannot run inside a symbolic graph")
