"""DataTransformer against a loop-by-loop re-derivation of data_transformer.cpp.

The reference below walks (c, h, w) and indexes exactly as Caffe's Transform does:
``data_index = (c * H + h_off + h) * W + w_off + w``, the mean image indexed at the
same ``data_index`` (subtracted before the crop), mirrored output column
``width - 1 - w``, value ``(x - mean) * scale``. Random draws (mirror first, then the
crop offsets) are replayed from a copy of the transformer's generator state.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from caffe_compat.engine.data_transformer import DataTransformer, TransformError
from caffe_compat.engine.fillers import set_random_seed
from caffe_compat.formats.binaryproto import write_binaryproto
from caffe_compat.io import array_to_datum
from caffe_compat.proto import caffe_pb2

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def tparam(**kw) -> caffe_pb2.TransformationParameter:
    return caffe_pb2.TransformationParameter(**kw)


def replay_draws(t: DataTransformer, shape):
    """(do_mirror, h_off, w_off) the transformer's next transform will use."""
    r = np.random.RandomState()
    r.set_state(t.rng.get_state())
    _, h, w = shape
    do_mirror = bool(t.mirror and r.randint(2) == 1)
    crop = t.crop_size
    if crop and t.phase == TRAIN:
        return do_mirror, r.randint(h - crop + 1), r.randint(w - crop + 1)
    if crop:
        return do_mirror, (h - crop) // 2, (w - crop) // 2
    return do_mirror, 0, 0


def caffe_reference(x, p, do_mirror, h_off, w_off, mean=None):
    """data_transformer.cpp's Transform(const Datum&, Dtype*) loop, in float32."""
    C, H, W = x.shape
    crop = p.crop_size
    height, width = (crop, crop) if crop else (H, W)
    flat = x.reshape(-1)
    mean_flat = None if mean is None else mean.reshape(-1)
    means = list(p.mean_value) * (C if len(p.mean_value) == 1 else 1)
    scale = np.float32(p.scale)
    out = np.zeros(C * height * width, dtype=np.float32)
    for c in range(C):
        for h in range(height):
            for w in range(width):
                data_index = (c * H + h_off + h) * W + w_off + w
                col = width - 1 - w if do_mirror else w
                top_index = (c * height + h) * width + col
                v = np.float32(flat[data_index])
                if mean_flat is not None:
                    out[top_index] = (v - np.float32(mean_flat[data_index])) * scale
                elif means:
                    out[top_index] = (v - np.float32(means[c])) * scale
                else:
                    out[top_index] = v * scale
    return out.reshape(C, height, width)


def image(c=3, h=7, w=8, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (c, h, w)).astype(np.uint8)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(scale=0.00390625),
    dict(mean_value=[104.0, 117.0, 123.0], scale=0.5),
    dict(mean_value=[100.0], scale=2.0),
    dict(crop_size=4),
    dict(crop_size=4, mirror=True, mean_value=[10.0, 20.0, 30.0], scale=0.25),
    dict(mirror=True, scale=1.5),
])
def test_options_match_caffe_loop(phase, kw):
    p = tparam(**kw)
    set_random_seed(3)
    t = DataTransformer(p, phase)
    for seed in range(6):
        x = image(seed=seed)
        draws = replay_draws(t, x.shape)
        ours = t.transform_array(x)
        ref = caffe_reference(x, p, *draws)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, ref)


def test_mean_is_subtracted_before_the_crop_at_the_crop_offset(tmp_path):
    x = image(h=7, w=9)
    mean = np.random.RandomState(1).uniform(0, 255, (1, 3, 7, 9)).astype(np.float32)
    write_binaryproto(tmp_path / "mean.binaryproto", mean)
    p = tparam(mean_file=str(tmp_path / "mean.binaryproto"), crop_size=4, scale=0.5)
    t = DataTransformer(p, TEST)
    out = t.transform_array(x)
    # TEST: centre crop at ((7 - 4) // 2, (9 - 4) // 2) = (1, 2), mean indexed there too.
    expected = (x[:, 1:5, 2:6].astype(np.float32) - mean[0, :, 1:5, 2:6]) * np.float32(0.5)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, caffe_reference(x, p, False, 1, 2, mean[0]))
    # TRAIN: random crops, the mean always taken at the same offset as the pixels.
    t = DataTransformer(p, TRAIN)
    for _ in range(5):
        draws = replay_draws(t, x.shape)
        np.testing.assert_array_equal(t.transform_array(x),
                                      caffe_reference(x, p, *draws, mean=mean[0]))


def test_order_is_mean_then_scale_then_mirror():
    x = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    t = DataTransformer(tparam(mean_value=[1.0], scale=10.0, mirror=True), TEST)
    seen = set()
    for _ in range(20):
        out = t.transform_array(x)
        plain = (x[0].astype(np.float32) - 1) * 10
        if np.array_equal(out[0], plain):
            seen.add("plain")
        else:
            np.testing.assert_array_equal(out[0], plain[:, ::-1])
            seen.add("mirrored")
    # Caffe mirrors at random in every phase (mirror && Rand(2)), TEST included.
    assert seen == {"plain", "mirrored"}


