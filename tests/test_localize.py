"""The localisation recipe (caffe_compat.recipes.localize): FC -> conv surgery, score
maps and ``caffe-compat heatmap``, VOC parsing, the box-regression head and
``caffe-compat localize``.

Nets are tiny and built here; the VOC folders (bright rectangles on noise, XML written
here) live in tmp_path; nothing touches the network.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import caffe_compat as caffe
from caffe_compat.cli.main import main as cli_main
from caffe_compat.engine.network import CaffeNet
from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes import localize as loc
from caffe_compat.recipes import visualize as vis
from test_visualize import register_zoo_model

CLASSIFIER = """
name: "small_classifier"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 20 dim: 20 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3
          weight_filler { type: "gaussian" std: 0.3 }
          bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "flat" type: "Flatten" bottom: "pool1" top: "flat" }
layer { name: "fc6" type: "InnerProduct" bottom: "flat" top: "fc6"
        inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.1 }
          bias_filler { type: "constant" value: 0.05 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6"
        dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 12 weight_filler { type: "gaussian" std: 0.2 } } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""

GLOBAL_POOL = """
name: "gap"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 10 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
          weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "gap" type: "Pooling" bottom: "conv1" top: "gap"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "score" type: "InnerProduct" bottom: "gap" top: "score"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
"""

# A small classifier to put a localisation head on (32 x 32 input, 2 classes): the
# demo's own toy classifier.
from caffe_compat.recipes.localize.demo import TOY_CLASSIFIER as LOCALIZER_BASE  # noqa: E402


def build(text: str, seed: int = 11) -> CaffeNet:
    caffe.set_random_seed(seed)
    return CaffeNet.from_prototxt(text)


def write_net(tmp_path, text: str, seed: int = 11) -> tuple:
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(text)
    weights = tmp_path / "w.caffemodel"
    build(text, seed).save_caffemodel(str(weights))
    return proto, weights


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# --------------------------------------------------------------------------- surgery

def test_fully_convolutional_reproduces_fc_scores(tmp_path):
    proto, weights = write_net(tmp_path, CLASSIFIER)
    source = vis.NetSource.from_files(proto, weights)
    classifier = source.load()
    fcn = loc.fully_convolutional(source)
    assert fcn.renames == {"fc6": "fc6-conv", "fc7": "fc7-conv", "fc8": "fc8-conv"}
    layers = {lp.name: lp for lp in fcn.param.layer}
    assert "flat" not in layers and layers["fc6-conv"].bottom == ["pool1"]
    assert list(layers["fc6-conv"].convolution_param.kernel_size) == [9]    # pool1 is 9 x 9
    assert list(layers["fc7-conv"].convolution_param.kernel_size) == [1]
    x = np.random.RandomState(0).randn(2, 3, 20, 20).astype(np.float32) * 2
    for blob in ("fc8", "prob"):
        ref = vis.activation(classifier, x, vis.resolve_target(classifier, blob))
        out = vis.activation(fcn.block, x, vis.resolve_target(fcn.block, blob))
        assert out.shape == ref.shape + (1, 1)
        assert rel_err(out, ref) < 1e-5
    # On a larger image: conv 34 x 42 -> pool 17 x 21 -> 9 x 9 window: a 9 x 13 map,
    # and cell (i, j) is the classifier on the 20 x 20 crop at (2i, 2j).
    big = np.random.RandomState(1).randn(1, 3, 36, 44).astype(np.float32) * 2
    scores = vis.activation(fcn.block, big, vis.resolve_target(fcn.block, "fc8"))
    assert scores.shape == (1, 5, 9, 13)
    assert fcn.block.blob_shapes["prob"] == (1, 5, 9, 13)
    for i, j in [(0, 0), (4, 7), (8, 12)]:
        crop = big[:, :, 2 * i:2 * i + 20, 2 * j:2 * j + 20]
        ref = vis.activation(classifier, crop, vis.resolve_target(classifier, "fc8"))
        assert rel_err(scores[:, :, i, j], ref) < 1e-5
    # The saved prototxt + weights rebuild the same net.
    fcn.save(str(tmp_path / "fc.prototxt"), str(tmp_path / "fc.caffemodel"))
    again = CaffeNet.from_prototxt(str(tmp_path / "fc.prototxt"),
                                   weights=str(tmp_path / "fc.caffemodel"))
    out = vis.activation(again, big, vis.resolve_target(again, "fc8"))
    assert rel_err(out, scores) < 1e-6


