"""Caffe's ImageData layer (image_data_layer.cpp): images named in a list file,
read with OpenCV, resized, transformed; plus the list-file parser and image reader
the fine-tuning recipe reuses."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from caffe_compat.engine.data_transformer import DataTransformer, TransformError
from caffe_compat.engine.layer import Shape, register_layer
from caffe_compat.engine.layers.data.base import (ErrorFactory, PrefetchingDataLayer,
                                                  caffe_rng_rand, seeded_rng)


def parse_image_list(path: str, error: ErrorFactory) -> list[tuple[str, int, int]]:
    """Caffe's ImageData list file as (filename, label, line number) entries.

    Caffe splits each line at its *last* space: the filename is what comes before it
    (it may contain spaces), the label the integer after it; a line without a space is
    a filename with label 0. A blank line or a label that is not an integer is an error
    naming the line.
    """
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise error(f"cannot open image list {path!r}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            if number == text.count("\n") + 1:
                continue  # the text after the final newline: no line at all
            raise error(f"{path}:{number}: blank line in the image list")
        pos = line.rfind(" ")
        if pos < 0:
            entries.append((line, 0, number))
            continue
        try:
            label = int(line[pos + 1:])
        except ValueError:
            raise error(f"{path}:{number}: label {line[pos + 1:]!r} is not an integer "
                        "(expected 'path label')") from None
        entries.append((line[:pos], label, number))
    if not entries:
        raise error(f"image list {path!r} names no images")
    return entries


def read_image(path: str, new_height: int, new_width: int, is_color: bool) -> Optional[np.ndarray]:
    """Caffe's ReadImageToCVMat: cv2.imread (BGR, or gray), resized with INTER_LINEAR to
    exactly new_width x new_height when both are set; None if it cannot be read."""
    import cv2
    from caffe_compat.errors import ImageReadError
    from caffe_compat.images import read_bgr
    try:
        img = read_bgr(path, is_color)
    except (FileNotFoundError, ImageReadError):
        return None
    if new_height > 0 and new_width > 0:
        img = cv2.resize(img, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    return img


class _ImageListLoader:
    """Caffe's ImageDataLayer::load_batch: the next batch_size list entries, reshuffled
    at each pass when ``shuffle`` is set."""

    def __init__(self, entries, start: int, rng, shuffle: bool, transformer: DataTransformer,
                 param, list_path: str, error: ErrorFactory):
        self.entries, self.pos, self.rng, self.shuffle = entries, start, rng, shuffle
        self.transformer, self.list_path, self.error = transformer, list_path, error
        self.batch_size = int(param.batch_size)
        self.size = (int(param.new_height), int(param.new_width))
        self.is_color = bool(param.is_color)
        self.root = param.root_folder

    def read(self, entry) -> np.ndarray:
        filename, _, number = entry
        img = read_image(self.root + filename, self.size[0], self.size[1], self.is_color)
        if img is None:
            raise self.error(f"{self.list_path}:{number}: could not load image "
                             f"{self.root + filename!r} (missing, unreadable or not an image)")
        return img

    def load_batch(self) -> list[np.ndarray]:
        data = None
        labels = np.empty((self.batch_size,), dtype=np.float32)
        for item in range(self.batch_size):
            entry = self.entries[self.pos]
            img = self.read(entry)
            try:
                out = self.transformer.transform_image(img)
            except TransformError as exc:
                raise self.error(f"{self.list_path}:{entry[2]}: "
                                 f"{self.root + entry[0]!r}: {exc}") from None
            if data is None:  # Caffe shapes the batch from its first image
                data = np.empty((self.batch_size,) + out.shape, dtype=np.float32)
            elif out.shape != data.shape[1:]:
                raise self.error(f"{self.list_path}:{entry[2]}: image {self.root + entry[0]!r} "
                                 f"gives shape {out.shape} but the batch's first image gives "
                                 f"{data.shape[1:]} (set new_height/new_width or crop_size)")
            data[item] = out
            labels[item] = entry[1]
            self.pos += 1
            if self.pos >= len(self.entries):
                self.pos = 0
                if self.shuffle:
                    self.rng.shuffle(self.entries)
        return [data, labels]


@register_layer("ImageData", origin="BVLC")
class ImageDataLayer(PrefetchingDataLayer):
    """Caffe's ImageDataLayer: images named in a list file (``path label`` per line),
    read with OpenCV (BGR, C x H x W), optionally resized to new_height x new_width,
    transformed by ``transform_param``; tops data and label.

    ``shuffle`` shuffles the list at setup and again at each pass (as Caffe, in any
    phase); ``rand_skip`` starts ``rand() % rand_skip`` entries in.
    """

    top_counts = (2, 2, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.setup_source(bottom_shapes)
        p = self.param.image_data_param
        self.warn_deprecated(p, ("scale", "mean_file", "crop_size", "mirror"))
        if not ((p.new_height == 0 and p.new_width == 0) or (p.new_height > 0 and p.new_width > 0)):
            raise self.error("new_height and new_width must be set together")
        if p.batch_size <= 0:
            raise self.error("image_data_param.batch_size must be positive")
        if not p.source:
            raise self.error("image_data_param.source is required")
        error = self.error_factory()
        entries = parse_image_list(p.source, error)
        rng = None
        if p.shuffle:
            rng = seeded_rng()
            rng.shuffle(entries)
        start = 0
        if p.rand_skip:
            start = caffe_rng_rand() % p.rand_skip
            if start >= len(entries):
                raise self.error(f"not enough images to skip: rand_skip drew {start} but "
                                 f"{p.source!r} lists {len(entries)}")
        loader = _ImageListLoader(entries, start, rng, bool(p.shuffle), self.transformer(), p,
                                  p.source, error)
        first = loader.read(entries[start])
        try:
            shape = loader.transformer.output_shape(
                (first.shape[2] if first.ndim == 3 else 1,) + first.shape[:2])
        except TransformError as exc:
            raise self.error(f"{p.source}:{entries[start][2]}: {exc}") from None
        self.declared_tops = [(int(p.batch_size),) + shape, (int(p.batch_size),)]
        self.start_loader(loader)

