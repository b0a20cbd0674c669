"""Caffe's weight fillers (``filler.hpp``) in numpy, seeded by ``caffe.set_random_seed``.

Random fillers draw from numpy, not Caffe's Boost RNG, so random values differ from
Caffe's while their distributions match; the deterministic ones (constant, bilinear)
equal Caffe's exactly.

>>> from caffe_compat.proto import caffe_pb2
>>> f = caffe_pb2.FillerParameter(type="bilinear")
>>> fill(f, (1, 1, 4, 4))[0, 0, 0]
array([0.0625, 0.1875, 0.1875, 0.0625], dtype=float32)
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

_rng = {"state": np.random.RandomState(None)}


def set_random_seed(seed: int) -> None:
    """Seed every random filler and random layer (pycaffe's ``caffe.set_random_seed``):
    numpy's draws (fillers, data layers) and MXNet's (Dropout masks)."""
    _rng["state"] = np.random.RandomState(seed)
    import mxnet as mx
    mx.random.seed(seed)


def rng() -> np.random.RandomState:
    """The shared random state used by fillers and random layers."""
    return _rng["state"]


def _fans(shape: Sequence[int]) -> tuple[float, float]:
    # Caffe: fan_in = count / num, fan_out = count / channels (legacy 4-D accessors:
    # num = shape[0], channels = shape[1] or 1 for 1-D blobs).
    count = int(np.prod(shape)) if len(shape) else 1
    num = shape[0] if len(shape) >= 1 else 1
    channels = shape[1] if len(shape) >= 2 else 1
    return count / num, count / channels


def _norm_n(filler, shape) -> float:
    fan_in, fan_out = _fans(shape)
    norm = filler.variance_norm if filler is not None else 0
    if norm == 2:  # AVERAGE
        return (fan_in + fan_out) / 2.0
    if norm == 1:  # FAN_OUT
        return fan_out
    return fan_in


def fill(filler, shape: Sequence[int]) -> np.ndarray:
    """A float32 array of ``shape`` filled as Caffe's ``GetFiller(filler)->Fill`` would.

    ``filler`` is a ``FillerParameter`` (or None for Caffe's default: constant 0).
    """
    shape = tuple(int(s) for s in shape)
    r = rng()
    kind = filler.type if filler is not None else "constant"
    if kind == "constant":
        return np.full(shape, filler.value if filler is not None else 0.0, dtype=np.float32)
    if kind == "uniform":
        return r.uniform(filler.min, filler.max, shape).astype(np.float32)
    if kind == "gaussian":
        data = r.normal(filler.mean, filler.std, shape).astype(np.float32)
        if filler.sparse >= 0:
            # Caffe: each weight kept with probability sparse / num_outputs.
            keep = r.binomial(1, filler.sparse / float(shape[0]), shape)
            data *= keep
        return data
    if kind == "positive_unitball":
        data = r.uniform(0, 1, shape).astype(np.float32)
        flat = data.reshape(shape[0], -1)
        flat /= flat.sum(axis=1, keepdims=True)
        return data
    if kind == "xavier":
        scale = math.sqrt(3.0 / _norm_n(filler, shape))
        return r.uniform(-scale, scale, shape).astype(np.float32)
    if kind == "msra":
        std = math.sqrt(2.0 / _norm_n(filler, shape))
        return r.normal(0.0, std, shape).astype(np.float32)
    if kind == "bilinear":
        return bilinear(shape)
    raise ValueError(f"unknown filler type {kind!r} (Caffe knows constant, uniform, gaussian, "
                     "positive_unitball, xavier, msra, bilinear)")


def bilinear(shape: Sequence[int]) -> np.ndarray:
    """Caffe's BilinearFiller: the same 2-D bilinear kernel in every (out, in) slot.

    Reproduces filler.hpp: ``f = ceil(K/2)``, ``c = (K - 1) / (2f)``, value
    ``(1 - |x/f - c|) * (1 - |y/f - c|)``, indexed by width then height.
    """
    height, width = shape[-2], shape[-1]
    f = math.ceil(width / 2.0)
    c = (width - 1) / (2.0 * f)
    x = np.arange(width, dtype=np.float64)
    y = np.arange(height, dtype=np.float64)
    kernel = (1 - np.abs(y[:, None] / f - c)) * (1 - np.abs(x[None, :] / f - c))
    return np.broadcast_to(kernel.astype(np.float32), tuple(shape)).copy()


def default_filler(value: float = 0.0):
    """A constant FillerParameter (Caffe's default filler when a layer names none)."""
    from caffe_compat.proto import caffe_pb2
    return caffe_pb2.FillerParameter(type="constant", value=value)


def filler_or_default(layer_filler, has_field: bool, value: float = 0.0) -> Optional[object]:
    """``layer_filler`` when the prototxt set it, else a constant ``value`` filler."""
    return layer_filler if has_field else default_filler(value)
