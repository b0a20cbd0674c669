"""The fork layers (SSD, Faster R-CNN, R-FCN, SegNet, PSPNet/DeepLab, ShuffleNet, MobileNet,
SENet), each against an independent numpy transcription of its fork's C++ code written
here (forward and, where the fork has one, backward), and against OpenCV's Caffe
importer (``cv2.dnn.readNetFromCaffe``) where OpenCV implements the layer.

Also: the fork schema fields keep the forks' field numbers, fork prototxt fields parse
without warnings, the graph-op layers hybridize, and the host-side ones refuse to.
"""
from __future__ import annotations

import math
import os
import warnings

import cv2
import mxnet as mx
import numpy as np
import pytest
from google.protobuf import text_format

from caffe_compat.engine.build import build_layer, run_layer
from caffe_compat.engine.network import CaffeNet
from caffe_compat.errors import LayerError
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
from caffe_compat.formats.prototxt import UnknownFieldWarning, read_net
from caffe_compat.proto import caffe_pb2

f32 = np.float32
FWD_TOL, BWD_TOL = 1e-5, 1e-4


# ---- helpers ---------------------------------------------------------------------------
def rel_err(mine, ref) -> float:
    mine, ref = np.asarray(mine, np.float64), np.asarray(ref, np.float64)
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    return float(np.linalg.norm(mine - ref) / max(np.linalg.norm(ref), 1e-30))


def make_layer(text: str, bottom_shapes, phase=caffe_pb2.TEST, blobs=None):
    param = text_format.Parse('name: "L" ' + text, caffe_pb2.LayerParameter())
    layer = build_layer(param, [tuple(s) for s in bottom_shapes], phase)
    for p, value in zip(layer.blobs(), blobs or []):
        p.set_data(mx.nd.array(np.asarray(value, f32).reshape(p.shape)))
    return layer


def forward_backward(layer, inputs, top_diffs=None):
    """Tops, bottom grads and param grads of one recorded call (top_diffs default 0)."""
    xs = [mx.nd.array(np.asarray(a, f32)) for a in inputs]
    for x in xs:
        x.attach_grad()
    with mx.autograd.record():
        tops = run_layer(layer, *xs)
    if top_diffs is not None:
        mx.autograd.backward(tops[:len(top_diffs)],
                             head_grads=[mx.nd.array(np.asarray(g, f32).reshape(t.shape))
                                         for g, t in zip(top_diffs, tops)])
    grads = [x.grad.asnumpy() for x in xs]
    pgrads = [p.grad().asnumpy() for p in layer.blobs()] if top_diffs is not None else []
    return [t.asnumpy() for t in tops], grads, pgrads


def input_layers(inputs: dict) -> str:
    return "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape '
                   f'{{ {" ".join(f"dim: {d}" for d in a.shape)} }} }} }}\n'
                   for n, a in inputs.items())


def run_both(tmp_path, inputs: dict, body: str, out_layer: str, out_blob: str = "out",
             weights: dict | None = None):
    """(ours, OpenCV's) value of ``out_blob`` for a net of Input layers + ``body``."""
    pt = os.path.join(str(tmp_path), "net.prototxt")
    cm = os.path.join(str(tmp_path), "net.caffemodel")
    with open(pt, "w") as handle:
        handle.write('name: "t"\n' + input_layers(inputs) + body)
    write_caffemodel(cm, [LayerWeights(name, kind, [np.asarray(b, f32) for b in blobs])
                          for name, (kind, blobs) in (weights or {}).items()])
    ours = CaffeNet.from_prototxt(pt, weights=cm if weights else None)
    ours.set_outputs([out_blob])
    mine = ours(*[mx.nd.array(inputs[n]) for n in ours.input_names]).asnumpy()
    cvnet = cv2.dnn.readNetFromCaffe(pt, cm) if weights else cv2.dnn.readNetFromCaffe(pt)
    for name, value in inputs.items():
        cvnet.setInput(np.ascontiguousarray(value, f32), name)
    return mine, cvnet.forward(out_layer)


def c_round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


# ---- schema ----------------------------------------------------------------------------
FORK_FIELDS = [
    ("permute_param", 202), ("prior_box_param", 203), ("detection_output_param", 204),
    ("norm_param", 206), ("roi_pooling_param", 8266711), ("smooth_l1_loss_param", 8266712),
    ("proposal_param", 8266713), ("psroi_pooling_param", 10001), ("bn_param", 45),
    ("upsample_param", 149), ("interp_param", 163), ("shuffle_channel_param", 164),
]


@pytest.mark.parametrize("field, number", FORK_FIELDS)
def test_fork_field_numbers(field, number):
    assert caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name[field].number == number


def test_fork_messages_keep_fork_numbers_and_defaults():
    pb = caffe_pb2
    prior = pb.PriorBoxParameter()
    assert (prior.flip, prior.clip, prior.offset) == (True, False, 0.5)
    assert pb.PriorBoxParameter.CENTER_SIZE == 2
    numbers = {f.name: f.number for f in pb.DetectionOutputParameter.DESCRIPTOR.fields}
    assert numbers["code_type"] == 6 and numbers["keep_top_k"] == 7
    assert numbers["variance_encoded_in_target"] == 8 and numbers["confidence_threshold"] == 9
    det = pb.DetectionOutputParameter()
    assert det.code_type == pb.PriorBoxParameter.CORNER and det.keep_top_k == -1
    assert det.nms_param.nms_threshold == pytest.approx(0.3) and det.nms_param.eta == 1.0
    assert pb.NormalizeParameter().eps == pytest.approx(1e-10)
    proposal = pb.ProposalParameter()
    assert (proposal.feat_stride, proposal.pre_nms_topn, proposal.post_nms_topn) == (16, 6000, 300)
    assert pb.UpsampleParameter().scale == 2
    assert pb.BNParameter().bn_mode == pb.BNParameter.LEARN
    assert pb.InterpParameter().interp_type == "bilinear"
    assert pb.ShuffleChannelParameter().group == 1


