"""caffe_compat.io against pycaffe's caffe.io semantics (BVLC master python/caffe/io.py).

Expected values are re-derived here with plain numpy (or by hand), not by calling the code
under test, except where a step that has its own test (resize_image) feeds another.
"""
import numpy as np
import pytest
from PIL import Image

from caffe_compat import io as cio
from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

F32 = np.float32


def _rng(seed=0):
    return np.random.RandomState(seed)


# ---- Transformer -----------------------------------------------------------------------------

def _transformer(shape=(1, 3, 4, 5)):
    return cio.Transformer({"data": shape})


def test_transformer_defaults_and_dicts():
    t = _transformer()
    assert t.inputs == {"data": (1, 3, 4, 5)}
    for d in (t.transpose, t.channel_swap, t.raw_scale, t.mean, t.input_scale):
        assert d == {}
    x = _rng().rand(4, 5, 3)
    out = t.preprocess("data", x)            # nothing configured: only the float32 cast
    assert out.dtype == F32 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, x.astype(F32))


def test_preprocess_each_step_alone():
    x = _rng(1).rand(4, 5, 3) * 2 - 0.5
    xf = x.astype(F32)

    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    np.testing.assert_array_equal(t.preprocess("data", x), xf.transpose(2, 0, 1))

    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    np.testing.assert_array_equal(t.preprocess("data", x), xf.transpose(2, 0, 1)[::-1])

    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_raw_scale("data", 255)
    np.testing.assert_array_equal(t.preprocess("data", x), xf.transpose(2, 0, 1) * F32(255))

    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_input_scale("data", 0.25)
    np.testing.assert_array_equal(t.preprocess("data", x), xf.transpose(2, 0, 1) * F32(0.25))

    mean = np.array([0.1, 0.2, 0.3])
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", mean)
    assert t.mean["data"].shape == (3, 1, 1)
    expect = (xf.transpose(2, 0, 1).astype(np.float64) - mean[:, None, None]).astype(F32)
    np.testing.assert_array_equal(t.preprocess("data", x), expect)


def test_preprocess_order_of_all_steps():
    """pycaffe's order: transpose, channel_swap, raw_scale, mean, input_scale."""
    x = _rng(2).rand(4, 5, 3)
    mean = np.array([104.0, 117.0, 123.0])
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", mean)
    t.set_input_scale("data", 0.017)
    chw = x.astype(F32).transpose(2, 0, 1)[[2, 1, 0]].astype(np.float64)
    expect = (chw * 255.0 - mean[:, None, None]) * 0.017
    out = t.preprocess("data", x)
    assert out.dtype == F32 and out.shape == (3, 4, 5)
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-6)
    # Other orders give clearly different numbers, so the check above pins the order.
    wrong = ((chw - mean[:, None, None]) * 255.0) * 0.017
    assert np.abs(out - wrong).max() > 1.0


def test_preprocess_full_mean_image_and_2d_mean():
    x = _rng(3).rand(4, 5, 3)
    mean = _rng(4).rand(3, 4, 5)
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", mean)
    np.testing.assert_allclose(t.preprocess("data", x), x.transpose(2, 0, 1) - mean, rtol=1e-6,
                               atol=1e-7)

    t1 = _transformer((1, 1, 4, 5))
    mean2 = _rng(5).rand(4, 5)
    t1.set_mean("data", mean2)                     # (H, W) counts as (1, H, W)
    t1.set_transpose("data", (2, 0, 1))
    g = _rng(6).rand(4, 5, 1)
    np.testing.assert_allclose(t1.preprocess("data", g), g.transpose(2, 0, 1) - mean2[None],
                               rtol=1e-6, atol=1e-7)


def test_preprocess_resizes_to_input_size_first():
    x = _rng(7).rand(8, 10, 3)
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_raw_scale("data", 2.0)
    out = t.preprocess("data", x)
    expect = cio.resize_image(x.astype(F32), (4, 5)).transpose(2, 0, 1) * F32(2.0)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, expect)


