"""R-CNN detection recipe (recipes/rcnn/): crops, NMS, bbox regression, SVMs, VOC AP,
end-to-end detection on a tiny hand-weighted net, the detect CLI, the window file.

The tiny net is CaffeNet-shaped (conv1 -> pool5 -> fc6 -> fc7 -> fc-rcnn) on 24 x 24
crops with 4 px of context: conv1 averages the colour channels, pool5 averages 4 x 4
cells, fc6 takes "centre cells minus border cells" (class "square": a bright box that
fills its window) and its negative (class "hole": a dark box inside a bright ring).
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

import caffe_compat as caffe
from caffe_compat.errors import CaffeCompatError
from caffe_compat.formats.caffemodel import write_caffemodel
from caffe_compat.recipes.rcnn import bbox_regression as bbr
from caffe_compat.recipes.rcnn import detector as rdet
from caffe_compat.recipes.rcnn.nms import box_iou, nms

TINY_PROTOTXT = """
name: "tiny_rcnn"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 24 dim: 24 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 1 kernel_size: 1 } }
layer { name: "pool5" type: "Pooling" bottom: "conv1" top: "pool5"
        pooling_param { pool: AVE kernel_size: 4 stride: 4 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6"
        inner_product_param { num_output: 2 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 2 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "fc-rcnn" type: "InnerProduct" bottom: "fc7" top: "fc-rcnn"
        inner_product_param { num_output: 2 } }
"""
LABELS = ["n00000001 square", "n00000002 hole"]
MEAN_BGR = np.array([30.0, 20.0, 10.0])
CONTEXT = 4

# the test image: 64 x 96, black; a bright 16 x 16 square and a bright 24 x 24 ring
# with an 8 x 8 dark hole
SQUARE = [16, 16, 31, 31]
HOLE = [64, 24, 71, 31]
PROPOSALS = np.array([
    SQUARE,               # the square: "square"
    [20, 16, 35, 31],     # shifted by 4 px: lower "square" score, IoU 0.6 -> suppressed
    [8, 8, 39, 39],       # too large: centre not filled
    [2, 44, 17, 59],      # background
    [20, 20, 27, 27],     # inside the square: all bright
    HOLE,                 # the ring's hole: "hole"
])


def tiny_weights() -> dict:
    centre = np.zeros((6, 6))
    centre[1:5, 1:5] = 1.0
    fc6 = (centre / 16.0 - (1 - centre) / 20.0).reshape(1, 36)
    return {
        "conv1": [np.full((1, 3, 1, 1), 1.0 / 3.0, np.float32), np.zeros(1, np.float32)],
        "fc6": [np.vstack([fc6, -fc6]).astype(np.float32), np.zeros(2, np.float32)],
        "fc7": [np.eye(2, dtype=np.float32), np.zeros(2, np.float32)],
        "fc-rcnn": [np.eye(2, dtype=np.float32) / 100.0, np.full(2, -1.0, np.float32)],
    }


def shapes_image() -> np.ndarray:
    img = np.zeros((64, 96, 3), np.float32)
    x0, y0, x1, y1 = SQUARE
    img[y0:y1 + 1, x0:x1 + 1] = 1.0
    img[16:40, 56:80] = 1.0
    x0, y0, x1, y1 = HOLE
    img[y0:y1 + 1, x0:x1 + 1] = 0.0
    return img


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_rcnn")
    proto = d / "deploy.prototxt"
    proto.write_text(TINY_PROTOTXT)
    weights = d / "tiny.caffemodel"
    write_caffemodel(str(weights), tiny_weights())
    labels = d / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    image = d / "shapes.png"
    cv2.imwrite(str(image), (shapes_image()[:, :, ::-1] * 255).astype(np.uint8))
    props = d / "shapes_boxes.json"
    props.write_text(json.dumps({"boxes": PROPOSALS.tolist()}))
    return {"prototxt": str(proto), "weights": str(weights), "labels": str(labels),
            "image": str(image), "proposals": str(props), "dir": d}


@pytest.fixture(scope="module")
def tiny_detector(tiny_files):
    return rdet.RCNNDetector.from_files(tiny_files["prototxt"], tiny_files["weights"],
                                        tiny_files["labels"], mean=MEAN_BGR, context_pad=CONTEXT,
                                        batch_size=4)


# --------------------------------------------------------------------------- crops


def _pycaffe_detector(tiny_files, crop_size, context_pad, mean):
    proto = tiny_files["dir"] / f"input{crop_size}.prototxt"
    proto.write_text(TINY_PROTOTXT.replace("dim: 24 dim: 24", f"dim: {crop_size} dim: {crop_size}")
                     .split('layer { name: "conv1"')[0]
                     + 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
                       'convolution_param { num_output: 1 kernel_size: 1 } }\n')
    return caffe.Detector(str(proto), None, mean=mean, raw_scale=255, channel_swap=(2, 1, 0),
                          context_pad=context_pad)


def test_context_geometry_hand_checked():
    # window (ymin, xmin, ymax, xmax) = (100, 50, 199, 149): 100 x 100 box, 227 crop, pad 16:
    # scale 227/195; half 50 -> 58.2051..., centre (150, 100) -> box round(91.79, 41.79,
    # 208.21, 158.21) = (92, 42, 208, 158): 117 x 117, all inside a 300 x 300 image.
    g = rdet.context_crop_geometry((100, 50, 199, 149), 227, 16, 300, 300)
    assert (g.y0, g.x0, g.y1, g.x1, g.pad_y, g.pad_x) == (92, 42, 208, 158, 0, 0)
    assert (g.crop_h, g.crop_w) == (227, 227)   # round(117 * 227/117), capped at 227
    # at the corner: box (0, 0, 39, 39) -> centre 20, half 20 * 227/195 = 23.28 ->
    # round(-3.28, 43.28) = (-3, 43): 47 px, 3 of them outside -> pad round(3 * 227/47) = 14
    g = rdet.context_crop_geometry((0, 0, 39, 39), 227, 16, 300, 300)
    assert (g.y0, g.x0, g.y1, g.x1, g.pad_y, g.pad_x) == (0, 0, 43, 43, 14, 14)
    assert g.crop_h == g.crop_w == 213   # round(44 * 227/47) = 213 (= 227 - 14)
    with pytest.raises(CaffeCompatError, match="outside"):
        rdet.context_crop_geometry((400, 400, 420, 420), 227, 16, 300, 300)


def test_crops_equal_pycaffe_detector_crop(tiny_files):
    """context_crop == caffe.Detector.crop (pad 16, 227 warp) on hand-picked windows
    (inside, at each border, larger than the image, tiny) and random ones."""
    det = _pycaffe_detector(tiny_files, 227, 16, np.array([104.0, 117.0, 123.0]))
    rng = np.random.RandomState(0)
    im = rng.rand(150, 200, 3).astype(np.float32)
    windows = [(40, 50, 99, 149), (0, 0, 39, 39), (120, 170, 149, 199), (-10, -20, 160, 230),
               (70, 90, 74, 93), (0, 100, 149, 110), (30, 0, 60, 199)]
    for _ in range(40):
        y0, x0 = rng.randint(0, 140), rng.randint(0, 190)
        windows.append((y0, x0, y0 + rng.randint(3, 150 - y0), x0 + rng.randint(3, 200 - x0)))
    for w in windows:
        ref = det.crop(im, w)
        got = rdet.context_crop(im, w, 227, 16, det.crop_mean)
        assert got.shape == ref.shape == (227, 227, 3)
        err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert err < 1e-6, (w, err)


def test_resize_like_pycaffe_matches_caffe_io():
    from caffe_compat import io as caffe_io
    rng = np.random.RandomState(1)
    for h, w, oh, ow in [(10, 7, 24, 24), (300, 40, 227, 227), (5, 5, 5, 5), (60, 90, 17, 201)]:
        im = (rng.rand(h, w, 3) * 0.7 + 0.1).astype(np.float32)
        ref = caffe_io.resize_image(im, (oh, ow))
        got = rdet.resize_like_pycaffe(im, (oh, ow))
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-6
    flat = np.full((4, 6, 3), 0.25, np.float32)
    np.testing.assert_array_equal(rdet.resize_like_pycaffe(flat, (3, 3)), np.full((3, 3, 3), 0.25))


def test_detector_batch_matches_pycaffe_preprocess(tiny_files, tiny_detector):
    """The device preprocessing of a batch equals Transformer.preprocess per crop, and the
    exact (pycaffe) crop path gives the same net outputs as the fast one."""
    im = shapes_image()
    windows = rdet.boxes_to_windows(PROPOSALS)
    crops = np.stack([tiny_detector.crop(im, w) for w in windows])
    got = tiny_detector.preprocess(crops).asnumpy()
    t = tiny_detector.pycaffe.transformer
    ref = np.stack([t.preprocess("data", tiny_detector.pycaffe.crop(im, w)) for w in windows])
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
    fast = tiny_detector.forward_windows(im, windows, ["fc-rcnn"])["fc-rcnn"]
    exact = rdet.RCNNDetector.from_files(tiny_files["prototxt"], tiny_files["weights"],
                                         tiny_files["labels"], mean=MEAN_BGR, context_pad=CONTEXT,
                                         exact_crops=True, hybridize=False)
    slow = exact.forward_windows(im, windows, ["fc-rcnn"])["fc-rcnn"]
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    # ... and caffe.Detector.detect_windows on the same net and weights
    pyc = caffe.Detector(tiny_files["prototxt"], tiny_files["weights"], mean=MEAN_BGR,
                         raw_scale=255, channel_swap=(2, 1, 0), context_pad=CONTEXT)
    dets = pyc.detect_windows([(tiny_files["image"], windows)])
    np.testing.assert_allclose(np.stack([d["prediction"] for d in dets]), fast, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- NMS


def test_iou_uses_plus_one_areas():
    # 10 x 10 boxes (0..9) shifted by 5: intersection 5 x 10 = 50, union 150
    assert box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]])[0, 0] == pytest.approx(50 / 150)
    # touching at one pixel column: x 0..9 and 9..18 share column 9 -> 10 / 190
    assert box_iou([[0, 0, 9, 9]], [[9, 0, 18, 9]])[0, 0] == pytest.approx(10 / 190)
    assert box_iou([[0, 0, 9, 9]], [[10, 0, 19, 9]])[0, 0] == 0.0
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 1.0   # a one-pixel box


def test_nms_hand_computed():
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [0, 0, 9, 9], [20, 20, 29, 29],
                      [0, 5, 9, 14]])
    scores = np.array([0.5, 0.9, 0.4, 0.1, 0.8])
    # order 1 (0.9), 4 (0.8), 0, 2, 3. Box 1 suppresses 0 and 2 (IoU 50/150 = 1/3 > 0.3)
    # but not 4 (overlap 5 x 5: 25/175 = 1/7); box 4 does not touch 3
    assert nms(boxes, scores, 0.3).tolist() == [1, 4, 3]
    # at exactly the threshold a box survives: IoU(0, 1) = 1/3
    assert nms(boxes[:2], scores[:2], 1 / 3).tolist() == [1, 0]
    assert nms(boxes[:2], scores[:2], 1 / 3 - 1e-9).tolist() == [1]
    # equal scores: the earlier box wins
    assert nms(boxes[[0, 2]], [0.7, 0.7], 0.5).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(CaffeCompatError, match="2 boxes but 3 scores"):
        nms(boxes[:2], scores[:3])


# --------------------------------------------------------------------------- bbox regression


def test_bbox_targets_round_trip_and_paper_values():
    p = np.array([[10.0, 20.0, 30.0, 60.0]])          # w = 20, h = 40, centre (20, 40)
    g = np.array([[14.0, 10.0, 54.0, 50.0]])          # w = 40, h = 40, centre (34, 30)
    t = bbr.encode_boxes(p, g)
    np.testing.assert_allclose(t, [[14 / 20, -10 / 40, np.log(2.0), 0.0]], atol=1e-12)
    rng = np.random.RandomState(2)
    corner, size = rng.rand(50, 2) * 200, 20 + rng.rand(50, 2) * 80
    props = np.hstack([corner, corner + size])
    gts = props + rng.randn(50, 4) * 3
    np.testing.assert_allclose(bbr.decode_boxes(props, bbr.encode_boxes(props, gts)), gts, atol=1e-9)
    np.testing.assert_allclose(bbr.clip_boxes([[-5, -2, 120, 70]], 60, 100), [[0, 0, 99, 59]])


def test_ridge_fit_recovers_linear_map_and_solves_normal_equations():
    rng = np.random.RandomState(3)
    x = rng.randn(400, 12)
    true_w, true_b = rng.randn(12, 4), rng.randn(4)
    y = x @ true_w + true_b
    beta = bbr.ridge_fit(x, y, lam=1e-9)
    np.testing.assert_allclose(beta[:-1], true_w, atol=1e-6)
    np.testing.assert_allclose(beta[-1], true_b, atol=1e-6)
    beta = bbr.ridge_fit(x, y, lam=1000.0)      # R-CNN's lambda: the normal equations hold
    a = np.hstack([x, np.ones((400, 1))])
    np.testing.assert_allclose((a.T @ a + 1000 * np.eye(13)) @ beta, a.T @ y, rtol=1e-9, atol=1e-9)
    # a class regressor (whitened targets) reproduces an exactly linear target map
    model = bbr.fit_class_regressor(x, y, lam=1e-9)
    np.testing.assert_allclose(model.targets(x), y, atol=1e-5)


def test_bbox_regressor_training_moves_boxes_to_ground_truth(tmp_path):
    """Features that encode the offset of a proposal from its ground truth: the trained
    regressor (IoU > 0.6 pairs) takes unseen proposals onto their ground truths."""
    rng = np.random.RandomState(4)
    gt = np.array([[40.0, 40.0, 119.0, 99.0]])
    feats, boxes = [], []
    while len(boxes) < 300:
        jitter = rng.randn(4) * 4
        box = gt[0] + jitter
        boxes.append(box)
    boxes = np.array(boxes)
    targets = bbr.encode_boxes(boxes, np.repeat(gt, len(boxes), 0))
    feats = np.hstack([targets * 10 + 5, rng.rand(len(boxes), 3)])   # linear in the targets
    ex = bbr.regression_examples(boxes, gt, [1])
    assert len(ex.indices) > 200 and ex.overlaps.min() >= 0.6 and (ex.classes == 1).all()
    reg = bbr.train_bbox_regressor(feats[ex.indices], ex.targets, ex.overlaps, ex.classes, 2,
                                   feat_norm_mean=20.0, lam=1e-6)
    assert reg.models[1] is None       # class 2 had no examples
    pred = reg.predict(0, feats, boxes)
    assert np.abs(pred - gt).max() < 0.05
    assert np.abs(reg.predict(1, feats, boxes) - boxes).max() == 0
    loaded = bbr.BBoxRegressor.load(reg.save(str(tmp_path / "reg.npz")))
    np.testing.assert_array_equal(loaded.predict(0, feats, boxes), pred)


# --------------------------------------------------------------------------- SVM


@pytest.mark.parametrize("positives", [12, 0])
def test_svm_solver_is_optimal_for_liblinear_problem(positives):
    """liblinear's answer against the same problem solved independently: the primal QP
    with slack variables (min 1/2|w|^2 + 1/2 (b/10)^2 + C sum c_i xi_i, xi_i >= 0,
    xi_i >= 1 - y_i (w.x_i + b)) by scipy's SLSQP; also for a class without positives."""
    from scipy.optimize import minimize
    from caffe_compat.recipes.rcnn.svm import train_linear_svm
    rng = np.random.RandomState(5)
    pos, neg = rng.randn(positives, 4) + 0.8, rng.randn(40, 4) - 0.4
    C, bias_mult, w1 = 0.05, 10.0, 2.0
    sol = train_linear_svm(pos, neg, C=C, bias_mult=bias_mult, pos_loss_weight=w1, tol=1e-8)
    x = np.concatenate([pos, neg])
    y = np.r_[np.ones(len(pos)), -np.ones(len(neg))]
    cost = C * np.where(y > 0, w1, 1.0)
    n, d = x.shape

    def objective(v):
        w, b, xi = v[:d], v[d], v[d + 1:]
        return 0.5 * w @ w + 0.5 * (b / bias_mult) ** 2 + cost @ xi

    margins = {"type": "ineq", "fun": lambda v: v[d + 1:] - 1 + y * (x @ v[:d] + v[d])}
    slack = {"type": "ineq", "fun": lambda v: v[d + 1:]}
    ref = minimize(objective, np.r_[np.zeros(d + 1), np.ones(n)], method="SLSQP",
                   constraints=[margins, slack], options={"ftol": 1e-12, "maxiter": 500})
    assert ref.success, ref.message
    assert abs(sol.primal - ref.fun) <= 1e-6 * abs(ref.fun)
    np.testing.assert_allclose(sol.w, ref.x[:d], rtol=0, atol=1e-4)
    assert abs(sol.b - ref.x[d]) <= 1e-3
    # the objective's parts are rcnn_train.m's
    assert sol.reg_loss == pytest.approx(0.5 * sol.w @ sol.w + 0.5 * (sol.b / bias_mult) ** 2)


def test_svm_hard_negative_mining_separates_synthetic_classes():
    from caffe_compat.recipes.rcnn.svm import ImageFeatures, SVMSettings, train_svms
    rng = np.random.RandomState(6)
    dim, k = 16, 2
    centres = np.zeros((k, dim))
    centres[0, :4], centres[1, 4:8] = 3.0, 3.0
    images = []
    for i in range(6):
        gt = rng.randint(0, k, size=2)
        feat_gt = centres[gt] + rng.randn(2, dim) * 0.3
        props = np.abs(rng.randn(300, dim))
        feat = np.vstack([feat_gt, props])
        overlaps = np.zeros((302, k))
        overlaps[[0, 1], gt] = 1.0
        classes = np.r_[gt + 1, np.zeros(300, int)]
        images.append(ImageFeatures(feat, overlaps, classes))
    norm = np.mean([np.linalg.norm(im.feat, axis=1).mean() for im in images])
    scale = 20 / norm
    scaled = [ImageFeatures(im.feat * scale, im.overlaps, im.gt_classes) for im in images]
    log = []
    dets = train_svms(len(scaled), lambda i: scaled[i], k, norm,
                      SVMSettings(retrain_limit=100), log=log.append)
    assert any("after image 1" in line for line in log) and any("after image 6" in line for line in log)
    test_pos = centres + rng.randn(k, dim) * 0.3
    test_neg = np.abs(rng.randn(500, dim))
    s_pos, s_neg = dets.scores(test_pos), dets.scores(test_neg)
    assert s_pos[0, 0] > 0 and s_pos[1, 1] > 0
    assert (s_neg < 0).mean() > 0.99
    weight, bias = dets.inner_product_blobs()   # fc-rcnn on unscaled features
    np.testing.assert_allclose(test_neg @ weight.T + bias, s_neg, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- VOC AP


def _gluon_free_ap(dets, gts, num_classes, use_07):
    """VOCevaldet.m transcribed: global sort, greedy matching, 11-point or area AP."""
    aps = []
    for c in range(num_classes):
        conf, img, boxes = [], [], []
        npos, gt_by_img = 0, {}
        for i, (d, g) in enumerate(zip(dets, gts)):
            m = np.asarray(d.labels) == c
            conf += list(np.asarray(d.scores)[m]); img += [i] * int(m.sum())
            boxes += list(np.asarray(d.boxes)[m])
            gm = np.asarray(g.labels) == c
            diff = np.zeros(len(g.labels), bool) if g.difficult is None else np.asarray(g.difficult, bool)
            gt_by_img[i] = (np.asarray(g.boxes)[gm], diff[gm], np.zeros(int(gm.sum()), bool))
            npos += int((~diff[gm]).sum())
        order = np.argsort(-np.asarray(conf), kind="stable")
        tp, fp = np.zeros(len(order)), np.zeros(len(order))
        for rank, j in enumerate(order):
            gb, gd, det = gt_by_img[img[j]]
            if len(gb):
                ov = box_iou([boxes[j]], gb)[0]
                k = int(ov.argmax())
                if ov[k] >= 0.5:
                    if gd[k]:
                        continue
                    if not det[k]:
                        tp[rank], det[k] = 1, True
                    else:
                        fp[rank] = 1
                    continue
            fp[rank] = 1
        keep = ~((tp == 0) & (fp == 0))
        tp, fp = np.cumsum(tp[keep]), np.cumsum(fp[keep])
        if npos == 0:
            continue
        rec, prec = tp / npos, tp / np.maximum(tp + fp, 1e-300)
        if use_07:
            aps.append(sum((prec[rec >= t].max() if (rec >= t).any() else 0)
                           for t in np.arange(0, 1.1, 0.1)) / 11)
        else:
            mrec, mpre = np.r_[0, rec, 1], np.r_[0, prec, 0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            i = np.flatnonzero(mrec[1:] != mrec[:-1])
            aps.append(((mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum())
    return aps


def test_voc_ap_hand_computed_and_against_devkit_transcription():
    from caffe_compat.recipes.rcnn.voc_eval import Detections, GroundTruth, evaluate_detections
    # one class, 2 ground truths (one difficult-free each image); detections ranked:
    # 0.9 TP (img0), 0.8 FP (img0, duplicate), 0.7 TP (img1), 0.6 FP (nothing there)
    gts = [GroundTruth(np.array([[0, 0, 9, 9]]), np.array([0])),
           GroundTruth(np.array([[10, 10, 29, 29]]), np.array([0]))]
    dets = [Detections(np.array([[0, 0, 9, 9], [1, 0, 9, 9]]), np.array([0, 0]), np.array([0.9, 0.8])),
            Detections(np.array([[10, 10, 29, 28], [50, 50, 60, 60]]), np.array([0, 0]),
                       np.array([0.7, 0.6]))]
    # precision 1, 1/2, 2/3, 2/4 at recall 1/2, 1/2, 1, 1
    area = evaluate_detections(dets, gts, ["a"], use_07_metric=False)
    assert area.mean_ap == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    voc07 = evaluate_detections(dets, gts, ["a"], use_07_metric=True)
    assert voc07.mean_ap == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11)
    # a difficult ground truth: its detection is ignored, it is no positive
    gts_d = [gts[0], GroundTruth(gts[1].boxes, gts[1].labels, np.array([True]))]
    assert evaluate_detections(dets, gts_d, ["a"], use_07_metric=False).mean_ap == pytest.approx(1.0)
    # random scenes: GluonCV (our wrapper) == the devkit transcription
    rng = np.random.RandomState(7)
    dets, gts = [], []
    for _ in range(12):
        g = np.sort(rng.randint(0, 100, (4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(4, 4)[:, [0, 2, 1, 3]]
        g[:, 2:] += 8
        labels = rng.randint(0, 3, 4)
        d = np.vstack([g + rng.randint(-4, 5, g.shape), rng.randint(0, 100, (6, 4))])
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 5)
        dets.append(Detections(d, np.r_[labels, rng.randint(0, 3, 6)], rng.rand(10)))
        gts.append(GroundTruth(g, labels, rng.rand(4) < 0.15))
    for use_07 in (True, False):
        ours = evaluate_detections(dets, gts, ["a", "b", "c"], use_07_metric=use_07)
        ref = _gluon_free_ap(dets, gts, 3, use_07)
        np.testing.assert_allclose(list(ours.ap.values()), ref, rtol=1e-12)
        assert ours.mean_ap == pytest.approx(np.mean(ref))


# --------------------------------------------------------------------------- end to end


def test_detect_end_to_end_on_tiny_net(tiny_detector):
    found = tiny_detector.detect(shapes_image(), PROPOSALS, threshold=0.0)
    assert found.names() == ["square", "hole"]
    np.testing.assert_array_equal(found.boxes, [SQUARE, HOLE])
    assert found.scores[0] > 1.0 and found.scores[1] > 1.0
    scores, _ = tiny_detector.score_boxes(shapes_image(), PROPOSALS)
    assert scores[1, 0] > 0          # the shifted box also fires, NMS removed it
    assert box_iou(PROPOSALS[:1], PROPOSALS[1:2])[0, 0] == pytest.approx(0.6)
    assert (scores[2:5, 0] < 0).all()
    top1 = tiny_detector.detect(shapes_image(), PROPOSALS, threshold=0.0, top_k=1)
    assert top1.names() == ["square"] and len(top1) == 1
    doc = found.to_json()
    assert doc["detections"][0]["label"] == "square" and doc["proposals"] == len(PROPOSALS)


def test_detect_with_selective_search_proposals_and_pycaffe_adapter(tiny_files, tiny_detector):
    img = np.zeros((96, 128, 3), np.float32)
    img[30:62, 50:82] = 1.0                       # a 32 x 32 square (SS drops boxes < 20 px)
    found = tiny_detector.detect(img, threshold=0.5)
    assert found.names()[0] == "square" and found.num_proposals > 0
    assert box_iou(found.boxes[:1], [[50, 30, 81, 61]])[0, 0] > 0.7
    windows = rdet.selective_search_windows(tiny_files["image"])
    pyc = caffe.Detector(tiny_files["prototxt"], tiny_files["weights"], mean=MEAN_BGR,
                         raw_scale=255, channel_swap=(2, 1, 0), context_pad=CONTEXT)
    dets = pyc.detect_selective_search([tiny_files["image"]], proposals=rdet.selective_search_windows)
    assert len(dets) == len(windows) > 0
    np.testing.assert_array_equal(np.stack([d["window"] for d in dets]), windows)


def test_detect_with_bbox_regression(tiny_files, tiny_detector):
    """A regressor that always moves boxes 2 px right: detect() applies it before NMS."""
    beta = np.zeros((37, 4))
    model = bbr.ClassRegressor(beta, mu=np.array([2 / 15, 0, 0, 0]), t_inv=np.eye(4))
    reg = bbr.BBoxRegressor([model, None], feat_norm_mean=20.0)
    det = rdet.RCNNDetector.from_files(tiny_files["prototxt"], tiny_files["weights"],
                                       tiny_files["labels"], mean=MEAN_BGR, context_pad=CONTEXT,
                                       bbox_regressor=reg)
    found = det.detect(shapes_image(), PROPOSALS, threshold=0.0)
    np.testing.assert_allclose(found.boxes[found.names().index("square")], [18, 16, 33, 31])
    np.testing.assert_allclose(found.boxes[found.names().index("hole")], HOLE)


def test_detect_cli_writes_png_and_json(tiny_files, tmp_path):
    from caffe_compat.cli.main import main
    out_png, out_json = tmp_path / "out.png", tmp_path / "out.json"
    rc = main(["detect", tiny_files["image"], "--prototxt", tiny_files["prototxt"],
               "--weights", tiny_files["weights"], "--labels", tiny_files["labels"],
               "--mean", "30,20,10", "--context-pad", "4",
               "--proposals", tiny_files["proposals"], "--threshold", "0", "-o", str(out_png),
               "--json", str(out_json)])
    assert rc == 0
    img = cv2.imread(str(out_png))
    assert img is not None and img.shape[:2] == (64, 96)
    doc = json.loads(out_json.read_text())
    dets = doc["images"][0]["detections"]
    assert [d["label"] for d in dets] == ["square", "hole"]
    assert dets[0]["box"] == SQUARE
    # several images into a folder, selective search proposals
    out_dir = tmp_path / "many"
    rc = main(["detect", tiny_files["image"], tiny_files["image"], "--prototxt",
               tiny_files["prototxt"], "--weights", tiny_files["weights"], "--labels",
               tiny_files["labels"], "--context-pad", "4", "--threshold", "0.5", "-o", str(out_dir)])
    assert rc == 0 and len(list(out_dir.glob("*.png"))) == 2


def test_detect_cli_errors_are_one_line(tiny_files, tmp_path, capsys):
    from caffe_compat.cli.main import main
    bad = tmp_path / "bad.json"
    bad.write_text('{"boxes": [[1, 2, 3]]}')
    args = ["detect", tiny_files["image"], "--prototxt", tiny_files["prototxt"], "--weights",
            tiny_files["weights"], "--labels", tiny_files["labels"], "--context-pad", "4"]
    assert main(args + ["--proposals", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "N x 4" in err[0]
    assert main(args[:1] + [str(tmp_path / "missing.png")] + args[2:]) == 2
    assert "missing.png" in capsys.readouterr().err


# --------------------------------------------------------------------------- training pieces


def test_window_file_is_read_by_window_data_layer(tiny_files, tmp_path):
    from caffe_compat.engine.layers.data import parse_window_file
    from caffe_compat.formats.prototxt import write_net
    from caffe_compat.recipes.rcnn.train import (Annotation, finetune_train_net,
                                                 window_file_from_annotations)
    ann = Annotation(tiny_files["image"], [SQUARE, HOLE], [1, 2])
    path = window_file_from_annotations(str(tmp_path / "windows.txt"), [ann],
                                        {tiny_files["image"]: PROPOSALS}, 2)
    lines = open(path).read().splitlines()
    assert lines[:6] == ["# 0", tiny_files["image"], "3", "64", "96", "8"]
    assert lines[6] == "1 1.000 16 16 31 31" and lines[7] == "2 1.000 64 24 71 31"
    assert lines[9] == "1 0.600 20 16 35 31"       # the shifted proposal: IoU 0.6 with the square
    assert lines[11] == "0 0.000 2 44 17 59"       # background
    images, fg, bg = parse_window_file(path, "", 0.5, 0.5, lambda m: CaffeCompatError(m))
    assert len(images) == 1 and len(fg) == 5 and len(bg) == 3   # IoU >= 0.5 / < 0.5
    net = finetune_train_net(tiny_files["prototxt"], path, 2, batch_size=8, context_pad=CONTEXT)
    proto = tmp_path / "train.prototxt"
    write_net(net, str(proto))
    train = caffe.Net(str(proto), caffe.TRAIN)
    train.forward()
    assert train.blobs["data"].data.shape == (8, 3, 24, 24)
    labels = train.blobs["label"].data
    assert set(labels.tolist()) <= {0.0, 1.0, 2.0} and (labels[:6] == 0).all()
    assert (labels[6:] > 0).all() and np.isfinite(train.blobs["loss"].data).all()


def test_svm_weights_written_as_fc_rcnn_layer(tiny_files, tmp_path):
    from caffe_compat.recipes.rcnn.svm import SVMDetectors
    from caffe_compat.recipes.rcnn.train import write_rcnn_model
    W = np.array([[1.0, -2.0], [0.5, 3.0]])
    dets = SVMDetectors(W=W, B=np.array([0.25, -1.0]), feat_norm_mean=40.0)
    proto, model = write_rcnn_model(tiny_files["prototxt"], tiny_files["weights"], dets,
                                    str(tmp_path / "rcnn.prototxt"), str(tmp_path / "rcnn.caffemodel"))
    net = caffe.Net(proto, model, caffe.TEST)
    np.testing.assert_allclose(net.params["fc-rcnn"][0].data, (W * 0.5).T)
    np.testing.assert_allclose(net.params["fc-rcnn"][1].data, [0.25, -1.0])
    np.testing.assert_allclose(net.params["fc6"][0].data, tiny_weights()["fc6"][0])
    x = np.random.RandomState(8).rand(1, 3, 24, 24).astype(np.float32)
    net.blobs["data"].data[...] = x
    out = net.forward()
    np.testing.assert_allclose(out["fc-rcnn"], dets.scores(net.blobs["fc7"].data), rtol=1e-5, atol=1e-6)


def test_train_rcnn_from_tiny_net_caches(tiny_files, tiny_detector, tmp_path):
    """Caches -> SVMs -> fc-rcnn model -> detection with the trained model -> VOC AP."""
    from caffe_compat.recipes.rcnn.features import load_cache
    from caffe_compat.recipes.rcnn.svm import SVMSettings
    from caffe_compat.recipes.rcnn.train import Annotation, evaluate_detector, train_rcnn
    ann = Annotation(tiny_files["image"], [SQUARE, HOLE], [1, 2])
    props = {tiny_files["image"]: PROPOSALS}
    out = train_rcnn(tiny_detector, [ann, ann], props, ["square", "hole"], str(tmp_path),
                     deploy=tiny_files["prototxt"], weights=tiny_files["weights"],
                     settings=SVMSettings(C=1.0))
    cache = load_cache(out.caches[0])
    assert cache.feat["fc7"].shape == (8, 2) and cache.feat["pool5"].shape == (8, 36)
    assert cache.gt_classes.tolist() == [1, 2, 0, 0, 0, 0, 0, 0]
    trained = rdet.RCNNDetector.from_files(out.prototxt, out.caffemodel, ["square", "hole"],
                                           mean=MEAN_BGR, context_pad=CONTEXT,
                                           bbox_regressor=bbr.BBoxRegressor.load(out.bbox_regressor))
    found = trained.detect(shapes_image(), PROPOSALS, threshold=0.0)
    got = {(name, tuple(np.round(box, 3))) for name, box in zip(found.names(), found.boxes)}
    assert got == {("square", tuple(SQUARE)), ("hole", tuple(HOLE))}
    assert np.all(found.scores > 0.99)   # on their margins: the hinge-loss optimum
    result = evaluate_detector(trained, [ann], props, ["square", "hole"])
    assert result.mean_ap == pytest.approx(1.0)


def test_demo_stage_offline_fallback(tmp_path, monkeypatch):
    from caffe_compat.recipes.rcnn import demo
    from caffe_compat.download import DownloadError

    def offline():
        raise DownloadError("cannot download x: http://example.invalid/x: no network")
    monkeypatch.setattr(demo, "_zoo_detector", offline)
    lines = []
    paths = demo.demo_stage(str(tmp_path), quick=True, log=lines.append)
    assert paths and all(cv2.imread(p) is not None for p in paths)   # the shapes scenes
    assert lines[1].startswith("rcnn: mAP@0.5 ")
    assert lines[-1].startswith("offline:") and "no network" in lines[-1]
    assert not any("meaningless" in l for l in lines)