def test_fork_prototxt_fields_parse_without_warnings():
    text = """
    layer { name: "a" type: "Permute" permute_param { order: 0 order: 2 order: 3 order: 1 } }
    layer { name: "b" type: "Normalize" norm_param { across_spatial: false channel_shared: false
            scale_filler { type: "constant" value: 20 } } }
    layer { name: "c" type: "PriorBox" prior_box_param { min_size: 30 max_size: 60
            aspect_ratio: 2 flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2
            variance: 0.2 step: 8 offset: 0.5 } }
    layer { name: "d" type: "DetectionOutput" detection_output_param { num_classes: 21
            share_location: true background_label_id: 0 nms_param { nms_threshold: 0.45
            top_k: 400 } code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.01 } }
    layer { name: "e" type: "ROIPooling" roi_pooling_param { pooled_w: 7 pooled_h: 7
            spatial_scale: 0.0625 } }
    layer { name: "f" type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 3.0 } }
    layer { name: "g" type: "Proposal" proposal_param { feat_stride: 16 ratio: 0.5 scale: 8 } }
    layer { name: "h" type: "PSROIPooling" psroi_pooling_param { spatial_scale: 0.0625
            output_dim: 21 group_size: 7 } }
    layer { name: "i" type: "BN" bn_param { bn_mode: INFERENCE scale_filler { type: "constant"
            value: 1 } shift_filler { type: "constant" value: 0.001 } } }
    layer { name: "j" type: "Upsample" upsample_param { scale: 2 upsample_h: 45 upsample_w: 60 } }
    layer { name: "k" type: "Interp" interp_param { zoom_factor: 8 pad_beg: 0 pad_end: 0 } }
    layer { name: "l" type: "ShuffleChannel" shuffle_channel_param { group: 3 } }
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownFieldWarning)
        net = read_net(text).param
    assert net.layer[3].detection_output_param.code_type == caffe_pb2.PriorBoxParameter.CENTER_SIZE
    assert net.layer[6].proposal_param.scale == [8.0]
    again = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert again == net


# ---- SSD -------------------------------------------------------------------------------
def test_permute_forward_backward_and_opencv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(f32)
    layer = make_layer('type: "Permute" permute_param { order: 0 order: 2 order: 3 order: 1 }',
                       [x.shape])
    assert layer.top_shapes == [(2, 4, 5, 3)]
    g = rng.standard_normal((2, 4, 5, 3)).astype(f32)
    (top,), (gx,), _ = forward_backward(layer, [x], [g])
    assert np.array_equal(top, np.transpose(x, (0, 2, 3, 1)))
    assert np.array_equal(gx, np.transpose(g, (0, 3, 1, 2)))
    partial = make_layer('type: "Permute" permute_param { order: 2 }', [x.shape])
    assert partial.top_shapes == [(4, 2, 3, 5)]       # unlisted axes follow in order
    mine, theirs = run_both(tmp_path, {"data": x}, 'layer { name: "L" type: "Permute" '
                            'bottom: "data" top: "out" permute_param { order: 0 order: 2 '
                            'order: 3 order: 1 } }\n', "L")
    assert rel_err(mine, theirs) <= FWD_TOL
    with pytest.raises(LayerError, match="duplicate"):
        make_layer('type: "Permute" permute_param { order: 1 order: 1 }', [x.shape])


def normalize_reference(x, scale, across, shared, eps, g):
    """normalize_layer.cpp's Forward_cpu and Backward_cpu, in float64."""
    x, g, scale = (np.asarray(a, np.float64) for a in (x, g, scale))
    n = x.shape[0]
    sc = np.full(x.shape[1], scale.ravel()[0]) if shared else scale
    sc = sc.reshape(1, -1, *([1] * (x.ndim - 2)))
    if across:
        norm = np.sqrt((x.reshape(n, -1) ** 2).sum(1) + eps).reshape(n, *([1] * (x.ndim - 1)))
        a = (x * g).reshape(n, -1).sum(1).reshape(norm.shape)
    else:
        norm = np.sqrt((x ** 2).sum(1, keepdims=True) + eps)
        a = (x * g).sum(1, keepdims=True)
    top = x / norm * sc
    bottom_diff = (g - x * a / norm ** 2) / norm * sc
    if shared:
        scale_diff = np.array([(top * g).sum() / scale.ravel()[0]])
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        scale_diff = (top * g).sum(axis=axes) / scale
    return top, bottom_diff, scale_diff


@pytest.mark.parametrize("across, shared", [(True, True), (False, False), (True, False),
                                            (False, True)])
def test_normalize_forward_backward_and_opencv(across, shared, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 3, 4)).astype(f32)
    scale = (rng.uniform(0.5, 2, 1 if shared else 5)).astype(f32)
    text = (f'type: "Normalize" norm_param {{ across_spatial: {str(across).lower()} '
            f'channel_shared: {str(shared).lower()} eps: 0.001 }}')
    layer = make_layer(text, [x.shape], blobs=[scale])
    g = rng.standard_normal(x.shape).astype(f32)
    (top,), (gx,), (gscale,) = forward_backward(layer, [x], [g])
    ref_top, ref_gx, ref_gscale = normalize_reference(x, scale, across, shared, 1e-3, g)
    assert rel_err(top, ref_top) <= FWD_TOL
    assert rel_err(gx, ref_gx) <= BWD_TOL
    assert rel_err(gscale.ravel(), ref_gscale.ravel()) <= BWD_TOL
    if across and not shared:
        return      # OpenCV refuses a per-channel scale with across_spatial
    # (OpenCV cannot read Caffe's 0-d shared-scale blob; it reads the same value as (1,).)
    mine, theirs = run_both(tmp_path, {"data": x},
                            f'layer {{ name: "L" bottom: "data" top: "out" {text} }}\n', "L",
                            weights={"L": ("Normalize", [scale])})
    assert rel_err(mine, theirs) <= FWD_TOL
    if shared:      # Caffe writes the shared scale as a 0-d blob: it loads too
        pt = os.path.join(str(tmp_path), "net.prototxt")
        cm = os.path.join(str(tmp_path), "scalar.caffemodel")
        write_caffemodel(cm, [LayerWeights("L", "Normalize", [scale.reshape(())])])
        again = CaffeNet.from_prototxt(pt, weights=cm)
        again.set_outputs(["out"])
        assert np.array_equal(again(mx.nd.array(x)).asnumpy(), mine)


def test_normalize_default_scale_is_one():
    layer = make_layer('type: "Normalize"', [(1, 3, 2, 2)])
    assert layer.scale.data().asnumpy().tolist() == [1.0]
    assert layer.caffe_blob_shapes == [()]


