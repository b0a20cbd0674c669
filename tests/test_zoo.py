"""caffe_compat.zoo and ``caffe-compat zoo``: registries, fetch, load, params cache, CLI.

A tiny net of our own (prototxt + weights written with write_caffemodel) is served by
a real HTTP server on 127.0.0.1 and registered through CAFFE_COMPAT_REGISTRY, so
``zoo.load`` runs end to end without the internet. The bundled registry is checked
for consistency (checksums, mirrors, label files).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from caffe_compat import zoo
from caffe_compat.cli.main import main as cli
from caffe_compat.download import ChecksumError, DownloadError, read_stamp
from caffe_compat.formats.caffemodel import write_caffemodel
from test_download import FileServer, closed_port_url

TINY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "score" type: "Convolution" bottom: "conv1" top: "score"
        convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }
"""
LABELS = "n0 zero\nn1 one\nn2 two\nn3 three\nn4 four\n"


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(h))
    monkeypatch.delenv("CAFFE_COMPAT_MIRROR", raising=False)
    monkeypatch.delenv("CAFFE_COMPAT_REGISTRY", raising=False)
    return h


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def tiny(tmp_path):
    """Files of the tiny model: prototxt, weights (bytes + sha1), labels, reference weights."""
    folder = tmp_path / "tiny_src"
    folder.mkdir()
    (folder / "deploy.prototxt").write_text(TINY)
    (folder / "labels.txt").write_text(LABELS)
    rs = np.random.RandomState(0)
    blobs = {"conv1": [rs.randn(4, 3, 3, 3).astype("f"), rs.randn(4).astype("f")],
             "score": [rs.randn(5, 4, 1, 1).astype("f"), rs.randn(5).astype("f")]}
    write_caffemodel(folder / "tiny.caffemodel", blobs)
    data = (folder / "tiny.caffemodel").read_bytes()
    return {"dir": folder, "prototxt": folder / "deploy.prototxt", "labels": folder / "labels.txt",
            "weights": folder / "tiny.caffemodel", "bytes": data,
            "sha1": hashlib.sha1(data).hexdigest(), "blobs": blobs}


def write_registry(path: Path, models: dict) -> Path:
    path.write_text(json.dumps({"format": zoo.FORMAT, "models": models}))
    return path


def tiny_entry(tiny, url: str, sha1=True, **extra) -> dict:
    entry = {"description": "a tiny test net", "license": "test-only",
             "prototxt": {"deploy": "deploy.prototxt"},
             "weights": {"urls": [url + "/tiny.caffemodel"],
                         "sha1": tiny["sha1"] if sha1 else None, "size": len(tiny["bytes"])},
             "mean": {"values": [1.0, 2.0, 3.0]},
             "input": {"size": [8, 8], "channels": 3, "channel_order": "BGR", "raw_scale": 255},
             "labels": "labels.txt", "aliases": ["TinyNet"]}
    entry.update(extra)
    return entry


@pytest.fixture
def registered(tiny, server, home, monkeypatch):
    """The tiny model served over HTTP and registered via CAFFE_COMPAT_REGISTRY."""
    server.files["tiny.caffemodel"] = tiny["bytes"]
    reg = write_registry(tiny["dir"] / "registry.json",
                         {"tiny": tiny_entry(tiny, "http://upstream.invalid/files")})
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", str(reg))
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", server.url)
    return reg


def reference_output(tiny, x: mx.nd.NDArray) -> np.ndarray:
    from caffe_compat.engine.network import CaffeNet
    net = CaffeNet.from_prototxt(str(tiny["prototxt"]), 1, weights=str(tiny["weights"]))
    return net(x).asnumpy()


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- registry

def test_registry_from_env_var(registered, tiny):
    assert "tiny" in zoo.list_models() and "bvlc_googlenet" in zoo.list_models()
    entry = zoo.get("tinynet")                     # alias, any case
    assert entry.name == "tiny" and entry.registry == registered
    assert entry.deploy == tiny["prototxt"].resolve()
    assert entry.mean_values == (1.0, 2.0, 3.0) and entry.input_size == (8, 8)
    assert zoo.labels("tiny") == LABELS.splitlines()
    assert list(zoo.mean("tiny")) == [1.0, 2.0, 3.0]


