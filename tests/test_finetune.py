"""Transfer learning recipe (caffe_compat.recipes.finetune, caffe-compat finetune) on a tiny
CaffeNet-shaped net with fixed random weights and a synthetic two-class image folder
(horizontal vs vertical stripes). No network access."""
from __future__ import annotations

import json
import textwrap

import cv2
import numpy as np
import pytest

import caffe_compat as caffe
from caffe_compat.cli.main import main
from caffe_compat.formats.caffemodel import LayerWeights, read_caffemodel, write_caffemodel
from caffe_compat.recipes.finetune import (DatasetError, SourceModel, cut_blob, deploy_net,
                                           finetune, head_spec, load_classifier, read_dataset,
                                           read_deploy, stratified_split, train_net)
from caffe_compat.recipes.finetune.surgery import SurgeryError, classifier_cut

TINY = textwrap.dedent('''
    name: "TinyNet"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 10 dim: 3 dim: 16 dim: 16 } } }
    layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
    layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
    layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: AVE kernel_size: 4 stride: 4 } }
    layer { name: "fc6" type: "InnerProduct" bottom: "pool1" top: "fc6" inner_product_param { num_output: 32 } }
    layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
    layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
    layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 16 } }
    layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
    layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" dropout_param { dropout_ratio: 0.5 } }
    layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 10 } }
    layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
''')
MEAN = (104.0, 117.0, 123.0)


def stripes(rs: np.random.RandomState, horizontal: bool, size: int = 20) -> np.ndarray:
    period = rs.randint(4, 8)
    phase = rs.randint(0, period)
    line = (((np.arange(size) + phase) % period) < period / 2).astype(np.float32)
    img = np.tile(line[:, None], (1, size)) if horizontal else np.tile(line[None, :], (size, 1))
    colour = rs.uniform(80, 255, 3)
    noisy = img[:, :, None] * colour + rs.uniform(0, 30, (size, size, 3))
    return noisy.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """deploy.prototxt + w.caffemodel of TinyNet and a stripes/{horizontal,vertical} folder.

    conv1 holds four oriented edge filters (+ small random ones), the rest is random;
    activations are O(1) for 0..255 pixels minus the ImageNet mean."""
    root = tmp_path_factory.mktemp("finetune")
    (root / "deploy.prototxt").write_text(TINY)
    rs = np.random.RandomState(0)
    conv = (rs.randn(8, 3, 3, 3) * 0.002).astype(np.float32)
    edge = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], np.float32) / 1000
    conv[0], conv[1], conv[2], conv[3] = edge, edge.T, -edge, -edge.T
    weights = [
        LayerWeights("conv1", "Convolution", [conv, np.zeros(8, np.float32)]),
        LayerWeights("fc6", "InnerProduct", [(rs.randn(32, 128) * 0.1).astype(np.float32),
                                             np.full(32, 0.5, np.float32)]),
        LayerWeights("fc7", "InnerProduct", [(rs.randn(16, 32) * 0.1).astype(np.float32),
                                             np.full(16, 0.5, np.float32)]),
        LayerWeights("fc8", "InnerProduct", [(rs.randn(10, 16) * 0.2).astype(np.float32),
                                             np.zeros(10, np.float32)])]
    write_caffemodel(str(root / "w.caffemodel"), weights)
    for name, horizontal in (("horizontal", True), ("vertical", False)):
        folder = root / "stripes" / name
        folder.mkdir(parents=True)
        for i in range(20):
            cv2.imwrite(str(folder / f"{i:02d}.png"), stripes(rs, horizontal))
    return root


def source(tiny) -> SourceModel:
    return SourceModel.from_files(str(tiny / "deploy.prototxt"), str(tiny / "w.caffemodel"),
                                  mean=MEAN)


# ---- data --------------------------------------------------------------------------------
def test_dataset_folder_list_file_and_stratified_split(tiny, tmp_path):
    ds = read_dataset(tiny / "stripes")
    assert ds.class_names == ("horizontal", "vertical") and ds.counts() == [20, 20]
    train, val = stratified_split(ds, 0.2, seed=3)
    assert len(val) == 8 and sorted(s.label for s in val) == [0] * 4 + [1] * 4
    assert not {s.path for s in train} & {s.path for s in val}
    assert (train, val) == stratified_split(ds, 0.2, seed=3)          # deterministic
    assert val != stratified_split(ds, 0.2, seed=4)[1]
    # the same data as a Caffe list file with relative paths and a labels file
    lines = [f"stripes/{'horizontal' if s.label == 0 else 'vertical'}/{s.path[-6:]} {s.label}"
             for s in ds.samples]
    (tiny / "all.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "names.txt").write_text("h\nv\n")
    listed = read_dataset(tiny / "all.txt", labels=tmp_path / "names.txt")
    assert listed.class_names == ("h", "v")
    assert [(s.path, s.label) for s in listed.samples] == [(s.path, s.label) for s in ds.samples]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "only").mkdir()
    with pytest.raises(DatasetError, match="at least 2"):
        read_dataset(tmp_path / "one")


