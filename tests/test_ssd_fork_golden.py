"""SSD nets against the real SSD fork of Caffe (weiliu89/caffe ``ssd`` 4817bf8).

``tests/golden/ssd_fork/`` holds what the fork computed (see its README.md): every PriorBox,
Normalize, Softmax and the Concat/Reshape/Flatten tops that feed DetectionOutput, and the
DetectionOutput rows, for two real-weight face/plate detectors and MobileNet-SSD with
generated weights. The prototxts and real weights are corpus files (../shared/corpus, not
copied here): the tests skip without it.

Tolerances are the README's: blobs rel. L2 <= 1e-5; detections: the same row count, then
rows sorted by score (ties by label, then xmin) equal in label and within 1e-5 rel. L2.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib

import numpy as np
import pytest

import caffe_compat as caffe
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "ssd_fork")
CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpus"))
SETS = ["yufacedetectnet_v1", "hyperlpr_mininet_ssd_v1", "mobilenet_ssd"]
BLOB_TOL = 1e-5
DET_TOL = 1e-5


def rel(a, ref) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30))


def sorted_rows(rows):
    rows = np.asarray(rows).reshape(-1, 7)
    return rows[np.lexsort((rows[:, 3], rows[:, 1], -rows[:, 2]))]


def generated_blob(name: str, layer_type: str, index: int, shape) -> np.ndarray:
    """The golden README's generation rule (per blob RandomState(crc32("<layer>/<i>"))),
    written here from its description, not imported."""
    rs = np.random.RandomState(zlib.crc32(f"{name}/{index}".encode()) & 0xFFFFFFFF)
    shape = tuple(int(d) for d in shape)
    fan_in = max(int(np.prod(shape[1:])), 1)
    if layer_type in ("Convolution", "Deconvolution", "InnerProduct"):
        a = rs.randn(*shape) * np.sqrt(2.0 / fan_in) if index == 0 else rs.randn(*shape) * 0.01
    elif layer_type == "BatchNorm":
        a = [lambda: rs.randn(*shape) * 0.1, lambda: rs.uniform(0.5, 1.5, shape),
             lambda: np.ones(shape)][min(index, 2)]()
    elif layer_type == "Scale":
        a = 1.0 + 0.1 * rs.randn(*shape) if index == 0 else 0.1 * rs.randn(*shape)
    elif len(shape) >= 2:
        a = rs.randn(*shape) * np.sqrt(1.0 / fan_in)
    else:
        a = rs.randn(*shape) * 0.01
    return np.asarray(a, np.float32).reshape(shape)


def test_generated_weights_equal_the_forks_file(tmp_path):
    """Our reading of the generation rule gives the values of the file the fork loaded
    (its generator lives beside the shared golden data; skipped without it)."""
    tool = os.path.join(HERE, "..", "..", "shared", "golden", "ssd_fork", "gen_weights.py")
    if not os.path.isfile(tool):
        pytest.skip("../shared/golden/ssd_fork/gen_weights.py not present")
    import importlib.util
    spec = importlib.util.spec_from_file_location("ssd_gen_weights", tool)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    layers = os.path.join(GOLDEN, "mobilenet_ssd", "layers.json")
    target = str(tmp_path / "fork.caffemodel")
    gen.write_caffemodel(target, gen.weights_for_layers_json(layers))
    with open(target, "rb") as handle:
        meta = json.loads(str(np.load(os.path.join(GOLDEN, "mobilenet_ssd", "golden.npz"))["meta"]))
        assert hashlib.sha256(handle.read()).hexdigest() == meta["weights"]["caffemodel_sha256"]
    ours = caffe_compat_read(weights_for("mobilenet_ssd", meta, tmp_path))
    for name, blobs in caffe_compat_read(target).items():
        assert all(np.array_equal(a, b) for a, b in zip(ours[name], blobs)), name


def caffe_compat_read(path: str) -> dict:
    from caffe_compat.formats.caffemodel import read_caffemodel
    return {layer.name: layer.blobs for layer in read_caffemodel(path).layers}


def weights_for(set_name: str, meta: dict, tmp_path) -> str:
    info = meta["weights"]
    if info["kind"] == "real":
        return os.path.join(CORPUS, info["path"])
    with open(os.path.join(GOLDEN, set_name, info["layers_json"])) as handle:
        layers = json.load(handle)
    path = str(tmp_path / "generated.caffemodel")
    write_caffemodel(path, [LayerWeights(n, t, [generated_blob(n, t, i, s) for i, s in enumerate(shapes)])
                            for n, t, shapes in layers])
    return path


def load_set(set_name: str):
    z = np.load(os.path.join(GOLDEN, set_name, "golden.npz"))
    meta = json.loads(str(z["meta"]))
    prototxt = os.path.join(CORPUS, meta["prototxt"])
    if not os.path.isfile(prototxt):
        pytest.skip(f"corpus file {meta['prototxt']} not present")
    return z, meta, prototxt


@pytest.fixture(scope="module", params=SETS)
def ran(request, tmp_path_factory):
    """(golden npz, meta, net after one forward on the golden input)."""
    set_name = request.param
    z, meta, prototxt = load_set(set_name)
    weights = weights_for(set_name, meta, tmp_path_factory.mktemp(set_name))
    info = meta["weights"]
    if info["kind"] == "real":
        checked, expected = weights, info["sha256"]
    else:   # the shape list the values were generated from (the file layout differs)
        checked = os.path.join(GOLDEN, set_name, info["layers_json"])
        expected = info["layers_json_sha256"]
    with open(checked, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == expected, \
            f"{set_name}: not the file the fork ran"
    net = caffe.Net(prototxt, weights, caffe.TEST)
    x = z["input/data"]
    net.blobs["data"].reshape(*x.shape)
    net.blobs["data"].data[...] = x
    net.forward()
    return set_name, z, meta, net


def test_intermediate_blobs_match_the_fork(ran):
    set_name, z, meta, net = ran
    keys = [k for k in z.files if k.startswith("blob/")]
    assert keys
    for key in keys:
        name = key[len("blob/"):]
        assert rel(net.blobs[name].data, z[key]) <= BLOB_TOL, f"{set_name}: {name}"


def test_priorbox_truncates_fractional_sizes_like_the_fork(ran):
    """prior_box_layer.cpp stores min/max sizes in int: 51.2 is used as 51 (hyperlpr)."""
    set_name, z, meta, net = ran
    for key in (k for k in z.files if k.endswith("_priorbox") and k.startswith("blob/")):
        assert np.array_equal(net.blobs[key[5:]].data, z[key]) or \
            rel(net.blobs[key[5:]].data, z[key]) <= 1e-7, key


def test_detections_match_the_fork(ran):
    set_name, z, meta, net = ran
    out = "detection_out"
    ours = np.asarray(net.blobs[out].data).reshape(-1, 7)
    ours = ours[ours[:, 1] != -1]              # the fork's "no detection" row, if any
    ref = z[f"detection/{out}"]
    assert len(ours) == int(z[f"detection/{out}/num_rows"]) == len(ref), set_name
    a, b = sorted_rows(ours), sorted_rows(ref)
    assert np.array_equal(a[:, :2], b[:, :2]), f"{set_name}: image ids / labels differ"
    assert rel(a, b) <= DET_TOL, set_name