def test_env_registry_list_is_pathsep_separated_and_later_wins(tiny, home, tmp_path, monkeypatch):
    a = write_registry(tmp_path / "a.json", {"bvlc_alexnet": tiny_entry(tiny, "http://a.invalid")})
    b = write_registry(tmp_path / "b.json", {"other": tiny_entry(tiny, "http://b.invalid")})
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", os.pathsep.join([str(a), str(b)]))
    assert zoo.get("bvlc_alexnet").registry == a     # overrides the bundled entry
    assert zoo.get("other").registry == b


def test_unknown_model_suggests_names(home):
    with pytest.raises(zoo.RegistryError, match="unknown model 'googlenet'; did you mean bvlc_googlenet"):
        zoo.get("googlenet")


def test_bad_registry_names_file_and_line(tmp_path, home, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "caffe-compat-zoo/1",\n "models": {,}}')
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", str(bad))
    with pytest.raises(zoo.RegistryError, match=re.escape(str(bad)) + r":2:\d+: not valid JSON"):
        zoo.list_models()
    write_registry(bad, {"x": {"weights": {"urls": ["http://h/x.caffemodel"], "sha1": "abc"}}})
    with pytest.raises(zoo.RegistryError, match="model 'x'.*weights.sha1 'abc' is not 40 hex"):
        zoo.list_models()


# --------------------------------------------------------------------------- load

def test_load_end_to_end_then_from_params_cache(registered, tiny, server, home, monkeypatch):
    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (1, 3, 8, 8)))
    expected = reference_output(tiny, x)

    net = zoo.load("tiny", ctx=mx.cpu())
    np.testing.assert_array_equal(net(x).asnumpy(), expected)
    cached_params = home / "params" / f"{tiny['sha1']}.params"
    assert cached_params.is_file()
    assert zoo.path("tiny") == home / "models" / "tiny" / "tiny.caffemodel"
    assert len(server.gets("tiny.caffemodel")) == 1

    # second load: no caffemodel parsing, no network
    import caffe_compat.formats.weights as weights_mod
    import caffe_compat.download as dl_mod
    monkeypatch.setattr(weights_mod, "read_weights",
                        lambda path: pytest.fail(f"caffemodel parsed again: {path}"))
    monkeypatch.setattr(dl_mod.urllib.request, "urlopen",
                        lambda *a, **k: pytest.fail("network used for a cached model"))
    net2 = zoo.load("tiny", ctx=mx.cpu())
    np.testing.assert_array_equal(net2(x).asnumpy(), expected)


def test_stale_params_cache_is_rebuilt(registered, tiny, home):
    x = mx.nd.array(np.random.RandomState(2).uniform(-1, 1, (1, 3, 8, 8)))
    params = home / "params" / f"{tiny['sha1']}.params"
    params.parent.mkdir(parents=True)
    mx.nd.save(str(params), {"unrelated_weight": mx.nd.zeros((2, 2))})
    net = zoo.load("tiny")
    np.testing.assert_array_equal(net(x).asnumpy(), reference_output(tiny, x))
    assert set(mx.nd.load(str(params))) == {"conv1/0", "conv1/1", "score/0", "score/1"}


def test_load_pycaffe_view(registered, tiny):
    net = zoo.load_pycaffe("tiny")
    x = np.random.RandomState(3).uniform(-1, 1, (1, 3, 8, 8)).astype("f")
    net.blobs["data"].data[...] = x
    out = net.forward()["prob"]
    np.testing.assert_allclose(out, reference_output(tiny, mx.nd.array(x)), rtol=0, atol=0)
    np.testing.assert_array_equal(net.params["conv1"][0].data, tiny["blobs"]["conv1"][0])


