"""Small nets in the style of the published fork models, run end to end with random
weights (written as a .caffemodel) and compared with OpenCV's Caffe importer, which
runs the same files: MobileNet-SSD (depthwise convs, Normalize, PriorBox,
DetectionOutput), a ShuffleNet unit pair, the py-faster-rcnn test net (two inputs,
RPN with py-faster-rcnn's Python ProposalLayer, ROIPooling, heads), an R-FCN head
(PSROIPooling), a PSPNet pyramid (Interp) and an SE block (Axpy); a SegNet
encoder-decoder (pool mask + Upsample, BN) is checked piece by piece where OpenCV
lacks its layers. The corpus's real nets of these families run in test_corpus_run.py.
"""
from __future__ import annotations

import os

import cv2
import mxnet as mx
import numpy as np
import pytest

import caffe_compat as caffe
from caffe_compat.engine.network import CaffeNet
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
from caffe_compat.recipes import py_faster_rcnn
from caffe_compat.recipes.py_faster_rcnn.fast_rcnn.config import cfg

f32 = np.float32
FWD_TOL = 1e-5
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpus"))


def rel_err(mine, ref) -> float:
    mine, ref = np.asarray(mine, np.float64), np.asarray(ref, np.float64)
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    return float(np.linalg.norm(mine - ref) / max(np.linalg.norm(ref), 1e-30))


def inputs_text(shapes: dict) -> str:
    return "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape '
                   f'{{ {" ".join(f"dim: {d}" for d in s)} }} }} }}\n' for n, s in shapes.items())


def random_weights(net: CaffeNet, rng) -> list:
    """O(1)-activation random blobs for every layer (statistics positive where needed)."""
    out = []
    for layer in net.caffe_layers:
        blobs = []
        for i, p in enumerate(layer.blobs()):
            arr = rng.standard_normal(p.shape).astype(f32) * 0.5
            if arr.ndim >= 2 and layer.type not in ("BN",):
                arr *= f32(1.0 / np.sqrt(arr.size / arr.shape[0]))
            if layer.type == "BatchNorm":
                arr = [arr, np.abs(arr) + 0.5, np.array([1.0], f32)][i]
            if layer.type in ("BN", "Normalize") and i == 0:
                arr = np.abs(arr) + 0.5
            blobs.append(arr.astype(f32))
        if blobs:
            net.load_layer_blobs([(layer.name, blobs)])
            out.append(LayerWeights(layer.name, layer.type, blobs))
    return out


def build_pair(tmp_path, text: str, seed: int = 0, name: str = "net"):
    """Our net with random weights, and OpenCV's net of the same files."""
    pt = os.path.join(str(tmp_path), f"{name}.prototxt")
    cm = os.path.join(str(tmp_path), f"{name}.caffemodel")
    with open(pt, "w") as handle:
        handle.write(text)
    ours = CaffeNet.from_prototxt(pt)
    write_caffemodel(cm, random_weights(ours, np.random.default_rng(seed)))
    return ours, cv2.dnn.readNetFromCaffe(pt, cm), pt, cm


def cv2_outputs(cvnet, inputs: dict, layers: list) -> list:
    for name, value in inputs.items():
        cvnet.setInput(np.ascontiguousarray(value, f32), name)
    return list(cvnet.forward(layers))


def ours_outputs(net: CaffeNet, inputs: dict, blobs: list) -> list:
    net.set_outputs(blobs)
    out = net(*[mx.nd.array(inputs[n]) for n in net.input_names])
    out = out if isinstance(out, (list, tuple)) else [out]
    return [o.asnumpy() for o in out]


def conv(name, bottom, num, k=1, s=1, p=0, group=1, bias=True, kind="Convolution"):
    extra = "" if bias else " bias_term: false"
    grp = f" group: {group}" if group > 1 else ""
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ num_output: {num} kernel_size: {k} stride: {s} pad: {p}'
            f'{grp}{extra} }} }}\n')