def test_global_pooling_becomes_a_window(tmp_path):
    proto, weights = write_net(tmp_path, GLOBAL_POOL)
    source = vis.NetSource.from_files(proto, weights)
    classifier = source.load()
    fcn = loc.fully_convolutional(source, classifier=classifier)
    gap = next(lp for lp in fcn.param.layer if lp.name == "gap")
    assert not gap.pooling_param.global_pooling
    assert (gap.pooling_param.kernel_h, gap.pooling_param.kernel_w) == (10, 12)
    x = np.random.RandomState(2).randn(1, 3, 10, 12).astype(np.float32)
    ref = vis.activation(classifier, x, vis.resolve_target(classifier, "score"))
    out = vis.activation(fcn.block, x, vis.resolve_target(fcn.block, "score"))
    assert rel_err(out, ref) < 1e-5
    fcn.block.reshape({"data": (1, 3, 15, 20)})
    assert fcn.block.blob_shapes["score"] == (1, 3, 6, 9)


def test_surgery_refuses_what_it_cannot_convert():
    text = GLOBAL_POOL[:GLOBAL_POOL.index('layer { name: "gap"')]     # conv + ReLU only
    with pytest.raises(CaffeCompatError, match="no InnerProduct or global pooling"):
        loc.fully_convolutional_param(loc.deploy_param(text), build(text).blob_shapes)
    with pytest.raises(CaffeCompatError, match="no shape known for its input 'conv1'"):
        loc.fully_convolutional_param(loc.deploy_param(GLOBAL_POOL), {})
    param = loc.deploy_param(CLASSIFIER.replace(
        'name: "fc6" type: "InnerProduct" bottom: "flat" top: "fc6"\n        '
        'inner_product_param { num_output: 16',
        'name: "fc6" type: "InnerProduct" bottom: "flat" top: "fc6"\n        '
        'inner_product_param { transpose: true num_output: 16'))
    shapes = build(CLASSIFIER).blob_shapes
    with pytest.raises(CaffeCompatError, match="transpose"):
        loc.fully_convolutional_param(param, shapes)


# --------------------------------------------------------------------------- heatmaps

def test_upsample_map_puts_cells_at_field_centres():
    values = np.array([[0.0, 4.0], [8.0, 12.0]])
    field = vis.ReceptiveField((5, 5), (4, 4), (0, 0))       # centres at 2.5 and 6.5
    up = loc.upsample_map(values, field, (9, 9))
    assert up[2, 2] == 0.0 and up[2, 6] == 4.0 and up[6, 2] == 8.0 and up[6, 6] == 12.0
    assert up[2, 4] == pytest.approx(2.0) and up[4, 4] == pytest.approx(6.0)
    assert up[0, 0] == 0.0 and up[8, 8] == 12.0                # constant beyond centres


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray((np.random.RandomState(3).rand(30, 45, 3) * 255).astype(np.uint8)).save(path)
    return path


