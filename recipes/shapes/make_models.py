"""Regenerate the shapes recipe's shipped data (``recipes/shapes/data/``) with the
R-CNN and FCN recipes' own training code.

    python -m caffe_compat.recipes.shapes.make_models               # everything
    python -m caffe_compat.recipes.shapes.make_models --only fcn    # or rcnn, scenes
    python -m caffe_compat.recipes.shapes.make_models --work-dir W  # keep the work files

Offline and deterministic: fixed numpy, Caffe-filler and MXNet seeds (two runs on one
machine and MXNet build give the same files; another BLAS or CPU kernel can change the
trained weights' last bits). What it does:

1. **scenes** (:mod:`.scenes`): a VOC folder in the work directory with 400 training
   scenes on :data:`~.scenes.TRAIN_PHOTOS` (seed 0; the first 200 in the segmentation
   set), 40 validation scenes (seed 1) and 4
   test scenes (seed 2) on the held-out :data:`~.scenes.HELD_OUT_PHOTOS`; the test
   scenes are copied to ``data/scene_<i>.{jpg,xml,png}``.
2. **R-CNN** (``recipes/rcnn/train.py``, step by step as R-CNN's ``experiments/``):
   selective search "fast" proposals of the 400 training scenes and the
   validation scenes; their window file
   (:func:`~..rcnn.train.window_file_from_annotations`); the fine-tuning net
   (:func:`~..rcnn.train.finetune_train_net`: WindowData crops of 64 x 64 with 4 px of
   context, 32 foreground / 96 background windows a batch, a 4-way ``fc8_rcnn``) of a
   small CaffeNet-shaped classifier (:func:`rcnn_classifier_prototxt`), trained by
   :func:`~..rcnn.train.finetune` for 2000 iterations (from the prototxt's fillers, as
   there is no ImageNet net offline, so with Adam at 1e-4 instead of fine-tuning's SGD);
   :func:`~..rcnn.train.train_rcnn` on the first 200 training scenes: pool5 and fc7
   caches, the per-class SVMs with hard negative mining (the paper's settings, written
   as ``fc-rcnn``) and the pool5 bounding-box regressors; VOC07 AP on the validation scenes
   (:func:`~..rcnn.train.evaluate_detector`). Shipped: ``shapes_rcnn_classifier.prototxt``,
   ``shapes_rcnn.prototxt``, ``shapes_rcnn.caffemodel``, ``shapes_rcnn_bbox.npz``.
3. **FCN** (``recipes/fcn``): ``caffe-compat fcn-train --model shapes-fcn8s`` on the
   VOC folder (:func:`~..fcn.solve.solve`: the ``up*`` layers bilinear, 4000 iterations of
   one of the 200 segmentation scenes with Adam, seg_tests on the validation split every
   1000 iterations), then
   ``caffe-compat fcn-score``. Shipped:
   ``shapes_fcn8s.prototxt`` (:func:`~..fcn.nets.shapes_fcn_deploy`) and
   ``shapes_fcn8s.caffemodel`` (the deploy layers' weights).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from caffe_compat.recipes.shapes import models, scenes

SEED = 0
SCENES = {"train": 400, "val": 40, "test": 4}
#: The R-CNN fine-tunes on all 400 training scenes and trains its SVMs and box regressors
#: on the first 200 (feature caches cost seconds a scene); the FCN trains on the first
#: 200 (the VOC folder's ImageSets/Segmentation/train.txt).
RCNN_SVM_SCENES = 200
FCN_TRAIN_SCENES = 200
#: R-CNN classifier input and fine-tuning settings.
RCNN_CROP = 64
RCNN_ITERS = 2000
RCNN_BASE_LR = 1e-4
#: The classifier's deploy prototxt, shipped beside the R-CNN (the fine-tuning input).
CLASSIFIER_PROTOTXT = "shapes_rcnn_classifier.prototxt"
#: FCN training iterations (one scene each).
FCN_ITERS = 4000
FCN_TEST_INTERVAL = 1000


def rcnn_classifier_prototxt(num_classes: int = len(scenes.CLASSES)) -> str:
    """The deploy prototxt of the R-CNN's classifier: CaffeNet's layout and blob names
    (conv1 .. pool5, fc6, fc7 with dropout, a ``num_classes + 1``-way ``fc8_rcnn``) at
    64 x 64 and a few dozen channels. conv1's gaussian filler is scaled for BGR 0..255
    input minus the mean."""
    def conv(name, bottom, num, kernel, stride=1, pad=0, std=None):
        filler = (f'weight_filler {{ type: "gaussian" std: {std} }}' if std
                  else 'weight_filler { type: "msra" }')
        return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
                f'  convolution_param {{ num_output: {num} kernel_size: {kernel} stride: {stride} '
                f'pad: {pad} {filler} }} }}\n'
                f'layer {{ name: "relu{name[-1]}" type: "ReLU" bottom: "{name}" top: "{name}" }}\n')

    def pool(name, bottom):
        return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}"\n'
                f'  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}\n')

    def fc(name, bottom, num, relu=True):
        text = (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}"\n'
                f'  inner_product_param {{ num_output: {num} weight_filler {{ type: "msra" }} }} }}\n')
        if relu:
            i = name[-1]
            text += (f'layer {{ name: "relu{i}" type: "ReLU" bottom: "{name}" top: "{name}" }}\n'
                     f'layer {{ name: "drop{i}" type: "Dropout" bottom: "{name}" top: "{name}"\n'
                     f'  dropout_param {{ dropout_ratio: 0.5 }} }}\n')
        return text

    std = round(float(np.sqrt(2.0 / 75) / 60), 5)
    return ('name: "shapes_rcnn"\n'
            "# caffe-compat's shapes R-CNN classifier (recipes/shapes/make_models.py):\n"
            "# CaffeNet's layout at 64 x 64. Input: BGR 0..255 minus the ILSVRC mean.\n"
            'layer { name: "data" type: "Input" top: "data"\n'
            f'  input_param {{ shape {{ dim: 1 dim: 3 dim: {RCNN_CROP} dim: {RCNN_CROP} }} }} }}\n'
            + conv("conv1", "data", 32, 5, stride=2, std=std) + pool("pool1", "conv1")
            + conv("conv2", "pool1", 64, 3, pad=1) + pool("pool2", "conv2")
            + conv("conv3", "pool2", 96, 3, pad=1) + pool("pool5", "conv3")
            + fc("fc6", "pool5", 256) + fc("fc7", "fc6", 256)
            + fc("fc8_rcnn", "fc7", num_classes + 1, relu=False))


# ---------------------------------------------------------------------------- scenes
def write_scenes(voc_dir: str, seed: int = SEED, counts: Dict[str, int] = SCENES) -> Dict[str, List[str]]:
    """The VOC folder of training, validation and test scenes; returns the ids per split."""
    ids = {}
    for offset, split in enumerate(("train", "val", "test")):
        photos = scenes.backgrounds(scenes.TRAIN_PHOTOS if split == "train"
                                    else scenes.HELD_OUT_PHOTOS)
        rng = np.random.RandomState(seed + offset)
        ids[split] = scenes.write_voc(voc_dir, split, [scenes.make_scene(rng, photos)
                                                       for _ in range(counts[split])],
                                      segmented=FCN_TRAIN_SCENES if split == "train" else None)
    return ids


def bundle_test_scenes(voc_dir: str, ids: List[str], out_dir: Path) -> List[Path]:
    """Copy the test scenes to ``out_dir/scene_<i>.{jpg,xml,png}`` (the XML's filename
    updated)."""
    import xml.etree.ElementTree as ET
    for old in out_dir.glob("scene_*"):
        old.unlink()
    written = []
    for i, idx in enumerate(ids):
        stem = out_dir / f"scene_{i:04d}"
        shutil.copyfile(os.path.join(voc_dir, "JPEGImages", idx + ".jpg"), f"{stem}.jpg")
        shutil.copyfile(os.path.join(voc_dir, "SegmentationClass", idx + ".png"), f"{stem}.png")
        tree = ET.parse(os.path.join(voc_dir, "Annotations", idx + ".xml"))
        tree.getroot().find("filename").text = stem.name + ".jpg"
        tree.write(f"{stem}.xml", encoding="unicode")
        written += [Path(f"{stem}.{ext}") for ext in ("jpg", "xml", "png")]
    return written


def read_split(voc_dir: str, ids: List[str]):
    from caffe_compat.recipes.rcnn.train import read_voc_annotation
    return [read_voc_annotation(os.path.join(voc_dir, "Annotations", i + ".xml"), scenes.CLASSES,
                                os.path.join(voc_dir, "JPEGImages")) for i in ids]


# ---------------------------------------------------------------------------- R-CNN
def proposals_of(annotations, cache: str, log: Callable[[str], None]) -> Dict[str, np.ndarray]:
    """Selective search "fast" boxes of every image (cached in ``cache``, an .npz)."""
    from caffe_compat import io as caffe_io
    from caffe_compat.recipes.rcnn.detector import proposals_for_image
    found = dict(np.load(cache)) if os.path.isfile(cache) else {}
    t0 = time.time()
    for a in annotations:
        key = os.path.basename(a.image)
        if key not in found:
            found[key] = proposals_for_image(caffe_io.load_image(a.image), "fast")
    np.savez(cache, **found)
    log(f"selective search: {sum(len(found[os.path.basename(a.image)]) for a in annotations)} "
        f"proposals of {len(annotations)} scenes ({time.time() - t0:.0f}s)")
    return {a.image: found[os.path.basename(a.image)] for a in annotations}


def train_rcnn_model(voc_dir: str, ids: Dict[str, List[str]], work: str, out_dir: Path,
                     iters: int = RCNN_ITERS, seed: int = SEED,
                     log: Callable[[str], None] = print) -> float:
    """Steps 2a-2d of the module docstring; returns the validation mAP."""
    from caffe_compat.recipes.rcnn import train as rcnn_train
    from caffe_compat.recipes.rcnn.detector import RCNNDetector
    os.makedirs(work, exist_ok=True)
    train_set = read_split(voc_dir, ids["train"])
    val_set = read_split(voc_dir, ids["val"])
    proposals = proposals_of(train_set + val_set, os.path.join(work, "proposals.npz"), log)
    classes = list(scenes.CLASSES)

    deploy = str(out_dir / CLASSIFIER_PROTOTXT)
    Path(deploy).write_text(rcnn_classifier_prototxt())
    window_file = rcnn_train.window_file_from_annotations(
        os.path.join(work, "window_file.txt"), train_set, proposals, len(classes))
    net = rcnn_train.finetune_train_net(deploy, window_file, len(classes),
                                        context_pad=models.RCNN_CONTEXT_PAD)
    solver = rcnn_train.finetune_solver(net, os.path.join(work, "finetune"), base_lr=RCNN_BASE_LR,
                                        stepsize=iters * 2 // 3, max_iter=iters, snapshot=0,
                                        display=100)
    solver.random_seed = seed
    solver.type, solver.momentum2 = "Adam", 0.999    # from scratch: Adam, not fine-tuning SGD
    t0 = time.time()
    finetuned = rcnn_train.finetune(solver, None, os.path.join(work, "finetuned.caffemodel"))
    log(f"fine-tuned the classifier for {iters} iterations ({time.time() - t0:.0f}s)")

    t0 = time.time()
    shutil.rmtree(os.path.join(work, "rcnn"), ignore_errors=True)   # caches of older weights
    detector = RCNNDetector.from_files(deploy, finetuned, ["__background__"] + classes,
                                       score_blob="fc8_rcnn", context_pad=models.RCNN_CONTEXT_PAD,
                                       batch_size=256)
    out = rcnn_train.train_rcnn(detector, train_set[:RCNN_SVM_SCENES], proposals, classes,
                                os.path.join(work, "rcnn"), deploy=deploy, weights=finetuned,
                                log=log)
    log(f"SVMs and box regressors trained ({time.time() - t0:.0f}s)")
    shutil.copyfile(out.prototxt, out_dir / models.RCNN_PROTOTXT.name)
    shutil.copyfile(out.caffemodel, out_dir / models.RCNN_WEIGHTS.name)
    shutil.copyfile(out.bbox_regressor, out_dir / models.RCNN_BBOX.name)

    from caffe_compat.recipes.rcnn.bbox_regression import BBoxRegressor
    final = RCNNDetector.from_files(str(out_dir / models.RCNN_PROTOTXT.name),
                                    str(out_dir / models.RCNN_WEIGHTS.name), classes,
                                    context_pad=models.RCNN_CONTEXT_PAD, batch_size=256,
                                    bbox_regressor=BBoxRegressor.load(str(out_dir / models.RCNN_BBOX.name)))
    result = rcnn_train.evaluate_detector(final, val_set, proposals, classes)
    log("validation scenes, VOC07 AP:\n" + result.table())
    return result.mean_ap


# ---------------------------------------------------------------------------- FCN
def train_fcn_model(voc_dir: str, work: str, out_dir: Path, iters: int = FCN_ITERS,
                    test_interval: int = FCN_TEST_INTERVAL, seed: int = SEED) -> None:
    """Step 3: ``fcn-train`` and ``fcn-score`` on the VOC folder; writes the deploy files."""
    from caffe_compat.cli.main import main as cli
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.formats.prototxt import write_net
    from caffe_compat.recipes.fcn.nets import shapes_fcn_deploy
    os.makedirs(work, exist_ok=True)
    cli(["fcn-train", "--model", "shapes-fcn8s", "--voc-dir", voc_dir, "--val-split", "val",
         "--iters", str(iters), "--test-interval", str(test_interval), "--work-dir", work])
    snapshot = os.path.join(work, "snapshot", f"train_iter_{iters}.caffemodel")
    prototxt = out_dir / models.FCN_PROTOTXT.name
    write_net(shapes_fcn_deploy(), str(prototxt))
    weights = out_dir / models.FCN_WEIGHTS.name
    CaffeNet.from_prototxt(str(prototxt), weights=snapshot).save_caffemodel(str(weights))
    cli(["fcn-score", "--model", "shapes-fcn8s", "--weights", str(weights), "--voc-dir", voc_dir,
         "--split", "val", "--per-class"])


# ---------------------------------------------------------------------------- main
def seed_everything(seed: int) -> None:
    import mxnet as mx
    import caffe_compat
    np.random.seed(seed)
    mx.random.seed(seed)
    caffe_compat.set_random_seed(seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=models.DATA_DIR)
    p.add_argument("--work-dir", help="where scenes, caches and snapshots go (default: a "
                                      "temporary folder, removed at the end)")
    p.add_argument("--only", choices=("scenes", "rcnn", "fcn"), action="append",
                   help="regenerate only this part (repeatable; the scenes are always written "
                        "to the work folder)")
    p.add_argument("--rcnn-iters", type=int, default=RCNN_ITERS)
    p.add_argument("--fcn-iters", type=int, default=FCN_ITERS)
    p.add_argument("--train-scenes", type=int, default=SCENES["train"])
    p.add_argument("--val-scenes", type=int, default=SCENES["val"])
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    import tempfile
    from caffe_compat.solvers.solver import log_like_caffe
    log_like_caffe()
    parts = set(args.only or ("scenes", "rcnn", "fcn"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tmp = None if args.work_dir else tempfile.mkdtemp(prefix="shapes-models-")
    work = args.work_dir or tmp
    try:
        voc = os.path.join(work, "scenes")
        ids = write_scenes(voc, args.seed, dict(SCENES, train=args.train_scenes,
                                                val=args.val_scenes))
        if "scenes" in parts:
            for path in bundle_test_scenes(voc, ids["test"], args.out_dir):
                print(f"wrote {path}")
        if "rcnn" in parts:
            seed_everything(args.seed)
            mean_ap = train_rcnn_model(voc, ids, os.path.join(work, "rcnn"), args.out_dir,
                                       args.rcnn_iters, args.seed)
            print(f"wrote the R-CNN to {args.out_dir}: validation mAP@0.5 {mean_ap:.3f}")
        if "fcn" in parts:
            seed_everything(args.seed)
            train_fcn_model(voc, os.path.join(work, "fcn"), args.out_dir, args.fcn_iters)
            print(f"wrote the FCN to {args.out_dir}")
        for name in (models.RCNN_WEIGHTS.name, models.FCN_WEIGHTS.name):
            path = args.out_dir / name
            if path.is_file():
                print(f"{name}: {path.stat().st_size / 1e6:.2f} MB")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