def bn_scale(name, bottom):
    return (f'layer {{ name: "{name}/bn" type: "BatchNorm" bottom: "{bottom}" top: "{bottom}" '
            f'batch_norm_param {{ use_global_stats: true }} }}\n'
            f'layer {{ name: "{name}/scale" type: "Scale" bottom: "{bottom}" top: "{bottom}" '
            f'scale_param {{ bias_term: true }} }}\n')


def relu(name, bottom, kind="ReLU"):
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{bottom}" }}\n'


def detection_rows(a):
    a = a.reshape(-1, 7)
    a = a[~np.all(a == 0, axis=1)]
    keys = np.round(a, 5)                 # ties in score: order by the box too
    return a[np.lexsort((keys[:, 6], keys[:, 5], keys[:, 4], keys[:, 3], -keys[:, 2],
                         keys[:, 1], keys[:, 0]))]


# ---- MobileNet-SSD ---------------------------------------------------------------------
def mobilenet_ssd_text(num_classes=3) -> str:
    t = 'name: "MobileNet-SSD-tiny"\n' + inputs_text({"data": (1, 3, 24, 24)})
    t += conv("conv0", "data", 8, k=3, s=2, p=1, bias=False) + bn_scale("conv0", "conv0")
    t += relu("conv0/relu", "conv0", "ReLU6")
    t += conv("conv1/dw", "conv0", 8, k=3, p=1, group=8, bias=False, kind="ConvolutionDepthwise")
    t += bn_scale("conv1/dw", "conv1/dw") + relu("conv1/dw/relu", "conv1/dw")
    t += conv("conv1", "conv1/dw", 16) + relu("conv1/relu", "conv1")
    t += conv("conv2/dw", "conv1", 16, k=3, s=2, p=1, group=16, bias=False)
    t += relu("conv2/dw/relu", "conv2/dw") + conv("conv2", "conv2/dw", 16)
    t += relu("conv2/relu", "conv2")
    t += ('layer { name: "conv1_norm" type: "Normalize" bottom: "conv1" top: "conv1_norm" '
          'norm_param { across_spatial: false channel_shared: false '
          'scale_filler { type: "constant" value: 20 } } }\n')
    heads = [("conv1_norm", "min_size: 6 max_size: 12 aspect_ratio: 2 flip: true", 4),
             ("conv2", "min_size: 12 max_size: 20 aspect_ratio: 2 aspect_ratio: 3 flip: true", 6)]
    locs, confs, priors = [], [], []
    for feat, prior, num_priors in heads:
        for kind, width in (("loc", 4), ("conf", num_classes)):
            name = f"{feat}_mbox_{kind}"
            t += conv(name, feat, num_priors * width, k=3, p=1)
            t += (f'layer {{ name: "{name}_perm" type: "Permute" bottom: "{name}" '
                  f'top: "{name}_perm" permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}\n'
                  f'layer {{ name: "{name}_flat" type: "Flatten" bottom: "{name}_perm" '
                  f'top: "{name}_flat" flatten_param {{ axis: 1 }} }}\n')
            (locs if kind == "loc" else confs).append(f"{name}_flat")
        t += (f'layer {{ name: "{feat}_mbox_priorbox" type: "PriorBox" bottom: "{feat}" '
              f'bottom: "data" top: "{feat}_mbox_priorbox" prior_box_param {{ {prior} clip: false '
              f'variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5 }} }}\n')
        priors.append(f"{feat}_mbox_priorbox")
    for name, parts, axis in (("mbox_loc", locs, 1), ("mbox_conf", confs, 1),
                              ("mbox_priorbox", priors, 2)):
        bottoms = " ".join(f'bottom: "{p}"' for p in parts)
        t += (f'layer {{ name: "{name}" type: "Concat" {bottoms} top: "{name}" '
              f'concat_param {{ axis: {axis} }} }}\n')
    t += (f'layer {{ name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" '
          f'top: "mbox_conf_reshape" reshape_param {{ shape {{ dim: 0 dim: -1 dim: {num_classes} }} }} }}\n'
          'layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" '
          'top: "mbox_conf_softmax" softmax_param { axis: 2 } }\n'
          'layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" '
          'top: "mbox_conf_flatten" flatten_param { axis: 1 } }\n'
          'layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" '
          'bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out" '
          f'detection_output_param {{ num_classes: {num_classes} share_location: true '
          'background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 100 } '
          'code_type: CENTER_SIZE keep_top_k: 50 confidence_threshold: 0.3 } }\n')
    return t


