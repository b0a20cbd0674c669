"""The shipped shapes models and test scenes (``recipes/shapes/data/``).

>>> det = rcnn_detector()                          # doctest: +SKIP
>>> seg = fcn_segmenter()                          # doctest: +SKIP
>>> [s.name for s in bundled_scenes()]                # doctest: +SKIP
['scene_0000', 'scene_0001', 'scene_0002', 'scene_0003']

The files are made by :mod:`.make_models` (see ``data/README.txt`` for what they are).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List

from caffe_compat.recipes.shapes.scenes import CLASSES

DATA_DIR = Path(__file__).resolve().parent / "data"
#: R-CNN: deploy net ending in the SVMs (``fc-rcnn`` on fc7), weights, pool5 regressors.
RCNN_PROTOTXT = DATA_DIR / "shapes_rcnn.prototxt"
RCNN_WEIGHTS = DATA_DIR / "shapes_rcnn.caffemodel"
RCNN_BBOX = DATA_DIR / "shapes_rcnn_bbox.npz"
#: Context padding of the R-CNN's 64 x 64 crops (R-CNN's 16 px of 227, scaled).
RCNN_CONTEXT_PAD = 4
#: FCN-8s: deploy net and weights.
FCN_PROTOTXT = DATA_DIR / "shapes_fcn8s.prototxt"
FCN_WEIGHTS = DATA_DIR / "shapes_fcn8s.caffemodel"
#: Class names of the FCN's scores (0 is background).
FCN_CLASSES = ("background",) + CLASSES


@dataclass(frozen=True)
class BundledScene:
    """A bundled held-out test scene: its picture, VOC XML and class-map PNG."""
    name: str
    image: Path
    annotation: Path
    segmentation: Path


def bundled_scenes() -> List[BundledScene]:
    """The bundled test scenes (``data/scene_*.jpg`` with their ``.xml`` and ``.png``)."""
    scenes = []
    for image in sorted(glob.glob(str(DATA_DIR / "scene_*.jpg"))):
        stem = os.path.splitext(image)[0]
        scenes.append(BundledScene(os.path.basename(stem), Path(image), Path(stem + ".xml"),
                                Path(stem + ".png")))
    if not scenes:
        raise FileNotFoundError(2, "No bundled test scenes (scene_*.jpg)", str(DATA_DIR))
    return scenes


def read_annotations(scenes: List[BundledScene]):
    """The scenes' boxes as R-CNN training/evaluation :class:`Annotation` objects."""
    from caffe_compat.recipes.rcnn.train import read_voc_annotation
    return [read_voc_annotation(str(s.annotation), CLASSES, str(s.image.parent)) for s in scenes]


def rcnn_detector(ctx=None, **kwargs):
    """The shipped R-CNN as an :class:`~caffe_compat.recipes.rcnn.detector.RCNNDetector`
    (SVM scores over the three shape classes, bounding-box regression on pool5)."""
    from caffe_compat.recipes.rcnn.bbox_regression import BBoxRegressor
    from caffe_compat.recipes.rcnn.detector import RCNNDetector
    kwargs.setdefault("context_pad", RCNN_CONTEXT_PAD)
    kwargs.setdefault("batch_size", 256)
    return RCNNDetector.from_files(str(RCNN_PROTOTXT), str(RCNN_WEIGHTS), list(CLASSES), ctx=ctx,
                                   bbox_regressor=BBoxRegressor.load(str(RCNN_BBOX)), **kwargs)


def fcn_segmenter(ctx=None, **kwargs):
    """The shipped FCN-8s as a :class:`~caffe_compat.recipes.fcn.infer.Segmenter`."""
    from caffe_compat.recipes.fcn.infer import Segmenter
    return Segmenter.from_files(str(FCN_PROTOTXT), str(FCN_WEIGHTS), ctx=ctx, **kwargs)


__all__ = ["DATA_DIR", "FCN_CLASSES", "FCN_PROTOTXT", "FCN_WEIGHTS", "RCNN_BBOX",
           "RCNN_CONTEXT_PAD", "RCNN_PROTOTXT", "RCNN_WEIGHTS", "BundledScene", "fcn_segmenter",
           "rcnn_detector", "read_annotations", "bundled_scenes"]