def test_unverified_weights_load_with_consent_and_cache_by_computed_sha1(tiny, server, home, monkeypatch):
    server.files["tiny.caffemodel"] = tiny["bytes"]
    reg = write_registry(tiny["dir"] / "registry.json",
                         {"tiny": tiny_entry(tiny, server.url, sha1=False)})
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", str(reg))
    with pytest.raises(DownloadError, match="no SHA-1"):
        zoo.load("tiny")
    zoo.load("tiny", allow_unverified=True)
    assert (home / "params" / f"{tiny['sha1']}.params").is_file()
    zoo.load("tiny")                                   # accepted once: no flag needed now


# --------------------------------------------------------------------------- CLI

def test_cli_list_fetch_path_verify_remove(registered, tiny, home, capsys):
    code, out, _ = run_cli(capsys, "zoo", "list")
    assert code == 0
    assert re.search(r"^tiny\s+\d+ B\s+-\s+test-only$", out, re.M)
    assert re.search(r"^bvlc_googlenet\s+51\.1 MB\s+-\s+unrestricted", out, re.M)

    code, out, err = run_cli(capsys, "zoo", "path", "tiny")
    assert code == 1 and "not cached" in err

    code, out, _ = run_cli(capsys, "zoo", "fetch", "tiny")
    assert code == 0 and str(zoo.path("tiny")) in out
    code, out, _ = run_cli(capsys, "zoo", "list", "--cached")
    assert out.splitlines()[1].split()[:3] == ["tiny", str(len(tiny["bytes"])), "B"]
    code, out, _ = run_cli(capsys, "zoo", "path", "tiny")
    assert code == 0 and out.strip() == str(zoo.path("tiny"))
    code, out, _ = run_cli(capsys, "zoo", "path", "tiny", "--prototxt")
    assert out.strip() == str(tiny["prototxt"].resolve())

    code, out, _ = run_cli(capsys, "zoo", "verify")
    assert code == 0 and out.startswith("OK ") and tiny["sha1"] in out
    with open(zoo.path("tiny"), "r+b") as f:          # flip one byte in place
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 1]))
    code, out, err = run_cli(capsys, "zoo", "verify", "tiny")
    assert code == 1 and out.startswith("BAD") and "zoo remove tiny" in err

    code, out, _ = run_cli(capsys, "zoo", "remove", "tiny")
    assert code == 0 and "tiny.caffemodel" in out
    assert not zoo.path("tiny").exists() and not (home / "models" / "tiny").exists()


def test_cli_offline_is_one_line_exit_2(tiny, home, monkeypatch, capsys):
    reg = write_registry(tiny["dir"] / "registry.json",
                         {"tiny": tiny_entry(tiny, "http://upstream.invalid/files")})
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", str(reg))
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", closed_port_url())
    code, out, err = run_cli(capsys, "zoo", "fetch", "tiny")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("caffe-compat zoo: error: cannot download tiny.caffemodel: ")
    assert os.environ["CAFFE_COMPAT_MIRROR"] + "/tiny.caffemodel" in err
    assert "caffe-compat zoo import tiny /path/to/tiny.caffemodel" in err


def test_cli_import_right_and_wrong_sha1(registered, tiny, tmp_path, home, capsys, server):
    wrong = tmp_path / "wrong.caffemodel"
    wrong.write_bytes(tiny["bytes"][:-4] + b"XXXX")
    code, out, err = run_cli(capsys, "zoo", "import", "tiny", str(wrong))
    assert code == 2 and str(wrong) in err and tiny["sha1"] in err
    assert len(err.strip().splitlines()) == 1 and not zoo.is_cached("tiny")

    code, out, _ = run_cli(capsys, "zoo", "import", "tiny", str(tiny["weights"]))
    assert code == 0 and zoo.is_cached("tiny")
    assert read_stamp(zoo.path("tiny"))["verified"] is True
    zoo.load("tiny")
    assert server.requests == []                        # imported: never downloaded