def priorbox_reference(feat_hw, img_hw, mins, maxs, ratios, flip, clip, variance,
                       step=None, offset=0.5):
    """prior_box_layer.cpp (released SSD), float/double arithmetic as the C++ code."""
    ars = [1.0]
    for ar in ratios:
        if any(abs(ar - r) < 1e-6 for r in ars):
            continue
        ars.append(float(f32(ar)))
        if flip:
            ars.append(float(f32(1.0 / float(f32(ar)))))
    fh, fw = feat_hw
    ih, iw = img_hw
    step_w = float(f32(iw) / f32(fw)) if step is None else float(f32(step))
    step_h = float(f32(ih) / f32(fh)) if step is None else float(f32(step))
    boxes = []
    for h in range(fh):
        for w in range(fw):
            cx = float(f32(f32(w + f32(offset)) * f32(step_w)))
            cy = float(f32(f32(h + f32(offset)) * f32(step_h)))
            for s, mn in enumerate(mins):
                mn = int(mn)
                sizes = [(float(f32(mn)), float(f32(mn)))]
                if maxs:
                    side = float(f32(math.sqrt(mn * int(maxs[s]))))
                    sizes.append((side, side))
                for ar in ars:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    root = f32(np.sqrt(f32(ar)))
                    sizes.append((float(f32(mn * root)), float(f32(mn / root))))
                for bw, bh in sizes:
                    boxes += [f32((cx - bw / 2.0) / iw), f32((cy - bh / 2.0) / ih),
                              f32((cx + bw / 2.0) / iw), f32((cy + bh / 2.0) / ih)]
    boxes = np.asarray(boxes, f32)
    if clip:
        boxes = np.clip(boxes, 0, 1)
    var = np.tile(np.asarray(variance * (4 if len(variance) == 1 else 1), f32),
                  boxes.size // 4)
    return np.stack([boxes, var])[None]


PRIOR_CASES = [
    ("min_max_flip", dict(mins=[7], maxs=[15], ratios=[2, 3], flip=True, clip=False,
                          variance=[0.1, 0.1, 0.2, 0.2]),
     "min_size: 7 max_size: 15 aspect_ratio: 2 aspect_ratio: 3 flip: true clip: false "
     "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"),
    ("clip_step_one_variance", dict(mins=[12], maxs=[], ratios=[2], flip=False, clip=True,
                                    variance=[0.1], step=9),
     "min_size: 12 aspect_ratio: 2 flip: false clip: true variance: 0.1 step: 9"),
    ("two_sizes_duplicate_ratio", dict(mins=[6, 11], maxs=[11, 21], ratios=[2, 0.5], flip=True,
                                       clip=False, variance=[0.2], offset=0.25),
     "min_size: 6 min_size: 11 max_size: 11 max_size: 21 aspect_ratio: 2 aspect_ratio: 0.5 "
     "flip: true clip: false variance: 0.2 offset: 0.25"),
]


@pytest.mark.parametrize("case", PRIOR_CASES, ids=[c[0] for c in PRIOR_CASES])
def test_priorbox_against_reference_and_opencv(case, tmp_path):
    _, kwargs, text = case
    rng = np.random.default_rng(2)
    feat = rng.standard_normal((2, 4, 3, 5)).astype(f32)
    data = rng.standard_normal((2, 3, 30, 50)).astype(f32)
    ref = priorbox_reference((3, 5), (30, 50), **kwargs)
    layer = make_layer(f'type: "PriorBox" prior_box_param {{ {text} }}', [feat.shape, data.shape])
    (top,), _, _ = forward_backward(layer, [feat, data])
    assert top.shape == ref.shape
    assert rel_err(top, ref) <= FWD_TOL
    assert np.abs(top - ref).max() <= 2e-7
    mine, theirs = run_both(tmp_path, {"feat": feat, "data": data},
                            f'layer {{ name: "L" type: "PriorBox" bottom: "feat" bottom: "data" '
                            f'top: "out" prior_box_param {{ {text} }} }}\n', "L")
    assert rel_err(mine, theirs.reshape(mine.shape)) <= FWD_TOL


def test_priorbox_explicit_image_size_needs_no_image_bottom():
    layer = make_layer('type: "PriorBox" prior_box_param { min_size: 4 img_h: 20 img_w: 40 }',
                       [(1, 2, 2, 4)])
    (top,), _, _ = forward_backward(layer, [np.zeros((1, 2, 2, 4), f32)])
    ref = priorbox_reference((2, 4), (20, 40), [4], [], [], True, False, [0.1])
    assert np.array_equal(top, ref)
    with pytest.raises(LayerError, match="image"):
        make_layer('type: "PriorBox" prior_box_param { min_size: 4 }', [(1, 2, 2, 4)])


# DetectionOutput: numpy transcription of detection_output_layer.cpp + bbox_util.cpp.
CORNER, CENTER_SIZE, CORNER_SIZE = 1, 2, 3


def _decode(p, v, l, code, vit):
    s = [f32(1)] * 4 if vit else [f32(t) for t in v]
    p = [f32(t) for t in p]
    l = [f32(t) for t in l]
    if code == CORNER:
        return [f32(p[k] + f32(s[k] * l[k])) for k in range(4)]
    pw, ph = f32(p[2] - p[0]), f32(p[3] - p[1])
    if code == CORNER_SIZE:
        size = [pw, ph, pw, ph]
        return [f32(p[k] + f32(f32(s[k] * l[k]) * size[k])) for k in range(4)]
    pcx, pcy = f32(f32(p[0] + p[2]) / f32(2)), f32(f32(p[1] + p[3]) / f32(2))
    cx = f32(f32(f32(s[0] * l[0]) * pw) + pcx)
    cy = f32(f32(f32(s[1] * l[1]) * ph) + pcy)
    w = f32(np.exp(f32(s[2] * l[2])) * pw)
    h = f32(np.exp(f32(s[3] * l[3])) * ph)
    return [f32(cx - w / f32(2)), f32(cy - h / f32(2)), f32(cx + w / f32(2)), f32(cy + h / f32(2))]


def _size(b):
    if b[2] < b[0] or b[3] < b[1]:
        return f32(0)
    return f32(f32(b[2] - b[0]) * f32(b[3] - b[1]))


def _iou(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return f32(0)
    iw = f32(min(a[2], b[2]) - max(a[0], b[0]))
    ih = f32(min(a[3], b[3]) - max(a[1], b[1]))
    if iw > 0 and ih > 0:
        inter = f32(iw * ih)
        return f32(inter / f32(f32(_size(a) + _size(b)) - inter))
    return f32(0)


def detection_reference(loc, conf, prior, C, share, bg, code, vit, nms_t, top_k, eta, conf_t,
                        keep_top_k):
    num = loc.shape[0]
    P = prior.shape[2] // 4
    L = 1 if share else C
    loc = loc.reshape(num, P, L, 4)
    conf = conf.reshape(num, P, C)
    pri, var = prior[0, 0].reshape(P, 4), prior[0, 1].reshape(P, 4)
    rows = []
    for i in range(num):
        boxes = {}
        for c in range(L):
            label = -1 if share else c
            if label == bg and not share:      # (the GPU path decodes shared boxes always)
                continue
            boxes[label] = [_decode(pri[p], var[p], loc[i, p, c], code, vit) for p in range(P)]
        kept = {}
        for c in range(C):
            if c == bg:
                continue
            b = boxes[-1 if share else c]
            cand = [(conf[i, p, c], p) for p in range(P) if conf[i, p, c] > conf_t]
            cand.sort(key=lambda t: -t[0])                      # stable, like stable_sort
            if top_k > -1:
                cand = cand[:top_k]
            keep, thr = [], f32(nms_t)
            for _, p in cand:
                if all(_iou(b[p], b[k]) <= thr for k in keep):
                    keep.append(p)
                    if eta < 1 and thr > 0.5:
                        thr = f32(thr * f32(eta))
            kept[c] = keep
        if keep_top_k > -1 and sum(map(len, kept.values())) > keep_top_k:
            pairs = [(conf[i, p, c], c, p) for c in sorted(kept) for p in kept[c]]
            pairs.sort(key=lambda t: -t[0])
            kept = {}
            for _, c, p in pairs[:keep_top_k]:
                kept.setdefault(c, []).append(p)
        for c in sorted(kept):
            for p in kept[c]:
                rows.append([i, c, conf[i, p, c]] + boxes[-1 if share else c][p])
    if not rows:
        return np.array([[i] + [-1] * 6 for i in range(num)], f32).reshape(1, 1, num, 7)
    return np.asarray(rows, f32).reshape(1, 1, -1, 7)


PRIOR_TEXT = ('min_size: 10 max_size: 20 aspect_ratio: 2 flip: true variance: 0.1 '
              'variance: 0.1 variance: 0.2 variance: 0.2')
DET_CASES = [
    # id, share, background, code, variance_in_target, nms, top_k, eta, conf_t, keep_top_k
    ("center_size_keep_top_k", True, 0, "CENTER_SIZE", False, 0.45, 20, 1.0, 0.3, 15),
    ("corner_all_kept", True, 0, "CORNER", False, 0.45, 20, 1.0, 0.3, 200),
    ("no_share_location", False, 0, "CENTER_SIZE", False, 0.5, -1, 1.0, 0.2, 25),
    ("corner_size_bg_minus1_eta", True, -1, "CORNER_SIZE", False, 0.6, 30, 0.9, 0.25, -1),
    ("variance_in_target", True, 2, "CENTER_SIZE", True, 0.45, 10, 1.0, 0.1, 12),
    ("nothing_above_threshold", True, 0, "CENTER_SIZE", False, 0.45, 20, 1.0, 2.0, 10),
]


def _det_text(C, share, bg, code, vit, nms_t, top_k, eta, conf_t, ktk):
    top = f"top_k: {top_k} " if top_k > -1 else ""
    return (f'detection_output_param {{ num_classes: {C} share_location: {str(share).lower()} '
            f'background_label_id: {bg} nms_param {{ nms_threshold: {nms_t} {top}eta: {eta} }} '
            f'code_type: {code} variance_encoded_in_target: {str(vit).lower()} '
            f'keep_top_k: {ktk} confidence_threshold: {conf_t} }}')


def _det_rows(a):
    """Detection rows without OpenCV's zero padding, sorted by (image, label, -score)."""
    a = a.reshape(-1, 7)
    a = a[~np.all(a == 0, axis=1)]
    keys = np.round(a, 5)                 # ties in score: order by the box too
    return a[np.lexsort((keys[:, 6], keys[:, 5], keys[:, 4], keys[:, 3], -keys[:, 2],
                         keys[:, 1], keys[:, 0]))]


@pytest.mark.parametrize("case", DET_CASES, ids=[c[0] for c in DET_CASES])
def test_detection_output_against_reference_and_opencv(case, tmp_path):
    _, share, bg, code, vit, nms_t, top_k, eta, conf_t, ktk = case
    C, num = 4, 2
    rng = np.random.default_rng(3)
    feat = rng.standard_normal((num, 4, 3, 4)).astype(f32)
    data = rng.standard_normal((num, 3, 48, 64)).astype(f32)
    prior = priorbox_reference((3, 4), (48, 64), [10], [20], [2], True, False,
                               [0.1, 0.1, 0.2, 0.2])
    P = prior.shape[2] // 4
    L = 1 if share else C
    loc = (rng.standard_normal((num, P * L * 4)) * 0.5).astype(f32)
    conf = rng.uniform(0, 1, (num, P * C)).astype(f32)
    text = _det_text(C, share, bg, code, vit, nms_t, top_k, eta, conf_t, ktk)
    layer = make_layer(f'type: "DetectionOutput" {text}', [loc.shape, conf.shape, prior.shape])
    assert layer.top_shapes == [(1, 1, 1, 7)]
    (top,), _, _ = forward_backward(layer, [loc, conf, prior])
    ref = detection_reference(loc, conf, prior, C, share, bg,
                              {"CORNER": 1, "CENTER_SIZE": 2, "CORNER_SIZE": 3}[code], vit,
                              nms_t, top_k, eta, conf_t, ktk)
    assert top.shape == ref.shape
    assert np.array_equal(top[..., :2], ref[..., :2])      # same boxes in Caffe's order
    assert rel_err(top, ref) <= FWD_TOL
    if vit or code == "CORNER_SIZE" or ktk == -1 or not top.shape[2] or top[0, 0, 0, 1] < 0:
        return      # OpenCV lacks these (variance-free priors, CORNER_SIZE, keep_top_k -1)
    body = ('layer { name: "p" type: "PriorBox" bottom: "feat" bottom: "data" top: "prior" '
            f'prior_box_param {{ {PRIOR_TEXT} }} }}\n'
            'layer { name: "L" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
            f'bottom: "prior" top: "out" {text} }}\n')
    mine, theirs = run_both(tmp_path, {"loc": loc, "conf": conf, "feat": feat, "data": data},
                            body, "L")
    assert np.array_equal(mine, top)
    assert rel_err(_det_rows(mine), _det_rows(theirs)) <= FWD_TOL


def test_detection_output_is_host_side_only(tmp_path):
    pt = os.path.join(str(tmp_path), "det.prototxt")
    with open(pt, "w") as handle:
        handle.write(input_layers({"loc": np.zeros((1, 8)), "conf": np.zeros((1, 4)),
                                   "prior": np.zeros((1, 2, 8))})
                     + 'layer { name: "det" type: "DetectionOutput" bottom: "loc" '
                       'bottom: "conf" bottom: "prior" top: "out" detection_output_param '
                       '{ num_classes: 2 } }\n')
    net = CaffeNet.from_prototxt(pt)
    net.hybridize()
    with pytest.raises(LayerError, match="hybridized"):
        net(mx.nd.zeros((1, 8)), mx.nd.zeros((1, 4)), mx.nd.zeros((1, 2, 8)))


# ---- Faster R-CNN / R-FCN ------------------------------------------------------------
ROIS = np.array([[0, 0, 0, 40, 30], [1, 5.5, 3.2, 20, 25], [0, -8, -4, 6, 50],
                 [1, 30, 30, 31, 31], [0, 2.5, 2.5, 2.5, 2.5], [1, 80, 80, 90, 95],
                 [0, 15.49, 7.5, 32.51, 19.5], [1, 10, 20, 12, 22]], f32)


def roi_pooling_reference(x, rois, ph, pw, scale, g):
    """roi_pooling_layer.cpp Forward_cpu and the GPU Backward (argmax routing)."""
    N, C, H, W = x.shape
    top = np.zeros((len(rois), C, ph, pw), f32)
    grad = np.zeros_like(x)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        sw, sh, ew, eh = (c_round(float(f32(roi[k]) * f32(scale))) for k in (1, 2, 3, 4))
        bh = f32(max(eh - sh + 1, 1)) / f32(ph)
        bw = f32(max(ew - sw + 1, 1)) / f32(pw)
        for i in range(ph):
            for j in range(pw):
                h0 = min(max(int(math.floor(f32(i) * bh)) + sh, 0), H)
                h1 = min(max(int(math.ceil(f32(i + 1) * bh)) + sh, 0), H)
                w0 = min(max(int(math.floor(f32(j) * bw)) + sw, 0), W)
                w1 = min(max(int(math.ceil(f32(j + 1) * bw)) + sw, 0), W)
                for c in range(C):
                    best, arg = -np.inf, None
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if x[b, c, h, w] > best:
                                best, arg = x[b, c, h, w], (h, w)
                    if arg is not None:
                        top[r, c, i, j] = best
                        grad[b, c, arg[0], arg[1]] += g[r, c, i, j]
    return top, grad


def test_roi_pooling_against_reference_and_opencv(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 11)).astype(f32)
    text = 'type: "ROIPooling" roi_pooling_param { pooled_h: 3 pooled_w: 4 spatial_scale: 0.25 }'
    layer = make_layer(text, [x.shape, ROIS.shape])
    assert layer.top_shapes == [(8, 3, 3, 4)]
    g = rng.standard_normal((8, 3, 3, 4)).astype(f32)
    (top,), (gx, grois), _ = forward_backward(layer, [x, ROIS], [g])
    ref, ref_gx = roi_pooling_reference(x, ROIS, 3, 4, 0.25, g)
    assert np.array_equal(top, ref)
    assert rel_err(gx, ref_gx) <= BWD_TOL
    assert not grois.any()
    mine, theirs = run_both(tmp_path, {"data": x, "rois": ROIS},
                            f'layer {{ name: "L" bottom: "data" bottom: "rois" top: "out" '
                            f'{text} }}\n', "L")
    assert rel_err(mine, theirs) <= FWD_TOL


def psroi_reference(x, rois, D, G, scale, g):
    """psroi_pooling_layer.cu forward (bin average) and backward (spread / area)."""
    N, C, H, W = x.shape
    top = np.zeros((len(rois), D, G, G), f32)
    grad = np.zeros(x.shape, np.float64)
    sc = f32(scale)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        x0 = f32(c_round(float(roi[1]))) * sc
        y0 = f32(c_round(float(roi[2]))) * sc
        x1 = f32(f32(c_round(float(roi[3]))) + f32(1)) * sc
        y1 = f32(f32(c_round(float(roi[4]))) + f32(1)) * sc
        bw = f32(max(float(x1 - x0), 0.1)) / f32(G)
        bh = f32(max(float(y1 - y0), 0.1)) / f32(G)
        for d in range(D):
            for i in range(G):
                for j in range(G):
                    h0 = min(max(int(math.floor(f32(i) * bh + y0)), 0), H)
                    h1 = min(max(int(math.ceil(f32(i + 1) * bh + y0)), 0), H)
                    w0 = min(max(int(math.floor(f32(j) * bw + x0)), 0), W)
                    w1 = min(max(int(math.ceil(f32(j + 1) * bw + x0)), 0), W)
                    if h1 <= h0 or w1 <= w0:
                        continue
                    c = (d * G + i) * G + j
                    area = (h1 - h0) * (w1 - w0)
                    top[r, d, i, j] = x[b, c, h0:h1, w0:w1].sum() / f32(area)
                    grad[b, c, h0:h1, w0:w1] += g[r, d, i, j] / area
    return top, grad


def test_psroi_pooling_against_reference_and_opencv(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2 * 9, 9, 11)).astype(f32)
    text = ('type: "PSROIPooling" psroi_pooling_param { spatial_scale: 0.25 output_dim: 2 '
            'group_size: 3 }')
    layer = make_layer(text, [x.shape, ROIS.shape])
    assert layer.top_shapes == [(8, 2, 3, 3)]
    g = rng.standard_normal((8, 2, 3, 3)).astype(f32)
    (top,), (gx, grois), _ = forward_backward(layer, [x, ROIS], [g])
    ref, ref_gx = psroi_reference(x, ROIS, 2, 3, 0.25, g)
    assert rel_err(top, ref) <= FWD_TOL
    assert rel_err(gx, ref_gx) <= BWD_TOL
    assert not grois.any()
    mine, theirs = run_both(tmp_path, {"data": x, "rois": ROIS},
                            f'layer {{ name: "L" bottom: "data" bottom: "rois" top: "out" '
                            f'{text} }}\n', "L")
    assert rel_err(mine, theirs) <= FWD_TOL
    with pytest.raises(LayerError, match="channel"):
        make_layer(text, [(1, 17, 9, 11), ROIS.shape])


