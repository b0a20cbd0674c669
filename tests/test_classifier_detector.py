"""pycaffe's Classifier and Detector (BVLC master python/caffe/{classifier,detector}.py) on
tiny nets whose weights the tests write, so every prediction is re-derived with numpy.

Crop geometry expectations are worked out by hand from pycaffe's Detector.crop in the
comments next to each case.
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffe_compat import io as cio
from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2
from caffe_compat.pycaffe.classifier import Classifier
from caffe_compat.pycaffe.detector import Detector, round_half_away

DATA = Path(__file__).parent / "data" / "pycaffe"
F32 = np.float32
MEAN_BGR = np.array([104.0, 117.0, 123.0])


def write_caffemodel(path: Path, layers) -> str:
    """A V2 .caffemodel holding (layer name, type, [arrays]) written with the proto module."""
    net = caffe_pb2.NetParameter()
    net.name = "test_weights"
    for name, type_, arrays in layers:
        layer = net.layer.add()
        layer.name, layer.type = name, type_
        for a in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(a.shape)
            blob.data.extend(np.asarray(a, F32).ravel())
    path.write_bytes(net.SerializeToString())
    return str(path)


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def preprocess_np(hwc, mean=MEAN_BGR, raw_scale=255.0, input_scale=0.01):
    """pycaffe's steps for an already-sized RGB crop: to CHW, RGB->BGR, *raw, -mean, *scale."""
    chw = np.asarray(hwc, F32).transpose(2, 0, 1)[::-1].astype(np.float64)
    return (chw * raw_scale - mean[:, None, None]) * input_scale


# ---- Classifier ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    rng = np.random.RandomState(0)
    params = [rng.randn(6, 48).astype(F32) * F32(0.2), rng.randn(6).astype(F32) * F32(0.1),
              rng.randn(5, 6).astype(F32), rng.randn(5).astype(F32) * F32(0.1)]
    weights = write_caffemodel(tmp_path_factory.mktemp("clf") / "mlp.caffemodel",
                               [("fc1", "InnerProduct", params[:2]),
                                ("fc2", "InnerProduct", params[2:])])
    return str(DATA / "classifier_mlp.prototxt"), weights, params


def mlp_forward(x_nchw, params):
    w1, b1, w2, b2 = (p.astype(np.float64) for p in params)
    h = np.maximum(np.asarray(x_nchw, np.float64).reshape(len(x_nchw), -1) @ w1.T + b1, 0)
    z = h @ w2.T + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_classifier(mlp, **kw):
    model, weights, _ = mlp
    return Classifier(model, weights, mean=MEAN_BGR, raw_scale=255.0, input_scale=0.01,
                      channel_swap=(2, 1, 0), **kw)


def test_classifier_configuration(mlp):
    clf = make_classifier(mlp, image_dims=(7, 6))
    assert list(clf.crop_dims) == [4, 4]
    assert tuple(clf.image_dims) == (7, 6)
    t = clf.transformer
    assert t.inputs == {"data": (4, 3, 4, 4)}
    assert t.transpose["data"] == (2, 0, 1) and t.channel_swap["data"] == (2, 1, 0)
    assert t.raw_scale["data"] == 255.0 and t.input_scale["data"] == 0.01
    assert t.mean["data"].shape == (3, 1, 1)
    default = Classifier(mlp[0], mlp[1])
    assert list(default.image_dims) == [4, 4] and default.transformer.mean == {}


def test_classifier_predict_oversample(mlp):
    clf = make_classifier(mlp, image_dims=(7, 6))
    rng = np.random.RandomState(1)
    images = [rng.rand(9, 8, 3), rng.rand(5, 11, 3), rng.rand(7, 6, 3)]
    got = clf.predict(images)                       # 30 crops through a batch-4 net
    assert got.shape == (3, 5)
    # corners of a 7x6 image for 4x4 crops: rows 0 / 3, cols 0 / 2; centre int(3.5 - 2) = 1,
    # int(3 - 2) = 1; then the five mirrored
    starts = [(0, 0), (0, 2), (3, 0), (3, 2), (1, 1)]
    expect = []
    for im in images:
        resized = cio.resize_image(im, (7, 6))
        crops = [resized[y:y + 4, x:x + 4] for y, x in starts]
        crops += [c[:, ::-1] for c in crops]
        expect.append(mlp_forward(np.stack([preprocess_np(c) for c in crops]), mlp[2]).mean(0))
    assert rel_l2(got, expect) <= 1e-5