def test_cli_add_records_user_model(tiny, server, home, monkeypatch, capsys):
    server.files["tiny.caffemodel"] = tiny["bytes"]
    code, out, _ = run_cli(capsys, "zoo", "add", "mine", "--prototxt", str(tiny["prototxt"]),
                           "--url", server.url + "/tiny.caffemodel", "--sha1", tiny["sha1"],
                           "--mean", "104,117,123", "--labels", str(tiny["labels"]),
                           "--input-size", "8,8", "--license", "MIT")
    assert code == 0 and str(home / "registry.json") in out
    tiny["prototxt"].unlink()                            # the registry keeps its own copy
    entry = zoo.get("mine")
    assert entry.registry == home / "registry.json" and entry.license == "MIT"
    assert entry.mean_values == (104.0, 117.0, 123.0) and entry.input_size == (8, 8)
    assert zoo.labels("mine") == LABELS.splitlines()
    x = mx.nd.array(np.random.RandomState(4).uniform(-1, 1, (1, 3, 8, 8)))
    net = zoo.load("mine")
    from caffe_compat.engine.network import CaffeNet
    ref = CaffeNet.from_prototxt(TINY, 1, weights=str(tiny["weights"]))
    np.testing.assert_array_equal(net(x).asnumpy(), ref(x).asnumpy())

    code, _, err = run_cli(capsys, "zoo", "add", "bad", "--prototxt", str(entry.deploy),
                           "--url", "http://h/x.caffemodel", "--sha1", "xyz")
    assert code == 2 and "not 40 hex digits" in err
    assert "bad" not in zoo.list_models()


def test_cli_unverified_fetch_needs_no_verify(tiny, server, home, monkeypatch, capsys):
    server.files["tiny.caffemodel"] = tiny["bytes"]
    reg = write_registry(tiny["dir"] / "registry.json",
                         {"tiny": tiny_entry(tiny, server.url, sha1=False)})
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY", str(reg))
    code, _, err = run_cli(capsys, "zoo", "fetch", "tiny")
    assert code == 2 and "--no-verify" in err
    code, out, _ = run_cli(capsys, "zoo", "fetch", "tiny", "--no-verify")
    assert code == 0
    code, out, _ = run_cli(capsys, "zoo", "verify")
    assert code == 0 and out.rstrip().endswith("(as accepted; no registry checksum)")


# --------------------------------------------------------------------------- bundled registry

# Models whose weights have no public SHA-1 that we could find (see the README): the
# downloader refuses them unless the user passes --no-verify / allow_unverified=True.
UNVERIFIED = {"voc-fcn32s", "voc-fcn16s", "voc-fcn8s-atonce", "voc-fcn-alexnet",
              "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
              "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-hha",
              "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s"}
REQUIRED = {"bvlc_alexnet", "bvlc_reference_caffenet", "bvlc_googlenet",
            "bvlc_reference_rcnn_ilsvrc13", "finetune_flickr_style", "vgg16", "vgg19",
            "resnet50", "resnet101", "resnet152", "squeezenet_v1.0", "squeezenet_v1.1",
            "voc-fcn8s", "nyud-fcn32s-color-d"} | UNVERIFIED
LABEL_COUNTS = {"synset_words.txt": 1000, "det_synset_words.txt": 200, "voc_classes.txt": 21,
                "pascalcontext_classes.txt": 60, "nyud_classes.txt": 40,
                "siftflow_semantic.txt": 33, "siftflow_geometric.txt": 3,
                "flickr_style_names.txt": 20}


