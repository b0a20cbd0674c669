"""Warped context crops exactly as pycaffe's ``caffe.Detector.crop`` cuts them, vectorised."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from caffe_compat.recipes.rcnn.constants import DetectionError


@dataclass(frozen=True)
class CropGeometry:
    """Where ``caffe.Detector.crop`` cuts a window and where the piece lands:
    rows ``y0:y1`` and columns ``x0:x1`` of the image, resized to ``crop_h x crop_w`` and
    placed at ``(pad_y, pad_x)`` of the ``crop_size`` square."""
    y0: int
    x0: int
    y1: int
    x1: int
    pad_y: int
    pad_x: int
    crop_h: int
    crop_w: int


def context_crop_geometry(window, crop_size: int, context_pad: int, im_h: int, im_w: int
                          ) -> CropGeometry:
    """The geometry of pycaffe's context crop (``Detector.crop`` with ``context_pad``):
    the window (ymin, xmin, ymax, xmax; taken as inclusive) scaled about its centre by
    ``crop_size / (crop_size - 2 * context_pad)`` and rounded (numpy's half-to-even), the
    out-of-image part becoming padding rows/columns (Python 2 rounding), the rest clipped
    to the image and resized."""
    from caffe_compat.pycaffe.detector import round_half_away
    box = np.array(window, dtype=np.float64)
    scale = crop_size / (1.0 * crop_size - context_pad * 2)
    half_h = (box[2] - box[0] + 1) / 2.0
    half_w = (box[3] - box[1] + 1) / 2.0
    center = (box[0] + half_h, box[1] + half_w)
    box = np.round(np.tile(center, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
    full_h, full_w = box[2] - box[0] + 1, box[3] - box[1] + 1
    scale_h, scale_w = crop_size / full_h, crop_size / full_w
    pad_y = round_half_away(max(0, -box[0]) * scale_h)
    pad_x = round_half_away(max(0, -box[1]) * scale_w)
    box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
    clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
    y0, x0, y1, x1 = (int(v) for v in box)
    if not (clip_h > 0 and clip_w > 0) or y1 <= y0 or x1 <= x0:
        raise DetectionError(f"window {tuple(np.asarray(window).tolist())} with context lies "
                             f"outside the {im_h}x{im_w} image")
    crop_h = min(round_half_away(clip_h * scale_h), crop_size - pad_y)
    crop_w = min(round_half_away(clip_w * scale_w), crop_size - pad_x)
    return CropGeometry(y0, x0, y1, x1, pad_y, pad_x, crop_h, crop_w)


def _linear_taps(n_in: int, n_out: int):
    """scipy.ndimage.zoom(order=1, grid_mode=True, mode='grid-constant', cval=0) along one
    axis: source indices and weights of each output sample (0 weight outside)."""
    c = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    c0 = np.floor(c).astype(np.int64)
    w1 = c - c0
    w0 = np.where((c0 >= 0) & (c0 < n_in), 1.0 - w1, 0.0)
    w1 = np.where((c0 + 1 >= 0) & (c0 + 1 < n_in), w1, 0.0)
    return (np.clip(c0, 0, n_in - 1), np.clip(c0 + 1, 0, n_in - 1),
            w0.astype(np.float32), w1.astype(np.float32))


def resize_like_pycaffe(im: np.ndarray, new_dims: Sequence[int]) -> np.ndarray:
    """``caffe.io.resize_image(im, new_dims)`` for 1- or 3-channel images, computed with
    two gathers instead of ``scipy.ndimage.zoom``: the same [0, 1] normalisation, the
    same anti-aliasing ``gaussian_filter`` skimage applies when shrinking, the same
    bilinear grid-mode taps with 0 outside, clip, scale back (equal to float32 rounding)."""
    from scipy import ndimage as ndi
    h, w = im.shape[:2]
    oh, ow = int(new_dims[0]), int(new_dims[1])
    lo, hi = im.min(), im.max()
    if not hi > lo:
        return np.full((oh, ow, im.shape[2]), lo, dtype=np.float32)
    s = (im - lo) / (hi - lo)
    if oh < h or ow < w:  # skimage.transform.resize's default anti-aliasing
        sigma = np.maximum(0.0, (np.array([h / oh, w / ow, 1.0]) - 1.0) / 2.0)
        s = ndi.gaussian_filter(s, sigma, cval=0.0, mode="grid-constant")
    i0, i1, a0, a1 = _linear_taps(h, oh)
    t = s[i0] * a0[:, None, None] + s[i1] * a1[:, None, None]
    j0, j1, b0, b1 = _linear_taps(w, ow)
    out = t[:, j0] * b0[None, :, None] + t[:, j1] * b1[None, :, None]
    np.clip(out, 0.0, 1.0, out=out)
    return (out * (hi - lo) + lo).astype(np.float32)


def context_crop(im: np.ndarray, window, crop_size: int, context_pad: int,
                 crop_mean: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``caffe.Detector.crop(im, window)`` with ``context_pad > 0`` for an (H, W, 3) float
    image: a ``crop_size`` square float32 filled with ``crop_mean`` (raw image space) and
    the warped context box at its place. Writes into ``out`` when given."""
    g = context_crop_geometry(window, crop_size, context_pad, im.shape[0], im.shape[1])
    if out is None:
        out = np.empty((crop_size, crop_size, im.shape[2]), dtype=np.float32)
    out[...] = np.broadcast_to(np.asarray(crop_mean, dtype=np.float32), out.shape)
    piece = resize_like_pycaffe(im[g.y0:g.y1, g.x0:g.x1], (g.crop_h, g.crop_w))
    out[g.pad_y:g.pad_y + g.crop_h, g.pad_x:g.pad_x + g.crop_w] = piece
    return out