def test_classifier_predict_center_crop(mlp):
    clf = make_classifier(mlp, image_dims=(7, 6))
    rng = np.random.RandomState(2)
    images = [rng.rand(9, 8, 3), rng.rand(7, 6, 3)]
    got = clf.predict(images, oversample=False)
    # centre box: rows int(3.5 - 2) = 1 .. int(3.5 + 2) = 5, cols 1 .. 5
    crops = [cio.resize_image(im, (7, 6))[1:5, 1:5] for im in images]
    expect = mlp_forward(np.stack([preprocess_np(c) for c in crops]), mlp[2])
    assert got.shape == (2, 5)
    assert rel_l2(got, expect) <= 1e-5
    # oversampling averages different crops, so it must differ from the centre crop
    assert np.abs(clf.predict(images) - got).max() > 1e-3


def test_classifier_default_dims_is_whole_image(mlp):
    model, weights, params = mlp
    clf = Classifier(model, weights, raw_scale=1.0)
    im = np.random.RandomState(3).rand(4, 4, 3).astype(F32)
    got = clf.predict([im])
    # every "corner" and the centre is the whole image: average of it and its mirror
    x = np.stack([im.transpose(2, 0, 1), im[:, ::-1].transpose(2, 0, 1)])
    assert rel_l2(got[0], mlp_forward(x, params).mean(0)) <= 1e-5
    got1 = clf.predict([im], oversample=False)
    assert rel_l2(got1[0], mlp_forward(x[:1], params)[0]) <= 1e-5


# ---- Detector --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fc8(tmp_path_factory):
    rng = np.random.RandomState(4)
    params = [rng.randn(4, 192).astype(F32) * F32(0.1), rng.randn(4).astype(F32)]
    weights = write_caffemodel(tmp_path_factory.mktemp("det") / "fc8.caffemodel",
                               [("fc", "InnerProduct", params)])
    return str(DATA / "detector_fc8.prototxt"), weights, params


def fc_forward(x_nchw, params):
    w, b = (p.astype(np.float64) for p in params)
    return np.asarray(x_nchw, np.float64).reshape(len(x_nchw), -1) @ w.T + b


def make_detector(fc8, context_pad=None):
    model, weights, _ = fc8
    return Detector(model, weights, mean=MEAN_BGR, raw_scale=255.0, input_scale=0.01,
                    channel_swap=(2, 1, 0), context_pad=context_pad)


@pytest.fixture(scope="module")
def image():
    return np.random.RandomState(5).rand(10, 12, 3).astype(F32)


def test_detector_configure_crop(fc8):
    det = make_detector(fc8, context_pad=2)
    assert list(det.crop_dims) == [8, 8, 3] and det.context_pad == 2
    # the BGR mean back in RGB [0, 1] image space
    np.testing.assert_allclose(det.crop_mean.reshape(3), MEAN_BGR[::-1] / 255.0)
    plain = Detector(fc8[0], fc8[1], context_pad=2)
    assert plain.crop_mean.shape == (8, 8, 3) and not plain.crop_mean.any()


def test_detector_crop_without_context_is_a_view(fc8, image):
    det = make_detector(fc8)
    crop = det.crop(image, np.array([1, 2, 6, 9]))
    assert crop.shape == (5, 7, 3) and np.shares_memory(crop, image)
    np.testing.assert_array_equal(crop, image[1:6, 2:9])


def test_detector_crop_context_inside(fc8, image):
    det = make_detector(fc8, context_pad=2)
    # crop_size 8, scale 8 / (8 - 4) = 2. Window (2, 2, 5, 5): half 2, centre (4, 4),
    # box (0, 0, 8, 8), full 9, scale_h 8/9, no pad, clip keeps it; crop_h = round(9 * 8/9)
    # = 8; source im[0:8, 0:8] resized to 8x8 fills the whole crop.
    crop = det.crop(image, np.array([2, 2, 5, 5]))
    assert crop.shape == (8, 8, 3)
    np.testing.assert_array_equal(crop, cio.resize_image(image[0:8, 0:8], (8, 8)))
    np.testing.assert_allclose(crop, image[0:8, 0:8], rtol=1e-6)


