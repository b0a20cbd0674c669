"""Where a net comes from (zoo name or prototxt + weights) and how images enter it.

Every visualisation and localisation recipe takes a :class:`NetSource`, so any zoo model
and any user prototxt + caffemodel work the same way::

    from caffe_compat.recipes.visualize.source import NetSource, Preprocessing

    src = NetSource.from_zoo("bvlc_reference_caffenet")          # downloads on first use
    src = NetSource.from_files("deploy.prototxt", "w.caffemodel",
                               Preprocessing(mean=(104, 117, 123)))
    block = src.load()                                             # engine CaffeNet
    data = src.preprocessing.apply(caffe.io.load_image("cat.jpg"), block_input_shape(block))

:class:`Preprocessing` is pycaffe's ``Transformer`` recipe (resize to the input, HWC ->
CHW, RGB -> BGR, ``* raw_scale``, ``- mean``, ``* input_scale``) as a small value that
can be written to JSON (the localisation data layer and ``localizer.json`` use that).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from caffe_compat.errors import CaffeCompatError

TEST = 1  # caffe_pb2.TEST


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in [0, 1] (H x W x 3, ``caffe.io.load_image``) becomes net input.

    >>> p = Preprocessing(mean=(1.0, 2.0, 3.0))
    >>> p.apply(np.zeros((2, 2, 3), np.float32), (1, 3, 2, 2))[:, 0, 0]
    array([-1., -2., -3.], dtype=float32)
    """
    mean: Optional[tuple[float, ...]] = None      # per channel, in the net's channel order
    raw_scale: float = 255.0
    channel_swap: Optional[tuple[int, ...]] = (2, 1, 0)
    input_scale: Optional[float] = None

    def transformer(self, input_shape: Sequence[int]):
        """A pycaffe ``caffe.io.Transformer`` for an input blob of ``input_shape`` (N,C,H,W)."""
        from caffe_compat.io import Transformer
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 4:
            raise CaffeCompatError(f"the net input has shape {shape}; image recipes need "
                                   "N x C x H x W")
        t = Transformer({"data": shape})
        t.set_transpose("data", (2, 0, 1))
        if self.channel_swap is not None and shape[1] == len(self.channel_swap):
            t.set_channel_swap("data", tuple(self.channel_swap))
        t.set_raw_scale("data", float(self.raw_scale))
        if self.mean is not None:
            if len(self.mean) != shape[1]:
                raise CaffeCompatError(f"the mean has {len(self.mean)} values but the net input "
                                       f"has {shape[1]} channels")
            t.set_mean("data", np.asarray(self.mean, np.float32))
        if self.input_scale is not None:
            t.set_input_scale("data", float(self.input_scale))
        return t

    def apply(self, image: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
        """(C, H, W) float32 net input for an H' x W' x K image in [0, 1] (resized)."""
        image = np.asarray(image, np.float32)
        if image.ndim == 2:
            image = image[:, :, None]
        channels = int(input_shape[1])
        if image.shape[2] != channels:
            if channels == 1:
                image = image.mean(axis=2, keepdims=True)
            elif image.shape[2] == 1:
                image = np.repeat(image, channels, axis=2)
            else:
                raise CaffeCompatError(f"a {image.shape[2]}-channel image cannot feed a "
                                       f"{channels}-channel net input")
        return np.array(self.transformer(input_shape).preprocess("data", image), np.float32)

    def invert(self, data: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
        """The H x W x K image in [0, 1] (clipped) that ``apply`` would turn into ``data``."""
        out = self.transformer(input_shape).deprocess("data", np.asarray(data, np.float32))
        if out.ndim == 2:
            out = out[:, :, None]
        return np.clip(out, 0.0, 1.0)

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "Preprocessing":
        def tup(v):
            return None if v is None else tuple(v)
        return cls(mean=tup(data.get("mean")), raw_scale=float(data.get("raw_scale", 255.0)),
                   channel_swap=tup(data.get("channel_swap", (2, 1, 0))),
                   input_scale=data.get("input_scale"))


@dataclass(frozen=True)
class NetSource:
    """A deploy prototxt, its weights, the preprocessing and (optionally) class names."""
    prototxt: Path
    weights: Optional[Path]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: Optional[tuple[str, ...]] = None
    zoo_name: Optional[str] = None

    @classmethod
    def from_zoo(cls, name: str, progress: bool = True) -> "NetSource":
        """A zoo model: its deploy prototxt, mean, channel order and labels (weights are
        fetched now; a missing network raises ``DownloadError`` with one clear line)."""
        from caffe_compat import zoo
        entry = zoo.get(name)
        if entry.input_blobs and len(entry.input_blobs) > 1:
            raise CaffeCompatError(f"model {entry.name!r} has several inputs "
                                   f"({', '.join(entry.input_blobs)}); these recipes take one "
                                   "image")
        mean = None
        if entry.mean_values is not None or entry.mean_file is not None:
            mean = tuple(float(v) for v in zoo.mean(entry, per_channel=True))
        swap = None if entry.channel_order.upper() == "RGB" or entry.channels != 3 else (2, 1, 0)
        try:
            labels = tuple(zoo.labels(entry))
        except zoo.RegistryError:
            labels = None
        weights = zoo.fetch(entry, progress=progress)
        return cls(Path(entry.deploy), Path(weights),
                   Preprocessing(mean=mean, raw_scale=entry.raw_scale, channel_swap=swap),
                   labels, entry.name)

    @classmethod
    def from_files(cls, prototxt, weights, preprocessing: Optional[Preprocessing] = None,
                   labels: Optional[Sequence[str]] = None) -> "NetSource":
        """A user's deploy prototxt + caffemodel (``weights=None``: the prototxt's fillers)."""
        for p in (prototxt, weights):
            if p is not None and not os.path.isfile(p):
                raise FileNotFoundError(2, "No such file or directory", str(p))
        return cls(Path(prototxt), None if weights is None else Path(weights),
                   preprocessing or Preprocessing(), None if labels is None else tuple(labels))

    def load(self, ctx=None, phase: int = TEST):
        """The engine's CaffeNet with the weights (zoo models use the converted cache)."""
        if self.zoo_name is not None:
            from caffe_compat import zoo
            return zoo.load(self.zoo_name, ctx=ctx, phase=phase)
        from caffe_compat.engine.network import CaffeNet
        return CaffeNet.from_prototxt(str(self.prototxt), phase,
                                      weights=None if self.weights is None else str(self.weights),
                                      ctx=ctx)

    def label(self, index: int) -> str:
        """Class ``index``'s name, or ``class <index>`` when the source has no labels."""
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"


def image_input(block) -> tuple[str, tuple]:
    """(name, shape) of the block's single image input (N x C x H x W)."""
    if len(block.input_names) != 1:
        raise CaffeCompatError(f"net {block.graph.name!r} has inputs {block.input_names}; "
                               "these recipes need exactly one image input")
    name = block.input_names[0]
    shape = tuple(block.blob_shapes[name])
    if len(shape) != 4:
        raise CaffeCompatError(f"net input {name!r} has shape {shape}; an image input is "
                               "N x C x H x W")
    return name, shape


def block_context(block):
    """The MXNet context ``block``'s parameters live on (the current one if it has none)."""
    from caffe_compat.context import current_context
    for p in block.collect_params().values():
        return p.list_ctx()[0]
    return current_context()


def load_image(path) -> np.ndarray:
    """An image file as H x W x 3 RGB float32 in [0, 1] (``caffe.io.load_image``)."""
    from caffe_compat.io import load_image as _load
    return _load(path)