@pytest.mark.parametrize("sigma, weighted", [(1.0, False), (3.0, True), (0.5, True),
                                           (1.0, "inside only")])
def test_smooth_l1_loss_forward_backward(sigma, weighted):
    rng = np.random.default_rng(6)
    shape = (3, 8, 2, 2)
    pred = rng.standard_normal(shape).astype(f32)
    target = rng.standard_normal(shape).astype(f32)
    inside = (rng.uniform(0, 1, shape) > 0.3).astype(f32)
    outside = rng.uniform(0.5, 2, shape).astype(f32)
    if weighted == "inside only":     # Fast R-CNN's original three-bottom layer
        outside = np.ones(shape, f32)
        bottoms = [pred, target, inside]
    else:
        bottoms = [pred, target] + ([inside, outside] if weighted else [])
    layer = make_layer(f'type: "SmoothL1Loss" smooth_l1_loss_param {{ sigma: {sigma} }}',
                       [b.shape for b in bottoms])
    assert layer.top_shapes == [()] and layer.loss_weights(1) == [1.0]
    (loss,), grads, _ = forward_backward(layer, bottoms, [np.array([0.7], f32)])
    # smooth_L1_loss_layer.cu in float64
    s2 = sigma * sigma
    d = (pred.astype(np.float64) - target) * (inside if weighted else 1)
    f = np.where(np.abs(d) < 1 / s2, 0.5 * d * d * s2, np.abs(d) - 0.5 / s2)
    ref_loss = (f * (outside if weighted else 1)).sum() / shape[0]
    df = np.where(np.abs(d) < 1 / s2, s2 * d, np.sign(d))
    ref_grad = 0.7 / shape[0] * df * ((inside * outside) if weighted else 1)
    assert rel_err(loss, [ref_loss]) <= FWD_TOL
    assert rel_err(grads[0], ref_grad) <= BWD_TOL
    assert rel_err(grads[1], -ref_grad) <= BWD_TOL
    for extra in grads[2:]:
        assert not extra.any()