def test_bundled_registry_is_complete_and_consistent(home):
    entries = zoo.read_registry(zoo.bundled_registry())
    assert REQUIRED <= set(entries)
    names = [n.lower() for e in entries.values() for n in (e.name, *e.aliases)]
    assert len(names) == len(set(names)), "a name or alias is used twice"
    for name, e in entries.items():
        assert e.license != "unknown" and e.description and e.source.startswith("https://"), name
        assert e.prototxt["deploy"] == (zoo.bundled_registry().parent.parent / "prototxt" / name / "deploy.prototxt").resolve()
        assert e.mean_values or e.mean_file, name
        for key, lab in e.labels.items():
            assert LABEL_COUNTS[lab.name] == len(zoo.labels(e, key or None)), (name, lab)
        if e.weights is None:
            assert name == "nyud-fcn32s-color-d"        # its authors published no weights
            continue
        assert (e.weights.sha1 is None) == (name in UNVERIFIED), name
        # CAFFE_COMPAT_MIRROR serves files by name: every mirror URL must carry the same one
        assert {u.rsplit("/", 1)[-1] for u in e.weights.urls} == {e.weights.file}, name
        assert all(u.startswith(("http://", "https://")) for u in e.weights.urls)
    # a few facts checked against the upstream readmes / download scripts
    assert entries["bvlc_alexnet"].weights.sha1 == "9116a64c0fbe4459d18f4bb6b56d647b63920377"
    assert entries["bvlc_googlenet"].weights.size == 53533754
    assert entries["resnet50"].weights.sha1 == "b7c79ccc21ad0479cddc0dd78b1d20c4d722908d"
    assert entries["voc-fcn8s"].weights.urls == (
        "http://dl.caffe.berkeleyvision.org/fcn8s-heavy-pascal.caffemodel",)
    assert entries["vgg16"].mean_values == (103.939, 116.779, 123.68)


def test_imagenet_labels_are_the_ilsvrc2012_synsets(home):
    lines = zoo.labels("bvlc_alexnet")
    wnids = [line.split()[0] for line in lines]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert lines[0] == "n01440764 tench, Tinca tinca"
    assert lines[281] == "n02123045 tabby, tabby cat"
    assert lines[999] == "n15075141 toilet tissue, toilet paper, bathroom tissue"
    voc = zoo.labels("voc-fcn8s")
    assert voc[0] == "background" and voc[15] == "person" and voc[20] == "tvmonitor"


# --------------------------------------------------------------------------- real weights

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "weights"


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} is absent")
def test_bundled_model_loads_from_corpus_mirror(home, monkeypatch):
    entries = zoo.read_registry(zoo.bundled_registry())
    candidates = [e for e in entries.values() if e.weights and e.weights.sha1
                  and (CORPUS / e.weights.file).is_file() and e.prototxt["deploy"].is_file()]
    if not candidates:
        pytest.skip(f"no bundled model has both its weights in {CORPUS} and a generated prototxt")
    entry = min(candidates, key=lambda e: (CORPUS / e.weights.file).stat().st_size)
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", str(CORPUS))
    net = zoo.load(entry.name, progress=False)
    shape = (1, entry.channels) + tuple(entry.input_size or (224, 224))
    net.reshape({net.input_names[0]: shape})
    out = net(mx.nd.zeros(shape)) if len(net.input_names) == 1 else None
    if out is not None:
        assert np.isfinite(out.asnumpy() if not isinstance(out, tuple) else out[0].asnumpy()).all()
    assert (home / "params" / f"{entry.weights.sha1}.params").is_file()


def test_weights_missing_a_layer_of_the_net_are_refused(tiny, server, home, monkeypatch):
    partial_weights = tiny["dir"] / "partial.caffemodel"
    write_caffemodel(partial_weights, {"conv1": tiny["blobs"]["conv1"]})
    data = partial_weights.read_bytes()
    server.files["partial.caffemodel"] = data
    entry = tiny_entry(tiny, server.url)
    entry["weights"] = {"urls": [server.url + "/partial.caffemodel"],
                        "sha1": hashlib.sha1(data).hexdigest(), "size": None}
    monkeypatch.setenv("CAFFE_COMPAT_REGISTRY",
                       str(write_registry(tiny["dir"] / "registry.json", {"tiny": entry})))
    from caffe_compat.errors import WeightsMismatchError
    with pytest.raises(WeightsMismatchError, match=r"no weights for layer\(s\) score of tiny's net"):
        zoo.load("tiny")
    assert not (home / "params").exists() or not any((home / "params").glob("*.params"))


# --------------------------------------------------------------------------- builders