def test_class_heatmap_matches_the_score_map(tmp_path, image_file):
    proto, weights = write_net(tmp_path, CLASSIFIER)
    source = vis.NetSource.from_files(proto, weights, vis.Preprocessing(mean=(100, 110, 120)))
    hm = loc.class_heatmap(source, str(image_file), class_index=3)
    # 30 x 45 covers the 20 x 20 input, so it runs as is: conv 28 x 43 -> pool 14 x 22
    # (Caffe rounds pooled sizes up) -> 9 x 9 window: 6 x 14.
    assert hm.blob == "prob" and hm.scores.shape == (5, 6, 14)
    assert hm.map.shape == (30, 45) and hm.image.shape == (30, 45, 3)
    np.testing.assert_allclose(hm.scores.sum(axis=0), 1.0, rtol=1e-5)
    assert hm.map.min() >= hm.scores[3].min() - 1e-6
    assert hm.map.max() <= hm.scores[3].max() + 1e-6
    # Default class: the highest value anywhere.
    best = loc.class_heatmap(source, str(image_file))
    assert best.class_index == int(np.argmax(best.scores.reshape(5, -1).max(axis=1)))
    small = loc.class_heatmap(source, str(image_file), short_side=20)
    assert small.image.shape[:2] == (20, 30)


def test_heatmap_cli_writes_overlay_png(tmp_path, image_file, capsys):
    proto, weights = write_net(tmp_path, CLASSIFIER)
    out = tmp_path / "heat.png"
    rc = cli_main(["heatmap", str(image_file), "--prototxt", str(proto), "--weights",
                   str(weights), "--class", "2", "--save-net", str(tmp_path / "fcn"),
                   "-o", str(out)])
    assert rc == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape == (30, 45, 3)
    text = capsys.readouterr().out
    assert "prob class 2 on a 6x14 map" in text
    assert (tmp_path / "fcn" / "full_conv.prototxt").is_file()
    assert (tmp_path / "fcn" / "full_conv.caffemodel").is_file()
    assert cli_main(["heatmap", str(image_file), "--prototxt", str(proto), "--weights",
                     str(weights), "--class", "7", "-o", str(out)]) == 2
    assert "class 7 is out of range" in capsys.readouterr().err


