"""Pictures in and out, as the notebook handles them (PIL, float32 RGB in 0..255).

>>> from caffe_compat.recipes.deepdream.images import load_image, save_image, sample_image
>>> img = load_image(sample_image())          # (240, 320, 3) float32, RGB, 0..255
>>> save_image(img, "/tmp/copy.jpg")          # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
PathLike = Union[str, os.PathLike]


def sample_image() -> Path:
    """The bundled 320x240 sample: scikit-image's ``chelsea`` (CC0, Stefan van der Walt)."""
    return DATA_DIR / "sample.jpg"


def guide_image() -> Path:
    """The bundled 200x150 guide: scikit-image's ``coffee`` (CC0, Rachel Michetti)."""
    return DATA_DIR / "guide.jpg"


def load_image(path: PathLike, size: Optional[Sequence[int]] = None) -> np.ndarray:
    """``np.float32(PIL.Image.open(path))`` as RGB (H, W, 3); ``size=(w, h)`` resizes first."""
    import PIL.Image
    from caffe_compat.images import open_rgb
    im = open_rgb(path)
    if size is not None:
        im = im.resize((int(size[0]), int(size[1])), PIL.Image.BICUBIC)
    return np.float32(im)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """The notebook's ``showarray`` conversion: ``np.uint8(np.clip(a, 0, 255))``."""
    return np.uint8(np.clip(img, 0, 255))


def save_image(img: np.ndarray, path: PathLike, quality: int = 95) -> Path:
    """Write an (H, W, 3) 0..255 image (JPEG/PNG by extension); creates the folder."""
    import PIL.Image
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    image = PIL.Image.fromarray(to_uint8(img))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality)
    else:
        image.save(path)
    return path
