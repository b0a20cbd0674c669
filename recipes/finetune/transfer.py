"""Transfer learning in the three ways the course teaches, from one call.

* ``linear``: a linear (softmax) classifier on the features of one layer of the frozen
  pretrained net (:mod:`.linear`);
* ``top``: fine-tune the top of the net with Caffe's solver: the layer ``layer`` and
  everything above it learn, everything below keeps ``lr_mult: 0``;
* ``all``: fine-tune every layer (the flickr-style example).

In every mode the classifier (the last InnerProduct, e.g. ``fc8``) is replaced by a new
one named ``<fc8>_<task>`` with one output per class (lr_mult 10/20, as the flickr
example), the rest starts from the pretrained weights. The output folder gets a
deployable net::

    OUTDIR/deploy.prototxt      the net with the new head and a Softmax ("prob")
    OUTDIR/weights.caffemodel   its weights
    OUTDIR/labels.txt           class names, one per line (line i = class i)
    OUTDIR/train.txt, val.txt   the split as Caffe list files (path label)
    OUTDIR/finetune.json        settings, preprocessing and accuracy per epoch
    OUTDIR/train_val.prototxt, solver.prototxt   (top/all) what the solver ran

>>> from caffe_compat.recipes.finetune import SourceModel, finetune, load_classifier
>>> result = finetune(SourceModel.from_zoo("bvlc_reference_caffenet"), "flowers/",
...                   "out/", mode="top", epochs=5)                       # doctest: +SKIP
>>> clf = load_classifier("out/")    # a caffe.Classifier        # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2
from caffe_compat.recipes.finetune import surgery
from caffe_compat.recipes.finetune.dataset import (Dataset, Sample, read_dataset,
                                                   stratified_split, write_list)
from caffe_compat.recipes.finetune.linear import DEFAULT_L2, SoftmaxRegression, extract_features
from caffe_compat.recipes.finetune.model import SourceModel, build_block
from caffe_compat.recipes.finetune.preprocess import Preprocess

MODES = ("linear", "top", "all")
#: Default epochs: L-BFGS iterations for ``linear``, passes over the data otherwise.
DEFAULT_EPOCHS = {"linear": 100, "top": 10, "all": 10}
#: The flickr-style example's solver: base_lr 0.001, momentum 0.9, weight_decay 0.0005.
DEFAULT_LR = 0.001
DEFAULT_MOMENTUM = 0.9
DEFAULT_WEIGHT_DECAY = 0.0005

Log = Optional[Callable[[str], None]]


@dataclass
class EpochRecord:
    epoch: int
    val_accuracy: float
    train_loss: Optional[float] = None


@dataclass
class FinetuneResult:
    """What :func:`finetune` wrote and measured."""
    out_dir: str
    mode: str
    deploy: str
    weights: str
    labels: str
    class_names: list
    val_accuracy: float
    history: list = field(default_factory=list)
    preprocess: Optional[Preprocess] = None

    def classifier(self):
        """The result as a configured ``caffe.Classifier`` (see :func:`load_classifier`)."""
        return load_classifier(self.out_dir)


# ---- evaluation -------------------------------------------------------------------------
def predict(block, pre: Preprocess, paths: Sequence[str], batch_size: int) -> np.ndarray:
    """Class index the deploy ``block`` gives each image (Caffe TEST preprocessing)."""
    import mxnet as mx
    params = list(block.collect_params().values())
    ctx = params[0].list_ctx()[0]
    out = []
    for batch in pre.batches(list(paths), batch_size):
        prob = block(mx.nd.array(batch, ctx=ctx, dtype="float32"))
        out.append(prob.reshape((prob.shape[0], -1)).argmax(axis=1).asnumpy().astype(np.int64))
    return np.concatenate(out)


def accuracy(block, pre: Preprocess, samples: Sequence[Sample], batch_size: int) -> float:
    pred = predict(block, pre, [s.path for s in samples], batch_size)
    return float(np.mean(pred == np.array([s.label for s in samples])))


def share_params(target, source) -> None:
    """Make ``target``'s layers use ``source``'s Parameters, by layer name (shapes must
    agree): the deploy block then always sees the solver's current weights."""
    theirs = source.layers_by_name()
    for layer in target.caffe_layers:
        src = theirs.get(layer.name)
        if src is None or not layer.blob_names:
            continue
        for mine, their in zip(layer.blob_names, src.blob_names):
            p = getattr(src, their)
            if p.shape != getattr(layer, mine).shape:
                raise CaffeCompatError(f'layer "{layer.name}": blob shape {p.shape} in the '
                                       f"train net, {getattr(layer, mine).shape} in deploy")
            layer.share_blob(mine, p)
    target._clear_cached_op()


