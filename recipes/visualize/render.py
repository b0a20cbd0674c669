"""Turning maps and gradients into pictures (uint8 RGB arrays) and PNG files.

>>> side_by_side([np.zeros((2, 2, 3), np.uint8), np.zeros((4, 3, 3), np.uint8)], gap=1).shape
(4, 6, 3)
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

# Matplotlib's "jet" as piecewise-linear control points (value, r, g, b).
_JET = np.array([[0.0, 0.0, 0.0, 0.5], [0.11, 0.0, 0.0, 1.0], [0.125, 0.0, 0.0, 1.0],
                 [0.34, 0.0, 0.86, 1.0], [0.35, 0.0, 0.9, 0.97], [0.375, 0.0, 1.0, 0.9],
                 [0.64, 0.9, 1.0, 0.0], [0.65, 0.97, 0.96, 0.0], [0.66, 1.0, 0.91, 0.0],
                 [0.89, 1.0, 0.0, 0.0], [0.91, 0.9, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]])


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats (H x W x 3 or H x W) -> uint8 RGB H x W x 3."""
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def normalize(values: np.ndarray, low: Optional[float] = None,
              high: Optional[float] = None) -> np.ndarray:
    """Linear rescale to [0, 1] between ``low`` and ``high`` (default min and max)."""
    v = np.asarray(values, np.float64)
    lo = v.min() if low is None else low
    hi = v.max() if high is None else high
    if hi <= lo:
        return np.zeros_like(v)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


def jet(values: np.ndarray) -> np.ndarray:
    """Matplotlib's ``jet`` colour map: [0, 1] values (any shape) -> RGB floats [..., 3]."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.stack([np.interp(v, _JET[:, 0], _JET[:, c]) for c in (1, 2, 3)], axis=-1)


def map_picture(values: np.ndarray, colormap: str = "gray") -> np.ndarray:
    """A 2-D map as uint8 RGB: ``gray`` (white = high, Simonyan's figures) or ``jet``."""
    v = normalize(values)
    return to_uint8(jet(v) if colormap == "jet" else v)


def gradient_picture(grad: np.ndarray, channel_swap: Optional[Sequence[int]] = (2, 1, 0),
                     percentile: float = 99.0) -> np.ndarray:
    """A (C, H, W) image gradient as uint8 RGB, 0 at mid-gray (deconvnet / guided
    figures): scaled by the ``percentile`` of |grad| so a few spikes do not wash it out;
    ``channel_swap`` is the net's order (BGR -> RGB for Caffe nets)."""
    g = np.asarray(grad, np.float64)
    if g.shape[0] == 3 and channel_swap is not None:
        g = g[np.argsort(channel_swap)]
    scale = np.percentile(np.abs(g), percentile) or np.abs(g).max() or 1.0
    return to_uint8(0.5 + 0.5 * np.clip(g / scale, -1, 1).transpose(1, 2, 0))


def overlay(image: np.ndarray, values01: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` (H x W x 3 in [0, 1]) blended with the jet colours of a [0, 1] map."""
    img = np.asarray(image, np.float64)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return to_uint8((1 - alpha) * img + alpha * jet(values01))


def side_by_side(pictures: Sequence[np.ndarray], gap: int = 4,
                 background: int = 255) -> np.ndarray:
    """uint8 pictures left to right, top-aligned, ``gap`` pixels apart."""
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1)
    out = np.full((height, width, 3), background, np.uint8)
    x = 0
    for p in pictures:
        out[:p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def grid(pictures: Sequence[np.ndarray], columns: int, gap: int = 2,
         background: int = 255) -> np.ndarray:
    """uint8 pictures in rows of ``columns`` (cells as big as the largest picture)."""
    if not pictures:
        raise ValueError("no pictures to lay out")
    ch = max(p.shape[0] for p in pictures)
    cw = max(p.shape[1] for p in pictures)
    rows = (len(pictures) + columns - 1) // columns
    out = np.full((rows * ch + gap * (rows - 1), columns * cw + gap * (columns - 1), 3),
                  background, np.uint8)
    for i, p in enumerate(pictures):
        y, x = (i // columns) * (ch + gap), (i % columns) * (cw + gap)
        out[y:y + p.shape[0], x:x + p.shape[1]] = p
    return out


def save_png(path: str, picture: np.ndarray) -> str:
    """Write a uint8 RGB picture as PNG (parent folders are created)."""
    from PIL import Image
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(np.asarray(picture, np.uint8)).save(path, format="PNG")
    return path