# ---- surgery on a real zoo prototxt (no weights needed) -----------------------------------
def test_surgery_on_caffenet_deploy():
    net = read_deploy("prototxt/bvlc_reference_caffenet/deploy.prototxt")
    spec = head_spec(net, 5, "Flickr Style")
    assert (spec.name, spec.num_output, spec.prob) == ("fc8_flickr_style", 5, "prob")
    deploy = deploy_net(net, classifier_cut(net), spec)
    names = [lp.name for lp in deploy.layer]
    assert names[-4:] == ["relu7", "drop7", "fc8_flickr_style", "prob"] and "fc8" not in names
    head = deploy.layer[-2]
    assert list(head.bottom) == ["fc7"] and head.inner_product_param.num_output == 5
    assert [(p.lr_mult, p.decay_mult) for p in head.param] == [(10, 1), (20, 0)]
    # the linear mode on pool5 drops fc6/fc7 but keeps the input
    cut = cut_blob(net, "pool5")
    short = [lp.name for lp in deploy_net(net, cut, spec).layer]
    assert short[0] == "data" and short[-3:] == ["pool5", "fc8_flickr_style", "prob"]
    assert cut_blob(net, "relu6").blob == "fc6" and net.layer[cut_blob(net, "fc6").last].name == "drop6"
    with pytest.raises(SurgeryError, match="no layer or blob"):
        cut_blob(net, "fc9")
    # the train net: ImageData in, frozen layers at lr_mult 0, SoftmaxWithLoss out
    from caffe_compat.recipes.finetune.surgery import image_data_layer
    from caffe_compat.recipes.finetune.preprocess import Preprocess
    pre = Preprocess.for_input((227, 227), MEAN)
    data = image_data_layer("data", ["data", "label"], pre.image_data_param("/x/train.txt", 4, True),
                            pre.transform_param(train=True))
    train = train_net(deploy, spec, data, "label", frozen=["conv1", "fc6"],
                      blob_counts={"conv1": 2, "fc6": 2})
    layers = {lp.name: lp for lp in train.layer}
    assert layers["data"].type == "ImageData" and layers["data"].transform_param.crop_size == 227
    assert layers["data"].image_data_param.new_height == 256 and layers["data"].transform_param.mirror
    assert [p.lr_mult for p in layers["conv1"].param] == [0, 0]
    assert not layers["conv2"].param and "prob" not in layers
    assert train.layer[-1].type == "SoftmaxWithLoss" and list(train.layer[-1].bottom) == [spec.name, "label"]


# ---- the three modes ---------------------------------------------------------------------
def test_linear_mode_separates_two_classes(tiny, tmp_path):
    messages = []
    result = finetune(source(tiny), str(tiny / "stripes"), str(tmp_path / "out"), mode="linear",
                      epochs=50, batch_size=8, log=messages.append)
    assert result.val_accuracy == 1.0
    assert result.history and result.history[-1].val_accuracy == 1.0
    assert any(m.startswith("epoch ") and "val accuracy" in m for m in messages)
    summary = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert summary["layer"] == "fc7" and summary["head"] == "fc8_stripes"
    # the written net gives the same answers as the fitted classifier
    net = caffe.Net(str(tmp_path / "out" / "deploy.prototxt"),
                    str(tmp_path / "out" / "weights.caffemodel"), caffe.TEST)
    assert net.params["fc8_stripes"][0].data.shape == (2, 16)
    from caffe_compat.recipes.finetune.preprocess import Preprocess
    val = [line.rsplit(" ", 1) for line in (tmp_path / "out" / "val.txt").read_text().splitlines()]
    x = Preprocess.for_input((16, 16), MEAN).load([p for p, _ in val])
    pred = net.forward_all(data=x)["prob"].argmax(axis=1)
    assert list(pred) == [int(label) for _, label in val]


def test_linear_mode_on_a_lower_layer_cuts_the_net(tiny, tmp_path):
    result = finetune(source(tiny), str(tiny / "stripes"), str(tmp_path / "out"), mode="linear",
                      layer="fc6", epochs=30, batch_size=16, log=None)
    names = [lp.name for lp in read_deploy(result.deploy).layer]
    assert names[-3:] == ["drop6", "fc8_stripes", "prob"] and "fc7" not in names
    assert result.val_accuracy == 1.0


def _blobs(path) -> dict:
    return {l.name: [np.array(b) for b in l.blobs] for l in read_caffemodel(str(path)).layers if l.blobs}