# ---- the recipe -----------------------------------------------------------------------
def _blob_counts(block) -> dict:
    return {layer.name: len(layer.blob_names) for layer in block.caffe_layers}


def _head_weights_required(deploy: caffe_pb2.NetParameter, spec: surgery.HeadSpec,
                           counts: dict) -> list[str]:
    return [n for n in surgery.learnable_layers(deploy, counts) if n != spec.name]


def train_from_layer(deploy: caffe_pb2.NetParameter, spec: surgery.HeadSpec, counts: dict,
                     layer: Optional[str]) -> str:
    """``top`` mode's first learning layer: ``layer``, or by default the last learnable
    layer below the new head (fc7 on CaffeNet and VGG)."""
    learnable = surgery.learnable_layers(deploy, counts)
    body = [n for n in learnable if n != spec.name]
    if layer is None:
        return body[-1] if body else spec.name
    names = [lp.name for lp in deploy.layer]
    if layer not in names or layer == names[0] or names.index(layer) > names.index(spec.name):
        raise CaffeCompatError(f"--layer {layer!r} is no layer below the new classifier; "
                               f"learnable layers: {', '.join(body + [spec.name])}")
    return layer


def frozen_layers(deploy: caffe_pb2.NetParameter, counts: dict, first: str) -> list[str]:
    """Learnable layers before ``first`` (they get lr_mult 0)."""
    names = [lp.name for lp in deploy.layer]
    cut = names.index(first)
    return [n for n in names[:cut] if counts.get(n, 0)]


def _split(dataset: Dataset, val: Optional[Union[str, Dataset]], val_fraction: float,
           seed: int) -> tuple[list, list]:
    if val is None:
        return stratified_split(dataset, val_fraction, seed)
    val_ds = val if isinstance(val, Dataset) else read_dataset(val)
    if os.path.isdir(val_ds.source) and tuple(val_ds.class_names) != tuple(dataset.class_names):
        raise CaffeCompatError(f"validation folder {val_ds.source} has classes "
                               f"{list(val_ds.class_names)}, the training data "
                               f"{list(dataset.class_names)}")
    if any(s.label >= dataset.num_classes for s in val_ds.samples):
        raise CaffeCompatError(f"validation data {val_ds.source} uses labels the training "
                               "data lacks")
    return list(dataset.samples), list(val_ds.samples)


