"""How images become net input: Caffe's ImageData path (cv2, resize, crop, mean).

Every image is read as Caffe's ``ImageDataLayer`` reads it (``cv2.imread``, BGR,
resized with ``INTER_LINEAR`` to ``resize``), then Caffe's ``DataTransformer`` crops it
to the net input (centred at TEST, random at TRAIN, plus a random mirror when training)
and subtracts the per-channel mean. The same :class:`Preprocess` gives the
``transform_param`` of the generated train prototxt and the arrays this recipe
evaluates, so training and validation see the same pixels.

>>> pre = Preprocess.for_input((227, 227), mean=(104.0, 117.0, 123.0))
>>> pre.resize, pre.crop_size
((256, 256), 227)
>>> pre = Preprocess.for_input((32, 32), mean=(104.0, 117.0, 123.0))
>>> pre.resize, pre.crop_size
((32, 32), 0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

#: The ImageNet models' mean (BGR), used for a user's prototxt when no mean is given.
IMAGENET_MEAN = (104.0, 117.0, 123.0)
#: Caffe's ImageNet convention: images resized to 256 x 256, then cropped (227 or 224).
IMAGENET_RESIZE = 256


class PreprocessError(CaffeCompatError):
    """An image cannot be read, or the preprocessing does not fit the net."""


@dataclass(frozen=True)
class Preprocess:
    """Caffe preprocessing for one net input: (H, W) ``input``, ``resize`` before the
    crop, per-channel ``mean`` (BGR for colour), ``channels`` (3 colour, 1 grey)."""
    input: tuple
    resize: tuple
    mean: tuple
    channels: int = 3

    @classmethod
    def for_input(cls, input_hw: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
                  resize: Optional[int] = None, channels: int = 3) -> "Preprocess":
        """The default for a net input size: resize to 256 when the input is an
        ImageNet-sized square (200..256), else straight to the input size (no crop);
        ``resize`` overrides (square)."""
        h, w = (int(d) for d in input_hw)
        if resize is None:
            resize = IMAGENET_RESIZE if h == w and 200 <= h <= IMAGENET_RESIZE else None
        size = (int(resize), int(resize)) if resize is not None else (h, w)
        pre = cls((h, w), size, tuple(float(m) for m in mean), int(channels))
        pre.check()
        return pre

    def check(self) -> None:
        h, w = self.input
        if self.channels not in (1, 3):
            raise PreprocessError(f"images have 1 or 3 channels; the net input has {self.channels}")
        if len(self.mean) not in (1, self.channels):
            raise PreprocessError(f"mean has {len(self.mean)} values; the net input has "
                                  f"{self.channels} channels")
        if self.resize != self.input:
            if h != w:
                raise PreprocessError(f"the net input is {h} x {w}: Caffe crops squares only, "
                                      "so images are resized straight to it (no --resize)")
            if min(self.resize) < h:
                raise PreprocessError(f"resize {self.resize[0]} is smaller than the net input {h}")

    @property
    def crop_size(self) -> int:
        """Caffe's ``transform_param.crop_size`` (0: no crop)."""
        return 0 if self.resize == self.input else int(self.input[0])

    def transform_param(self, train: bool) -> caffe_pb2.TransformationParameter:
        """``transform_param`` for the ImageData layer (``mirror`` only when training)."""
        tp = caffe_pb2.TransformationParameter()
        if self.crop_size:
            tp.crop_size = self.crop_size
        tp.mean_value.extend(self.mean)
        if train:
            tp.mirror = True
        return tp

    def image_data_param(self, source: str, batch_size: int,
                         shuffle: bool) -> caffe_pb2.ImageDataParameter:
        p = caffe_pb2.ImageDataParameter()
        p.source = source
        p.batch_size = int(batch_size)
        p.shuffle = bool(shuffle)
        p.new_height, p.new_width = self.resize
        p.is_color = self.channels == 3
        return p

    # ---- evaluation-time arrays ---------------------------------------------------------
    def load(self, paths: Sequence[str]) -> np.ndarray:
        """N x C x H x W float32: Caffe's TEST-phase ImageData pixels of ``paths``."""
        from caffe_compat.engine.data_transformer import DataTransformer, TransformError
        from caffe_compat.engine.layers.data import read_image
        transformer = DataTransformer(self.transform_param(train=False), caffe_pb2.TEST)
        out = np.empty((len(paths), self.channels) + tuple(self.input), dtype=np.float32)
        for i, path in enumerate(paths):
            img = read_image(path, self.resize[0], self.resize[1], self.channels == 3)
            if img is None:
                raise PreprocessError(f"{path}: could not read the image (missing, "
                                      "unreadable or not an image)")
            try:
                out[i] = transformer.transform_image(img)
            except TransformError as exc:
                raise PreprocessError(f"{path}: {exc}") from None
        return out

    def batches(self, paths: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
        """:meth:`load` in batches of ``batch_size`` (the last one may be smaller)."""
        for start in range(0, len(paths), batch_size):
            yield self.load(paths[start:start + batch_size])

    def to_json(self) -> dict:
        return {"input": list(self.input), "resize": list(self.resize), "mean": list(self.mean),
                "channels": self.channels, "channel_order": "BGR" if self.channels == 3 else "gray",
                "crop_size": self.crop_size}