def test_train_crops_are_random_and_cover_every_offset():
    x = image(c=1, h=5, w=5)
    t = DataTransformer(tparam(crop_size=3), TRAIN)
    offsets = set()
    for _ in range(200):
        out = t.transform_array(x)
        hits = [(i, j) for i in range(3) for j in range(3)
                if np.array_equal(out[0], x[0, i:i + 3, j:j + 3])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert offsets == {(i, j) for i in range(3) for j in range(3)}


def test_seed_makes_transforms_reproducible():
    p = tparam(crop_size=4, mirror=True)
    x = image()
    runs = []
    for _ in range(2):
        set_random_seed(11)
        t = DataTransformer(p, TRAIN)
        runs.append([t.transform_array(x) for _ in range(5)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_float_datum_and_uint8_datum():
    p = tparam(scale=2.0, mean_value=[0.5])
    t = DataTransformer(p, TEST)
    f = np.random.RandomState(0).randn(2, 3, 4).astype(np.float32)
    np.testing.assert_array_equal(t.transform_datum(array_to_datum(f)), (f - np.float32(0.5)) * 2)
    u = image(c=2, h=3, w=4)
    np.testing.assert_array_equal(t.transform_datum(array_to_datum(u)),
                                  (u.astype(np.float32) - np.float32(0.5)) * 2)


def encoded_datum(img_hwc, label=0):
    ok, buf = cv2.imencode(".png", img_hwc)
    assert ok
    return caffe_pb2.Datum(data=buf.tobytes(), encoded=True, label=label)


def test_encoded_datum_decodes_bgr_and_honours_force_flags():
    bgr = np.random.RandomState(2).randint(0, 256, (6, 5, 3)).astype(np.uint8)
    datum = encoded_datum(bgr)
    t = DataTransformer(tparam(), TEST)
    np.testing.assert_array_equal(t.transform_datum(datum),
                                  bgr.transpose(2, 0, 1).astype(np.float32))
    gray = DataTransformer(tparam(force_gray=True), TEST).transform_datum(datum)
    expected_gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert gray.shape == (1, 6, 5)
    np.testing.assert_array_equal(gray[0], cv2.imdecode(np.frombuffer(datum.data, np.uint8),
                                                        cv2.IMREAD_GRAYSCALE))
    assert np.abs(gray[0] - expected_gray).max() <= 1
    # A gray PNG decodes natively to 1 channel, to 3 with force_color.
    g = encoded_datum(expected_gray)
    assert DataTransformer(tparam(), TEST).transform_datum(g).shape == (1, 6, 5)
    color = DataTransformer(tparam(force_color=True), TEST).transform_datum(g)
    assert color.shape == (3, 6, 5)
    np.testing.assert_array_equal(color[0], color[2])
    # Crop and mean apply after decoding.
    t = DataTransformer(tparam(crop_size=3, mean_value=[1, 2, 3]), TEST)
    crop = bgr.transpose(2, 0, 1)[:, 1:4, 1:4].astype(np.float32)
    np.testing.assert_array_equal(t.transform_datum(datum),
                                  crop - np.float32([1, 2, 3])[:, None, None])


def test_transform_image_matches_datum_path():
    bgr = np.random.RandomState(4).randint(0, 256, (6, 7, 3)).astype(np.uint8)
    p = tparam(crop_size=4, mean_value=[5, 6, 7], scale=0.5)
    a = DataTransformer(p, TEST).transform_image(bgr)
    b = DataTransformer(p, TEST).transform_datum(array_to_datum(bgr.transpose(2, 0, 1).copy()))
    np.testing.assert_array_equal(a, b)
    gray = bgr[:, :, 0]
    assert DataTransformer(tparam(), TEST).transform_image(gray).shape == (1, 6, 7)


def test_errors(tmp_path):
    write_binaryproto(tmp_path / "m.binaryproto", np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(TransformError, match="mean_file and mean_value"):
        DataTransformer(tparam(mean_file=str(tmp_path / "m.binaryproto"), mean_value=[1]), TEST)
    with pytest.raises(TransformError, match="force_color and force_gray"):
        DataTransformer(tparam(force_color=True, force_gray=True), TEST)
    with pytest.raises(TransformError, match="cannot read mean_file.*nope"):
        DataTransformer(tparam(mean_file=str(tmp_path / "nope.binaryproto")), TEST)
    t = DataTransformer(tparam(mean_file=str(tmp_path / "m.binaryproto")), TEST)
    with pytest.raises(TransformError, match=r"has shape \(3, 4, 4\) but the image is \(3, 5, 5\)"):
        t.transform_array(image(h=5, w=5))
    with pytest.raises(TransformError, match="crop_size 9 is larger"):
        DataTransformer(tparam(crop_size=9), TEST).transform_array(image())
    with pytest.raises(TransformError, match="either 1 mean_value or as many as channels"):
        DataTransformer(tparam(mean_value=[1, 2]), TEST).transform_array(image())
    bad = caffe_pb2.Datum(channels=3, height=2, width=2, data=b"\x00" * 5)
    with pytest.raises(TransformError, match="holds 5 bytes"):
        DataTransformer(tparam(), TEST).transform_datum(bad)
    with pytest.raises(TransformError, match="could not decode"):
        DataTransformer(tparam(), TEST).transform_datum(
            caffe_pb2.Datum(data=b"not an image", encoded=True))
