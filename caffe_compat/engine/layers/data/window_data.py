"""Caffe's WindowData layer (window_data_layer.cpp, R-CNN fine-tuning): the window
file parser, the crop geometry and the layer that samples fore- and background
windows."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from caffe_compat.engine.layer import Shape, register_layer
from caffe_compat.engine.layers.data.base import (ErrorFactory, PrefetchingDataLayer, seeded_rng,
                                                  source_tokens)


class _Window:
    __slots__ = ("image", "label", "overlap", "x1", "y1", "x2", "y2", "line")

    def __init__(self, image, label, overlap, x1, y1, x2, y2, line):
        self.image, self.label, self.overlap = image, label, overlap
        self.x1, self.y1, self.x2, self.y2, self.line = x1, y1, x2, y2, line


def parse_window_file(path: str, root_folder: str, fg_threshold: float, bg_threshold: float,
                      error: ErrorFactory):
    """Caffe's R-CNN window file: repeated ``# image_index``, ``img_path``, ``channels``,
    ``height``, ``width``, ``num_windows``, then ``class_index overlap x1 y1 x2 y2`` per
    window. Returns (images [(path, (c, h, w), line)], fg windows, bg windows).

    A window is foreground when ``overlap >= fg_threshold`` (its label must be > 0),
    background (label and overlap forced to 0) when ``overlap < bg_threshold``, and
    dropped otherwise, as window_data_layer.cpp does.
    """
    tokens = source_tokens(path, "window file", error)
    if not tokens:
        raise error(f"window file {path!r} is empty")
    pos = 0

    def take(kind, what):
        nonlocal pos
        if pos >= len(tokens):
            raise error(f"{path}:{tokens[-1][1]}: file ends where {what} was expected")
        tok, n = tokens[pos]
        pos += 1
        try:
            return kind(tok), n
        except ValueError:
            raise error(f"{path}:{n}: expected {what}, got {tok!r}") from None

    fg_t, bg_t = np.float32(fg_threshold), np.float32(bg_threshold)
    images, fg, bg, indices = [], [], [], []
    while pos < len(tokens):
        tag, n = take(str, "'#'")
        if tag != "#":
            raise error(f"{path}:{n}: expected '#' starting an image entry, got {tag!r}")
        image_index, n = take(int, "an image index")
        image_path, n = take(str, "an image path")
        c, _ = take(int, "channels")
        h, _ = take(int, "height")
        w, _ = take(int, "width")
        images.append((root_folder + image_path, (c, h, w), n))
        num_windows, n = take(int, "the number of windows")
        for _ in range(num_windows):
            label, n = take(int, "a class index")
            overlap, _ = take(np.float32, "an overlap")
            x1, _ = take(int, "x1")
            y1, _ = take(int, "y1")
            x2, _ = take(int, "x2")
            y2, _ = take(int, "y2")
            if overlap >= fg_t:
                if label <= 0:
                    raise error(f"{path}:{n}: foreground window (overlap {overlap} >= "
                                f"fg_threshold) must have a class index > 0, got {label}")
                fg.append(_Window(image_index, label, overlap, x1, y1, x2, y2, n))
            elif overlap < bg_t:
                bg.append(_Window(image_index, 0, np.float32(0), x1, y1, x2, y2, n))
            indices.append((image_index, n))
    for image_index, n in indices:
        if not 0 <= image_index < len(images):
            raise error(f"{path}:{n}: image index {image_index} does not name one of the "
                        f"{len(images)} images (Caffe indexes images by their order in the "
                        "file, from 0)")
    return images, fg, bg


def _c_round(x) -> int:
    """C's round(): halves away from zero."""
    x = float(x)
    return int(np.floor(x + 0.5)) if x >= 0 else -int(np.floor(-x + 0.5))


