"""The shapes scenes and the two models shipped for the offline demo (R-CNN, FCN-8s).

The models' figures on the bundled scenes are checked by tests/test_demo.py; here: the
scenes' truth, their VOC files as the recipes read them, the shipped files, and the
regeneration script end to end on a few scenes (twice: it must be deterministic)."""
from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

from caffe_compat.recipes.rcnn.train import read_voc_annotation
from caffe_compat.recipes.shapes import make_models, models
from caffe_compat.recipes.shapes import scenes as sc


def _scenes(n: int, seed: int = 3):
    rng = np.random.RandomState(seed)
    photos = sc.backgrounds(sc.HELD_OUT_PHOTOS)
    return [sc.make_scene(rng, photos) for _ in range(n)]


def test_scene_boxes_and_class_map_describe_the_same_shapes():
    for scene in _scenes(12):
        seg = scene.segmentation
        assert scene.image.shape == (*sc.SCENE_SIZE, 3) and seg.shape == sc.SCENE_SIZE
        assert set(np.unique(seg)) <= {0, 1, 2, 3, sc.VOID}
        for cls in range(1, 4):
            ys, xs = np.nonzero(seg == cls)
            boxes = scene.boxes[scene.labels == cls]
            if len(xs) == 0:
                continue
            # every pixel of a class lies in one of that class's boxes, and each box is tight
            inside = np.zeros(len(xs), bool)
            for x0, y0, x1, y1 in boxes:
                inside |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
            assert inside.all()
            for x0, y0, x1, y1 in boxes:   # (the shape's outermost pixels may be rim: void)
                sub = np.isin(seg[y0:y1 + 1, x0:x1 + 1], (cls, sc.VOID))
                assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
    again = _scenes(12)[-1]
    assert np.array_equal(again.image, scene.image)   # seeded


def test_voc_folder_reads_back_through_the_recipes(tmp_path):
    from caffe_compat.recipes.fcn.layers import VOCSegDataLayer
    scenes = _scenes(3)
    ids = sc.write_voc(str(tmp_path), "val", scenes)
    for idx, scene in zip(ids, scenes):
        a = read_voc_annotation(str(tmp_path / "Annotations" / f"{idx}.xml"), sc.CLASSES,
                                str(tmp_path / "JPEGImages"))
        assert np.array_equal(a.boxes, scene.boxes) and np.array_equal(a.labels, scene.labels)
        assert np.array_equal(a.difficult, scene.difficult) and os.path.isfile(a.image)
    layer = VOCSegDataLayer.__new__(VOCSegDataLayer)
    layer.configure({"voc_dir": str(tmp_path), "mean": (0, 0, 0)})
    assert np.array_equal(layer.load_label(ids[1])[0], scenes[1].segmentation)
    assert open(tmp_path / "ImageSets" / "Segmentation" / "val.txt").read().split() == ids


def test_shipped_models_are_small_and_are_the_recipes_nets():
    from caffe_compat.formats.prototxt import read_net
    from caffe_compat.recipes.fcn.nets import shapes_fcn_deploy
    from caffe_compat.recipes.rcnn.train import rcnn_deploy_net
    for path in (models.RCNN_WEIGHTS, models.FCN_WEIGHTS):
        assert path.stat().st_size < 1.5e6, path
    structure = lambda net: [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer]
    classifier = models.DATA_DIR / "shapes_rcnn_classifier.prototxt"
    assert structure(read_net(str(models.RCNN_PROTOTXT)).param) == structure(
        rcnn_deploy_net(str(classifier), len(sc.CLASSES)))
    assert classifier.read_text() == make_models.rcnn_classifier_prototxt()
    assert structure(read_net(str(models.FCN_PROTOTXT)).param) == structure(shapes_fcn_deploy())
    det = models.rcnn_detector()
    assert det.class_names == list(sc.CLASSES) and det.bbox_regressor.num_classes == 3
    scene = models.bundled_scenes()[0]
    label = models.fcn_segmenter().segment(np.array(Image.open(scene.image)))
    assert label.shape == sc.SCENE_SIZE


def _digest(folder) -> dict:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_regeneration_runs_offline_and_is_deterministic(tmp_path):
    """The whole script on 2 training + 1 validation scenes, 2 iterations each, twice."""
    args = ["--train-scenes", "2", "--val-scenes", "1", "--rcnn-iters", "2", "--fcn-iters", "2"]
    for run in ("a", "b"):
        assert make_models.main(args + ["--out-dir", str(tmp_path / run),
                                        "--work-dir", str(tmp_path / f"work-{run}")]) == 0
    first = _digest(tmp_path / "a")
    assert {models.RCNN_WEIGHTS.name, models.RCNN_BBOX.name, models.FCN_WEIGHTS.name,
            "scene_0003.png"} <= set(first)
    assert first == _digest(tmp_path / "b")