def test_top_mode_changes_only_unfrozen_layers(tiny, tmp_path):
    result = finetune(source(tiny), str(tiny / "stripes"), str(tmp_path / "top"), mode="top",
                      epochs=2, batch_size=8, lr=0.01, log=None)
    before, after = _blobs(tiny / "w.caffemodel"), _blobs(result.weights)
    for frozen in ("conv1", "fc6"):
        for a, b in zip(before[frozen], after[frozen]):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(before["fc7"][0], after["fc7"][0])
    assert not np.array_equal(before["fc7"][1], after["fc7"][1])
    assert "fc8" not in after and after["fc8_stripes"][0].shape == (2, 16)
    summary = json.loads((tmp_path / "top" / "finetune.json").read_text())
    assert summary["frozen"] == ["conv1", "fc6"] and summary["first_trained_layer"] == "fc7"
    # --layer fc6 moves the boundary down; 'all' trains conv1 too
    result = finetune(source(tiny), str(tiny / "stripes"), str(tmp_path / "top6"), mode="top",
                      layer="fc6", epochs=1, batch_size=8, lr=0.001, log=None)
    after = _blobs(result.weights)
    np.testing.assert_array_equal(before["conv1"][0], after["conv1"][0])
    assert not np.array_equal(before["fc6"][0], after["fc6"][0])
    result = finetune(source(tiny), str(tiny / "stripes"), str(tmp_path / "all"), mode="all",
                      epochs=1, batch_size=8, lr=0.001, log=None)
    after = _blobs(result.weights)
    assert all(not np.array_equal(before[n][0], after[n][0]) for n in ("conv1", "fc6", "fc7"))


def test_finetune_cli_end_to_end(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["finetune", "--prototxt", str(tiny / "deploy.prototxt"),
                 "--weights", str(tiny / "w.caffemodel"), "--mean", "104,117,123",
                 "--data", str(tiny / "stripes"), "-o", str(out), "--mode", "top",
                 "--epochs", "6", "--batch-size", "8", "--lr", "0.01", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/6" in printed and "epoch 6/6" in printed and "caffe.Classifier(" in printed
    for name in ("deploy.prototxt", "weights.caffemodel", "labels.txt", "train.txt", "val.txt",
                 "train_val.prototxt", "solver.prototxt", "finetune.json"):
        assert (out / name).is_file(), name
    assert (out / "labels.txt").read_text().split() == ["horizontal", "vertical"]
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["val_accuracy"] >= 0.75 and len(summary["history"]) == 6
    # pycaffe's Classifier on the output classifies the validation images as reported
    clf = caffe.Classifier(str(out / "deploy.prototxt"), str(out / "weights.caffemodel"),
                           image_dims=(16, 16), mean=np.array(MEAN), raw_scale=255,
                           channel_swap=(2, 1, 0))
    val = [line.rsplit(" ", 1) for line in (out / "val.txt").read_text().splitlines()]
    images = [caffe.io.load_image(p) for p, _ in val]
    pred = clf.predict(images, oversample=False).argmax(axis=1)
    accuracy = float(np.mean(pred == np.array([int(label) for _, label in val])))
    assert accuracy == summary["val_accuracy"]
    assert list(load_classifier(str(out)).predict(images, oversample=False).argmax(axis=1)) == list(pred)
    assert main(["info", str(out / "deploy.prototxt"), str(out / "weights.caffemodel")]) == 0
    assert "fc8_stripes" in capsys.readouterr().out


def test_finetune_cli_errors_are_one_line(tiny, tmp_path, capsys):
    assert main(["finetune", "--prototxt", str(tiny / "deploy.prototxt"),
                 "--weights", str(tiny / "w.caffemodel"), "--data", str(tiny / "stripes"),
                 "-o", str(tmp_path / "o"), "--mode", "linear", "--layer", "fc9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("caffe-compat finetune: error:") and "fc9" in err and "\n" not in err
    assert main(["finetune", "--prototxt", str(tiny / "deploy.prototxt"),
                 "--data", str(tiny / "stripes"), "-o", str(tmp_path / "o")]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["finetune", "--prototxt", str(tiny / "deploy.prototxt"),
                 "--weights", str(tiny / "w.caffemodel"), "--data", str(tmp_path / "missing"),
                 "-o", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err


def test_finetune_from_a_zoo_model(tiny, tmp_path, monkeypatch, capsys):
    """--model NAME: the zoo's deploy prototxt, recorded mean and cached weights."""
    from caffe_compat import zoo
    from caffe_compat.download import sha1_of
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "home"))
    # a loopback URL that is never contacted: the weights are imported (and verified) first
    zoo.add("tiny_stripes_net", tiny / "deploy.prototxt", "http://127.0.0.1:9/tiny.caffemodel", sha1_of(tiny / "w.caffemodel"),
            mean=MEAN, input_size=(16, 16))
    zoo.import_file("tiny_stripes_net", tiny / "w.caffemodel")
    assert main(["finetune", "--model", "tiny_stripes_net", "--data", str(tiny / "stripes"),
                 "-o", str(tmp_path / "out"), "--mode", "linear", "--epochs", "40",
                 "--batch-size", "16", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert summary["source"] == "tiny_stripes_net" and summary["preprocess"]["mean"] == list(MEAN)
    assert summary["val_accuracy"] == 1.0
    capsys.readouterr()
