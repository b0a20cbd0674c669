"""Net surgery for FCNs (fcn.berkeleyvision.org ``surgery.py``) on caffe-compat nets.

All functions take pycaffe-style nets (``caffe_compat.Net``: ``net.params[name][i].data``
numpy views) and edit the weights in place.

* :func:`transplant` copies a classifier's weights into its fully convolutional twin
  by layer name, reshaping fully connected ``O x I`` weights into ``O x C x H x W``
  convolution kernels (the bytes are the same, only the shape differs);
* :func:`interp` makes every listed ``Deconvolution`` a bilinear upsampler;
* :func:`expand_score` transplants a score layer into one with more classes.

>>> import numpy as np
>>> upsample_filt(4)                         # the 2x kernel of upscore2
array([[0.0625, 0.1875, 0.1875, 0.0625],
       [0.1875, 0.5625, 0.5625, 0.1875],
       [0.1875, 0.5625, 0.5625, 0.1875],
       [0.0625, 0.1875, 0.1875, 0.0625]])
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np


def transplant(new_net, net, suffix: str = "",
               log: Optional[Callable[[str], None]] = print) -> list[tuple]:
    """Copy ``net``'s parameters into ``new_net`` layer by layer (``<name><suffix>``).

    As surgery.py: a layer ``new_net`` lacks is dropped; extra blobs are dropped;
    blobs whose shapes differ are coerced by copying the flat data
    (``dst.flat = src.flat``, numpy's rule: a shorter source repeats, a longer one is
    cut), which turns an InnerProduct's ``O x I`` weights into the equivalent
    convolution's ``O x C x H x W`` kernel. Each step is logged with ``log`` (the
    original's ``print`` lines; ``log=None`` is silent) and returned as
    ``(action, layer, blob index)`` with action ``dropping``/``coercing``/``copying``.
    """
    report = []
    say = log or (lambda _msg: None)
    for p in net.params:
        p_new = p + suffix
        if p_new not in new_net.params:
            say(f"dropping {p}")
            report.append(("dropping", p, None))
            continue
        for i in range(len(net.params[p])):
            if i > len(new_net.params[p_new]) - 1:
                say(f"dropping {p} {i}")
                report.append(("dropping", p, i))
                break
            src = net.params[p][i].data
            dst = new_net.params[p_new][i].data
            if src.shape != dst.shape:
                say(f"coercing {p} {i} from {src.shape} to {dst.shape}")
                report.append(("coercing", p, i))
            else:
                say(f"copying {p}  ->  {p_new} {i}")
                report.append(("copying", p, i))
            dst.flat = src.flat
    return report


def upsample_filt(size: int) -> np.ndarray:
    """A ``size x size`` bilinear kernel for upsampling by ``(size + 1) // 2``.

    The separable tent ``(1 - |x - c| / f)(1 - |y - c| / f)`` with factor
    ``f = (size + 1) // 2`` and centre ``c = f - 1`` (odd size) or ``f - 0.5`` (even).
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def interp(net, layers: Iterable[str]) -> None:
    """Set each layer's weights to bilinear kernels (FCN's fixed upsampling).

    The weight blob is ``m x k x h x w``; the kernel goes on the channel diagonal
    (``w[i, i] = upsample_filt(h)``; with ``k == 1``, a grouped deconvolution, every
    ``w[i, 0]``), other entries are left as they are (zero from the default filler).
    Needs ``m == k`` (or ``k == 1``) and square kernels, as the original checks.
    """
    for name in layers:
        if name not in net.params:
            raise ValueError(f"interp: the net has no layer with parameters named {name!r}")
        weights = net.params[name][0].data
        if weights.ndim != 4:
            raise ValueError(f"interp: layer {name!r} weights have shape {weights.shape}, "
                             "not m x k x h x w")
        m, k, h, w = weights.shape
        if m != k and k != 1:
            raise ValueError(f"interp: layer {name!r}: input + output channels need to be "
                             f"the same or |output| == 1 (weights {weights.shape})")
        if h != w:
            raise ValueError(f"interp: layer {name!r}: filters need to be square "
                             f"(weights {weights.shape})")
        weights[range(m), range(k), :, :] = upsample_filt(h)


def interp_layers(net) -> list[str]:
    """The layers solve.py interpolates: those with parameters and ``up`` in the name."""
    return [k for k in net.params.keys() if "up" in k]


def expand_score(new_net, new_layer: str, net, layer: str) -> None:
    """Copy score layer ``layer`` (k classes) into ``new_layer`` (k' > k classes) so that
    its first k outputs are the old classes (weights and biases); the rest stay."""
    old_w = net.params[layer][0].data
    new_w = new_net.params[new_layer][0].data
    old_cl = old_w.shape[0]
    if old_cl > new_w.shape[0] or old_w.shape[1:] != new_w.shape[1:]:
        raise ValueError(f"expand_score: {layer} {old_w.shape} does not fit into "
                         f"{new_layer} {new_w.shape}")
    new_w[:old_cl][...] = old_w
    # Caffe's legacy 1x1x1xK bias blobs and today's K-vectors alike.
    new_net.params[new_layer][1].data.flat[:old_cl] = net.params[layer][1].data.flat