@pytest.mark.parametrize("loss_param, normalizer", [
    ("normalization: PRE_FIXED pre_fixed_normalizer: 128", 128.0),
    ("normalization: VALID", 3 * 2 * 2.0),
    ("normalization: BATCH_SIZE", 3.0),
    ("normalization: NONE", 1.0),
])
def test_smooth_l1_loss_rfcn_normalization(loss_param, normalizer):
    """R-FCN's Caffe (daijifeng001/caffe-rfcn smooth_L1_loss_layer.cpp): with a
    loss_param normalization, the sum is divided by its get_normalizer, not by N."""
    rng = np.random.default_rng(7)
    shape = (3, 8, 2, 2)
    pred, target = (rng.standard_normal(shape).astype(f32) for _ in range(2))
    inside = (rng.uniform(0, 1, shape) > 0.3).astype(f32)
    layer = make_layer(f'type: "SmoothL1Loss" loss_param {{ {loss_param} }}', [shape] * 3)
    (loss,), grads, _ = forward_backward(layer, [pred, target, inside], [np.array([1.0], f32)])
    d = (pred.astype(np.float64) - target) * inside
    f = np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5)
    assert rel_err(loss, [f.sum() / normalizer]) <= FWD_TOL
    df = np.where(np.abs(d) < 1, d, np.sign(d)) * inside
    assert rel_err(grads[0], df / normalizer) <= BWD_TOL


def proposal_reference(prob, deltas, im_info, feat_stride, ratios, scales, pre, post, thresh,
                       min_size, base=16):
    """py-faster-rcnn's proposal_layer.py (+ generate_anchors, bbox_transform_inv,
    clip_boxes, py_cpu_nms) written out independently."""
    anchors = []
    ctr = (base - 1) / 2.0
    for r in ratios:
        w = np.floor(np.sqrt(base * base / r) + 0.5)       # no exact halves here
        h = np.floor(w * r + 0.5)
        for s in scales:
            ws, hs = w * s, h * s
            anchors.append([ctr - (ws - 1) / 2, ctr - (hs - 1) / 2,
                            ctr + (ws - 1) / 2, ctr + (hs - 1) / 2])
    anchors = np.array(anchors)
    A = len(anchors)
    _, _, H, W = prob.shape
    boxes, scores = [], []
    for h in range(H):
        for w in range(W):
            for a in range(A):
                x1, y1, x2, y2 = (anchors[a] + [w * feat_stride, h * feat_stride] * 2).astype(f32)
                dx, dy, dw, dh = deltas[0, 4 * a:4 * a + 4, h, w]
                bw, bh = x2 - x1 + f32(1), y2 - y1 + f32(1)
                cx, cy = x1 + f32(0.5) * bw, y1 + f32(0.5) * bh
                px, py = dx * bw + cx, dy * bh + cy
                pw, ph = np.exp(dw) * bw, np.exp(dh) * bh
                box = np.array([px - f32(0.5) * pw, py - f32(0.5) * ph,
                                px + f32(0.5) * pw, py + f32(0.5) * ph], f32)
                box[0::2] = np.clip(box[0::2], 0, im_info[1] - 1)
                box[1::2] = np.clip(box[1::2], 0, im_info[0] - 1)
                if (box[2] - box[0] + 1 >= min_size * im_info[2]
                        and box[3] - box[1] + 1 >= min_size * im_info[2]):
                    boxes.append(box)
                    scores.append(prob[0, A + a, h, w])
    boxes, scores = np.array(boxes, f32), np.array(scores, f32)
    order = np.argsort(-scores, kind="stable")[:pre]
    boxes, scores = boxes[order], scores[order]
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep, alive = [], list(range(len(boxes)))
    while alive:
        i = alive.pop(0)
        keep.append(i)
        survivors = []
        for j in alive:
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + 1)
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + 1)
            inter = f32(iw * ih)
            if inter / (areas[i] + areas[j] - inter) <= f32(thresh):
                survivors.append(j)
        alive = survivors
    keep = keep[:post]
    return np.hstack([np.zeros((len(keep), 1), f32), boxes[keep]]), scores[keep]


def rpn_inputs(seed=7, A=9, H=6, W=8, scale=1.6):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0, 1, (1, 2 * A, H, W)).astype(f32)
    deltas = (rng.standard_normal((1, 4 * A, H, W)) * 0.2).astype(f32)
    im_info = np.array([[H * 16 - 5, W * 16 - 3, scale]], f32)
    return prob, deltas, im_info