def test_detector_crop_context_top_left_border(fc8, image):
    det = make_detector(fc8, context_pad=2)
    # Window (0, 0, 3, 3): centre (2, 2), box (-2, -2, 6, 6), full 9; pad = round(2 * 8/9 =
    # 1.78) = 2; clipped box (0, 0, 6, 6), clip 7, crop = round(7 * 8/9 = 6.2) = 6:
    # im[0:6, 0:6] resized to 6x6 goes to rows/cols 2..8, the rest is the mean.
    crop = det.crop(image, np.array([0, 0, 3, 3]))
    expect = np.ones((8, 8, 3)) * det.crop_mean
    expect[2:8, 2:8] = cio.resize_image(image[0:6, 0:6], (6, 6))
    np.testing.assert_array_equal(crop, expect)


def test_detector_crop_context_bottom_right_border(fc8, image):
    det = make_detector(fc8, context_pad=2)
    # Window (6, 8, 9, 11) in the 10x12 image: centre (8, 10), box (4, 6, 12, 14), full 9,
    # no pad; clipped to (4, 6, 10, 12) (clip 7, crop round(6.2) = 6): im[4:10, 6:12] at 0..6.
    crop = det.crop(image, np.array([6, 8, 9, 11]))
    expect = np.ones((8, 8, 3)) * det.crop_mean
    expect[0:6, 0:6] = cio.resize_image(image[4:10, 6:12], (6, 6))
    np.testing.assert_array_equal(crop, expect)


def test_detector_crop_context_whole_image_window(fc8, image):
    det = make_detector(fc8, context_pad=2)
    # Window (0, 0, 9, 11): half (5, 6), centre (5, 6), box (-5, -6, 15, 18), full (21, 25);
    # pad_y = round(5 * 8/21 = 1.90) = 2, pad_x = round(6 * 8/25 = 1.92) = 2; clipped box
    # (0, 0, 10, 12), clip (11, 13), crop (round(4.19), round(4.16)) = (4, 4).
    crop = det.crop(image, np.array([0, 0, 9, 11]))
    expect = np.ones((8, 8, 3)) * det.crop_mean
    expect[2:6, 2:6] = cio.resize_image(image[0:10, 0:12], (4, 4))
    np.testing.assert_array_equal(crop, expect)
    # the mean padding preprocesses to zero
    pre = det.transformer.preprocess("data", crop)
    padding = np.ones((8, 8), bool)
    padding[2:6, 2:6] = False
    assert np.abs(pre[:, padding]).max() < 1e-6
    assert np.abs(pre[:, ~padding]).min() > 1e-3


def test_detector_crop_rounds_halves_away_from_zero(tmp_path, image):
    weights = write_caffemodel(tmp_path / "fc10.caffemodel", [
        ("fc", "InnerProduct", [np.zeros((3, 300), F32), np.zeros(3, F32)])])
    det = Detector(str(DATA / "detector_fc10.prototxt"), weights, context_pad=3)
    # crop_size 10, scale 10 / (10 - 6) = 2.5. Window (0, 4, 0, 7): rows: half 0.5, centre
    # 0.5, +-1.25 -> np.round(-0.75, 1.75) = (-1, 2), full 4, scale_h 2.5, pad_y = round(2.5)
    # = 3 (Python 2 round; Python 3 would give 2); clip (0, 2) -> clip_h 3, crop_h =
    # round(7.5) = 8, cut to 10 - 3 = 7. Cols: half 2, centre 6, +-5 -> (1, 11), full 11,
    # pad_x 0, crop_w = round(11 * 10/11) = 10. So im[0:2, 1:11] resized to 7x10 at rows 3..10.
    crop = det.crop(image, np.array([0, 4, 0, 7]))
    expect = np.zeros((10, 10, 3), F32)
    expect[3:10, 0:10] = cio.resize_image(image[0:2, 1:11], (7, 10))
    np.testing.assert_array_equal(crop, expect)


def test_round_half_away():
    assert [round_half_away(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, 0.0)] == \
        [1, 2, 3, -1, -3, 2, 0]