def infer(prototxt) -> tuple:
    """(upgraded NetParameter, blob shapes, {layer: (type, [blob shapes])}) without
    allocating any weights: Caffe's shape inference only."""
    from caffe_compat.engine.build import instantiate_layer, shape_layer
    from caffe_compat.engine.graph import SOURCE_TYPES, build_graph
    from caffe_compat.formats.net_filter import filter_net
    from caffe_compat.formats.prototxt import read_net
    definition = filter_net(read_net(str(prototxt)), 1)
    graph = build_graph(definition.param, definition.path, definition.layer_lines)
    shapes, blobs = {}, {}
    for node in graph.layers:
        layer = instantiate_layer(node.param, 1, node.source)
        source = node.param.type in SOURCE_TYPES or getattr(layer, "host_source", False)
        tops = shape_layer(layer, [] if source else [shapes[b] for b in node.bottoms], first=True)
        shapes.update(zip(node.tops, (tuple(s) for s in tops)))
        blobs[node.name] = (node.param.type, [tuple(p.shape) for p in layer.blobs()])
    return definition.param, shapes, blobs


def learnable(blobs: dict) -> int:
    """Parameters a trainer updates (BatchNorm's running statistics excluded)."""
    return sum(int(np.prod(s)) for t, shapes in blobs.values() if t != "BatchNorm" for s in shapes)


# name -> (layers after upgrade incl. Input, learnable parameters, {output blob: shape}).
# Published counts: AlexNet/CaffeNet 60,965,224; GoogLeNet 6,998,552; VGG-16 138,357,544;
# VGG-19 143,667,240; SqueezeNet 1,248,424 / 1,235,496; ResNet-50/101/152 25,557,032 /
# 44,549,160 / 60,192,808 (plus, for ResNet-50 only, the 64 biases its MSRA conv1 has). FCN counts follow from
# VGG-16 with fc6/fc7 as convolutions plus the score and fixed upsampling layers.
ARCHITECTURE = {
    "bvlc_alexnet": (24, 60965224, {"prob": (10, 1000)}),
    "bvlc_reference_caffenet": (24, 60965224, {"prob": (10, 1000)}),
    "bvlc_reference_rcnn_ilsvrc13": (23, 57687624, {"fc-rcnn": (10, 200)}),
    "finetune_flickr_style": (24, 56950164, {"prob": (10, 20)}),
    "bvlc_googlenet": (143, 6998552, {"prob": (10, 1000)}),
    "vgg16": (40, 138357544, {"prob": (10, 1000)}),
    "vgg19": (46, 143667240, {"prob": (10, 1000)}),
    "resnet50": (229, 25557032 + 64, {"prob": (1, 1000)}),
    "resnet101": (450, 44549160, {"prob": (1, 1000)}),     # conv1 without bias upstream
    "resnet152": (671, 60192808, {"prob": (1, 1000)}),
    "squeezenet_v1.0": (67, 1248424, {"prob": (10, 1000, 1, 1)}),
    "squeezenet_v1.1": (67, 1235496, {"prob": (10, 1000, 1, 1)}),
    "voc-fcn32s": (39, 136152917, {"score": (1, 21, 500, 500)}),
    "voc-fcn16s": (43, 134815994, {"score": (1, 21, 500, 500)}),
    "voc-fcn8s": (47, 134489759, {"score": (1, 21, 500, 500)}),
    "voc-fcn8s-atonce": (49, 134490527, {"score": (1, 21, 500, 500)}),
    "voc-fcn-alexnet": (23, 58704590, {"score": (1, 21, 500, 500)}),
    "pascalcontext-fcn32s": (39, None, {"score": (1, 60, 500, 500)}),
    "pascalcontext-fcn16s": (43, None, {"score": (1, 60, 500, 500)}),
    "pascalcontext-fcn8s": (47, 135589364, {"score": (1, 60, 500, 500)}),
    "nyud-fcn32s-color": (39, 140978024, {"score": (1, 40, 500, 500)}),
    "nyud-fcn32s-hha": (39, 140978024, {"score": (1, 40, 500, 500)}),
    "nyud-fcn32s-color-d": (41, 140978600, {"score": (1, 40, 500, 500)}),
    "nyud-fcn32s-color-hha": (77, 275402448, {"score": (1, 40, 500, 500)}),
    "siftflow-fcn32s": (42, 138905444, {"score_sem": (1, 33, 500, 500), "score_geo": (1, 3, 500, 500)}),
    "siftflow-fcn16s": (50, 135568424, {"score_sem": (1, 33, 500, 500), "score_geo": (1, 3, 500, 500)}),
    "siftflow-fcn8s": (58, 134751980, {"score_sem": (1, 33, 500, 500), "score_geo": (1, 3, 500, 500)}),
}