PROPOSAL_TEXT = ('proposal_param { feat_stride: 16 base_size: 16 min_size: {min_size} '
                 'ratio: 0.5 ratio: 1 ratio: 2 scale: 8 scale: 16 scale: 32 pre_nms_topn: 300 '
                 'post_nms_topn: 50 nms_thresh: 0.7 }')


@pytest.mark.parametrize("min_size", [16, 0])
def test_proposal_layer_against_reference_and_opencv(min_size, tmp_path):
    prob, deltas, im_info = rpn_inputs()
    text = 'type: "Proposal" ' + PROPOSAL_TEXT.replace("{min_size}", str(min_size))
    layer = make_layer('top: "rois" top: "scores" ' + text,
                       [prob.shape, deltas.shape, im_info.shape])
    assert layer.top_shapes == [(1, 5), (1,)]
    (rois, scores), _, _ = forward_backward(layer, [prob, deltas, im_info])
    ref_rois, ref_scores = proposal_reference(prob, deltas, im_info[0], 16, [0.5, 1, 2],
                                              [8, 16, 32], 300, 50, 0.7, min_size)
    assert rois.shape == ref_rois.shape and 0 < rois.shape[0] <= 50
    assert rel_err(rois, ref_rois) <= FWD_TOL
    assert np.array_equal(scores, ref_scores)
    if min_size:
        return              # OpenCV's Proposal skips the min_size filter
    mine, theirs = run_both(tmp_path, {"prob": prob, "deltas": deltas, "im_info": im_info},
                            f'layer {{ name: "L" bottom: "prob" bottom: "deltas" '
                            f'bottom: "im_info" top: "out" {text} }}\n', "L")
    # OpenCV returns post_nms_topn rows; the ones past the proposals are filler.
    assert rel_err(mine, theirs[:mine.shape[0]]) <= FWD_TOL


# ---- segmentation ----------------------------------------------------------------------
def max_pool_with_mask(x, k, s):
    """Caffe's MAX pooling (no pad, ceil mode) with its mask (first max, h * W + w)."""
    N, C, H, W = x.shape
    oh, ow = -(-(H - k) // s) + 1, -(-(W - k) // s) + 1
    top = np.zeros((N, C, oh, ow), f32)
    mask = np.zeros((N, C, oh, ow), f32)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * s:min(i * s + k, H), j * s:min(j * s + k, W)]
            flat = win.reshape(N, C, -1)
            arg = flat.argmax(axis=2)
            top[:, :, i, j] = flat.max(axis=2)
            ww = win.shape[3]
            mask[:, :, i, j] = (i * s + arg // ww) * W + j * s + arg % ww
    return top, mask


def upsample_reference(x, mask, out_hw, g):
    """upsample_layer.cpp: top[mask[i]] = x[i] in order; bottom_diff[i] = top_diff[mask[i]]."""
    N, C = x.shape[:2]
    top = np.zeros((N, C) + out_hw, f32)
    grad = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            flat_top = top[n, c].reshape(-1)
            for i, idx in enumerate(mask[n, c].reshape(-1).astype(int)):
                flat_top[idx] = x[n, c].reshape(-1)[i]
                grad[n, c].reshape(-1)[i] = g[n, c].reshape(-1)[idx]
    return top, grad


@pytest.mark.parametrize("in_hw, params, out_hw", [
    ((10, 12), "scale: 2", (10, 12)),
    ((9, 11), "scale: 2 pad_out_h: true pad_out_w: true", (9, 11)),
    ((9, 11), "upsample_h: 9 upsample_w: 11", (9, 11)),
    ((12, 9), "scale_h: 3 scale_w: 3", (12, 9)),
])
def test_upsample_unpools_the_pooling_mask(in_hw, params, out_hw):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3) + in_hw).astype(f32)
    k = 3 if "scale_h: 3" in params else 2
    pool = make_layer(f'type: "Pooling" top: "p" top: "m" pooling_param {{ pool: MAX '
                      f'kernel_size: {k} stride: {k} }}', [x.shape])
    (pooled, mask), _, _ = forward_backward(pool, [x])
    ref_pooled, ref_mask = max_pool_with_mask(x, k, k)
    assert np.array_equal(mask, ref_mask) and np.array_equal(pooled, ref_pooled)
    values = rng.standard_normal(pooled.shape).astype(f32)
    layer = make_layer(f'type: "Upsample" upsample_param {{ {params} }}',
                       [values.shape, mask.shape])
    assert layer.top_shapes == [(2, 3) + out_hw]
    g = rng.standard_normal((2, 3) + out_hw).astype(f32)
    (top,), (gx, gmask), _ = forward_backward(layer, [values, mask], [g])
    ref_top, ref_gx = upsample_reference(values, mask, out_hw, g)
    assert np.array_equal(top, ref_top)
    assert np.array_equal(gx, ref_gx)
    assert not gmask.any()


def test_upsample_rejects_a_mask_outside_the_top():
    layer = make_layer('type: "Upsample" upsample_param { scale: 2 }', [(1, 1, 2, 2)] * 2)
    with pytest.raises(LayerError, match="out of range"):
        run_layer(layer, mx.nd.ones((1, 1, 2, 2)), mx.nd.full((1, 1, 2, 2), 16))


def test_upsample_one_bottom_is_nearest_neighbour():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 3, 4)).astype(f32)
    layer = make_layer('type: "Upsample" upsample_param { scale: 2 }', [x.shape])
    g = rng.standard_normal((1, 2, 6, 8)).astype(f32)
    (top,), (gx,), _ = forward_backward(layer, [x], [g])
    assert np.array_equal(top, x.repeat(2, axis=2).repeat(2, axis=3))
    assert rel_err(gx, g.reshape(1, 2, 3, 2, 4, 2).sum(axis=(3, 5))) <= BWD_TOL


