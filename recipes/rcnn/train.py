"""Training R-CNN: fine-tuning on warped windows, feature caches, SVMs, bbox regression.

The steps of R-CNN's ``experiments/`` scripts, on caffe-compat:

1. **fine-tuning** (:func:`write_window_file`, :func:`finetune_train_net`,
   :func:`finetune`): every ground truth and proposal of the training images goes into a
   window file (``rcnn_make_window_file.m``'s format: ``# index``, path, channels, height,
   width, count, then ``label overlap x1 y1 x2 y2`` with the 1-based class of the best
   overlapping ground truth, 0 when there is none). Caffe's ``WindowData`` layer samples
   from it: windows with IoU >= 0.5 are positives of that class, the rest (IoU < 0.5)
   background, 32 positives and 96 background windows per batch of 128 (the paper's
   Section 2.3 and ``pascal_finetune_train.prototxt``: fg_threshold = bg_threshold = 0.5,
   fg_fraction 0.25, context_pad 16, warp, mirror). The classifier is replaced by a
   ``num_classes + 1``-way one (lr x10, bias x20); SGD at 0.001 dropping x0.1 every
   20000 iterations (``pascal_finetune_solver.prototxt``);
2. **feature caches** (:mod:`.features`): pool5 and fc7 of every box of every image;
3. **SVMs** (:func:`train_svms_from_caches`, :mod:`.svm`): fc7 scaled to mean norm 20,
   hard negative mining; the result written as an ``fc-rcnn`` InnerProduct on fc7
   (:func:`write_rcnn_model`), i.e. a deploy prototxt + caffemodel like
   ``bvlc_reference_rcnn_ilsvrc13``;
4. **bounding-box regression** (:func:`train_bbox_regressor_from_caches`): ridge on pool5;
5. **evaluation** (:func:`evaluate_detector`): PASCAL VOC AP (:mod:`.voc_eval`).

:func:`train_rcnn` runs steps 2 to 4 for a fine-tuned (or ImageNet) net::

    det = RCNNDetector.from_files("finetuned_deploy.prototxt", "finetuned.caffemodel",
                                  ["__background__"] + classes, score_blob="fc8_rcnn")
    out = train_rcnn(det, annotations, proposals, classes, "work/")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.formats.voc_xml import read_voc_xml
from caffe_compat.proto import caffe_pb2
from caffe_compat.recipes.rcnn.bbox_regression import (MIN_OVERLAP, RIDGE_LAMBDA, BBoxRegressor,
                                                       regression_examples, train_bbox_regressor)
from caffe_compat.recipes.rcnn.detector import ILSVRC_MEAN_BGR
from caffe_compat.recipes.rcnn.features import (RoiEntry, cache_features, feature_norm_mean,
                                                load_cache, roi_entry)
from caffe_compat.recipes.rcnn.svm import ImageFeatures, SVMDetectors, SVMSettings, train_svms

#: R-CNN fine-tuning (pascal_finetune_train.prototxt / _solver.prototxt).
FG_THRESHOLD = 0.5
BG_THRESHOLD = 0.5
FG_FRACTION = 0.25
FINETUNE_BATCH = 128
HEAD_LR_MULT = (10.0, 20.0)


class TrainingError(CaffeCompatError):
    """Bad training input (annotations, nets, caches)."""


@dataclass
class Annotation:
    """One training/test image: ground-truth boxes (xmin, ymin, xmax, ymax; 0-based,
    inclusive), their 1-based classes, "difficult" flags, and the image size (H, W)."""
    image: str
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    size: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        diff = np.asarray(self.difficult, dtype=bool).reshape(-1)
        self.difficult = diff if len(diff) == len(self.labels) else np.zeros(len(self.labels), bool)
        if len(self.labels) != len(self.boxes):
            raise TrainingError(f"{self.image}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    def image_size(self) -> Tuple[int, int]:
        if self.size is None:
            from caffe_compat.images import read_bgr
            self.size = tuple(int(d) for d in read_bgr(self.image).shape[:2])
        return self.size


def read_voc_annotation(xml_path: str, class_names: Sequence[str], image_dir: str = "") -> Annotation:
    """A PASCAL VOC ``Annotations/*.xml`` (1-based pixel boxes) as an :class:`Annotation`
    (0-based); ``class_names`` without background, in label order."""
    parsed = read_voc_xml(xml_path)
    index = {name: i + 1 for i, name in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for obj in parsed.objects:
        if obj.name not in index:
            raise TrainingError(f"{xml_path}: object class {obj.name!r} is not one of the classes")
        boxes.append([v - 1 for v in obj.bndbox])
        labels.append(index[obj.name])
        difficult.append(obj.difficult)
    hw = (parsed.height, parsed.width) if parsed.width is not None else None
    image = os.path.join(image_dir, parsed.filename or "")
    return Annotation(image, np.array(boxes).reshape(-1, 4), np.array(labels, np.int64),
                      np.array(difficult, bool), hw)


# --------------------------------------------------------------------------- window file


def window_file_entry(index: int, image_path: str, size: Tuple[int, int], entry: RoiEntry,
                      channels: int = 3) -> str:
    """One image's block of a window file (``rcnn_make_window_file.m``): each box labelled
    with its best-overlapping class (1-based; 0 with overlap 0 when it overlaps nothing)."""
    lines = [f"# {index}", image_path, str(channels), str(int(size[0])), str(int(size[1])),
             str(len(entry.boxes))]
    if len(entry.boxes):
        best = entry.overlaps.argmax(axis=1)
        ov = entry.overlaps[np.arange(len(best)), best].astype(np.float64)
        for box, cls, o in zip(np.rint(entry.boxes).astype(np.int64), best, ov):
            label, o = (0, 0.0) if o < 1e-5 else (int(cls) + 1, float(o))
            lines.append(f"{label} {o:.3f} {box[0]} {box[1]} {box[2]} {box[3]}")
    return "\n".join(lines) + "\n"


def write_window_file(path: str, images: Iterable[Tuple[str, Tuple[int, int], RoiEntry]]) -> str:
    """Write a window file for Caffe's WindowData layer from ``(image path, (height,
    width), RoiEntry)`` triples (image indices from 0 in the order given)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, (image, size, entry) in enumerate(images):
            f.write(window_file_entry(i, image, size, entry))
    return path


def window_file_from_annotations(path: str, annotations: Sequence[Annotation],
                                 proposals: Union[Mapping[str, np.ndarray], Callable[[str], np.ndarray]],
                                 num_classes: int) -> str:
    """:func:`write_window_file` for annotated images and their proposals (a mapping or a
    callable image path -> (N, 4) boxes)."""
    def items():
        for a in annotations:
            props = proposals(a.image) if callable(proposals) else proposals[a.image]
            yield a.image, a.image_size(), roi_entry(a.boxes, a.labels, props, num_classes)
    return write_window_file(path, items())


# --------------------------------------------------------------------------- nets


def _read_param(deploy) -> caffe_pb2.NetParameter:
    from caffe_compat.formats.prototxt import read_net
    if isinstance(deploy, caffe_pb2.NetParameter):
        out = caffe_pb2.NetParameter()
        out.CopyFrom(deploy)
        return out
    return read_net(str(deploy)).param


def _input_layer(net: caffe_pb2.NetParameter) -> Tuple[int, Tuple[int, ...]]:
    for i, lp in enumerate(net.layer):
        if lp.type == "Input":
            if len(lp.top) != 1 or not lp.input_param.shape:
                break
            return i, tuple(lp.input_param.shape[0].dim)
    raise TrainingError(f"net {net.name!r} needs one Input layer with one 4-d top (a deploy "
                        "prototxt)")


def _last_inner_product(net: caffe_pb2.NetParameter) -> int:
    for i in range(len(net.layer) - 1, -1, -1):
        if net.layer[i].type == "InnerProduct":
            return i
    raise TrainingError(f"net {net.name!r} has no InnerProduct classifier to replace")


def finetune_train_net(deploy, window_file: str, num_classes: int, *,
                       batch_size: int = FINETUNE_BATCH, context_pad: int = 16,
                       fg_threshold: float = FG_THRESHOLD, bg_threshold: float = BG_THRESHOLD,
                       fg_fraction: float = FG_FRACTION, mean_values: Sequence[float] = ILSVRC_MEAN_BGR,
                       mirror: bool = True, head_name: str = "fc8_rcnn", root_folder: str = ""
                       ) -> caffe_pb2.NetParameter:
    """R-CNN's fine-tuning net from a deploy prototxt (path or NetParameter): the Input
    becomes a WindowData layer on ``window_file`` (crop = the input size), the last
    InnerProduct a new ``num_classes + 1``-way ``head_name`` (gaussian 0.01, lr x10 / x20),
    the layers after it go, a SoftmaxWithLoss on the label is added."""
    net = _read_param(deploy)
    index, shape = _input_layer(net)
    if len(shape) != 4 or shape[2] != shape[3]:
        raise TrainingError(f"input shape {shape}: WindowData needs square N x C x S x S crops")
    head = _last_inner_product(net)
    old = net.layer[index]
    data = caffe_pb2.LayerParameter(name="data", type="WindowData")
    data.top.extend([old.top[0], "label"])
    data.include.add().phase = caffe_pb2.TRAIN
    wp = data.window_data_param
    wp.source, wp.batch_size = window_file, batch_size
    wp.fg_threshold, wp.bg_threshold, wp.fg_fraction = fg_threshold, bg_threshold, fg_fraction
    wp.context_pad, wp.crop_mode = context_pad, "warp"
    if root_folder:
        wp.root_folder = root_folder
    tp = data.transform_param
    tp.crop_size, tp.mirror = int(shape[2]), mirror
    tp.mean_value.extend(float(v) for v in mean_values)
    out = caffe_pb2.NetParameter(name=(net.name or "net") + "_rcnn_finetune")
    out.layer.add().CopyFrom(data)
    for i, lp in enumerate(net.layer):
        if i == index or i > head:
            continue
        new = out.layer.add()
        new.CopyFrom(lp)
        if i == head:
            new.name = head_name
            new.ClearField("param")
            new.inner_product_param.num_output = num_classes + 1
            new.inner_product_param.weight_filler.type = "gaussian"
            new.inner_product_param.weight_filler.std = 0.01
            new.inner_product_param.bias_filler.type = "constant"
            new.inner_product_param.bias_filler.value = 0.0
            for lr, decay in zip(HEAD_LR_MULT, (1.0, 0.0)):
                spec = new.param.add()
                spec.lr_mult, spec.decay_mult = lr, decay
            head_top = new.top[0]
        elif lp.type in ("Convolution", "InnerProduct") and not lp.param:
            for lr, decay in ((1.0, 1.0), (2.0, 0.0)):   # Caffe reference nets' multipliers
                spec = new.param.add()
                spec.lr_mult, spec.decay_mult = lr, decay
    loss = out.layer.add()
    loss.name, loss.type = "loss", "SoftmaxWithLoss"
    loss.bottom.extend([head_top, "label"])
    loss.top.append("loss")
    return out


def finetune_solver(train_net: caffe_pb2.NetParameter, snapshot_prefix: str, *,
                    base_lr: float = 0.001, stepsize: int = 20000, max_iter: int = 100000,
                    snapshot: int = 10000, display: int = 20) -> caffe_pb2.SolverParameter:
    """``pascal_finetune_solver.prototxt``'s settings with the train net inline."""
    sp = caffe_pb2.SolverParameter()
    sp.net_param.CopyFrom(train_net)
    sp.base_lr, sp.lr_policy, sp.gamma, sp.stepsize = base_lr, "step", 0.1, stepsize
    sp.momentum, sp.weight_decay = 0.9, 0.0005
    sp.max_iter, sp.snapshot, sp.display = max_iter, snapshot, display
    sp.snapshot_prefix = snapshot_prefix
    return sp


def finetune(solver_param: caffe_pb2.SolverParameter, weights: Optional[str], out_path: str,
             iters: Optional[int] = None) -> str:
    """Run the fine-tuning solver from ``weights`` (e.g. the ImageNet CaffeNet) for
    ``iters`` iterations (default: max_iter); saves the trained net to ``out_path``."""
    from caffe_compat.solvers.solver import Solver
    solver = Solver(None, param=solver_param)
    if weights:
        solver.net.copy_from(weights)
    solver.step(int(iters if iters is not None else solver_param.max_iter))
    solver.net.save(out_path)
    return out_path


def rcnn_deploy_net(deploy, num_classes: int, *, feature_blob: str = "fc7",
                    score_name: str = "fc-rcnn") -> caffe_pb2.NetParameter:
    """A deploy net ending in the SVMs: the layers up to the last one writing
    ``feature_blob`` (fc7 after relu7/drop7), then InnerProduct ``score_name`` with
    ``num_classes`` outputs (``bvlc_reference_rcnn_ilsvrc13``'s layout)."""
    net = _read_param(deploy)
    last = max((i for i, lp in enumerate(net.layer) if feature_blob in lp.top), default=None)
    if last is None:
        raise TrainingError(f"net {net.name!r} has no blob {feature_blob!r}")
    out = caffe_pb2.NetParameter(name=net.name or "R-CNN")
    for lp in net.layer[:last + 1]:
        out.layer.add().CopyFrom(lp)
    fc = out.layer.add()
    fc.name, fc.type = score_name, "InnerProduct"
    fc.bottom.append(feature_blob)
    fc.top.append(score_name)
    fc.inner_product_param.num_output = num_classes
    return out


def write_rcnn_model(deploy, weights: str, detectors: SVMDetectors, out_prototxt: str,
                     out_caffemodel: str, *, feature_blob: str = "fc7",
                     score_name: str = "fc-rcnn") -> Tuple[str, str]:
    """Write the detection net (:func:`rcnn_deploy_net`) and its weights: the feature
    layers' blobs from ``weights`` plus the SVMs as ``score_name``'s weight and bias
    (feature scaling folded in, bias x bias_mult: :meth:`SVMDetectors.inner_product_blobs`)."""
    from caffe_compat.formats.caffemodel import LayerWeights, read_caffemodel, write_caffemodel
    from caffe_compat.formats.prototxt import write_net
    weight, bias = detectors.inner_product_blobs()
    net = rcnn_deploy_net(deploy, len(bias), feature_blob=feature_blob, score_name=score_name)
    names = {lp.name for lp in net.layer}
    kept = [lw for lw in read_caffemodel(weights).layers if lw.name in names and lw.blobs
            and lw.name != score_name]
    kept.append(LayerWeights(score_name, "InnerProduct", [weight, bias]))
    for path in (out_prototxt, out_caffemodel):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_net(net, out_prototxt)
    write_caffemodel(out_caffemodel, kept, net_param=net)
    return out_prototxt, out_caffemodel


# --------------------------------------------------------------------------- from caches


def train_svms_from_caches(cache_paths: Sequence[str], num_classes: int, *, blob: str = "fc7",
                           settings: SVMSettings = SVMSettings(),
                           log: Optional[Callable[[str], None]] = None) -> SVMDetectors:
    """SVMs with hard negative mining over cached ``blob`` features (scaled to mean norm
    ``settings.target_norm``)."""
    norm = feature_norm_mean(cache_paths, blob)
    scale = settings.target_norm / norm

    def load(i: int) -> ImageFeatures:
        c = load_cache(cache_paths[i], [blob])
        return ImageFeatures(c.feat[blob].astype(np.float64) * scale, c.overlaps, c.gt_classes)

    return train_svms(len(cache_paths), load, num_classes, norm, settings, log=log)


def train_bbox_regressor_from_caches(cache_paths: Sequence[str], num_classes: int, *,
                                     blob: str = "pool5", lam: float = RIDGE_LAMBDA,
                                     min_overlap: float = MIN_OVERLAP) -> BBoxRegressor:
    """R-CNN's regressors on cached ``blob`` features: each box paired with its best
    ground truth when their IoU is above ``min_overlap``."""
    xs, ys, os_, cs = [], [], [], []
    for path in cache_paths:
        c = load_cache(path, [blob])
        gt = c.gt_classes > 0
        ex = regression_examples(c.boxes, c.boxes[gt], c.gt_classes[gt], min_overlap)
        xs.append(c.feat[blob][ex.indices])
        ys.append(ex.targets)
        os_.append(ex.overlaps)
        cs.append(ex.classes)
    return train_bbox_regressor(np.concatenate(xs), np.concatenate(ys), np.concatenate(os_),
                                np.concatenate(cs), num_classes,
                                feature_norm_mean(cache_paths, blob), lam=lam,
                                min_overlap=min_overlap, blob=blob)


@dataclass
class RCNNTrainingOutput:
    prototxt: str
    caffemodel: str
    bbox_regressor: str
    caches: List[str]
    class_names: List[str]


def train_rcnn(detector, annotations: Sequence[Annotation],
               proposals: Union[Mapping[str, np.ndarray], Callable[[str], np.ndarray]],
               class_names: Sequence[str], work_dir: str, *, deploy=None, weights: Optional[str] = None,
               svm_blob: str = "fc7", bbox_blob: str = "pool5",
               settings: SVMSettings = SVMSettings(),
               log: Optional[Callable[[str], None]] = None) -> RCNNTrainingOutput:
    """Steps 2-4: cache ``svm_blob`` and ``bbox_blob`` features of every ground truth and
    proposal with ``detector``'s net (``work_dir/cache/<i>.h5``, reused when present),
    train the SVMs and the bounding-box regressors, and write ``work_dir/rcnn_deploy.prototxt``
    + ``rcnn.caffemodel`` (from ``deploy``/``weights``, the net the detector runs) and
    ``bbox_regressor.npz``."""
    from caffe_compat import io as caffe_io
    if deploy is None or weights is None:
        raise TrainingError("train_rcnn needs deploy= and weights= (the net the detector runs) "
                            "to write the detection model")
    say = log or (lambda _m: None)
    k = len(class_names)
    caches = []
    for i, a in enumerate(annotations):
        path = os.path.join(work_dir, "cache", f"{i:06d}.h5")
        if not os.path.isfile(path):
            props = proposals(a.image) if callable(proposals) else proposals[a.image]
            entry = roi_entry(a.boxes, a.labels, props, k)
            cache_features(detector, caffe_io.load_image(a.image), entry, path,
                           (bbox_blob, svm_blob), a.image)
        caches.append(path)
    say(f"{len(caches)} feature caches in {os.path.join(work_dir, 'cache')}")
    svms = train_svms_from_caches(caches, k, blob=svm_blob, settings=settings, log=say)
    regressor = train_bbox_regressor_from_caches(caches, k, blob=bbox_blob)
    reg_path = regressor.save(os.path.join(work_dir, "bbox_regressor.npz"))
    proto, model = write_rcnn_model(deploy, weights, svms,
                                    os.path.join(work_dir, "rcnn_deploy.prototxt"),
                                    os.path.join(work_dir, "rcnn.caffemodel"), feature_blob=svm_blob)
    return RCNNTrainingOutput(proto, model, reg_path, caches, list(class_names))


def evaluate_detector(detector, annotations: Sequence[Annotation],
                      proposals: Union[Mapping[str, np.ndarray], Callable[[str], np.ndarray]],
                      class_names: Sequence[str], *, use_07_metric: bool = True,
                      nms_overlap: float = 0.3):
    """PASCAL VOC AP of ``detector`` (every NMS survivor counts, no score threshold) on
    annotated images; detector classes must be ``class_names`` in order."""
    from caffe_compat import io as caffe_io
    found = []
    for a in annotations:
        props = proposals(a.image) if callable(proposals) else proposals[a.image]
        found.append(detector.detect(caffe_io.load_image(a.image), props, threshold=-np.inf,
                                     nms_overlap=nms_overlap))
    return score_detections(found, annotations, class_names, use_07_metric=use_07_metric)


def score_detections(found: Sequence, annotations: Sequence[Annotation],
                     class_names: Sequence[str], *, use_07_metric: bool = True):
    """PASCAL VOC AP of detections already made (``found[i]``: the
    :class:`~caffe_compat.recipes.rcnn.detector.ImageDetections` of ``annotations[i]``,
    made with ``threshold=-np.inf`` so that every NMS survivor counts)."""
    from caffe_compat.recipes.rcnn.voc_eval import Detections, GroundTruth, evaluate_detections
    dets = [Detections(f.boxes, f.labels, f.scores) for f in found]
    gts = [GroundTruth(a.boxes, a.labels - 1, a.difficult) for a in annotations]
    return evaluate_detections(dets, gts, class_names, use_07_metric=use_07_metric)


__all__ = ["Annotation", "RCNNTrainingOutput", "TrainingError", "evaluate_detector", "finetune",
           "finetune_solver", "finetune_train_net", "rcnn_deploy_net", "read_voc_annotation",
           "score_detections",
           "train_bbox_regressor_from_caches", "train_rcnn", "train_svms_from_caches",
           "window_file_entry", "window_file_from_annotations", "write_rcnn_model",
           "write_window_file"]