def finetune(source: SourceModel, data: Union[str, Dataset], out_dir: str, *,
             mode: str = "top", layer: Optional[str] = None, epochs: Optional[int] = None,
             batch_size: int = 32, lr: Optional[float] = None,
             momentum: float = DEFAULT_MOMENTUM, weight_decay: float = DEFAULT_WEIGHT_DECAY,
             l2: float = DEFAULT_L2, val: Optional[Union[str, Dataset]] = None,
             val_fraction: float = 0.2, task: Optional[str] = None, resize: Optional[int] = None,
             seed: int = 0, log: Log = print,
             progress: Optional[Callable[[int, int], None]] = None) -> FinetuneResult:
    """Transfer ``source`` to the classes of ``data``; write a deployable net to ``out_dir``.

    ``data``: an ImageNet-style folder or a Caffe list file (or a :class:`Dataset`);
    ``val``: explicit validation data, else a stratified ``val_fraction`` split
    (deterministic for ``seed``). ``layer``: the feature layer (linear) or the first
    layer that learns (top). ``epochs``: L-BFGS iterations (linear) or passes over the
    training images (top/all). ``lr``: the solver's base_lr (the head learns 10x/20x).
    ``progress(done, total)`` is called after every iteration.
    """
    if mode not in MODES:
        raise CaffeCompatError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if batch_size <= 0:
        raise CaffeCompatError("batch size must be positive")
    if mode == "all" and layer:
        raise CaffeCompatError("--layer chooses the feature layer (linear) or the first "
                               "layer that learns (top); mode 'all' trains every layer")
    dataset = data if isinstance(data, Dataset) else read_dataset(data)
    train, val_samples = _split(dataset, val, val_fraction, seed)
    epochs = int(epochs if epochs is not None else DEFAULT_EPOCHS[mode])
    if epochs <= 0:
        raise CaffeCompatError("epochs must be positive")
    log = log or (lambda _msg: None)
    task = task or surgery.task_name(Path(dataset.source).stem if os.path.isfile(dataset.source)
                                     else Path(dataset.source).name)
    pre = source.preprocess(resize)
    spec = surgery.head_spec(source.net, dataset.num_classes, task)
    cut = surgery.cut_blob(source.net, layer) if (mode == "linear" and layer) \
        else surgery.classifier_cut(source.net)
    deploy = surgery.deploy_net(source.net, cut, spec)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_list = write_list(train, out / "train.txt").resolve()
    write_list(val_samples, out / "val.txt")
    labels_path = out / "labels.txt"
    labels_path.write_text("".join(f"{n}\n" for n in dataset.class_names), encoding="utf-8")
    log(f"{source.name}: {dataset.num_classes} classes, {len(train)} training and "
        f"{len(val_samples)} validation images; mode {mode}, new classifier {spec.name!r}")

    block = build_block(deploy)
    counts = _blob_counts(block)
    settings: dict = {"mode": mode, "epochs": epochs, "batch_size": batch_size, "seed": seed}
    if mode == "linear":
        source.load_into(block, required=_head_weights_required(deploy, spec, counts))
        history = _linear(block, deploy, cut, spec, pre, train, val_samples, dataset.num_classes,
                          batch_size, epochs, l2, log, progress)
        settings.update(layer=cut.blob, l2=l2)
    else:
        first = train_from_layer(deploy, spec, counts, layer) if mode == "top" else None
        frozen = frozen_layers(deploy, counts, first) if mode == "top" else []
        lr = DEFAULT_LR if lr is None else float(lr)
        history = _solve(source, block, deploy, spec, counts, frozen, pre, str(train_list),
                         len(train), val_samples, out, epochs, batch_size, lr, momentum,
                         weight_decay, seed, log, progress)
        settings.update(first_trained_layer=first, frozen=frozen, base_lr=lr,
                        momentum=momentum, weight_decay=weight_decay)

    block.set_outputs()
    final = accuracy(block, pre, val_samples, batch_size)
    deploy_path, weights_path = out / "deploy.prototxt", out / "weights.caffemodel"
    from caffe_compat.formats.prototxt import write_net
    write_net(deploy, str(deploy_path))
    block.save_caffemodel(str(weights_path))
    result = FinetuneResult(str(out), mode, str(deploy_path), str(weights_path), str(labels_path),
                            list(dataset.class_names), final, history, pre)
    summary = {"source": source.name, "task": task, "head": spec.name, "prob": spec.prob,
               "classes": list(dataset.class_names), "train_images": len(train),
               "val_images": len(val_samples), "val_accuracy": final,
               "history": [asdict(h) for h in history], "preprocess": pre.to_json(), **settings}
    (out / "finetune.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log(f"validation accuracy {final:.4f}; wrote {deploy_path}, {weights_path}, {labels_path}")
    return result


def _linear(block, deploy, cut: surgery.Cut, spec: surgery.HeadSpec, pre: Preprocess,
            train: list, val: list, num_classes: int, batch_size: int, epochs: int,
            l2: float, log, progress) -> list[EpochRecord]:
    """Features of ``cut.blob`` -> L-BFGS softmax regression -> the head's weights."""
    end = deploy.layer[len(deploy.layer) - 3].name       # the last body layer (before head, prob)
    train_x = extract_features(block, cut.blob, end, pre.batches([s.path for s in train], batch_size))
    val_x = extract_features(block, cut.blob, end, pre.batches([s.path for s in val], batch_size))
    train_y = np.array([s.label for s in train])
    val_y = np.array([s.label for s in val])
    log(f"features: {cut.blob} ({train_x.shape[1]} values per image)")
    history: list[EpochRecord] = []
    report_every = max(1, epochs // 10)

    def on_iteration(it: int, model: SoftmaxRegression) -> None:
        if progress is not None:
            progress(it, epochs)
        if it % report_every == 0 or it == epochs:
            acc = model.accuracy(val_x, val_y)
            history.append(EpochRecord(it, acc, model.loss))
            log(f"epoch {it}/{epochs}: train loss {model.loss:.4f}, val accuracy {acc:.4f}")

    model = SoftmaxRegression.fit(train_x, train_y, num_classes, l2=l2, max_iter=epochs,
                                  callback=on_iteration)
    if not history or history[-1].epoch != model.iterations:
        acc = model.accuracy(val_x, val_y)
        history.append(EpochRecord(model.iterations, acc, model.loss))
        log(f"L-BFGS converged after {model.iterations} iterations: train loss "
            f"{model.loss:.4f}, val accuracy {acc:.4f}")
    import mxnet as mx
    head = block.layers_by_name()[spec.name]
    weight, bias = model.inner_product()
    w_param, b_param = head.blobs()
    w_param.set_data(mx.nd.array(weight.reshape(w_param.shape), dtype="float32"))
    b_param.set_data(mx.nd.array(bias.reshape(b_param.shape), dtype="float32"))
    return history


def solver_param(train: caffe_pb2.NetParameter, lr: float, momentum: float,
                 weight_decay: float, max_iter: int, seed: int) -> caffe_pb2.SolverParameter:
    """An SGD solver (fixed rate) over the inline train net."""
    sp = caffe_pb2.SolverParameter()
    sp.net_param.CopyFrom(train)
    sp.type = "SGD"
    sp.base_lr = lr
    sp.lr_policy = "fixed"
    sp.momentum = momentum
    sp.weight_decay = weight_decay
    sp.max_iter = max_iter
    sp.display = 0
    sp.snapshot = 0
    sp.random_seed = seed
    return sp


def _solve(source: SourceModel, block, deploy, spec: surgery.HeadSpec, counts: dict,
           frozen: list, pre: Preprocess, train_list: str, n_train: int, val: list, out: Path,
           epochs: int, batch_size: int, lr: float, momentum: float, weight_decay: float,
           seed: int, log, progress) -> list[EpochRecord]:
    """Caffe's solver on a generated train net (ImageData reading ``train_list``)."""
    from caffe_compat.formats.prototxt import write_net
    from caffe_compat.solvers import SGDSolver
    image_blob = surgery.input_layer(deploy).top[0]
    label = surgery.unused_blob_name(deploy, "label")
    data = surgery.image_data_layer(
        surgery.input_layer(deploy).name, [image_blob, label], pre.image_data_param(train_list, batch_size, shuffle=True),
        pre.transform_param(train=True))
    train = surgery.train_net(deploy, spec, data, label, frozen, counts)
    per_epoch = math.ceil(n_train / batch_size)
    sp = solver_param(train, lr, momentum, weight_decay, per_epoch * epochs, seed)
    write_net(train, str(out / "train_val.prototxt"))
    on_disk = caffe_pb2.SolverParameter()
    on_disk.CopyFrom(sp)
    on_disk.ClearField("net_param")
    on_disk.net = "train_val.prototxt"
    (out / "solver.prototxt").write_text(str(on_disk), encoding="utf-8")
    if frozen:
        log(f"frozen (lr_mult 0): {', '.join(frozen)}")
    import mxnet as mx
    mx.random.seed(seed)       # Dropout masks come from MXNet's generator
    solver = SGDSolver(None, param=sp)
    try:
        source.load_into(solver.net.block, required=[n for n in surgery.learnable_layers(deploy, counts)
                                                     if n != spec.name])
        share_params(block, solver.net.block)
        history = []
        total = per_epoch * epochs
        for epoch in range(1, epochs + 1):
            losses = []
            for _ in range(per_epoch):
                solver.step(1)
                losses.append(solver.smoothed_loss)
                if progress is not None:
                    progress(solver.iter, total)
            acc = accuracy(block, pre, val, batch_size)
            history.append(EpochRecord(epoch, acc, float(np.mean(losses))))
            log(f"epoch {epoch}/{epochs}: train loss {np.mean(losses):.4f}, "
                f"val accuracy {acc:.4f}")
        return history
    finally:
        for layer in solver.net.block.caffe_layers:
            close = getattr(layer, "close", None)
            if close is not None:
                close()


def load_classifier(out_dir: str):
    """``caffe.Classifier`` over ``out_dir``'s deploy.prototxt + weights.caffemodel with
    the preprocessing it was trained with (mean, BGR channel swap, raw_scale 255,
    ``image_dims`` = the resize before the crop); ``.labels`` holds the class names."""
    from caffe_compat.pycaffe.classifier import Classifier
    out = Path(out_dir)
    summary = json.loads((out / "finetune.json").read_text(encoding="utf-8"))
    pre = summary["preprocess"]
    colour = pre["channels"] == 3
    clf = Classifier(str(out / "deploy.prototxt"), str(out / "weights.caffemodel"),
                     image_dims=tuple(pre["resize"]), mean=np.array(pre["mean"], dtype=np.float32),
                     raw_scale=255, channel_swap=(2, 1, 0) if colour else None)
    clf.labels = [line.rstrip("\n") for line in
                  (out / "labels.txt").read_text(encoding="utf-8").splitlines()]
    return clf
