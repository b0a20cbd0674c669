"""DeepDream recipe: the notebook's step against real Caffe's gradient, the device fast
path against the notebook's pycaffe code, guided objectives, zoom sequences, the
``dream`` command and the offline ``demo``."""
from __future__ import annotations

import os
import socket

import mxnet as mx
import numpy as np
import pytest

import caffe_compat as caffe
import golden_harness as gh
from caffe_compat.cli.main import main
from caffe_compat.recipes import deepdream as dd
from caffe_compat.recipes.deepdream import fast, zoom
from caffe_compat.recipes.deepdream.targets import DreamTargetError, resolve_targets

pytestmark = pytest.mark.skipif(not os.path.isdir(gh.GOLDEN_DIR), reason="tests/golden missing")

MEAN = np.float32([104.0, 116.0, 122.0])


@pytest.fixture(scope="module")
def tiny():
    return gh.load("googlenet_tiny")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)


# ---- the notebook's step moves the image by real Caffe's gradient ----------------------
def test_make_step_moves_image_by_caffes_gradient(tiny, tmp_path):
    proto = dd.dream_prototxt(tiny.prototxt, tmp_path / "tmp.prototxt")
    assert "force_backward: true" in proto.read_text()
    net = caffe.Classifier(str(proto), tiny.weights, mean=MEAN, channel_swap=(2, 1, 0))
    x = tiny.npz["input/data"].copy()
    net.blobs["data"].data[...] = x
    topdiff = tiny.npz["topdiff/prob"]

    def objective_golden(dst):   # the top diff real Caffe back-propagated
        dst.diff[:] = topdiff

    np.random.seed(0)
    dd.make_step(net, step_size=1.5, end="prob", jitter=0, objective=objective_golden)
    g = tiny.npz["diff/data"][0]
    bias = MEAN[:, None, None]
    expected = np.clip(x + 1.5 / np.abs(g).mean() * g, -bias, 255 - bias)
    assert gh.rel_err(net.blobs["data"].data, expected) <= 1e-5

    # the device fast path takes the same step from the same gradient
    dreamer = dd.FastDreamer.from_files(tiny.prototxt, tiny.weights, end="prob")
    np.random.seed(0)
    moved = dreamer.make_step(mx.nd.array(x), step_size=1.5, jitter=0,
                              objective=lambda dst: mx.nd.array(topdiff))
    assert gh.rel_err(moved.asnumpy(), expected) <= 1e-5


def test_notebook_net_loader_sets_mean_and_force_backward(tiny):
    net = dd.load_dream_net(tiny.prototxt, tiny.weights)
    assert net.transformer.mean["data"].shape == (3, 1, 1)
    assert np.array_equal(net.transformer.mean["data"].ravel(), MEAN)
    net.blobs["data"].data[...] = tiny.npz["input/data"]
    net.forward(end="inception_3a/output")
    net.blobs["inception_3a/output"].diff[...] = 1.0
    net.backward(start="inception_3a/output")
    assert np.abs(net.blobs["data"].diff).sum() > 0     # force_backward took effect


# ---- fast path == pycaffe path --------------------------------------------------------
def _both_paths(tiny, end, img, seed=3, **kw):
    net = dd.load_dream_net(tiny.prototxt, tiny.weights, end=end)
    np.random.seed(seed)
    slow = dd.deepdream(net, img, end=end, **kw)
    dreamer = dd.FastDreamer.from_files(tiny.prototxt, tiny.weights, end=end)
    np.random.seed(seed)
    quick = dreamer.deepdream(img, **kw)
    return slow, quick, dreamer


def test_fast_path_dreams_the_notebooks_picture(tiny):
    img = _image(72, 96)
    steps = []
    slow, quick, dreamer = _both_paths(tiny, "inception_3b/output", img, iter_n=3, octave_n=2,
                                       jitter=4, progress=lambda o, i: steps.append((o, i)))
    assert slow.shape == quick.shape == img.shape
    assert np.abs(slow - img).mean() > 1.0               # it did dream
    assert gh.rel_err(quick, slow) <= 1e-5
    assert steps == [(o, i) for o in range(2) for i in range(3)] * 2   # pycaffe, then fast


