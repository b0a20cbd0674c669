"""Reading image files: the one place a file is decoded, each failure naming the file.

Three readers, because the programs caffe-compat reproduces decoded with different
libraries and their numbers depend on it (resampling and colour conversion differ):

* :func:`read_bgr` -- OpenCV's ``cv2.imread``, what Caffe's C++ reads with
  (``ReadImageToCVMat``: ImageData, WindowData and ``convert_imageset``), and
  :func:`decode_bgr` for a file's bytes already in memory;
* :func:`open_rgb` / :func:`read_rgb` -- PIL, what the Python recipes read with
  (FCN's ``infer.py`` and data layers, the DeepDream notebook); :func:`open_as_stored`
  keeps a label PNG's palette indices;
* :func:`read_as_pycaffe` -- ``skimage.io.imread``, what pycaffe's
  ``caffe.io.load_image`` reads with.

A missing file is a ``FileNotFoundError``; a file the library cannot decode is an
:class:`~caffe_compat.errors.ImageReadError` with a one-line reason.

>>> read_bgr("cat.jpg").shape              # doctest: +SKIP
(360, 480, 3)
>>> read_rgb(__file__)
Traceback (most recent call last):
...
caffe_compat.errors.ImageReadError: ...images.py: cannot read the image: cannot identify image file ...
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np

from caffe_compat.errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["read_bgr", "decode_bgr", "open_as_stored", "open_rgb", "read_rgb", "read_as_pycaffe"]


def _check_exists(path: PathLike) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    return path


def _one_line(exc: BaseException) -> str:
    """The first line of a library's message (imageio's run over several lines)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".:") if text else type(exc).__name__


def read_bgr(path: PathLike, color: bool = True) -> np.ndarray:
    """uint8 H x W x 3 BGR (``color``) or H x W grey, as ``cv2.imread`` with
    ``IMREAD_COLOR`` / ``IMREAD_GRAYSCALE`` (Caffe's ReadImageToCVMat, io.cpp).

    The bytes are read by Python and decoded by :func:`decode_bgr` (the same decoder and
    flags as ``cv2.imread``), so a directory or unreadable path is the usual
    ``OSError`` naming it and any file name works.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        return decode_bgr(handle.read(), path, color)


def decode_bgr(data: bytes, path: PathLike, color: bool = True) -> np.ndarray:
    """:func:`read_bgr` of a file's bytes already in memory (WindowData's
    ``cache_images``); ``path`` names the file in the error.

    >>> decode_bgr(b"", "cat.jpg")
    Traceback (most recent call last):
    ...
    caffe_compat.errors.ImageReadError: cat.jpg: cannot read the image: the file is empty
    """
    import cv2
    path = os.fspath(path)
    if not data:
        raise ImageReadError(path, "the file is empty")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8),
                           cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:   # e.g. a header claiming more pixels than OpenCV allows
        raise ImageReadError(path, f"OpenCV refuses it ({_one_line(exc.err)})") from None
    if img is None:
        raise ImageReadError(path, "not an image OpenCV can decode (unknown format or "
                                   "corrupt file)")
    return img


def open_as_stored(path: PathLike):
    """The file as a loaded ``PIL.Image`` in its own mode: a palette PNG keeps its
    indices (FCN's label images), a 16-bit PNG its values (NYUD depth)."""
    import PIL.Image
    path = _check_exists(path)
    try:
        with PIL.Image.open(path) as im:
            im.load()
            return im
    except (OSError, ValueError, SyntaxError) as exc:   # PIL's decoders raise all three
        raise ImageReadError(path, _one_line(exc)) from exc


def open_rgb(path: PathLike):
    """The file as a loaded RGB ``PIL.Image`` (grey, palette and alpha images converted),
    for callers that resize with PIL before taking the pixels."""
    im = open_as_stored(path)
    return im if im.mode == "RGB" else im.convert("RGB")


def read_rgb(path: PathLike) -> np.ndarray:
    """uint8 H x W x 3 RGB through PIL: ``np.array(Image.open(path).convert("RGB"))``."""
    return np.array(open_rgb(path))


def read_as_pycaffe(path: PathLike) -> np.ndarray:
    """The array ``skimage.io.imread`` gives (the file's own channels and dtype), which
    pycaffe's ``caffe.io.load_image`` starts from."""
    import skimage.io
    path = _check_exists(path)
    try:
        return skimage.io.imread(path)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, _one_line(exc)) from exc