def builders():
    try:
        from caffe_compat.model_zoo import builders as mod
    except ImportError:             # editable install made before model_zoo/ existed
        import importlib
        mod = importlib.import_module("model_zoo.builders")
    return mod


def test_bundled_prototxts_are_what_the_builders_generate(home):
    mod = builders()
    assert set(mod.BUILDERS) == set(zoo.read_registry(zoo.bundled_registry()))
    assert mod.stale() == [], "run: python -m caffe_compat.model_zoo.builders"


@pytest.mark.parametrize("name", sorted(ARCHITECTURE))
def test_generated_net_has_the_published_architecture(name, home):
    n_layers, n_params, outputs = ARCHITECTURE[name]
    entry = zoo.get(name)
    net, shapes, blobs = infer(entry.deploy)
    assert len(net.layer) == n_layers
    if n_params is not None:
        assert learnable(blobs) == n_params
    for blob, shape in outputs.items():
        assert shapes[blob] == shape
    classes = {k or "": len(zoo.labels(entry, k or None)) for k in entry.labels}
    for key, count in classes.items():
        out = key or next(iter(outputs))
        assert shapes[out][1] == count, (name, out)
    if entry.input_size and name.startswith(("bvlc_", "vgg", "resnet", "squeezenet", "finetune")):
        data = next(l for l in net.layer if l.type == "Input")
        assert tuple(data.input_param.shape[0].dim[2:]) == entry.input_size


def test_fcn_crops_and_layer_names_follow_upstream(home):
    net, shapes, blobs = infer(zoo.get("voc-fcn8s").deploy)
    crops = {l.name: list(l.crop_param.offset) for l in net.layer if l.type == "Crop"}
    assert crops == {"score_pool4c": [5], "score_pool3c": [9], "score": [31]}
    assert blobs["upscore8"] == ("Deconvolution", [(21, 21, 16, 16)])
    assert blobs["fc6"] == ("Convolution", [(4096, 512, 7, 7), (4096,)])
    net, shapes, blobs = infer(zoo.get("nyud-fcn32s-color-d").deploy)
    assert blobs["conv1_1_bgrd"][1][0] == (64, 4, 3, 3)
    net, shapes, blobs = infer(zoo.get("nyud-fcn32s-color-hha").deploy)
    assert {"conv1_1color", "conv1_1hha", "score_frcolor", "score_frhha", "score_fused"} <= set(blobs)


def test_googlenet_and_resnet_blob_shapes(home):
    net, shapes, _ = infer(zoo.get("bvlc_googlenet").deploy)
    widths = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
              "5a": 832, "5b": 1024}
    for module, width in widths.items():
        side = {"3": 28, "4": 14, "5": 7}[module[0]]
        assert shapes[f"inception_{module}/output"] == (10, width, side, side)
    net, shapes, blobs = infer(zoo.get("resnet101").deploy)
    assert shapes["res4b22"] == (1, 1024, 14, 14) and shapes["res5c"] == (1, 2048, 7, 7)
    assert blobs["res3a_branch2a"][1] == [(128, 256, 1, 1)]   # stride 2 sits in the 1x1
    assert [l.convolution_param.stride[0] for l in net.layer if l.name == "res3a_branch2a"] == [2]


# --------------------------------------------------------------------------- upstream files

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# upstream file names of the deploy nets (models/*/deploy.prototxt are found by folder)
# (VGG-16: the model-zoo gist's deploy as tuzand/logoretrieval keeps it, with a MemoryData input;
# fzliu/style-transfer's copy is cut at pool5 and uses AVE pooling)
UPSTREAM_NAMES = {"vgg16": ["tuzand__logoretrieval/models/vgg_16/VGG_ILSVRC_16_layers_deploy.prototxt"],
                  "vgg19": ["VGG_ILSVRC_19_layers_deploy.prototxt"],
                  "resnet50": ["ResNet-50-deploy.prototxt"],
                  "resnet101": ["ResNet-101-deploy.prototxt"],
                  "resnet152": ["ResNet-152-deploy.prototxt"]}