def test_one_autograd_pass_gives_pycaffes_layer_by_layer_gradient(tiny):
    """The fast path's whole-graph backward (cut, hybridized block; LRN and Concat
    gradients routed around oneDNN's blocked-layout bugs by the engine) against
    pycaffe's layer-by-layer backward, which real Caffe's golden data checks."""
    end = "inception_3b/output"
    net = dd.load_dream_net(tiny.prototxt, tiny.weights, end=end)
    x = tiny.npz["input/data"]
    net.blobs["data"].data[...] = x
    net.forward(end=end)
    dd.objective_L2(net.blobs[end])
    net.backward(start=end)
    reference = net.blobs["data"].diff.copy()
    block = fast.truncate_block(caffe.Net(tiny.prototxt, tiny.weights, caffe.TEST).block, end)
    assert block.caffe_layers[-1].name == end
    block.set_outputs([end], end=end)
    block.hybridize(static_alloc=True)
    xin = mx.nd.array(x)
    xin.attach_grad()
    with mx.autograd.record():
        y = block(xin)
    y.backward(y.detach())
    assert gh.rel_err(y.asnumpy(), net.blobs[end].data) <= 1e-5
    assert gh.rel_err(xin.grad.asnumpy(), reference) <= 1e-5


def test_several_layers_sum_their_l2_objectives(tiny):
    ends = ["inception_3a/output", "inception_3b/output"]
    x = tiny.npz["input/data"]

    def input_grad(end):
        net = dd.load_dream_net(tiny.prototxt, tiny.weights, end=end)
        net.blobs["data"].data[...] = x
        np.random.seed(0)
        before = net.blobs["data"].data.copy()
        dd.make_step(net, end=end, jitter=0, clip=False, step_size=1.0)
        return net.blobs["data"].diff.copy(), net.blobs["data"].data - before

    g_a, _ = input_grad(ends[0])
    g_b, _ = input_grad(ends[1])
    g_ab, moved = input_grad(ends)
    assert gh.rel_err(g_ab, g_a + g_b) <= 1e-5
    assert gh.rel_err(moved, g_ab / np.abs(g_ab[0]).mean()) <= 1e-5
    # in-place blobs count as the deepest layer left them; both paths agree
    img = _image(64, 80, seed=1)
    slow, quick, _ = _both_paths(tiny, ["conv2/3x3", "inception_3a/5x5", "inception_3a/output"],
                                 img, iter_n=2, octave_n=2, jitter=4)
    assert gh.rel_err(quick, slow) <= 1e-5


def test_end_names_resolve_like_pycaffe(tiny):
    net = dd.load_dream_net(tiny.prototxt, tiny.weights)
    t = resolve_targets(net, "conv1/relu_7x7")               # a layer with another top name
    assert (t.layer, t.blob_names) == ("conv1/relu_7x7", ["conv1/7x7_s2"])
    t = resolve_targets(net, "conv2/3x3")                    # the conv, before its ReLU
    assert (t.layer, t.blob_names) == ("conv2/3x3", ["conv2/3x3"])
    with pytest.raises(DreamTargetError, match="nearby names: inception_3a/output"):
        resolve_targets(net, "inception_3a/outptu")
    with pytest.raises(DreamTargetError, match="input"):
        resolve_targets(net, "data")


def test_cut_net_dreams_pictures_too_small_for_the_classifier(tiny):
    img = _image(40, 40)
    full = dd.load_dream_net(tiny.prototxt, tiny.weights)
    with pytest.raises(caffe.errors.LayerError, match="pool5/7x7_s1"):
        dd.deepdream(full, img, iter_n=1, octave_n=1, end="inception_3a/output")
    cut = dd.load_dream_net(tiny.prototxt, tiny.weights, end="inception_3a/output")
    assert cut._layer_names[-1] == "inception_3a/output"
    out = dd.deepdream(cut, img, iter_n=1, octave_n=2, end="inception_3a/output", jitter=2)
    assert out.shape == img.shape