def test_heatmap_cli_with_a_zoo_model(tmp_path, image_file, monkeypatch, capsys):
    register_zoo_model(tmp_path, monkeypatch, "small_cls", CLASSIFIER, build(CLASSIFIER),
                       labels=["a", "b", "c", "d", "e"])
    out = tmp_path / "zoo_heat.png"
    assert cli_main(["heatmap", str(image_file), "--model", "small_cls", "--class", "4",
                     "--short-side", "40", "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (40, 60, 3)
    assert "prob class 4 (e) on a " in capsys.readouterr().out


# --------------------------------------------------------------------------- VOC folders

def voc_xml(filename: str, size: tuple, objects: list) -> str:
    parts = [f"<annotation><folder>VOC</folder><filename>{filename}</filename>",
             f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose>"
                     f"<truncated>0</truncated><difficult>{int(difficult)}</difficult>"
                     f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                     f"<ymax>{y1}</ymax></bndbox></object>")
    return "\n".join(parts) + "</annotation>\n"


COLOURS = {"red": (0,), "blue": (2,)}


def write_boxes_voc(root, count: int, seed: int, classes=("box",), size: int = 32) -> str:
    """Noise images with one bright rectangle each (colour by class), VOC XML boxes."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.makedirs(os.path.join(root, "Annotations"))
    for i in range(count):
        name = classes[i % len(classes)]
        img = (rng.rand(size, size, 3) * 80).astype(np.uint8)
        w, h = rng.randint(8, 21, size=2)
        x0, y0 = rng.randint(0, size - w + 1), rng.randint(0, size - h + 1)
        channels = COLOURS.get(name, (0, 1, 2))
        for c in channels:
            img[y0:y0 + h, x0:x0 + w, c] = 200 + rng.randint(0, 56, size=(h, w))
        idx = f"{i:04d}"
        Image.fromarray(img).save(os.path.join(root, "JPEGImages", idx + ".png"))
        with open(os.path.join(root, "Annotations", idx + ".xml"), "w") as f:
            f.write(voc_xml(idx + ".png", (size, size),
                            [(name, (x0 + 1, y0 + 1, x0 + w, y0 + h), False)]))
    return str(root)


def test_voc_annotations_are_parsed(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations" / "a.xml").write_text(voc_xml(
        "a.jpg", (50, 40), [("cat", (1, 1, 10, 10), False), ("dog", (5, 6, 45, 36), True),
                            ("cow", (20, 20, 30, 25), False)]))
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", (8, 8), []))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    ann = loc.read_annotation(str(root / "Annotations" / "a.xml"), str(root))
    assert (ann.id, ann.width, ann.height) == ("a", 50, 40)
    assert ann.image == os.path.join(str(root), "JPEGImages", "a.jpg")
    assert [o.name for o in ann.objects] == ["cat", "dog", "cow"]
    assert ann.objects[0].box == (0.0, 0.0, 10.0, 10.0)        # 1-based inclusive -> [0, 10)
    assert ann.objects[1].difficult
    assert loc.main_object(ann).name == "cat"                  # largest non-difficult box
    assert [a.id for a in loc.load_dataset(str(root))] == ["a"]          # b has no object
    assert [a.id for a in loc.load_dataset(str(root), "train")] == ["a"]
    (root / "Annotations" / "c.xml").write_text("<annotation><size>")
    with pytest.raises(CaffeCompatError, match="c.xml: not valid XML"):
        loc.load_dataset(str(root))
    with pytest.raises(FileNotFoundError):
        loc.load_dataset(str(root), "val")


def test_iou():
    assert loc.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert loc.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert loc.iou((0, 0, 10, 10), (0, 0, 5, 10)) == 0.5
    assert loc.decode(loc.encode((3, 4, 9, 12), 20, 16), 20, 16) == pytest.approx((3, 4, 9, 12))


# --------------------------------------------------------------------------- the head

BASE_PRE = vis.Preprocessing(mean=(0.3, 0.3, 0.3), raw_scale=1.0)


def test_localization_head_beats_the_mean_box(tmp_path):
    proto, weights = write_net(tmp_path, LOCALIZER_BASE, seed=0)
    train_dir = write_boxes_voc(tmp_path / "train", 64, seed=0)
    val_dir = write_boxes_voc(tmp_path / "val", 32, seed=1)
    source = vis.NetSource.from_files(proto, weights, BASE_PRE)
    model = loc.train_localizer(source, train_dir, str(tmp_path / "run"), iters=120,
                                batch_size=16, base_lr=0.01, cache=True)
    losses = model.log.losses
    assert len(losses) == 120 and np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    score = model.evaluate(val_dir)
    assert len(score.ids) == 32
    assert score.baseline_mean_iou < 0.35
    assert score.mean_iou > score.baseline_mean_iou + 0.2
    assert score.mean_iou > 0.5 and score.hit_rate > score.baseline_hit_rate + 0.3
    # The written folder reloads to the same predictions; the deploy net ends in the head.
    again = loc.Localizer.load(str(tmp_path / "run"))
    np.testing.assert_allclose(again.evaluate(val_dir).ious, score.ious, rtol=1e-6)
    deploy = loc.deploy_param(str(tmp_path / "run" / "deploy.prototxt"))
    assert [lp.name for lp in deploy.layer][-2:] == ["relu6", "bbox_pred"]
    meta = json.loads((tmp_path / "run" / "localizer.json").read_text())
    assert meta["classes"] == ["box"] and meta["per_class"] is False


def test_per_class_head_trains_only_the_true_class(tmp_path):
    proto, weights = write_net(tmp_path, LOCALIZER_BASE, seed=0)
    voc = write_boxes_voc(tmp_path / "voc", 24, seed=2, classes=("red", "blue"))
    source = vis.NetSource.from_files(proto, weights, BASE_PRE)
    run = tmp_path / "run"
    model = loc.train_localizer(source, voc, str(run), iters=3, batch_size=4, per_class=True,
                                freeze="pool1", mirror=False)
    assert model.classes == ["blue", "red"]
    train = loc.deploy_param(str(run / "train.prototxt"))
    types = {lp.name: lp.type for lp in train.layer}
    assert types["data"] == "Python" and types["bbox_pred_masked"] == "Eltwise"
    assert types["loss"] == "EuclideanLoss"
    conv1 = next(lp for lp in train.layer if lp.name == "conv1")
    conv2 = next(lp for lp in train.layer if lp.name == "conv2")
    assert [p.lr_mult for p in conv1.param] == [0.0, 0.0] and not conv2.param
    net = caffe.Net(str(run / "train.prototxt"), str(run / "localizer.caffemodel"), caffe.TRAIN)
    net.forward()
    net.backward()
    pred_diff = net.blobs["bbox_pred"].diff
    weight = net.blobs["bbox_weight"].data
    assert pred_diff.shape == (4, 8)
    assert np.all(pred_diff[weight == 0] == 0) and np.abs(pred_diff[weight == 1]).sum() > 0
    # The loss is Caffe's EuclideanLoss on the true class's four outputs.
    masked = net.blobs["bbox_pred"].data * weight
    expected = ((masked - net.blobs["bbox_target"].data) ** 2).sum() / (2 * 4)
    assert float(net.blobs["loss"].data) == pytest.approx(expected, rel=1e-5)
    # Frozen layers did not move; the head did.
    before = build(LOCALIZER_BASE, seed=0).layers_by_name()
    after = model.block.layers_by_name()
    np.testing.assert_array_equal(after["conv1"].blobs()[0].data().asnumpy(),
                                  before["conv1"].blobs()[0].data().asnumpy())
    assert not np.array_equal(after["conv2"].blobs()[0].data().asnumpy(),
                              before["conv2"].blobs()[0].data().asnumpy())
    score = model.evaluate(voc)
    assert len(score.ious) == 24
    with pytest.raises(CaffeCompatError, match="not one of"):
        model.predict(os.path.join(voc, "JPEGImages", "0000.png"), "green")


def test_localize_cli_train_eval_predict(tmp_path, capsys):
    proto, weights = write_net(tmp_path, LOCALIZER_BASE, seed=0)
    voc = write_boxes_voc(tmp_path / "voc", 16, seed=3)
    out = tmp_path / "run"
    rc = cli_main(["localize", "train", "--voc-dir", voc, "--prototxt", str(proto),
                   "--weights", str(weights), "--mean", "0.3,0.3,0.3", "--raw-scale", "1",
                   "--iters", "5", "--batch-size", "4", "--lr", "0.01", "-o", str(out),
                   "--no-progress", "--eval-split", "all"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "trained 5 iterations" in text and "16 images: mean IoU" in text
    assert cli_main(["localize", "eval", str(out), "--voc-dir", voc]) == 0
    assert "mean-box baseline" in capsys.readouterr().out
    img = os.path.join(voc, "JPEGImages", "0001.png")
    assert cli_main(["localize", "predict", str(out), img]) == 0
    box = [float(v) for v in capsys.readouterr().out.split(":")[1].split()]
    assert len(box) == 4 and 0 <= box[0] <= box[2] <= 32 and 0 <= box[1] <= box[3] <= 32
    assert cli_main(["localize", "eval", str(tmp_path / "nothing"), "--voc-dir", voc]) == 2
    assert "localizer.json" in capsys.readouterr().err


def test_demo_stage_runs_offline(tmp_path):
    from caffe_compat.recipes.localize.demo import run_demo
    lines = []
    written = run_demo(tmp_path, quick=True, log=lines.append)
    assert [os.path.basename(p) for p in written] == ["heatmap.png", "boxes.png"]
    assert np.asarray(Image.open(written[0])).shape == (240, 320, 3)
    assert any("mean-box baseline" in line for line in lines)
