"""Fine-tune a localisation head on a VOC folder with Caffe's SGD solver, then predict
boxes and score them by IoU.

:func:`train_localizer` writes into ``out_dir``: ``train.prototxt``,
``deploy.prototxt``, ``solver.prototxt`` (Caffe's files, runnable by ``caffe-compat
train``), ``localizer.caffemodel`` and ``localizer.json`` (classes, preprocessing, the
mean training box). :class:`Localizer` loads that folder back::

    from caffe_compat.recipes.localize import train_localizer, Localizer
    loc = train_localizer(NetSource.from_zoo("bvlc_reference_caffenet"), "VOC2007",
                          "runs/loc", split="trainval", iters=2000, freeze="pool5")
    score = Localizer.load("runs/loc").evaluate("VOC2007", split="test")
    score.mean_iou, score.hit_rate, score.baseline_mean_iou

The baseline every score is reported against predicts the mean training box for every
image; ``hit_rate`` is the fraction of images with IoU >= 0.5 (the PASCAL criterion).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes.localize import boxes
from caffe_compat.recipes.localize.data import sample_targets
from caffe_compat.recipes.localize.head import HEAD, localization_params
from caffe_compat.recipes.localize.surgery import deploy_param
from caffe_compat.recipes.localize.voc import class_names, load_dataset, main_object
from caffe_compat.recipes.visualize.source import NetSource, Preprocessing, load_image

FORMAT = "caffe-compat-localizer/1"
META = "localizer.json"
WEIGHTS = "localizer.caffemodel"


def _solver_text(train_path: str, out_dir: str, iters: int, base_lr: float, momentum: float,
                 weight_decay: float, seed: int) -> str:
    step = max(1, (2 * iters) // 3)
    return "\n".join([
        f'net: "{train_path}"', 'type: "SGD"', f"base_lr: {base_lr!r}",
        'lr_policy: "step"', "gamma: 0.1", f"stepsize: {step}", f"momentum: {momentum!r}",
        f"weight_decay: {weight_decay!r}", f"max_iter: {iters}", "display: 0",
        "snapshot: 0", f'snapshot_prefix: "{os.path.join(out_dir, "localizer")}"',
        f"random_seed: {seed}", ""])


@dataclass
class TrainLog:
    """Loss after every iteration (``losses``) of a :func:`train_localizer` run."""
    losses: list = field(default_factory=list)


def train_localizer(source: NetSource, voc_dir: str, out_dir: str, *,
                    split: Optional[str] = None, iters: int = 1000, batch_size: int = 16,
                    base_lr: float = 0.001, momentum: float = 0.9, weight_decay: float = 5e-4,
                    per_class: bool = False, classes: Optional[Sequence[str]] = None,
                    replace: Optional[str] = None, freeze: Optional[str] = None,
                    head_lr_mult: float = 10.0, mirror: bool = True, cache: bool = False,
                    seed: int = 0, progress: Optional[Callable[[int, float], None]] = None
                    ) -> "Localizer":
    """Fine-tune ``source``'s net with a box-regression head (see :mod:`.head`) for
    ``iters`` SGD iterations on ``voc_dir`` (``split``: an ImageSets/Main list, default
    every annotation) and return the trained :class:`Localizer`. ``progress(iter,
    loss)`` is called after every iteration."""
    import caffe_compat as caffe
    from caffe_compat.formats.prototxt import write_net
    if iters < 1 or batch_size < 1:
        raise CaffeCompatError(f"iterations ({iters}) and batch size ({batch_size}) must be "
                               "positive")
    anns = load_dataset(voc_dir, split)
    classes = list(classes) if classes else class_names(anns)
    net_param = deploy_param(source.prototxt)
    input_shape = _input_shape(source, net_param)
    data_param = {"voc_dir": os.path.abspath(voc_dir), "split": split, "classes": classes,
                  "per_class": per_class, "batch_size": batch_size,
                  "input_shape": list(input_shape[1:]),
                  "preprocessing": source.preprocessing.to_json(), "mirror": mirror,
                  "shuffle": True, "seed": seed, "cache": cache}
    train_param, deploy = localization_params(net_param, json.dumps(data_param),
                                              len(classes) if per_class else None,
                                              replace, freeze, head_lr_mult)
    os.makedirs(out_dir, exist_ok=True)
    out_dir = os.path.abspath(out_dir)
    train_path = os.path.join(out_dir, "train.prototxt")
    write_net(train_param, train_path)
    write_net(deploy, os.path.join(out_dir, "deploy.prototxt"))
    solver_path = os.path.join(out_dir, "solver.prototxt")
    with open(solver_path, "w", encoding="utf-8") as f:
        f.write(_solver_text(train_path, out_dir, iters, base_lr, momentum, weight_decay, seed))
    mean_box = np.mean([boxes.encode(main_object(a).box, a.width, a.height) for a in anns],
                       axis=0)
    solver = caffe.SGDSolver(solver_path)
    if source.weights is not None:
        solver.net.copy_from(str(source.weights))
    bias = solver.net.params[HEAD][1].data
    bias[...] = np.tile(mean_box, bias.size // 4)       # start from the baseline box
    log = TrainLog()
    for i in range(iters):
        solver.step(1)
        loss = float(solver.net.blobs["loss"].data)
        log.losses.append(loss)
        if progress is not None:
            progress(i + 1, loss)
    solver.net.save(os.path.join(out_dir, WEIGHTS))
    meta = {"format": FORMAT, "classes": classes, "per_class": per_class,
            "input_shape": list(input_shape[1:]),
            "preprocessing": source.preprocessing.to_json(),
            "mean_box": [float(v) for v in mean_box], "deploy": "deploy.prototxt",
            "weights": WEIGHTS, "source": source.zoo_name or str(source.prototxt),
            "iters": iters, "final_loss": log.losses[-1] if log.losses else None}
    with open(os.path.join(out_dir, META), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    loc = Localizer.load(out_dir)
    loc.log = log
    return loc


def _input_shape(source: NetSource, net_param) -> tuple:
    for lp in net_param.layer:
        if lp.type == "Input" and lp.input_param.shape:
            dims = tuple(int(d) for d in lp.input_param.shape[0].dim)
            if len(dims) == 4:
                return dims
    raise CaffeCompatError(f"{source.prototxt}: no 4-D Input layer shape (N x C x H x W)")


@dataclass
class LocalizationScore:
    """IoU of predicted against ground-truth main-object boxes, and the same numbers for
    the mean-training-box baseline."""
    ious: np.ndarray
    baseline_ious: np.ndarray
    ids: list

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious))

    @property
    def hit_rate(self) -> float:
        return float(np.mean(self.ious >= 0.5))

    @property
    def baseline_mean_iou(self) -> float:
        return float(np.mean(self.baseline_ious))

    @property
    def baseline_hit_rate(self) -> float:
        return float(np.mean(self.baseline_ious >= 0.5))

    def summary(self) -> str:
        return (f"{len(self.ids)} images: mean IoU {self.mean_iou:.4f}, IoU >= 0.5 "
                f"{100 * self.hit_rate:.1f}% (mean-box baseline: {self.baseline_mean_iou:.4f}, "
                f"{100 * self.baseline_hit_rate:.1f}%)")


class Localizer:
    """A trained localisation head: ``predict`` boxes, ``evaluate`` on a VOC folder."""

    def __init__(self, block, meta: dict, folder: str):
        self.block = block
        self.meta = meta
        self.folder = folder
        self.classes = list(meta["classes"])
        self.per_class = bool(meta["per_class"])
        self.preprocessing = Preprocessing.from_json(meta["preprocessing"])
        self.mean_box = tuple(meta["mean_box"])
        self.input_shape = tuple(meta["input_shape"])
        self.log: Optional[TrainLog] = None

    @classmethod
    def load(cls, folder: str, ctx=None) -> "Localizer":
        """The localiser :func:`train_localizer` wrote to ``folder``."""
        from caffe_compat.engine.network import CaffeNet
        path = os.path.join(folder, META)
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No localizer.json (train one with caffe-compat "
                                       "localize train)", path)
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise CaffeCompatError(f"{path}: not a {FORMAT} file")
        block = CaffeNet.from_prototxt(os.path.join(folder, meta["deploy"]),
                                       weights=os.path.join(folder, meta["weights"]), ctx=ctx)
        return cls(block, meta, folder)

    def _fractions(self, images: list, class_indices: Optional[list] = None,
                   batch_size: int = 16) -> np.ndarray:
        from caffe_compat.recipes.visualize.backprop import activation, resolve_target
        shape = (batch_size,) + self.input_shape
        target = resolve_target(self.block, HEAD)
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            data = np.zeros(shape, np.float32)
            for i, img in enumerate(chunk):
                data[i] = self.preprocessing.apply(img, shape)
            pred = activation(self.block, data, target)[:len(chunk)]
            out.append(pred.reshape(len(chunk), -1))
        pred = np.concatenate(out)
        if not self.per_class:
            return pred[:, :4]
        if class_indices is None:
            raise CaffeCompatError("a per-class localiser needs the class of each image")
        return np.stack([pred[i, 4 * k:4 * k + 4] for i, k in enumerate(class_indices)])

    def predict(self, image_path: str, class_name: Optional[str] = None) -> tuple:
        """The box (x0, y0, x1, y1) in the image's pixels (per class: of ``class_name``)."""
        img = load_image(image_path)
        ks = None
        if self.per_class:
            if class_name not in self.classes:
                raise CaffeCompatError(f"class {class_name!r} is not one of {self.classes}")
            ks = [self.classes.index(class_name)]
        frac = self._fractions([img], ks, batch_size=1)[0]
        return boxes.decode(frac, img.shape[1], img.shape[0])

    def evaluate(self, voc_dir: str, split: Optional[str] = None,
                 batch_size: int = 16) -> LocalizationScore:
        """IoU of every image's predicted box (per class: the true class's) against its
        main object, and of the mean training box."""
        anns = load_dataset(voc_dir, split)
        images = [load_image(a.image) for a in anns]
        ks = None
        if self.per_class:
            for a in anns:
                sample_targets(a, self.classes, True)        # unknown class: clear error
            ks = [self.classes.index(main_object(a).name) for a in anns]
        fractions = self._fractions(images, ks, batch_size)
        ious, base = [], []
        for a, f in zip(anns, fractions):
            truth = main_object(a).box
            ious.append(boxes.iou(boxes.decode(f, a.width, a.height), truth))
            base.append(boxes.iou(boxes.decode(self.mean_box, a.width, a.height), truth))
        return LocalizationScore(np.asarray(ious), np.asarray(base), [a.id for a in anns])