def _write_png(path: Path, rgb01: np.ndarray) -> str:
    Image.fromarray((rgb01 * 255).round().astype(np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("context_pad", [None, 2])
def test_detect_windows_end_to_end(fc8, tmp_path, context_pad):
    rng = np.random.RandomState(6)
    f1 = _write_png(tmp_path / "a.png", rng.rand(10, 12, 3))
    f2 = _write_png(tmp_path / "b.png", rng.rand(9, 7, 3))
    w1 = np.array([[0, 0, 5, 6], [2, 3, 9, 11], [1, 1, 9, 9]])
    w2 = np.array([[1, 1, 4, 4], [0, 0, 9, 7]])
    det = make_detector(fc8, context_pad=context_pad)
    dets = det.detect_windows(zip([f1, f2], [w1, w2]))   # an iterator, walked twice by pycaffe
    assert [d["filename"] for d in dets] == [f1] * 3 + [f2] * 2
    for d, w in zip(dets, list(w1) + list(w2)):
        np.testing.assert_array_equal(d["window"], w)
        assert d["prediction"].shape == (4,)

    x = []
    for fname, windows in ((f1, w1), (f2, w2)):
        im = cio.load_image(fname)
        for y0, x0, y1, x1 in windows:
            if context_pad:
                crop = det.crop(im, np.array([y0, x0, y1, x1]))   # checked by hand above
            else:
                crop = im[y0:y1, x0:x1]
            x.append(preprocess_np(cio.resize_image(crop, (8, 8))))
    expect = fc_forward(np.stack(x), fc8[2])
    assert rel_l2(np.stack([d["prediction"] for d in dets]), expect) <= 1e-5


def test_detect_selective_search_with_proposals(fc8, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_png(tmp_path / "a.png", np.random.RandomState(7).rand(10, 12, 3))
    windows = np.array([[0, 0, 5, 6], [2, 3, 9, 11]])
    det = make_detector(fc8)
    ref = det.detect_windows([(str(tmp_path / "a.png"), windows)])
    by_dict = det.detect_selective_search(["a.png"], proposals={"a.png": windows})
    seen = []
    by_call = det.detect_selective_search(["a.png"],
                                          proposals=lambda f: seen.append(f) or windows)
    assert seen == [str(tmp_path / "a.png")]
    for got in (by_dict, by_call):
        assert [d["filename"] for d in got] == [str(tmp_path / "a.png")] * 2
        np.testing.assert_array_equal(np.stack([d["prediction"] for d in got]),
                                      np.stack([d["prediction"] for d in ref]))
    with pytest.raises(CaffeCompatError, match="no proposals for 'b.png'"):
        det.detect_selective_search(["b.png"], proposals={"a.png": windows})


def test_detect_selective_search_default_sources(fc8, tmp_path, monkeypatch):
    import sys
    import types
    monkeypatch.chdir(tmp_path)
    _write_png(tmp_path / "a.png", np.random.RandomState(8).rand(10, 12, 3))
    det = make_detector(fc8)
    monkeypatch.setitem(sys.modules, "caffe_compat.recipes.rcnn.detector", None)
    monkeypatch.setitem(sys.modules, "selective_search_ijcv_with_python", None)
    with pytest.raises(CaffeCompatError, match="needs region proposals"):
        det.detect_selective_search(["a.png"])
    recipe = types.ModuleType("caffe_compat.recipes.rcnn.detector")
    recipe.selective_search_windows = lambda f: np.array([[0, 0, 4, 4]])
    monkeypatch.setitem(sys.modules, "caffe_compat.recipes.rcnn.detector", recipe)
    got = det.detect_selective_search(["a.png"])
    assert len(got) == 1 and list(got[0]["window"]) == [0, 0, 4, 4]


def test_detect_selective_search_uses_the_recipe_by_default(fc8, tmp_path, monkeypatch):
    """No proposals given: caffe-compat's own selective search supplies the windows."""
    monkeypatch.chdir(tmp_path)
    _write_png(tmp_path / "a.png", np.random.RandomState(8).rand(40, 48, 3))
    det = make_detector(fc8)
    got = det.detect_selective_search(["a.png"])
    assert len(got) >= 1 and all(len(d["window"]) == 4 for d in got)