# ---- guided dreams --------------------------------------------------------------------
class _FakeBlob:
    def __init__(self, data):
        self.data = data
        self.diff = np.zeros_like(data)


def test_guided_objective_matches_hand_computation():
    rng = np.random.RandomState(0)
    x = np.maximum(rng.randn(1, 6, 5, 4), 0).astype(np.float32)
    x[0, :, 0, 0] = 0      # an all-zero position: every dot product ties, argmax picks 0
    guide = np.maximum(rng.randn(6, 3, 7), 0).astype(np.float32)
    expected = np.zeros_like(x)
    g = guide.reshape(6, -1)
    for i in range(5):
        for j in range(4):
            scores = [float(np.dot(x[0, :, i, j], g[:, q])) for q in range(g.shape[1])]
            expected[0, :, i, j] = g[:, int(np.argmax(scores))]
    blob = _FakeBlob(x)
    dd.objective_guide(blob, guide)
    assert np.array_equal(blob.diff, expected)
    blob = _FakeBlob(x)
    dd.guide_objective(guide)(blob)
    assert np.array_equal(blob.diff, expected)
    head = dd.GuideObjective(guide)(mx.nd.array(x)).asnumpy()
    assert np.array_equal(head, expected)


def test_guided_dream_both_paths(tiny):
    end = "inception_3b/output"
    guide_img, img = _image(48, 56, seed=7), _image(64, 72, seed=8)
    net = dd.load_dream_net(tiny.prototxt, tiny.weights, end=end)
    feats = dd.guide_features(net, guide_img, end)
    dreamer = dd.FastDreamer.from_files(tiny.prototxt, tiny.weights, end=end)
    objective = dreamer.guide_features(guide_img)
    assert feats.shape == (44, 6, 7)
    assert gh.rel_err(objective.features.asnumpy(), feats.reshape(44, -1)) <= 1e-5
    np.random.seed(2)
    slow = dd.deepdream(net, img, iter_n=2, octave_n=2, end=end, jitter=4,
                        objective=dd.guide_objective(feats))
    np.random.seed(2)
    quick = dreamer.deepdream(img, iter_n=2, octave_n=2, jitter=4, objective=objective)
    assert slow.shape == img.shape
    assert gh.rel_err(quick, slow) <= 1e-5


# ---- zoom sequences ----------------------------------------------------------------------
def test_zoom_frame_is_a_centred_zoom_and_the_old_scipy_one_on_request():
    import scipy.ndimage as nd
    frame = _image(30, 40, seed=3)
    s = 0.1
    o = np.mgrid[0:30, 0:40, 0:3].astype(np.float64)
    centred = nd.map_coordinates(frame, [(1 - s) * o[0] + 30 * s / 2,
                                         (1 - s) * o[1] + 40 * s / 2, o[2]], order=1)
    assert np.allclose(zoom.zoom_frame(frame, s), centred, atol=1e-3)
    old = nd.map_coordinates(frame, [(1 - s) * (o[0] + 30 * s / 2),
                                     (1 - s) * (o[1] + 40 * s / 2), o[2]], order=1)
    assert np.allclose(zoom.zoom_frame(frame, s, scipy_before_0_18=True), old, atol=1e-3)
    assert np.array_equal(zoom.zoom_frame(frame, 0.0), frame)