def test_preprocess_works_in_place_like_pycaffe():
    """float32 data of the input's size with no channel swap is scaled in place (pycaffe)."""
    x = _rng(8).rand(4, 5, 3).astype(F32)
    before = x.copy()
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_raw_scale("data", 10.0)
    out = t.preprocess("data", x)
    np.testing.assert_array_equal(x, before * F32(10))
    assert np.shares_memory(out, x)
    # float64 input is converted first, so the caller's array is untouched
    y = before.astype(np.float64)
    t.preprocess("data", y)
    np.testing.assert_array_equal(y, before.astype(np.float64))


def test_deprocess_round_trip():
    x = _rng(9).rand(4, 5, 3)
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 0, 1))       # a non-involutive swap checks the inverse
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", _rng(10).rand(3, 4, 5) * 100)
    t.set_input_scale("data", 0.5)
    blob = t.preprocess("data", x)
    back = t.deprocess("data", blob[np.newaxis])   # a batch of one is squeezed
    assert back.shape == (4, 5, 3)
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-6)


def test_transformer_argument_errors():
    t = _transformer()
    with pytest.raises(ValueError, match="not one of the net inputs"):
        t.set_raw_scale("label", 1.0)
    with pytest.raises(ValueError, match="not one of the net inputs"):
        t.preprocess("label", np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="Transpose order"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(ValueError, match="Channel swap"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(ValueError, match="Mean channels incompatible"):
        t.set_mean("data", np.zeros(4))
    with pytest.raises(ValueError, match="Mean shape invalid"):
        t.set_mean("data", np.zeros((1, 3, 4, 5)))
    with pytest.raises(CaffeCompatError, match="Mean shape incompatible"):
        t.set_mean("data", np.zeros((3, 6, 7)))    # pycaffe master raises on a size mismatch
    assert t.mean == {}


def test_set_mean_resize_extra():
    t = _transformer()
    mean = _rng(11).rand(3, 8, 10)
    t.set_mean("data", mean, resize=True)
    expect = cio.resize_image(mean.transpose(1, 2, 0), (4, 5)).transpose(2, 0, 1)
    np.testing.assert_array_equal(t.mean["data"], expect)
    with pytest.raises(ValueError, match="Mean shape incompatible"):
        t.set_mean("data", np.zeros((2, 8, 10)), resize=True)   # channels must still match


# ---- resize_image ----------------------------------------------------------------------------

def test_resize_image_linear_with_constant_edges():
    """skimage resize, mode='constant', on the [0, 1]-scaled image: output column j samples
    input x = (j + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25, and outside the image
    interpolates toward 0 (= the image minimum after scaling back)."""
    im = np.zeros((1, 2, 3), F32)
    im[0, 0], im[0, 1] = 2.0, 6.0          # scaled: 0, 1
    out = cio.resize_image(im, (1, 4))
    # scaled: [0, 0.25, 0.75, 0.75] -> * 4 + 2
    assert out.dtype == F32 and out.shape == (1, 4, 3)
    np.testing.assert_allclose(out[0, :, 1], [2.0, 3.0, 5.0, 5.0], rtol=1e-6)


def test_resize_image_constant_and_ndimage_paths():
    const = np.full((3, 3, 3), 5.0)
    out = cio.resize_image(const, (2, 4))
    assert out.dtype == F32 and out.shape == (2, 4, 3)
    assert (out == 5.0).all()
    # 2 channels: scipy.ndimage.zoom, corners aligned: x = j * (3 - 1) / (5 - 1)
    im = np.zeros((1, 3, 2))
    im[0, :, 0] = [0.0, 2.0, 4.0]
    im[0, :, 1] = 7.0
    out = cio.resize_image(im, (1, 5))
    assert out.dtype == F32 and out.shape == (1, 5, 2)
    np.testing.assert_allclose(out[0, :, 0], [0, 1, 2, 3, 4], atol=1e-6)
    np.testing.assert_allclose(out[0, :, 1], 7.0)


def test_resize_image_same_size_is_identity():
    x = _rng(12).rand(6, 7, 3).astype(F32)
    np.testing.assert_allclose(cio.resize_image(x, (6, 7)), x, rtol=1e-6, atol=1e-7)


# ---- oversample ------------------------------------------------------------------------------

def test_oversample_positions_and_order():
    h, w, k = 6, 7, 2
    ims = [np.arange(h * w * k, dtype=np.float64).reshape(h, w, k) + 1000 * n for n in range(2)]
    crops = cio.oversample(ims, (4, 4))
    assert crops.shape == (20, 4, 4, 2) and crops.dtype == F32
    # (y0, x0): corners TL, TR, BL, BR, then centre int(6/2 - 2) = 1, int(7/2 - 2) = int(1.5) = 1
    starts = [(0, 0), (0, 3), (2, 0), (2, 3), (1, 1)]
    for n, im in enumerate(ims):
        for i, (y, x) in enumerate(starts):
            window = im[y:y + 4, x:x + 4]
            np.testing.assert_array_equal(crops[10 * n + i], window)
            np.testing.assert_array_equal(crops[10 * n + 5 + i], window[:, ::-1])


# ---- image loading ---------------------------------------------------------------------------

@pytest.fixture()
def rgb_u8():
    return _rng(13).randint(0, 256, size=(5, 7, 3)).astype(np.uint8)


def test_load_image_color_png(tmp_path, rgb_u8):
    import cv2
    path = str(tmp_path / "rgb.png")
    cv2.imwrite(path, rgb_u8[:, :, ::-1])               # cv2 writes BGR
    im = cio.load_image(path)
    assert im.dtype == F32 and im.shape == (5, 7, 3)
    np.testing.assert_array_equal(im, (rgb_u8 / 255.0).astype(F32))


def test_load_image_color_as_gray(tmp_path, rgb_u8):
    path = str(tmp_path / "rgb.png")
    Image.fromarray(rgb_u8).save(path)
    im = cio.load_image(path, color=False)
    f = rgb_u8 / 255.0
    expect = 0.2125 * f[..., 0] + 0.7154 * f[..., 1] + 0.0721 * f[..., 2]
    assert im.shape == (5, 7, 1) and im.dtype == F32
    np.testing.assert_array_equal(im[..., 0], expect.astype(F32))


def test_load_image_gray_png(tmp_path):
    g = _rng(14).randint(0, 256, size=(4, 6)).astype(np.uint8)
    path = str(tmp_path / "gray.png")
    Image.fromarray(g, mode="L").save(path)
    color = cio.load_image(path)
    gray = cio.load_image(path, color=False)
    assert color.shape == (4, 6, 3) and gray.shape == (4, 6, 1)
    for c in range(3):
        np.testing.assert_array_equal(color[..., c], (g / 255.0).astype(F32))
    np.testing.assert_array_equal(gray[..., 0], (g / 255.0).astype(F32))


def test_load_image_alpha_is_dropped(tmp_path, rgb_u8):
    alpha = np.full(rgb_u8.shape[:2] + (1,), 10, np.uint8)
    path = str(tmp_path / "rgba.png")
    Image.fromarray(np.concatenate([rgb_u8, alpha], axis=2), mode="RGBA").save(path)
    im = cio.load_image(path)
    assert im.shape == (5, 7, 3)
    np.testing.assert_array_equal(im, (rgb_u8 / 255.0).astype(F32))
    gray = cio.load_image(path, color=False)      # alpha dropped, not composited
    f = rgb_u8 / 255.0
    expect = 0.2125 * f[..., 0] + 0.7154 * f[..., 1] + 0.0721 * f[..., 2]
    np.testing.assert_array_equal(gray[..., 0], expect.astype(F32))


def test_load_image_16bit_png(tmp_path):
    import cv2
    g = _rng(15).randint(0, 65536, size=(3, 4)).astype(np.uint16)
    path = str(tmp_path / "gray16.png")
    cv2.imwrite(path, g)
    im = cio.load_image(path, color=False)
    np.testing.assert_array_equal(im[..., 0], (g / 65535.0).astype(F32))


def test_load_image_jpeg(tmp_path, rgb_u8):
    path = str(tmp_path / "rgb.jpg")
    Image.fromarray(rgb_u8).save(path, quality=95)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    im = cio.load_image(path)
    assert im.shape == (5, 7, 3)
    np.testing.assert_array_equal(im, (decoded / 255.0).astype(F32))
    gpath = str(tmp_path / "gray.jpg")
    Image.fromarray(rgb_u8[..., 0], mode="L").save(gpath, quality=95)
    gdecoded = np.asarray(Image.open(gpath))
    np.testing.assert_array_equal(cio.load_image(gpath, color=False)[..., 0],
                                  (gdecoded / 255.0).astype(F32))


# ---- proto conversions -----------------------------------------------------------------------

def test_blobproto_round_trip_nd_and_4d():
    for shape in [(2, 3, 4), (2, 3, 4, 5), (7,), (1, 2, 1, 2, 3)]:
        arr = _rng(16).randn(*shape).astype(F32)
        diff = _rng(17).randn(*shape).astype(F32)
        blob = cio.array_to_blobproto(arr, diff)
        assert list(blob.shape.dim) == list(shape)
        assert not blob.HasField("num")
        back = cio.blobproto_to_array(blob)
        assert back.dtype == np.float64 and back.shape == shape
        np.testing.assert_array_equal(back, arr)
        np.testing.assert_array_equal(cio.blobproto_to_array(blob, return_diff=True), diff)
        reparsed = caffe_pb2.BlobProto.FromString(blob.SerializeToString())
        np.testing.assert_array_equal(cio.blobproto_to_array(reparsed), arr)


def test_blobproto_legacy_4d_fields():
    blob = caffe_pb2.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 1, 2, 3, 2
    values = np.arange(12, dtype=np.float64)
    blob.data.extend(values)
    blob.diff.extend(-values)
    blob.shape.dim.extend([12])                     # ignored: legacy fields win
    np.testing.assert_array_equal(cio.blobproto_to_array(blob), values.reshape(1, 2, 3, 2))
    np.testing.assert_array_equal(cio.blobproto_to_array(blob, return_diff=True),
                                  -values.reshape(1, 2, 3, 2))


def test_blobproto_double_data_fallback():
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 2])
    blob.double_data.extend([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(cio.blobproto_to_array(blob), [[0.1, 0.2], [0.3, 0.4]])


def test_blobprotovector_round_trip():
    arrays = [_rng(18).randn(2, 3), _rng(19).randn(1, 3, 2, 2)]
    s = cio.arraylist_to_blobprotovector_str(arrays)
    assert isinstance(s, bytes)
    vec = caffe_pb2.BlobProtoVector.FromString(s)
    assert len(vec.blobs) == 2
    back = cio.blobprotovector_str_to_arraylist(s)
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(b, a.astype(F32))    # BlobProto stores float32
    assert cio.arraylist_to_blobprotovecor_str(arrays) == s


def test_datum_uint8_and_float():
    u8 = _rng(20).randint(0, 256, size=(3, 4, 5)).astype(np.uint8)
    datum = cio.array_to_datum(u8, label=7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 5, 7)
    assert datum.data == u8.tobytes() and len(datum.float_data) == 0
    back = cio.datum_to_array(caffe_pb2.Datum.FromString(datum.SerializeToString()))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, u8)
    back[0, 0, 0] = 1                                   # a writable array, like pycaffe's

    fl = _rng(21).randn(2, 3, 1).astype(F32)
    datum = cio.array_to_datum(fl)
    assert not datum.HasField("label") and datum.data == b""
    np.testing.assert_array_equal(np.array(datum.float_data), fl.ravel())
    back = cio.datum_to_array(datum)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, fl)

    with pytest.raises(ValueError, match="Incorrect array shape"):
        cio.array_to_datum(np.zeros((2, 2)))