def test_mobilenet_ssd_style_net_matches_opencv(tmp_path):
    ours, cvnet, pt, cm = build_pair(tmp_path, mobilenet_ssd_text(), seed=1)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 24, 24)).astype(f32)
    blobs = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox", "detection_out"]
    mine = ours_outputs(ours, {"data": x}, blobs)
    theirs = cv2_outputs(cvnet, {"data": x}, blobs)
    for name, a, b in zip(blobs[:3], mine, theirs):
        assert rel_err(a, b.reshape(a.shape)) <= FWD_TOL, name
    assert mine[3].shape[2] > 5               # some detections survive
    assert rel_err(detection_rows(mine[3]), detection_rows(theirs[3])) <= FWD_TOL
    # pycaffe runs it too, and backward reaches the input through Normalize, Permute,
    # depthwise convs and ReLU6 (DetectionOutput and PriorBox pass nothing back).
    forced = os.path.join(str(tmp_path), "forced.prototxt")
    with open(forced, "w") as handle:
        handle.write("force_backward: true\n" + mobilenet_ssd_text())
    net = caffe.Net(forced, cm, caffe.TEST)
    out = net.forward(data=x)
    assert np.array_equal(out["detection_out"], mine[3])
    net.blobs["mbox_loc"].diff[...] = 1.0
    net.blobs["mbox_conf_flatten"].diff[...] = 0.0
    diffs = net.backward(start="mbox_loc", diffs=["data"])
    assert np.isfinite(diffs["data"]).all() and np.abs(diffs["data"]).sum() > 0


# ---- SegNet ----------------------------------------------------------------------------
SEGNET = inputs_text({"data": (2, 3, 16, 20), "label": (2, 1, 16, 20)}) + """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "conv1_bn" type: "BN" bottom: "conv1" top: "conv1_bn" bn_param { bn_mode: INFERENCE } }
layer { name: "relu1" type: "ReLU" bottom: "conv1_bn" top: "conv1_bn" }
layer { name: "pool1" type: "Pooling" bottom: "conv1_bn" top: "pool1" top: "pool1_mask"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "upsample1" type: "Upsample" bottom: "conv2" bottom: "pool1_mask" top: "up1"
        upsample_param { scale: 2 } }
layer { name: "conv_decode" type: "Convolution" bottom: "up1" top: "conv_decode"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "conv_decode_bn" type: "BN" bottom: "conv_decode" top: "score" bn_param { bn_mode: INFERENCE } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
"""

SEGNET_ENCODER_CV2 = inputs_text({"data": (2, 3, 16, 20)}) + """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "conv1_bn" type: "Scale" bottom: "conv1" top: "conv1_bn" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1_bn" top: "conv1_bn" }
layer { name: "pool1" type: "Pooling" bottom: "conv1_bn" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
"""

SEGNET_DECODER_CV2 = inputs_text({"up1": (2, 6, 16, 20)}) + """
layer { name: "conv_decode" type: "Convolution" bottom: "up1" top: "conv_decode"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "conv_decode_bn" type: "Scale" bottom: "conv_decode" top: "score"
        scale_param { bias_term: true } }
"""