SKIPPED_TYPES = {"Input", "MemoryData", "Python", "Data", "SoftmaxWithLoss", "Accuracy", "Silence"}


def _fc1000_to_fc8(layer) -> None:
    """tuzand's VGG-16 copy renames fc8's top "fc1000"; the model-zoo gist (and its VGG-19
    twin) call it "fc8"."""
    layer.top[:] = ["fc8" if t == "fc1000" else t for t in layer.top]
    layer.bottom[:] = ["fc8" if b == "fc1000" else b for b in layer.bottom]


#: Local edits of the corpus copies, undone before comparing (each says which and why).
COPY_EDITS = {"vgg16": [_fc1000_to_fc8]}


def _upstream_files() -> dict:
    found = {}
    if not SHARED_CORPUS.is_dir():
        return found
    for name in ARCHITECTURE:
        candidates = [p for n in UPSTREAM_NAMES.get(name, [])
                      for p in ([SHARED_CORPUS / n] if "/" in n else SHARED_CORPUS.rglob(n))
                      if p.is_file()]
        candidates += [p for p in SHARED_CORPUS.rglob("deploy.prototxt")
                       if p.parent.name in (name, name.replace("_v", "_"), f"SqueezeNet_{name[-4:]}")]
        if candidates:
            found[name] = candidates[0]
    return found


@pytest.mark.skipif(not _upstream_files(), reason=f"no upstream prototxts under {SHARED_CORPUS}")
@pytest.mark.parametrize("name", sorted(_upstream_files()) or ["-"])
def test_generated_net_equals_upstream_field_for_field(name, home):
    from caffe_compat.formats.prototxt import read_net
    ours = [l for l in read_net(str(zoo.get(name).deploy)).param.layer if l.type not in SKIPPED_TYPES]
    theirs = [l for l in read_net(str(_upstream_files()[name])).param.layer
              if l.type not in SKIPPED_TYPES]
    for layer in theirs:
        for fix in COPY_EDITS.get(name, ()):
            fix(layer)
    assert [l.name for l in ours] == [l.name for l in theirs]
    for a, b in zip(ours, theirs):
        assert a == b, f"{name}: layer {a.name} differs:\nours:\n{a}\nupstream:\n{b}"


def _upstream_fcn_eval_nets() -> dict:
    """FCN zoo name -> upstream's test/val prototxt (fcn.berkeleyvision.org), when present."""
    found = {}
    for name in ARCHITECTURE:
        for file in ("test.prototxt", "val.prototxt"):
            path = SHARED_CORPUS / "fcn" / name / file
            if "fcn" in name and path.is_file():
                found[name] = path
                break
    return found


@pytest.mark.skipif(not _upstream_fcn_eval_nets(), reason=f"no upstream FCN nets under {SHARED_CORPUS}")
@pytest.mark.parametrize("name", sorted(_upstream_fcn_eval_nets()) or ["-"])
def test_generated_fcn_deploy_equals_upstreams_eval_net_field_for_field(name, home):
    """The FCN builders take their pieces from the FCN recipe, so the recipe cannot be their
    reference: upstream's own test/val net is, without what a deploy net leaves out (the
    Python data layer, the losses, Dropout)."""
    from caffe_compat.formats.prototxt import read_net
    left_out = {"Input", "Python", "SoftmaxWithLoss", "Dropout"}
    ours = [l for l in read_net(str(zoo.get(name).deploy)).param.layer if l.type not in left_out]
    theirs = [l for l in read_net(str(_upstream_fcn_eval_nets()[name])).param.layer
              if l.type not in left_out]
    assert [l.name for l in ours] == [l.name for l in theirs]
    for a, b in zip(ours, theirs):
        assert a == b, f"{name}: layer {a.name} differs:\nours:\n{a}\nupstream:\n{b}"
