"""Caffe's ``DataTransformer`` (data_transformer.cpp): crop, mirror, mean, scale.

One image (a ``Datum``, a decoded cv2 image or a C x H x W array) becomes one float32
C x H' x W' array exactly as Caffe computes it::

    out[c, h, w'] = (x[c, h_off + h, w_off + w] - mean[c, h_off + h, w_off + w]) * scale

with ``w' = W' - 1 - w`` when mirrored. So the mean image is subtracted *before*
cropping (it is indexed at the crop offset), the crop is random at TRAIN and centred
at TEST (``(H - crop) / 2``, integer division), and ``mirror`` flips at random in *both*
phases (Caffe draws ``mirror && Rand(2)`` whatever the phase). Random numbers come from
the transformer's own generator, seeded from :func:`caffe_compat.engine.fillers.rng`
when it is built (Caffe's ``InitRand`` seeds from ``caffe_rng_rand``), so
``caffe.set_random_seed`` makes runs reproducible, and a prefetch thread owning the
transformer draws the same sequence whatever the thread timing.

>>> import numpy as np
>>> from caffe_compat.proto import caffe_pb2
>>> p = caffe_pb2.TransformationParameter(crop_size=2, scale=0.5, mean_value=[1.0])
>>> t = DataTransformer(p, caffe_pb2.TEST)
>>> t.transform_array(np.arange(16, dtype=np.uint8).reshape(1, 4, 4))[0]
array([[2. , 2.5],
       [4. , 4.5]], dtype=float32)
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError


class TransformError(CaffeCompatError):
    """An image does not fit the transformation (crop larger than image, mean shape)."""


def decode_image(data: bytes, flag: int) -> np.ndarray:
    """cv2.imdecode of encoded bytes as H x W x C (C = 1 for gray), uint8.

    ``flag`` is a cv2.IMREAD_* flag. Raises :class:`TransformError` when the bytes are
    not an image or decode to something other than 8-bit (Caffe: "Image data type must
    be unsigned byte").
    """
    import cv2
    if not data:
        raise TransformError("the encoded image is empty (0 bytes)")
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    except cv2.error as exc:   # e.g. a header claiming more pixels than OpenCV allows
        raise TransformError(f"could not decode the encoded image bytes ({exc.err})") from None
    if img is None:
        raise TransformError("could not decode the encoded image bytes")
    return as_hwc_uint8(img)


def as_hwc_uint8(img: np.ndarray) -> np.ndarray:
    """A cv2 image (H x W or H x W x C) as H x W x C uint8; other depths are an error."""
    if img.dtype != np.uint8:
        raise TransformError(f"image data type must be unsigned byte (8-bit), got {img.dtype}")
    return img[:, :, None] if img.ndim == 2 else img


class DataTransformer:
    """Caffe's DataTransformer for one ``TransformationParameter`` and phase.

    ``param`` may be None (no transformation). ``where`` names the owner in error
    messages (e.g. 'layer "data" (type Data)').
    """

    def __init__(self, param=None, phase: int = 1, where: str = "",
                 rng: Optional[np.random.RandomState] = None):
        from caffe_compat.proto import caffe_pb2
        self.param = param if param is not None else caffe_pb2.TransformationParameter()
        self.phase = int(phase)
        self.where = where
        p = self.param
        self.crop_size = int(p.crop_size)
        self.scale = np.float32(p.scale)
        self.mirror = bool(p.mirror)
        if p.force_color and p.force_gray:
            raise self._error("cannot set both force_color and force_gray")
        self.mean: Optional[np.ndarray] = None
        self.mean_values = np.asarray(list(p.mean_value), dtype=np.float32)
        if p.HasField("mean_file"):
            if len(self.mean_values):
                raise self._error("cannot specify mean_file and mean_value at the same time")
            self.mean = load_mean_file(p.mean_file, self._error)
        if rng is None:
            from caffe_compat.engine.fillers import rng as shared_rng
            rng = np.random.RandomState(shared_rng().randint(0, 2 ** 32, dtype=np.uint64))
        self.rng = rng
        self._warned_force = False

    def _error(self, message: str) -> TransformError:
        return TransformError(f"{self.where}: {message}" if self.where else message)

    # ---- shapes -----------------------------------------------------------------
    def output_shape(self, chw: Sequence[int]) -> tuple:
        """Caffe's InferBlobShape for one C x H x W image (without the batch axis)."""
        c, h, w = (int(d) for d in chw)
        if c <= 0:
            raise self._error(f"image has {c} channels")
        if h < self.crop_size or w < self.crop_size:
            raise self._error(f"crop_size {self.crop_size} is larger than the image "
                              f"({h} x {w})")
        if self.crop_size:
            return (c, self.crop_size, self.crop_size)
        return (c, h, w)

    # ---- inputs -----------------------------------------------------------------
    def datum_array(self, datum) -> np.ndarray:
        """A Datum's pixels as C x H x W (uint8 ``data``, float32 ``float_data``, or a
        decoded ``encoded`` image, as Caffe's Transform(const Datum&) reads them)."""
        if datum.encoded:
            import cv2
            p = self.param
            if p.force_color or p.force_gray:
                # DecodeDatumToCVMat(datum, force_color)
                flag = cv2.IMREAD_COLOR if p.force_color else cv2.IMREAD_GRAYSCALE
            else:
                flag = cv2.IMREAD_UNCHANGED  # DecodeDatumToCVMatNative: imdecode(-1)
            return decode_image(datum.data, flag).transpose(2, 0, 1)
        if (self.param.force_color or self.param.force_gray) and not self._warned_force:
            self._warned_force = True
            warnings.warn(f"{self.where}: force_color and force_gray only apply to encoded "
                          "datums (Caffe logs the same and ignores them)", stacklevel=3)
        c, h, w = int(datum.channels), int(datum.height), int(datum.width)
        if min(c, h, w) < 0:
            raise self._error(f"Datum has negative dimensions: channels x height x width = "
                              f"{c} x {h} x {w}")
        if len(datum.data):
            if len(datum.data) != c * h * w:
                raise self._error(f"Datum holds {len(datum.data)} bytes but channels x height "
                                  f"x width = {c} x {h} x {w} = {c * h * w}")
            return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w)
        if len(datum.float_data) != c * h * w:
            raise self._error(f"Datum holds {len(datum.float_data)} float_data values but "
                              f"channels x height x width = {c} x {h} x {w} = {c * h * w}")
        return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)

    def transform_datum(self, datum) -> np.ndarray:
        """Caffe's Transform(const Datum&, Blob*): one C x H' x W' float32 array."""
        return self.transform_array(self.datum_array(datum))

    def transform_image(self, img: np.ndarray) -> np.ndarray:
        """Caffe's Transform(const cv::Mat&, Blob*) for a cv2 image (H x W [x C], BGR)."""
        return self.transform_array(as_hwc_uint8(img).transpose(2, 0, 1))

    # ---- the transformation ------------------------------------------------------
    def transform_array(self, x: np.ndarray) -> np.ndarray:
        """Crop/mirror then ``(x - mean) * scale`` of one C x H x W array, in Caffe's
        order of random draws (mirror first, then the crop offsets)."""
        c, h, w = x.shape
        out_c, out_h, out_w = self.output_shape(x.shape)
        do_mirror = self.mirror and self.rng.randint(2) == 1
        h_off = w_off = 0
        if self.crop_size:
            if self.phase == 0:  # TRAIN: random crop
                h_off = self.rng.randint(h - self.crop_size + 1)
                w_off = self.rng.randint(w - self.crop_size + 1)
            else:                # TEST: centre crop
                h_off = (h - self.crop_size) // 2
                w_off = (w - self.crop_size) // 2
        window = (slice(None), slice(h_off, h_off + out_h), slice(w_off, w_off + out_w))
        pixels = x[window].astype(np.float32)
        if self.mean is not None:
            if self.mean.shape != (c, h, w):
                raise self._error(f"mean_file {self.param.mean_file!r} has shape "
                                  f"{self.mean.shape} but the image is {(c, h, w)} "
                                  "(Caffe subtracts the mean before cropping: the mean "
                                  "must have the uncropped image's shape)")
            pixels = pixels - self.mean[window]
        elif len(self.mean_values):
            if len(self.mean_values) not in (1, c):
                raise self._error(f"specify either 1 mean_value or as many as channels "
                                  f"({c}), got {len(self.mean_values)}")
            values = self.mean_values if len(self.mean_values) == c else \
                np.repeat(self.mean_values, c)
            pixels = pixels - values[:, None, None]
        pixels = pixels * self.scale
        if do_mirror:
            pixels = pixels[:, :, ::-1]
        return np.ascontiguousarray(pixels, dtype=np.float32)


def load_mean_file(path: str, error: Callable[[str], Exception]) -> np.ndarray:
    """A .binaryproto mean image as C x H x W float32 (Caffe's data_mean_ blob).

    A 4-D blob must have num 1 (Caffe reads channels/height/width of it).
    """
    from caffe_compat.formats.binaryproto import read_binaryproto
    try:
        mean = read_binaryproto(path)
    except OSError as exc:
        raise error(f"cannot read mean_file {path!r}: {exc.strerror or exc}") from None
    except CaffeCompatError as exc:
        raise error(f"cannot read mean_file: {exc}") from None
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3:
        raise error(f"mean_file {path!r} holds a blob of shape {mean.shape}; expected "
                    "1 x C x H x W or C x H x W")
    return mean