def test_segnet_style_net_pieces_match_opencv_and_unpooling(tmp_path):
    pt = os.path.join(str(tmp_path), "segnet.prototxt")
    cm = os.path.join(str(tmp_path), "segnet.caffemodel")
    with open(pt, "w") as handle:
        handle.write('name: "segnet-tiny"\n' + SEGNET)
    block = CaffeNet.from_prototxt(pt, phase=caffe.TRAIN)
    weights = random_weights(block, np.random.default_rng(3))
    write_caffemodel(cm, weights)
    net = caffe.Net(pt, cm, caffe.TRAIN)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (2, 3, 16, 20)).astype(f32)
    label = rng.integers(0, 4, (2, 1, 16, 20)).astype(f32)
    net.forward(data=x, label=label)
    # OpenCV runs the encoder with BN (INFERENCE) as the Scale layer it equals...
    cv_weights = [LayerWeights(w.name, "Scale" if w.type == "BN" else w.type,
                               [b.ravel() if w.type == "BN" else b for b in w.blobs])
                  for w in weights]
    for part, text, feeds, blob in (("enc", SEGNET_ENCODER_CV2, {"data": x}, "conv2"),
                                    ("dec", SEGNET_DECODER_CV2,
                                     {"up1": net.blobs["up1"].data}, "conv_decode_bn")):
        ppt = os.path.join(str(tmp_path), f"{part}.prototxt")
        pcm = os.path.join(str(tmp_path), f"{part}.caffemodel")
        with open(ppt, "w") as handle:
            handle.write(text)
        write_caffemodel(pcm, cv_weights)
        theirs = cv2_outputs(cv2.dnn.readNetFromCaffe(ppt, pcm), feeds, [blob])[0]
        mine = net.blobs["conv2" if part == "enc" else "score"].data
        assert rel_err(mine, theirs) <= FWD_TOL, part
    # ... and the unpooling puts conv2's values where pool1 found its maxima.
    act = net.blobs["conv1_bn"].data
    pooled = net.blobs["pool1"].data
    mask = net.blobs["pool1_mask"].data.astype(int)
    flat = act.reshape(2, 6, -1)
    assert np.array_equal(np.take_along_axis(flat, mask.reshape(2, 6, -1), axis=2),
                          pooled.reshape(2, 6, -1))
    up = np.zeros_like(flat)
    np.put_along_axis(up, mask.reshape(2, 6, -1), net.blobs["conv2"].data.reshape(2, 6, -1), 2)
    assert np.array_equal(net.blobs["up1"].data, up.reshape(act.shape))
    # Backward (SoftmaxWithLoss -> BN -> conv -> Upsample -> conv -> pool -> BN -> conv):
    net.backward()
    up_diff = net.blobs["up1"].diff.reshape(2, 6, -1)
    assert np.array_equal(net.blobs["conv2"].diff.reshape(2, 6, -1),
                          np.take_along_axis(up_diff, mask.reshape(2, 6, -1), axis=2))
    scale = net.params["conv1_bn"][0].data
    assert rel_err(net.blobs["conv1"].diff, scale * net.blobs["conv1_bn"].diff) <= 1e-4
    assert np.abs(net.params["conv1"][0].diff).sum() > 0


# ---- ShuffleNet ------------------------------------------------------------------------
def shufflenet_text() -> str:
    t = 'name: "shufflenet-units"\n' + inputs_text({"data": (2, 12, 12, 12)})
    # stride-2 unit: group conv, shuffle, depthwise, group conv; concat with avg-pool
    t += conv("u1/gconv1", "data", 12, group=3, bias=False) + bn_scale("u1/gconv1", "u1/gconv1")
    t += relu("u1/relu1", "u1/gconv1")
    t += ('layer { name: "u1/shuffle" type: "ShuffleChannel" bottom: "u1/gconv1" '
          'top: "u1/shuffle" shuffle_channel_param { group: 3 } }\n')
    t += conv("u1/dw", "u1/shuffle", 12, k=3, s=2, p=1, group=12, bias=False,
              kind="ConvolutionDepthwise") + bn_scale("u1/dw", "u1/dw")
    t += conv("u1/gconv2", "u1/dw", 12, group=3, bias=False) + bn_scale("u1/gconv2", "u1/gconv2")
    t += ('layer { name: "u1/pool" type: "Pooling" bottom: "data" top: "u1/pool" '
          'pooling_param { pool: AVE kernel_size: 3 stride: 2 } }\n'
          'layer { name: "u1/concat" type: "Concat" bottom: "u1/pool" bottom: "u1/gconv2" '
          'top: "u1" }\n')
    t += relu("u1/relu", "u1")
    # stride-1 unit with the residual sum
    t += conv("u2/gconv1", "u1", 24, group=3, bias=False) + bn_scale("u2/gconv1", "u2/gconv1")
    t += relu("u2/relu1", "u2/gconv1")
    t += ('layer { name: "u2/shuffle" type: "ShuffleChannel" bottom: "u2/gconv1" '
          'top: "u2/shuffle" shuffle_channel_param { group: 3 } }\n')
    t += conv("u2/dw", "u2/shuffle", 24, k=3, p=1, group=24, bias=False,
              kind="ConvolutionDepthwise") + bn_scale("u2/dw", "u2/dw")
    t += conv("u2/gconv2", "u2/dw", 24, group=3, bias=False) + bn_scale("u2/gconv2", "u2/gconv2")
    t += ('layer { name: "u2/sum" type: "Eltwise" bottom: "u1" bottom: "u2/gconv2" top: "u2" }\n')
    t += relu("u2/relu", "u2")
    return t