def window_geometry(x1: int, y1: int, x2: int, y2: int, img_w: int, img_h: int,
                    crop_size: int, context_pad: int, square: bool, mirror: bool) -> dict:
    """Where window_data_layer.cpp cuts a window and where it lands in the crop.

    Returns the clipped source box (x1, y1, x2, y2, inclusive), the size the box is
    warped to (``warp_w``, ``warp_h``) and its offset in the crop (``pad_w``,
    ``pad_h``). Computed in float32 with C rounding, as Caffe does for Dtype=float.
    """
    f = np.float32
    pad_w = pad_h = 0
    warp_w = warp_h = crop_size
    if context_pad > 0 or square:
        context_scale = f(crop_size) / f(crop_size - 2 * context_pad)
        half_height = f(y2 - y1 + 1) / f(2.0)
        half_width = f(x2 - x1 + 1) / f(2.0)
        center_x = f(x1) + half_width
        center_y = f(y1) + half_height
        if square:
            half_width = half_height = max(half_width, half_height)
        x1 = _c_round(center_x - half_width * context_scale)
        x2 = _c_round(center_x + half_width * context_scale)
        y1 = _c_round(center_y - half_height * context_scale)
        y2 = _c_round(center_y + half_height * context_scale)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - img_w + 1), max(0, y2 - img_h + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        clipped_h, clipped_w = y2 - y1 + 1, x2 - x1 + 1
        scale_x = f(crop_size) / f(unclipped_w)
        scale_y = f(crop_size) / f(unclipped_h)
        warp_w = _c_round(f(clipped_w) * scale_x)
        warp_h = _c_round(f(clipped_h) * scale_y)
        pad_x1 = _c_round(f(pad_x1) * scale_x)
        pad_x2 = _c_round(f(pad_x2) * scale_x)
        pad_y1 = _c_round(f(pad_y1) * scale_y)
        pad_h = pad_y1
        pad_w = pad_x2 if mirror else pad_x1  # the padding is mirrored too
        if pad_h + warp_h > crop_size:
            warp_h = crop_size - pad_h
        if pad_w + warp_w > crop_size:
            warp_w = crop_size - pad_w
    return dict(x1=x1, y1=y1, x2=x2, y2=y2, warp_w=warp_w, warp_h=warp_h,
                pad_w=pad_w, pad_h=pad_h)


class _WindowLoader:
    """Caffe's WindowDataLayer::load_batch: background windows first, then foreground,
    each picked uniformly at random, context-padded, warped to crop_size, mirrored at
    random, mean-subtracted and scaled; padding stays 0 (the mean, after subtraction)."""

    def __init__(self, images, fg, bg, cache, rng, channels, mean, mean_values, param,
                 crop_size, mirror, window_path, error):
        self.images, self.fg, self.bg, self.cache, self.rng = images, fg, bg, cache, rng
        self.channels, self.mean, self.mean_values = channels, mean, mean_values
        self.batch_size = int(param.batch_size)
        self.context_pad = int(param.context_pad)
        self.square = param.crop_mode == "square"
        self.scale = np.float32(param.scale)
        self.fg_fraction = np.float32(param.fg_fraction)
        self.crop_size, self.mirror = crop_size, mirror
        self.window_path, self.error = window_path, error

    def rand(self) -> int:
        return int(self.rng.randint(0, 2 ** 32, dtype=np.uint64))

    def image(self, window) -> np.ndarray:
        from caffe_compat.errors import ImageReadError
        from caffe_compat.images import decode_bgr, read_bgr
        path, _, line = self.images[window.image]
        try:
            if self.cache is not None:
                return decode_bgr(self.cache[window.image], path)
            return read_bgr(path)
        except (FileNotFoundError, ImageReadError):
            raise self.error(f"{self.window_path}:{line}: could not open or find image "
                             f"{path!r}") from None

    def load_batch(self) -> list[np.ndarray]:
        import cv2
        crop = self.crop_size
        data = np.zeros((self.batch_size, self.channels, crop, crop), dtype=np.float32)
        labels = np.empty((self.batch_size,), dtype=np.float32)
        num_fg = int(np.float32(self.batch_size) * self.fg_fraction)
        item = 0
        for is_fg, count in ((False, self.batch_size - num_fg), (True, num_fg)):
            pool = self.fg if is_fg else self.bg
            if count and not pool:
                raise self.error(f"{self.window_path}: no {'fore' if is_fg else 'back'}ground "
                                 f"windows to sample {count} from (check fg_threshold, "
                                 "bg_threshold and fg_fraction)")
            for _ in range(count):
                window = pool[self.rand() % len(pool)]
                do_mirror = self.mirror and self.rand() % 2 == 1
                img = self.image(window)
                g = window_geometry(window.x1, window.y1, window.x2, window.y2,
                                    img.shape[1], img.shape[0], crop, self.context_pad,
                                    self.square, do_mirror)
                x1, y1, x2, y2 = g["x1"], g["y1"], g["x2"], g["y2"]
                if not (0 <= x1 <= x2 < img.shape[1] and 0 <= y1 <= y2 < img.shape[0]):
                    raise self.error(f"{self.window_path}:{window.line}: window "
                                     f"({window.x1}, {window.y1}, {window.x2}, {window.y2}) "
                                     f"lies outside its {img.shape[1]} x {img.shape[0]} image")
                if g["warp_w"] <= 0 or g["warp_h"] <= 0:
                    raise self.error(f"{self.window_path}:{window.line}: window warps to an "
                                     f"empty {g['warp_w']} x {g['warp_h']} region")
                patch = cv2.resize(img[y1:y2 + 1, x1:x2 + 1], (g["warp_w"], g["warp_h"]),
                                   interpolation=cv2.INTER_LINEAR)
                if do_mirror:
                    patch = patch[:, ::-1]
                patch = patch.reshape(patch.shape[0], patch.shape[1], -1).transpose(2, 0, 1)
                if patch.shape[0] != self.channels:
                    raise self.error(f"{self.window_path}: images are read in colour "
                                     f"({patch.shape[0]} channels) but the top has "
                                     f"{self.channels}")
                ph, pw = g["pad_h"], g["pad_w"]
                rows = (slice(None), slice(ph, ph + patch.shape[1]), slice(pw, pw + patch.shape[2]))
                pixels = patch.astype(np.float32)
                if self.mean is not None:
                    off = (self.mean.shape[2] - crop) // 2
                    pixels = pixels - self.mean[:, off + ph:off + ph + patch.shape[1],
                                                off + pw:off + pw + patch.shape[2]]
                elif self.mean_values is not None:
                    pixels = pixels - self.mean_values[:, None, None]
                data[item][rows] = pixels * self.scale
                labels[item] = window.label
                item += 1
        return [data, labels]


@register_layer("WindowData", origin="BVLC")
class WindowDataLayer(PrefetchingDataLayer):
    """Caffe's WindowDataLayer (R-CNN fine-tuning): each batch samples
    ``batch_size * fg_fraction`` foreground and the rest background windows from the
    window file, cuts each with ``context_pad`` pixels of context (``crop_mode`` warp or
    square), warps it to transform_param.crop_size, mirrors at random
    (transform_param.mirror), subtracts transform_param's mean and multiplies by
    window_data_param.scale. Tops: data and label.
    """

    top_counts = (2, 2, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        self.setup_source(bottom_shapes)
        p = self.param.window_data_param
        tp = self.param.transform_param
        self.warn_deprecated(p, ("mean_file", "crop_size", "mirror"))
        if not p.source:
            raise self.error("window_data_param.source is required")
        if p.batch_size <= 0:
            raise self.error("window_data_param.batch_size must be positive")
        crop_size = int(tp.crop_size)
        if crop_size <= 0:
            raise self.error("transform_param.crop_size must be positive (the warped "
                             "window size)")
        if 2 * int(p.context_pad) >= crop_size:
            raise self.error(f"context_pad {p.context_pad} leaves no room in a "
                             f"{crop_size}-pixel crop")
        if p.crop_mode not in ("warp", "square"):
            raise self.error(f"crop_mode must be 'warp' or 'square', got {p.crop_mode!r}")
        error = self.error_factory()
        rng = seeded_rng()  # Caffe's prefetch_rng_ (mirror or crop_size: always needed)
        images, fg, bg = parse_window_file(p.source, p.root_folder, p.fg_threshold,
                                           p.bg_threshold, error)
        cache = None
        if p.cache_images:
            cache = []
            for path, _, line in images:
                try:
                    with open(path, "rb") as f:
                        cache.append(f.read())
                except OSError as exc:
                    raise self.error(f"{p.source}:{line}: could not open or find file "
                                     f"{path!r} ({exc.strerror or exc})") from None
        channels = images[-1][1][0]  # Caffe shapes the top with the last entry's channels
        if channels != 3:
            raise self.error(f"{p.source}:{images[-1][2]}: WindowData reads images in colour "
                             f"(3 channels) but the window file says {channels}")
        mean = mean_values = None
        if tp.HasField("mean_file"):
            if len(tp.mean_value):
                raise self.error("cannot specify mean_file and mean_value at the same time")
            from caffe_compat.engine.data_transformer import load_mean_file
            mean = load_mean_file(tp.mean_file, self.error)
            off = (mean.shape[2] - crop_size) // 2
            if mean.shape[0] != channels or min(mean.shape[1], mean.shape[2]) < off + crop_size:
                raise self.error(f"mean_file {tp.mean_file!r} of shape {mean.shape} does not "
                                 f"cover a centred {channels} x {crop_size} x {crop_size} crop")
        elif len(tp.mean_value):
            if len(tp.mean_value) not in (1, channels):
                raise self.error(f"specify either 1 mean_value or as many as channels "
                                 f"({channels}), got {len(tp.mean_value)}")
            repeat = channels if len(tp.mean_value) == 1 else 1
            mean_values = np.asarray(list(tp.mean_value) * repeat, dtype=np.float32)
        batch = int(p.batch_size)
        self.declared_tops = [(batch, channels, crop_size, crop_size), (batch,)]
        self.start_loader(_WindowLoader(images, fg, bg, cache, rng, channels, mean, mean_values,
                                        p, crop_size, bool(tp.mirror), p.source, error))

