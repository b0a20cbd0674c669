"""pycaffe's ``caffe.io``: input preprocessing, image loading and proto <-> array helpers.

Same names, signatures, defaults and order of operations as BVLC Caffe master's
``python/caffe/io.py``, so scripts written for pycaffe give the same numbers::

    import caffe_compat as caffe
    net = caffe.Net("deploy.prototxt", "weights.caffemodel", caffe.TEST)
    t = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    t.set_transpose("data", (2, 0, 1))       # H x W x K -> K x H x W
    t.set_channel_swap("data", (2, 1, 0))    # RGB -> BGR
    t.set_raw_scale("data", 255)             # [0, 1] -> [0, 255]
    t.set_mean("data", np.array([104, 117, 123]))
    net.blobs["data"].data[0] = t.preprocess("data", caffe.io.load_image("cat.jpg"))

Image resizing goes through the same library calls as pycaffe (``skimage.transform.resize``
with ``mode='constant'`` for 1- and 3-channel images, ``scipy.ndimage.zoom`` otherwise), so
results depend on the installed scikit-image exactly as pycaffe's do (scikit-image >= 0.16
anti-aliases when downsampling by default; older versions did not).

Extras beyond pycaffe (documented where they live): ``Transformer.set_mean(..., resize=True)``
resizes a mean image to the input size instead of raising; ``blobproto_to_array`` falls back
to ``double_data``/``double_diff`` when the float fields are empty; the pre-2015 misspelled
``arraylist_to_blobprotovecor_str`` is kept as an alias.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

__all__ = [
    "IOConfigError", "Transformer", "load_image", "resize_image", "oversample",
    "blobproto_to_array", "array_to_blobproto", "arraylist_to_blobprotovector_str",
    "blobprotovector_str_to_arraylist", "array_to_datum", "datum_to_array",
]

class IOConfigError(CaffeCompatError, ValueError):
    """A bad argument to a ``caffe.io`` function or ``Transformer`` setting (pycaffe raised
    ``Exception``/``ValueError`` here; this is both a ``ValueError`` and a ``CaffeCompatError``)."""


# skimage's rgb2gray luminance weights (ITU-R 709), as pycaffe's
# ``skimage.io.imread(filename, as_grey=True)`` applied them.
_GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


# ---- proto / datum / ndarray conversion ------------------------------------------------------

def blobproto_to_array(blob: "caffe_pb2.BlobProto", return_diff: bool = False) -> np.ndarray:
    """A ``BlobProto``'s data (or diff with ``return_diff=True``) as a float64 array.

    Shaped by the legacy ``num/channels/height/width`` fields when any of them is set,
    else by ``shape.dim`` (pycaffe's rule)::

        blob = caffe_pb2.BlobProto()
        blob.ParseFromString(open("mean.binaryproto", "rb").read())
        mean = caffe.io.blobproto_to_array(blob)[0]   # (3, 256, 256)

    Extra: a blob stored with ``double_data``/``double_diff`` (which pycaffe ignores) is read
    from those fields when the float ones are empty.
    """
    if return_diff:
        values, doubles = blob.diff, blob.double_diff
    else:
        values, doubles = blob.data, blob.double_data
    data = np.array(values if len(values) or not len(doubles) else doubles, dtype=np.float64)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return data.reshape(blob.num, blob.channels, blob.height, blob.width)
    return data.reshape(tuple(blob.shape.dim))


def array_to_blobproto(arr: np.ndarray, diff: Optional[np.ndarray] = None) -> "caffe_pb2.BlobProto":
    """An N-d array (and optionally its diff, same shape, unchecked) as a ``BlobProto``
    with ``shape.dim`` set (pycaffe master; the legacy 4-d fields are left unset)."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(float).flat)
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(float).flat)
    return blob


def arraylist_to_blobprotovector_str(arraylist: Sequence[np.ndarray]) -> bytes:
    """Serialize a list of arrays as a ``BlobProtoVector`` (bytes)."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


#: The name pycaffe used before 2015 (misspelled); old scripts call it.
arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str


def blobprotovector_str_to_arraylist(str: bytes) -> list:  # noqa: A002 (pycaffe's name)
    """Parse a serialized ``BlobProtoVector`` into a list of arrays."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(str)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr: np.ndarray, label: Optional[int] = None) -> "caffe_pb2.Datum":
    """A C x H x W array as a ``Datum``: uint8 arrays go into the ``data`` bytes, anything
    else into ``float_data``; ``label`` is set only when given::

        datum = caffe.io.array_to_datum(img_chw_uint8, label=3)
        txn.put(key, datum.SerializeToString())
    """
    if arr.ndim != 3:
        raise IOConfigError(f"Incorrect array shape: a Datum holds a 3-d (channels, height, "
                         f"width) array, got shape {arr.shape}.")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum: "caffe_pb2.Datum") -> np.ndarray:
    """A ``Datum``'s C x H x W array: uint8 from ``data`` bytes, else float64 from
    ``float_data`` (the label is ``datum.label``)."""
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data).astype(float).reshape(shape)