def test_shufflenet_units_match_opencv(tmp_path):
    ours, cvnet, _, _ = build_pair(tmp_path, shufflenet_text(), seed=5)
    x = np.random.default_rng(6).uniform(-1, 1, (2, 12, 12, 12)).astype(f32)
    mine = ours_outputs(ours, {"data": x}, ["u1", "u2"])
    theirs = cv2_outputs(cvnet, {"data": x}, ["u1/relu", "u2/relu"])
    for a, b in zip(mine, theirs):
        assert rel_err(a, b) <= FWD_TOL


# ---- py-faster-rcnn ----------------------------------------------------------------------
def faster_rcnn_text(proposal: str) -> str:
    t = 'name: "faster-rcnn-tiny"\n' + inputs_text({"data": (1, 3, 64, 80), "im_info": (1, 3)})
    t += conv("conv1", "data", 8, k=3, p=1) + relu("relu1", "conv1")
    t += ('layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" '
          'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    t += conv("conv2", "pool1", 8, k=3, p=1) + relu("relu2", "conv2")
    t += ('layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" '
          'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    t += conv("conv3", "pool2", 8, k=3, p=1) + relu("relu3", "conv3")
    t += ('layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3" '
          'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    t += conv("conv4", "pool3", 8, k=3, p=1) + relu("relu4", "conv4")
    t += ('layer { name: "pool4" type: "Pooling" bottom: "conv4" top: "feat" '
          'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')      # stride 16
    t += conv("rpn_conv", "feat", 8, k=3, p=1) + relu("rpn_relu", "rpn_conv")
    t += conv("rpn_cls_score", "rpn_conv", 18) + conv("rpn_bbox_pred", "rpn_conv", 36)
    t += ('layer { name: "rpn_cls_score_reshape" type: "Reshape" bottom: "rpn_cls_score" '
          'top: "rpn_cls_score_reshape" reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }\n'
          'layer { name: "rpn_cls_prob" type: "Softmax" bottom: "rpn_cls_score_reshape" '
          'top: "rpn_cls_prob" }\n'
          'layer { name: "rpn_cls_prob_reshape" type: "Reshape" bottom: "rpn_cls_prob" '
          'top: "rpn_cls_prob_reshape" reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }\n')
    t += ('layer { name: "proposal" bottom: "rpn_cls_prob_reshape" bottom: "rpn_bbox_pred" '
          f'bottom: "im_info" top: "rois" {proposal} }}\n')
    t += ('layer { name: "roi_pool" type: "ROIPooling" bottom: "feat" bottom: "rois" '
          'top: "pool5" roi_pooling_param { pooled_w: 3 pooled_h: 3 spatial_scale: 0.0625 } }\n'
          'layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" '
          'inner_product_param { num_output: 16 } }\n'
          'layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }\n'
          'layer { name: "cls_score" type: "InnerProduct" bottom: "fc6" top: "cls_score" '
          'inner_product_param { num_output: 3 } }\n'
          'layer { name: "bbox_pred" type: "InnerProduct" bottom: "fc6" top: "bbox_pred" '
          'inner_product_param { num_output: 12 } }\n'
          'layer { name: "cls_prob" type: "Softmax" bottom: "cls_score" top: "cls_prob" }\n')
    return t


PY_PROPOSAL = ("type: 'Python' python_param { module: 'rpn.proposal_layer' "
               "layer: 'ProposalLayer' param_str: \"'feat_stride': 16\" }")
CPP_PROPOSAL = ('type: "Proposal" proposal_param { feat_stride: 16 base_size: 16 min_size: 0 '
                'ratio: 0.5 ratio: 1 ratio: 2 scale: 8 scale: 16 scale: 32 pre_nms_topn: 100 '
                'post_nms_topn: 20 nms_thresh: 0.7 }')


@pytest.fixture
def rpn_cfg():
    """cfg.TEST as py-faster-rcnn's test scripts would set it (restored afterwards)."""
    saved = dict(cfg.TEST)
    cfg.TEST.update(RPN_PRE_NMS_TOP_N=100, RPN_POST_NMS_TOP_N=20, RPN_MIN_SIZE=0)
    yield cfg
    cfg.TEST.clear()
    cfg.TEST.update(saved)


def test_py_faster_rcnn_test_net_with_python_proposal_layer(tmp_path, rpn_cfg):
    py_faster_rcnn.install_modules()
    ours_cpp, cvnet, cpp_pt, cm = build_pair(tmp_path, faster_rcnn_text(CPP_PROPOSAL), seed=7,
                                             name="cpp")
    py_pt = os.path.join(str(tmp_path), "py.prototxt")
    with open(py_pt, "w") as handle:
        handle.write(faster_rcnn_text(PY_PROPOSAL))
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (1, 3, 64, 80)).astype(f32)
    im_info = np.array([[64, 80, 1.0]], f32)
    # py-faster-rcnn's test net through pycaffe, proposals from the Python layer
    net = caffe.Net(py_pt, cm, caffe.TEST)
    out = net.forward(data=x, im_info=im_info)
    rois = net.blobs["rois"].data.copy()
    assert rois.ndim == 2 and rois.shape[1] == 5 and 0 < rois.shape[0] <= 20
    assert out["cls_prob"].shape == (rois.shape[0], 3)
    # the same net with the C++ Proposal layer (ours) and in OpenCV
    mine = ours_outputs(ours_cpp, {"data": x, "im_info": im_info},
                        ["rois", "cls_prob", "bbox_pred"])
    assert np.array_equal(mine[0], rois)
    assert rel_err(mine[1], out["cls_prob"]) <= FWD_TOL
    theirs = cv2_outputs(cvnet, {"data": x, "im_info": im_info},
                         ["proposal", "cls_prob", "bbox_pred"])
    n = rois.shape[0]          # OpenCV pads its proposals to post_nms_topn rows
    for a, b in zip([rois, out["cls_prob"], out["bbox_pred"]], theirs):
        assert rel_err(a, b[:n]) <= FWD_TOL
    # Backward (engine block, autograd): the proposals pass no gradient, so the input's
    # gradient equals that of the same net fed these ROIs as an input.
    heads = [mx.nd.array(rng.standard_normal(o.shape)) for o in mine[1:]]
    fixed_pt = os.path.join(str(tmp_path), "fixed.prototxt")
    with open(fixed_pt, "w") as handle:
        handle.write(faster_rcnn_text(PY_PROPOSAL).replace(
            "layer { name: \"proposal\"", inputs_text({"rois": rois.shape}) + "#"))
    grads = []
    for path, feeds in ((py_pt, {"data": x, "im_info": im_info}),
                        (fixed_pt, {"data": x, "im_info": im_info, "rois": rois})):
        block = CaffeNet.from_prototxt(path, weights=cm)
        block.set_outputs(["cls_prob", "bbox_pred"])
        args = [mx.nd.array(feeds[n]) for n in block.input_names]
        for a in args:
            a.attach_grad()
        with mx.autograd.record():
            outs = block(*args)
        mx.autograd.backward(list(outs), head_grads=heads)
        grads.append(args[block.input_names.index("data")].grad.asnumpy())
    assert np.abs(grads[0]).sum() > 0
    assert rel_err(grads[0], grads[1]) <= 1e-4
    # ... and through pycaffe's layer-by-layer backward, whose diffs follow the
    # data-dependent number of proposals
    fb_pt = os.path.join(str(tmp_path), "py_fb.prototxt")
    with open(fb_pt, "w") as handle:
        handle.write("force_backward: true\n" + faster_rcnn_text(PY_PROPOSAL))
    fb = caffe.Net(fb_pt, cm, caffe.TEST)
    fb.forward(data=x, im_info=im_info)
    assert fb.blobs["cls_prob"].diff.shape == fb.blobs["cls_prob"].data.shape
    diffs = fb.backward(cls_prob=heads[0].asnumpy(), bbox_pred=heads[1].asnumpy())
    assert rel_err(diffs["data"], grads[1]) <= 1e-4


def test_python_proposal_module_paths(tmp_path):
    """``module: 'rpn.proposal_layer'`` resolves through LIB_DIR on sys.path as well, and
    the layer reads the one shared cfg."""
    import importlib
    import sys
    names = [n for n in list(sys.modules) if n == "rpn" or n.startswith(("rpn.", "fast_rcnn"))]
    saved = {n: sys.modules.pop(n) for n in names}
    sys.path.insert(0, py_faster_rcnn.LIB_DIR)
    try:
        layer_module = importlib.import_module("rpn.proposal_layer")
        config = importlib.import_module("fast_rcnn.config")
        from caffe_compat.recipes.py_faster_rcnn.rpn import proposal_layer
        assert layer_module is proposal_layer and config.cfg is cfg
    finally:
        sys.path.remove(py_faster_rcnn.LIB_DIR)
        sys.modules.update(saved)


# ---- R-FCN -----------------------------------------------------------------------------
RFCN = inputs_text({"data": (1, 3, 32, 40), "rois": (6, 5)}) + """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "rfcn_cls" type: "Convolution" bottom: "conv1" top: "rfcn_cls"
        convolution_param { num_output: 27 kernel_size: 1 } }
layer { name: "rfcn_bbox" type: "Convolution" bottom: "conv1" top: "rfcn_bbox"
        convolution_param { num_output: 72 kernel_size: 1 } }
layer { name: "psroipooled_cls_rois" type: "PSROIPooling" bottom: "rfcn_cls" bottom: "rois"
        top: "psroipooled_cls_rois"
        psroi_pooling_param { spatial_scale: 0.5 output_dim: 3 group_size: 3 } }
layer { name: "ave_cls_score_rois" type: "Pooling" bottom: "psroipooled_cls_rois"
        top: "cls_score" pooling_param { pool: AVE kernel_size: 3 stride: 3 } }
layer { name: "psroipooled_loc_rois" type: "PSROIPooling" bottom: "rfcn_bbox" bottom: "rois"
        top: "psroipooled_loc_rois"
        psroi_pooling_param { spatial_scale: 0.5 output_dim: 8 group_size: 3 } }
layer { name: "ave_bbox_pred_rois" type: "Pooling" bottom: "psroipooled_loc_rois"
        top: "bbox_pred" pooling_param { pool: AVE kernel_size: 3 stride: 3 } }
layer { name: "cls_prob" type: "Softmax" bottom: "cls_score" top: "cls_prob" }
"""


def test_rfcn_head_matches_opencv(tmp_path):
    ours, cvnet, _, _ = build_pair(tmp_path, 'name: "rfcn-head"\n' + RFCN, seed=9)
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, (1, 3, 32, 40)).astype(f32)
    rois = np.array([[0, 0, 0, 39, 31], [0, 3.4, 5.6, 20.2, 18.9], [0, 10, 2, 38, 30],
                     [0, -4, -6, 12, 40], [0, 22, 14, 24, 16], [0, 5, 5, 5, 5]], f32)
    feeds = {"data": x, "rois": rois}
    mine = ours_outputs(ours, feeds, ["cls_prob", "bbox_pred"])
    theirs = cv2_outputs(cvnet, feeds, ["cls_prob", "ave_bbox_pred_rois"])
    for a, b in zip(mine, theirs):
        assert rel_err(a, b.reshape(a.shape)) <= FWD_TOL


# ---- PSPNet ------------------------------------------------------------------------------
def pspnet_text() -> str:
    t = 'name: "pspnet-pyramid"\n' + inputs_text({"data": (1, 3, 48, 48)})
    t += conv("conv1", "data", 8, k=3, s=2, p=1) + bn_scale("conv1", "conv1")
    t += relu("relu1", "conv1")                                          # 24 x 24
    branches = ['bottom: "conv1"']
    for bins in (1, 2, 3, 6):
        k = 24 // bins
        name = f"conv5_3_pool{bins}"
        t += (f'layer {{ name: "{name}" type: "Pooling" bottom: "conv1" top: "{name}" '
              f'pooling_param {{ pool: AVE kernel_size: {k} stride: {k} }} }}\n')
        t += conv(f"{name}_conv", name, 4) + relu(f"{name}_relu", f"{name}_conv")
        t += (f'layer {{ name: "{name}_interp" type: "Interp" bottom: "{name}_conv" '
              f'top: "{name}_interp" interp_param {{ height: 24 width: 24 }} }}\n')
        branches.append(f'bottom: "{name}_interp"')
    t += f'layer {{ name: "concat" type: "Concat" {" ".join(branches)} top: "concat" }}\n'
    t += conv("conv6", "concat", 5)
    t += ('layer { name: "conv6_interp" type: "Interp" bottom: "conv6" top: "conv6_interp" '
          'interp_param { zoom_factor: 2 } }\n')
    return t


def test_pspnet_pyramid_matches_opencv(tmp_path):
    ours, cvnet, _, _ = build_pair(tmp_path, pspnet_text(), seed=11)
    x = np.random.default_rng(12).uniform(-1, 1, (1, 3, 48, 48)).astype(f32)
    mine = ours_outputs(ours, {"data": x}, ["concat", "conv6_interp"])
    theirs = cv2_outputs(cvnet, {"data": x}, ["concat", "conv6_interp"])
    assert mine[1].shape == (1, 5, 47, 47)
    for a, b in zip(mine, theirs):
        assert rel_err(a, b) <= FWD_TOL


# ---- SENet -------------------------------------------------------------------------------
SE_COMMON = inputs_text({"data": (2, 8, 6, 6)}) + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "gap" type: "Pooling" bottom: "conv" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "down" type: "Convolution" bottom: "gap" top: "down" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "down_relu" type: "ReLU" bottom: "down" top: "down" }
layer { name: "up" type: "Convolution" bottom: "down" top: "up" convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "prob" type: "Sigmoid" bottom: "up" top: "prob" }
"""
SE_AXPY = SE_COMMON + ('layer { name: "axpy" type: "Axpy" bottom: "prob" bottom: "conv" '
                       'bottom: "data" top: "out" }\n')
SE_SCALE = SE_COMMON + """
layer { name: "prob_flat" type: "Flatten" bottom: "prob" top: "prob_flat" }
layer { name: "scale" type: "Scale" bottom: "conv" bottom: "prob_flat" top: "scaled" scale_param { axis: 0 } }
layer { name: "sum" type: "Eltwise" bottom: "scaled" bottom: "data" top: "out" }
"""


def test_se_block_with_axpy_matches_opencv_scale_eltwise(tmp_path):
    ours, _, _, cm = build_pair(tmp_path, 'name: "se"\n' + SE_AXPY, seed=13, name="axpy")
    pt = os.path.join(str(tmp_path), "scale.prototxt")
    with open(pt, "w") as handle:
        handle.write('name: "se"\n' + SE_SCALE)
    cvnet = cv2.dnn.readNetFromCaffe(pt, cm)
    x = np.random.default_rng(14).uniform(-1, 1, (2, 8, 6, 6)).astype(f32)
    mine = ours_outputs(ours, {"data": x}, ["out"])[0]
    theirs = cv2_outputs(cvnet, {"data": x}, ["sum"])[0]
    assert rel_err(mine, theirs) <= FWD_TOL