def bn_learn_reference(x, scale, shift, g):
    """SegNet bn_layer.cpp LEARN: batch statistics, var = E[x^2] - E[x]^2, eps 1e-9."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = (x * x).mean(axis=(0, 2, 3), keepdims=True) - mean ** 2
    std = np.sqrt(var + 1e-9)
    xn = (x - mean) / std
    top = scale * xn + shift
    dy = scale * g                                          # Backward_cpu, LEARN
    m = x.shape[0] * x.shape[2] * x.shape[3]
    bottom = (dy - dy.sum(axis=(0, 2, 3), keepdims=True) / m
              - xn * (dy * xn).sum(axis=(0, 2, 3), keepdims=True) / m) / std
    return top, bottom, (xn * g).sum(axis=(0, 2, 3)), g.sum(axis=(0, 2, 3)), mean, var


@pytest.mark.parametrize("phase", [caffe_pb2.TRAIN, caffe_pb2.TEST])
def test_bn_learn_mode_uses_batch_statistics(phase):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 0.5).astype(f32)
    scale = rng.uniform(0.5, 2, (1, 4, 1, 1)).astype(f32)
    shift = rng.standard_normal((1, 4, 1, 1)).astype(f32)
    layer = make_layer('type: "BN" top: "y" top: "mean" top: "var" bn_param { bn_mode: LEARN }',
                       [x.shape], phase=phase, blobs=[scale, shift])
    assert layer.top_shapes == [x.shape, (1, 4, 1, 1), (1, 4, 1, 1)]
    g = rng.standard_normal(x.shape).astype(f32)
    (top, mean, var), (gx,), (gscale, gshift) = forward_backward(layer, [x], [g])
    r_top, r_gx, r_gscale, r_gshift, r_mean, r_var = bn_learn_reference(x, scale, shift, g)
    assert rel_err(top, r_top) <= FWD_TOL
    assert rel_err(mean, r_mean) <= FWD_TOL and rel_err(var, r_var) <= FWD_TOL
    assert rel_err(gx, r_gx) <= BWD_TOL
    assert rel_err(gscale.ravel(), r_gscale) <= BWD_TOL
    assert rel_err(gshift.ravel(), r_gshift) <= BWD_TOL


def test_bn_inference_mode_and_blobs():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 4, 5)).astype(f32)
    scale = rng.uniform(0.5, 2, (1, 3, 1, 1)).astype(f32)
    shift = rng.standard_normal((1, 3, 1, 1)).astype(f32)
    layer = make_layer('type: "BN" bn_param { bn_mode: INFERENCE }', [x.shape],
                       blobs=[scale, shift])
    assert [p.shape for p in layer.blobs()] == [(1, 3, 1, 1), (1, 3, 1, 1)]
    g = rng.standard_normal(x.shape).astype(f32)
    (top,), (gx,), (gscale, gshift) = forward_backward(layer, [x], [g])
    assert rel_err(top, scale * x + shift) <= FWD_TOL
    assert rel_err(gx, scale * g) <= BWD_TOL
    assert rel_err(gscale.ravel(), (x * g).sum(axis=(0, 2, 3))) <= BWD_TOL
    assert rel_err(gshift.ravel(), g.sum(axis=(0, 2, 3))) <= BWD_TOL
    fresh = make_layer('type: "BN" bn_param { scale_filler { type: "constant" value: 1 } }',
                       [x.shape])
    assert fresh.scale.data().asnumpy().ravel().tolist() == [1.0] * 3
    assert not fresh.shift.data().asnumpy().any()          # unset filler: constant 0


def interp_reference(x, crop_beg, eff, out, g, nearest=False):
    """caffe_cpu_interp2 / nninterp2 (and the _backward adjoints) on the cropped input."""
    N, C, _, _ = x.shape
    src = x[:, :, crop_beg:crop_beg + eff[0], crop_beg:crop_beg + eff[1]].astype(f32)
    top = np.zeros((N, C) + out, f32)
    grad_src = np.zeros(src.shape, np.float64)
    if eff == out:
        top[...] = src
        grad_src[...] = g
    else:
        rh = f32(eff[0] - 1) / f32(out[0] - 1) if out[0] > 1 else f32(0)
        rw = f32(eff[1] - 1) / f32(out[1] - 1) if out[1] > 1 else f32(0)
        for h2 in range(out[0]):
            h1r = f32(rh * f32(h2))
            for w2 in range(out[1]):
                w1r = f32(rw * f32(w2))
                if nearest:
                    h1, w1 = int(math.floor(h1r + 0.5)), int(math.floor(w1r + 0.5))
                    top[:, :, h2, w2] = src[:, :, h1, w1]
                    grad_src[:, :, h1, w1] += g[:, :, h2, w2]
                    continue
                h1, w1 = int(h1r), int(w1r)
                hp = 1 if h1 < eff[0] - 1 else 0
                wp = 1 if w1 < eff[1] - 1 else 0
                l1, m1 = f32(h1r - f32(h1)), f32(w1r - f32(w1))
                l0, m0 = f32(1) - l1, f32(1) - m1
                top[:, :, h2, w2] = (l0 * (m0 * src[:, :, h1, w1] + m1 * src[:, :, h1, w1 + wp])
                                     + l1 * (m0 * src[:, :, h1 + hp, w1]
                                             + m1 * src[:, :, h1 + hp, w1 + wp]))
                gg = g[:, :, h2, w2]
                grad_src[:, :, h1, w1] += l0 * m0 * gg
                grad_src[:, :, h1, w1 + wp] += l0 * m1 * gg
                grad_src[:, :, h1 + hp, w1] += l1 * m0 * gg
                grad_src[:, :, h1 + hp, w1 + wp] += l1 * m1 * gg
    grad = np.zeros(x.shape, np.float64)
    grad[:, :, crop_beg:crop_beg + eff[0], crop_beg:crop_beg + eff[1]] = grad_src
    return top, grad


INTERP_CASES = [
    # id, params, input (H, W), crop_beg, cropped (H, W), output (H, W), opencv
    ("zoom", "zoom_factor: 3", (5, 7), 0, (5, 7), (13, 19), True),
    ("size", "height: 9 width: 4", (5, 7), 0, (5, 7), (9, 4), True),
    ("shrink", "shrink_factor: 2", (9, 8), 0, (9, 8), (5, 4), False),
    ("shrink_then_zoom", "shrink_factor: 2 zoom_factor: 3", (9, 8), 0, (9, 8), (13, 10), False),
    ("crop_pads", "zoom_factor: 2 pad_beg: -1 pad_end: -2", (8, 9), 1, (5, 6), (9, 11), False),
    ("to_one_row", "height: 1 width: 6", (4, 5), 0, (4, 5), (1, 6), True),
    ("same_size", "height: 5 width: 7", (5, 7), 0, (5, 7), (5, 7), True),
    ("nearest", 'height: 11 width: 6 interp_type: "nearest_neighbor"', (5, 7), 0, (5, 7),
     (11, 6), False),
]


@pytest.mark.parametrize("case", INTERP_CASES, ids=[c[0] for c in INTERP_CASES])
def test_interp_against_reference_and_opencv(case, tmp_path):
    _, params, in_hw, beg, eff, out, opencv = case
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3) + in_hw).astype(f32)
    text = f'type: "Interp" interp_param {{ {params} }}'
    layer = make_layer(text, [x.shape])
    assert layer.top_shapes == [(2, 3) + out]
    g = rng.standard_normal((2, 3) + out).astype(f32)
    (top,), (gx,), _ = forward_backward(layer, [x], [g])
    ref, ref_gx = interp_reference(x, beg, eff, out, g, nearest="nearest" in params)
    assert rel_err(top, ref) <= FWD_TOL
    assert rel_err(gx, ref_gx) <= BWD_TOL
    if opencv:
        mine, theirs = run_both(tmp_path, {"data": x},
                                f'layer {{ name: "L" bottom: "data" top: "out" {text} }}\n', "L")
        assert rel_err(mine, theirs) <= FWD_TOL


def test_interp_second_bottom_gives_the_size():
    layer = make_layer('type: "Interp"', [(1, 2, 4, 4), (1, 7, 10, 3)])
    assert layer.top_shapes == [(1, 2, 10, 3)]
    with pytest.raises(LayerError, match="either by zoom factor"):
        make_layer('type: "Interp" interp_param { zoom_factor: 2 height: 3 width: 3 }',
                   [(1, 2, 4, 4)])
    with pytest.raises(LayerError, match="non-pos padding"):
        make_layer('type: "Interp" interp_param { zoom_factor: 2 pad_beg: 1 }', [(1, 2, 4, 4)])


# ---- efficient nets --------------------------------------------------------------------
def test_shuffle_channel_forward_backward_and_opencv(tmp_path):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 12, 3, 4)).astype(f32)
    layer = make_layer('type: "ShuffleChannel" shuffle_channel_param { group: 3 }', [x.shape])
    g = rng.standard_normal(x.shape).astype(f32)
    (top,), (gx,), _ = forward_backward(layer, [x], [g])
    # shuffle_channel_layer.cpp Resize_cpu: output (j * rows + i) <- input (i * cols + j)
    ref, ref_gx = np.zeros_like(x), np.zeros_like(x)
    rows, cols = 3, 4
    for i in range(rows):
        for j in range(cols):
            ref[:, j * rows + i] = x[:, i * cols + j]
    for i in range(cols):                  # Backward_cpu: rows = C / group, cols = group
        for j in range(rows):
            ref_gx[:, j * cols + i] = g[:, i * rows + j]
    assert np.array_equal(top, ref) and np.array_equal(gx, ref_gx)
    mine, theirs = run_both(tmp_path, {"data": x}, 'layer { name: "L" type: "ShuffleChannel" '
                            'bottom: "data" top: "out" shuffle_channel_param { group: 3 } }\n', "L")
    assert rel_err(mine, theirs) <= FWD_TOL
    with pytest.raises(LayerError, match="group"):
        make_layer('type: "ShuffleChannel" shuffle_channel_param { group: 5 }', [x.shape])


def depthwise_reference(x, w, b, stride, pad, dil, g):
    """conv_dw_layer.cpp Forward_cpu/Backward_cpu (one kernel per channel)."""
    N, C, H, W = x.shape
    kh, kw = w.shape[2:]
    oh = (H + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (W + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0],) * 2, (pad[1],) * 2))
    top = np.zeros((N, C, oh, ow))
    gxp, gw = np.zeros_like(xp), np.zeros(w.shape)
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dil[0], j * dil[1]
            patch = xp[:, :, h0:h0 + (oh - 1) * stride[0] + 1:stride[0],
                       w0:w0 + (ow - 1) * stride[1] + 1:stride[1]]
            top += patch * w[None, :, 0, i, j, None, None]
            gw[:, 0, i, j] = (patch * g).sum(axis=(0, 2, 3))
            gxp[:, :, h0:h0 + (oh - 1) * stride[0] + 1:stride[0],
                w0:w0 + (ow - 1) * stride[1] + 1:stride[1]] += g * w[None, :, 0, i, j, None, None]
    top += b[None, :, None, None]
    gx = gxp[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + W]
    return top, gx, gw, g.sum(axis=(0, 2, 3))


@pytest.mark.parametrize("type_name", ["ConvolutionDepthwise", "DepthwiseConvolution"])
def test_depthwise_convolution_forward_backward(type_name, tmp_path):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 6, 9, 10)).astype(f32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(f32)
    b = rng.standard_normal(6).astype(f32)
    text = (f'type: "{type_name}" convolution_param {{ num_output: 6 group: 6 kernel_size: 3 '
            f'stride: 2 pad: 1 dilation: 2 }}')
    layer = make_layer(text, [x.shape], blobs=[w, b])
    assert [p.shape for p in layer.blobs()] == [(6, 1, 3, 3), (6,)]
    out_shape = layer.top_shapes[0]
    g = rng.standard_normal(out_shape).astype(f32)
    (top,), (gx,), (gw, gb) = forward_backward(layer, [x], [g])
    r_top, r_gx, r_gw, r_gb = depthwise_reference(x, w, b, (2, 2), (1, 1), (2, 2), g)
    assert rel_err(top, r_top) <= FWD_TOL
    assert rel_err(gx, r_gx) <= BWD_TOL
    assert rel_err(gw, r_gw) <= BWD_TOL and rel_err(gb, r_gb) <= BWD_TOL
    if type_name == "ConvolutionDepthwise":
        mine, theirs = run_both(tmp_path, {"data": x},
                                f'layer {{ name: "L" bottom: "data" top: "out" {text} }}\n', "L",
                                weights={"L": (type_name, [w, b])})
        assert rel_err(mine, theirs) <= FWD_TOL
        # the fork ignores num_output/group: one kernel per input channel regardless
        other = make_layer('type: "ConvolutionDepthwise" convolution_param { num_output: 3 '
                           'kernel_size: 3 }', [x.shape])
        assert other.top_shapes == [(2, 6, 7, 8)] and other.weight.shape == (6, 1, 3, 3)
    else:
        with pytest.raises(LayerError, match="depthwise"):
            make_layer('type: "DepthwiseConvolution" convolution_param { num_output: 6 '
                       'group: 2 kernel_size: 3 }', [x.shape])


def test_relu6_forward_backward_and_opencv(tmp_path):
    x = np.array([[-2, 0, 0.5, 3, 6, 7.5, 5.999, -0.001]], f32).reshape(1, 8, 1, 1)
    layer = make_layer('type: "ReLU6"', [x.shape])
    g = np.arange(1, 9, dtype=f32).reshape(x.shape)
    (top,), (gx,), _ = forward_backward(layer, [x], [g])
    assert np.array_equal(top, np.minimum(np.maximum(x, 0), 6))
    assert np.array_equal(gx, g * ((x > 0) & (x < 6)))      # kinks 0 and 6 get 0
    rng = np.random.default_rng(15)
    y = (rng.standard_normal((2, 3, 4, 5)) * 5).astype(f32)
    mine, theirs = run_both(tmp_path, {"data": y},
                            'layer { name: "L" type: "ReLU6" bottom: "data" top: "out" }\n', "L")
    assert rel_err(mine, theirs) <= FWD_TOL


@pytest.mark.parametrize("scale_shape", [(2, 5, 1, 1), (2, 5)])
def test_axpy_forward_backward(scale_shape):
    """axpy_layer.cpp: top = bottom[0] * bottom[1] + bottom[2]. (OpenCV 4.11's importer
    scales bottom[2] and adds bottom[1] instead, so it is no oracle here; the SE-block
    net test compares with OpenCV running the Scale + Eltwise equivalent.)"""
    rng = np.random.default_rng(16)
    a = rng.standard_normal(scale_shape).astype(f32)
    x = rng.standard_normal((2, 5, 3, 4)).astype(f32)
    y = rng.standard_normal((2, 5, 3, 4)).astype(f32)
    layer = make_layer('type: "Axpy"', [a.shape, x.shape, y.shape])
    g = rng.standard_normal(x.shape).astype(f32)
    (top,), (ga, gx, gy), _ = forward_backward(layer, [a, x, y], [g])
    a4 = a.reshape(2, 5, 1, 1)
    assert rel_err(top, a4 * x + y) <= FWD_TOL
    assert rel_err(ga, (x * g).sum(axis=(2, 3)).reshape(scale_shape)) <= BWD_TOL
    assert rel_err(gx, a4 * g) <= BWD_TOL and rel_err(gy, g) <= BWD_TOL
    with pytest.raises(LayerError, match="one shape"):
        make_layer('type: "Axpy"', [a.shape, x.shape, (2, 5, 3, 3)])


# ---- hybridization ---------------------------------------------------------------------
def test_graph_layers_hybridize(tmp_path):
    """PriorBox, Permute, Normalize, Interp, Upsample, ShuffleChannel, BN: a hybridized
    net gives the imperative numbers."""
    pt = os.path.join(str(tmp_path), "h.prototxt")
    with open(pt, "w") as handle:
        handle.write(input_layers({"data": np.zeros((1, 4, 8, 10))}) + """
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn" type: "BN" bottom: "pool" top: "bn" bn_param { bn_mode: INFERENCE
        scale_filler { type: "constant" value: 2 } shift_filler { type: "constant" value: 1 } } }
layer { name: "up" type: "Upsample" bottom: "bn" bottom: "mask" top: "up" }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "up" top: "sh"
        shuffle_channel_param { group: 2 } }
layer { name: "norm" type: "Normalize" bottom: "sh" top: "norm" }
layer { name: "interp" type: "Interp" bottom: "norm" top: "interp" interp_param { zoom_factor: 2 } }
layer { name: "perm" type: "Permute" bottom: "interp" top: "perm"
        permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "prior" type: "PriorBox" bottom: "pool" bottom: "data" top: "prior"
        prior_box_param { min_size: 3 max_size: 6 aspect_ratio: 2 clip: true } }
""")
    net = CaffeNet.from_prototxt(pt)
    net.set_outputs(["perm", "prior"])
    x = mx.nd.array(np.random.default_rng(17).standard_normal((1, 4, 8, 10)))
    eager = [o.asnumpy() for o in net(x)]
    net.hybridize()
    hybrid = [o.asnumpy() for o in net(x)]
    for a, b in zip(eager, hybrid):
        assert rel_err(b, a) <= FWD_TOL