# ---- pre-processing --------------------------------------------------------------------------

class Transformer:
    """Turn H x W x K images into a net input blob's K x H x W layout (pycaffe's Transformer).

    ``inputs`` maps each input blob name to its shape (N, K, H, W). Each ``set_*`` call
    configures one step for one input; ``preprocess`` applies, in this order: cast to
    float32, resize to (H, W) if needed, ``transpose``, ``channel_swap``, ``*= raw_scale``,
    ``-= mean``, ``*= input_scale``. ``deprocess`` inverts it (except the resize)::

        t = Transformer({"data": (10, 3, 227, 227)})
        t.set_transpose("data", (2, 0, 1))
        t.set_raw_scale("data", 255)
        blob = t.preprocess("data", image)        # (3, 227, 227) float32

    As in pycaffe, the arithmetic steps work in place: when ``data`` is already float32 at
    the input's size and no ``channel_swap`` is set, the caller's array is scaled and
    mean-subtracted too (``preprocess`` returns a transposed view of it).
    """

    def __init__(self, inputs: Mapping[str, Sequence[int]]):
        self.inputs = inputs
        self.transpose: dict = {}
        self.channel_swap: dict = {}
        self.raw_scale: dict = {}
        self.mean: dict = {}
        self.input_scale: dict = {}

    def _check_input(self, in_: str) -> None:
        if in_ not in self.inputs:
            raise IOConfigError(f"{in_} is not one of the net inputs: {self.inputs}")

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Format an (H' x W' x K) array for input blob ``in_``; returns (K x H x W) float32."""
        self._check_input(in_)
        caffe_in = np.asarray(data).astype(np.float32, copy=False)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        in_dims = self.inputs[in_][2:]
        # pycaffe compares the shape tuple with the stored dims as given (a list never
        # compares equal to a tuple, so list-specified inputs are always resized).
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[channel_swap, :, :]
        if raw_scale is not None:
            caffe_in *= raw_scale
        if mean is not None:
            caffe_in -= mean
        if input_scale is not None:
            caffe_in *= input_scale
        return caffe_in

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Invert ``preprocess`` (on a squeezed copy): ``/ input_scale``, ``+ mean``,
        ``/ raw_scale``, undo ``channel_swap``, undo ``transpose``."""
        self._check_input(in_)
        decaf_in = data.copy().squeeze()
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_: str, order: Sequence[int]) -> None:
        """Axis order taking the image to the blob's layout, e.g. ``(2, 0, 1)`` for HWK -> KHW."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise IOConfigError(f"Transpose order needs to have the same number of dimensions as "
                             f"the input: {len(self.inputs[in_]) - 1}, got {tuple(order)}.")
        self.transpose[in_] = order

    def set_channel_swap(self, in_: str, order: Sequence[int]) -> None:
        """Channel order to take after transpose, e.g. ``(2, 1, 0)`` maps RGB to BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise IOConfigError(f"Channel swap needs to have the same number of dimensions as the "
                             f"input channels: {self.inputs[in_][1]}, got {tuple(order)}.")
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_: str, scale: float) -> None:
        """Scale applied before mean subtraction (255 for [0, 1] images into CaffeNet)."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: np.ndarray, resize: bool = False) -> None:
        """Mean to subtract: a per-channel vector (K,) or an elementwise (K, H, W) / (H, W) image.

        A mean image must match the input's (K, H, W), as in pycaffe master, which raises
        otherwise. Extra: ``resize=True`` resizes a mean image of another spatial size to
        the input's (H, W) with :func:`resize_image` (channel counts must still match)::

            t.set_mean("data", np.load("ilsvrc_2012_mean.npy"), resize=True)  # 256 -> 227
        """
        self._check_input(in_)
        ms = mean.shape
        if mean.ndim == 1:
            # broadcast over height and width
            if ms[0] != self.inputs[in_][1]:
                raise IOConfigError(f"Mean channels incompatible with input: mean has {ms[0]}, "
                                 f"input {in_} has {self.inputs[in_][1]}.")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            # elementwise mean
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise IOConfigError(f"Mean shape invalid: expected (K,), (H, W) or (K, H, W), "
                                 f"got {mean.shape}.")
            want = tuple(self.inputs[in_][1:])
            if tuple(ms) != want:
                if not resize or ms[0] != want[0]:
                    raise IOConfigError(
                        f"Mean shape incompatible with input shape: mean {tuple(ms)}, input "
                        f"{in_} {want}" + ("" if resize else
                                           " (set_mean(..., resize=True) resizes a mean image)"))
                image = mean.reshape(ms).transpose(1, 2, 0)
                mean = resize_image(image, want[1:]).transpose(2, 0, 1)
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: float) -> None:
        """Scale applied last, after mean subtraction (e.g. 0.017 for some ResNets)."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# ---- image IO --------------------------------------------------------------------------------

