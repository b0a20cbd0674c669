"""pycaffe's ``caffe.coord_map``: relate blob coordinates through spatial layers.

A coordinate map is ``(axis, scale, shift)``: output coordinate ``i * scale + shift``
corresponds to input coordinate ``i`` along every axis from ``axis`` on (``scale``
and ``shift`` are numpy arrays, one entry per spatial axis, or scalars).
Convolution/Pooling/Deconvolution/Crop layers change the map; element-wise layers
(ReLU, Eltwise, BatchNorm, ...) pass it through. Its main use is :func:`crop`,
which builds the ``Crop`` layer that aligns one top to another, as FCN's
``net.py`` does::

    from caffe_compat.coord_map import crop
    n.score_pool4c = crop(n.score_pool4, n.upscore2)   # Crop: axis 2, offset 5

Everything here works on :mod:`caffe_compat.net_spec` tops and their keyword
parameters (``fn.params``), before any prototxt exists.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Optional, Tuple

import numpy as np

from caffe_compat.net_spec import Function, Top
from caffe_compat.net_spec import layers as L

__all__ = ["PASS_THROUGH_LAYERS", "conv_params", "crop_params", "coord_map", "compose",
           "inverse", "coord_map_from_to", "crop", "UndefinedMapException",
           "AxisMismatchException"]

#: Layer types whose output coordinates equal their input coordinates.
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU",
                       "Log", "LRN", "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale",
                       "Sigmoid", "Split", "TanH", "Threshold"]

CoordMap = Tuple[Optional[int], Any, Any]


class UndefinedMapException(Exception):
    """The layer type has no coordinate mapping (e.g. InnerProduct)."""


class AxisMismatchException(Exception):
    """Two coordinate maps start at different axes and cannot be composed."""


def conv_params(fn: Function) -> Tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(axis, stride, effective kernel extent, pad)`` of a Convolution, Deconvolution,
    Im2col or Pooling layer, read from ``convolution_param=dict(...)`` when given,
    else from the layer's own keywords (as pycaffe does).

    The extent is ``(kernel_size - 1) * dilation + 1``. The legacy ``*_h``/``*_w``
    keywords are refused.

    >>> conv_params(L.Convolution(L.Input(), kernel_size=3, dilation=2, pad=2).fn)
    (1, array([1]), array([5]), array([2]))
    """
    params = fn.params.get("convolution_param", fn.params)
    legacy = {"pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w"}
    if legacy & set(fn.params):
        raise AssertionError("cropping does not support legacy _h/_w params")
    axis = params.get("axis", 1)
    kernel = np.array(params["kernel_size"], ndmin=1)
    dilation = np.array(params.get("dilation", 1), ndmin=1)
    return (axis, np.array(params.get("stride", 1), ndmin=1),
            (kernel - 1) * dilation + 1, np.array(params.get("pad", 0), ndmin=1))


def crop_params(fn: Function) -> Tuple[int, np.ndarray]:
    """``(axis, offset)`` of a Crop layer with Caffe's defaults (axis 2, offset 0)."""
    params = fn.params.get("crop_param", fn.params)
    return params.get("axis", 2), np.array(params.get("offset", 0), ndmin=1)


def coord_map(fn: Function) -> CoordMap:
    """The ``(axis, scale, shift)`` map of one layer, from its input to its output.

    Convolution/Pooling: scale ``1/stride``, shift ``(pad - (extent-1)/2) / stride``;
    Deconvolution: scale ``stride``, shift ``(extent-1)/2 - pad``; Crop: scale 1,
    shift ``-offset`` from the axis before the first cropped one; pass-through
    layers: ``(None, 1, 0)``. Any other type raises :class:`UndefinedMapException`.
    """
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, extent, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, extent, pad = conv_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset    # -1: Crop's axis is the first cropped one
    raise UndefinedMapException(f"no coordinate mapping for layer type {fn.type_name}")


def compose(base_map: CoordMap, next_map: CoordMap) -> CoordMap:
    """Apply ``next_map`` after ``base_map``: scales multiply, and the further shift
    is scaled by the base scale. An axis of ``None`` (pass-through) takes the
    other map's axis; two different axes raise :class:`AxisMismatchException`.

    >>> compose((1, 0.5, 1.0), (None, 1, 0))
    (1, 0.5, 1.0)
    """
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException(f"coordinate maps start at axes {ax1} and {ax2}")
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map: CoordMap) -> CoordMap:
    """The backward map: de-scale and un-shift.

    >>> inverse((1, 2.0, -3.0))
    (1, 0.5, 1.5)
    """
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _mapped_bottoms(top: Top) -> tuple:
    # Every bottom maps the same way, except Crop: only its first (cropped) bottom
    # is mapped, the second only gives the output size.
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == "Crop" else bottoms


def coord_map_from_to(top_from: Top, top_to: Top) -> CoordMap:
    """The map from ``top_from``'s coordinates to ``top_to``'s.

    Walks back from ``top_from`` composing the maps of every ancestor, then back
    from ``top_to`` until it reaches one of them, and joins the two walks there.
    Raises ``RuntimeError`` when no common ancestor is reachable through layers
    with a coordinate mapping.
    """
    from_maps = {top_from: (None, 1, 0)}
    frontier = deque([top_from])
    while frontier:
        top = frontier.popleft()
        try:
            for bottom in _mapped_bottoms(top):
                from_maps[bottom] = compose(from_maps[top], coord_map(top.fn))
                frontier.append(bottom)
        except UndefinedMapException:
            pass

    to_maps = {top_to: (None, 1, 0)}
    frontier = deque([top_to])
    while frontier:
        top = frontier.popleft()
        if top in from_maps:
            return compose(to_maps[top], inverse(from_maps[top]))
        try:
            for bottom in _mapped_bottoms(top):
                to_maps[bottom] = compose(to_maps[top], coord_map(top.fn))
                frontier.append(bottom)
        except UndefinedMapException:
            continue

    raise RuntimeError("Could not compute map between tops; are they "
                       "connected by spatial layers?")


def crop(top_from: Top, top_to: Top) -> Top:
    """A ``Crop`` layer cropping ``top_from`` to ``top_to``'s extent and alignment.

    The ``crop_param`` axis and per-axis offsets come from
    :func:`coord_map_from_to`. As in pycaffe an ``AssertionError`` is raised when
    the scales differ (``a != 1``), an offset would be negative, or an offset is
    not a whole number. Tops joined only by pass-through layers are already
    aligned: the crop is at axis 2 with offset 0.

    >>> from caffe_compat.net_spec import NetSpec
    >>> n = NetSpec()
    >>> n.data = L.Input(shape=dict(dim=[1, 1, 100, 100]))
    >>> n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=100)
    >>> crop(n.conv, n.data).fn.params
    {'crop_param': {'axis': 2, 'offset': [99]}}
    """
    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    if not (a == 1).all():
        raise AssertionError("scale mismatch on crop (a = {})".format(a))
    if not (b <= 0).all():
        raise AssertionError("cannot crop negative offset (b = {})".format(b))
    if not (np.round(b) == b).all():
        raise AssertionError("cannot crop noninteger offset (b = {})".format(b))
    axis = 2 if ax is None else ax + 1    # +1: the first cropped axis
    return L.Crop(top_from, top_to,
                  crop_param=dict(axis=axis,
                                  offset=[int(v) for v in -np.round(b).astype(int)]))