def test_zoom_sequence_writes_numbered_frames_and_a_movie(tiny, tmp_path):
    dreamer = dd.FastDreamer.from_files(tiny.prototxt, tiny.weights, end="inception_3a/output")
    seen = []
    np.random.seed(0)
    result = dd.zoom_sequence(lambda f: dreamer.deepdream(f, iter_n=1, octave_n=2, jitter=2),
                              _image(48, 64), 3, 0.05, out_dir=tmp_path / "frames",
                              on_frame=lambda i, p: seen.append(i))
    assert [p.name for p in result.frames] == ["0000.jpg", "0001.jpg", "0002.jpg"]
    assert all(p.is_file() for p in result.frames) and seen == [0, 1, 2]
    assert result.video.suffix == (".mp4" if zoom.ffmpeg_available() else ".gif")
    assert result.video.stat().st_size > 0
    assert dd.load_image(result.frames[2]).shape == (48, 64, 3)
    assert result.last.shape == (48, 64, 3)


# ---- command line -------------------------------------------------------------------------
def test_dream_command_end_to_end(tiny, tmp_path, capsys):
    src = tmp_path / "in.png"
    dd.save_image(_image(60, 80, seed=4), src)
    common = ["--prototxt", tiny.prototxt, "--weights", tiny.weights,
              "--end", "inception_3a/output", "--iters", "2", "--octaves", "2",
              "--jitter", "4", "--seed", "5", "--gpu", "-1"]
    assert main(["dream", str(src), "-o", str(tmp_path / "fast.png")] + common) == 0
    assert main(["dream", str(src), "-o", str(tmp_path / "slow.png"), "--pycaffe"] + common) == 0
    a = dd.load_image(tmp_path / "fast.png")
    b = dd.load_image(tmp_path / "slow.png")
    assert a.shape == (60, 80, 3)
    assert np.abs(a - b).max() <= 1.0                      # same picture (uint8 rounding)
    assert np.abs(a - dd.load_image(src)).mean() > 1.0
    assert "wrote" in capsys.readouterr().out

    assert main(["dream", str(src), "-o", str(tmp_path / "z.jpg"), "--frames", "2"] + common) == 0
    assert (tmp_path / "z_0000.jpg").is_file() and (tmp_path / "z_0001.jpg").is_file()

    capsys.readouterr()
    bad = ["dream", str(src), "-o", str(tmp_path / "x.png"), "--prototxt", tiny.prototxt,
           "--weights", tiny.weights, "--end", "inception_3a/outptu"]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nearby names: inception_3a/output" in err[0]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_demo_runs_offline_with_the_embedded_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", f"http://127.0.0.1:{_closed_port()}/models")
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "cache"))
    out = tmp_path / "demo-out"
    assert main(["demo", "--quick", "--only", "deepdream", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    offline = [l for l in lines if "download" in l]
    assert len(offline) == 1 and offline[0].startswith("offline:")
    assert "embedded model" in offline[0]
    for name in ("dream.jpg", "guided.jpg", "zoom/0000.jpg", "zoom/0001.jpg"):
        assert (out / "deepdream" / name).is_file(), name
    diff_line = [l for l in lines if l.startswith("4/4")][0]
    assert float(diff_line.split("relative difference ")[1].split()[0]) <= 1e-5
    assert str(out) in lines[-1]


def test_embedded_model_is_small_and_googlenet_named():
    prototxt, weights = dd.embedded_model()
    assert weights.stat().st_size < 2 * 1024 * 1024
    net = caffe.Net(str(prototxt), str(weights), caffe.TEST)
    names = set(net._layer_names)
    for layer in ("conv1/7x7_s2", "pool1/norm1", "conv2/3x3", "conv2/norm2", "pool2/3x3_s2",
                  "inception_3a/output", "inception_3b/5x5_reduce", "inception_3b/output"):
        assert layer in names
    w = net.params["conv1/7x7_s2"][0].data
    from caffe_compat.recipes.deepdream.make_embedded_model import conv1_bank
    assert np.allclose(w, conv1_bank()[0])                 # the documented fixed bank
    later = net.params["inception_3b/3x3"][0].data
    assert np.abs(later).mean() > 0 and np.isfinite(later).all()