def load_image(filename, color: bool = True) -> np.ndarray:
    """Read an image as float32 in [0, 1]: (H x W x 3) RGB, or (H x W x 1) with ``color=False``.

    Gray files are tiled to 3 channels when ``color`` is true; an alpha channel is dropped.
    With ``color=False`` a color file becomes luminance 0.2125 R + 0.7154 G + 0.0721 B,
    computed in float64 on the [0, 1] values with alpha dropped first, which is what pycaffe's
    ``skimage.io.imread(filename, as_grey=True)`` did (later scikit-image versions composite
    alpha onto white instead, and no longer accept ``as_grey``)::

        im = caffe.io.load_image("cat.jpg")             # (360, 480, 3) float32
    """
    import skimage
    from caffe_compat.images import read_as_pycaffe
    raw = read_as_pycaffe(filename)
    if not color and raw.ndim == 3:
        if raw.shape[2] == 1:
            raw = raw[:, :, 0]
        elif raw.shape[2] in (3, 4):
            rgb = skimage.img_as_float(raw[:, :, :3])
            raw = (_GRAY_WEIGHTS[0] * rgb[:, :, 0] + _GRAY_WEIGHTS[1] * rgb[:, :, 1]
                   + _GRAY_WEIGHTS[2] * rgb[:, :, 2])
        else:
            raise IOConfigError(f"{filename}: cannot convert a {raw.shape[2]}-channel image to "
                             f"gray (expected 3 or 4 channels)")
    img = skimage.img_as_float(raw).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """Resize an (H x W x K) array to (new_dims[0], new_dims[1], K) float32.

    pycaffe's method: 1- or 3-channel images are scaled to [0, 1], resized with
    ``skimage.transform.resize(order=interp_order, mode='constant')`` and scaled back; a
    constant image is returned filled with its value; other channel counts use
    ``scipy.ndimage.zoom`` on the spatial axes::

        small = caffe.io.resize_image(im, (227, 227))
    """
    if im.shape[-1] == 1 or im.shape[-1] == 3:
        im_min, im_max = im.min(), im.max()
        if im_max > im_min:
            from skimage.transform import resize
            # skimage only understands {1, 3}-channel images in [0, 1].
            im_std = (im - im_min) / (im_max - im_min)
            resized_std = resize(im_std, new_dims, order=interp_order, mode="constant")
            resized_im = resized_std * (im_max - im_min) + im_min
        else:
            # a constant image: avoid dividing by zero
            ret = np.empty((new_dims[0], new_dims[1], im.shape[-1]), dtype=np.float32)
            ret.fill(im_min)
            return ret
    else:
        from scipy.ndimage import zoom
        scale = tuple(np.array(new_dims, dtype=float) / np.array(im.shape[:2]))
        resized_im = zoom(im, scale + (1,), order=interp_order)
    return resized_im.astype(np.float32)


def oversample(images: Sequence[np.ndarray], crop_dims: Sequence[int]) -> np.ndarray:
    """Ten crops per image: the four corners and the centre, then the same five mirrored.

    Returns (10 N x h x w x K) float32 in pycaffe's order: top-left, top-right, bottom-left,
    bottom-right, centre, then those five flipped left-right; all images share the first
    image's size. The centre crop starts at ``int(H / 2 - h / 2)``, ``int(W / 2 - w / 2)``::

        crops = caffe.io.oversample([im], (227, 227))   # im: (256, 256, 3) -> (10, 227, 227, 3)
    """
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    im_center = im_shape[:2] / 2.0

    h_starts = (0, im_shape[0] - crop_dims[0])
    w_starts = (0, im_shape[1] - crop_dims[1])
    boxes = np.empty((5, 4), dtype=int)  # (y0, x0, y1, x1); float centre box truncates
    k = 0
    for i in h_starts:
        for j in w_starts:
            boxes[k] = (i, j, i + crop_dims[0], j + crop_dims[1])
            k += 1
    boxes[4] = np.tile(im_center, (1, 2)) + np.concatenate([-crop_dims / 2.0, crop_dims / 2.0])
    boxes = np.tile(boxes, (2, 1))

    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1], im_shape[-1]),
                     dtype=np.float32)
    ix = 0
    for im in images:
        for y0, x0, y1, x1 in boxes:
            crops[ix] = im[y0:y1, x0:x1, :]
            ix += 1
        crops[ix - 5:ix] = crops[ix - 5:ix, :, ::-1, :]  # mirror the second five
    return crops
