"""Google's DeepDream notebook (2015) on caffe-compat's pycaffe API: the reference path.

The functions keep the notebook's names, defaults and code (Python 3 spelling); they
run on any pycaffe-style net built like the notebook's (see :func:`load_dream_net`):

    import numpy as np
    from caffe_compat.recipes import deepdream as dd
    net = dd.load_zoo_dream_net("bvlc_googlenet")          # force_backward patched
    img = dd.load_image("sky.jpg")                         # float32 RGB 0..255
    frame = dd.deepdream(net, img)                         # 4 octaves x 10 steps at 4c
    frame = dd.deepdream(net, img, end="inception_3b/5x5_reduce")
    guide = dd.guide_features(net, dd.load_image("flowers.jpg"), "inception_3b/output")
    frame = dd.deepdream(net, img, end="inception_3b/output",
                         objective=dd.guide_objective(guide))

Extensions over the notebook (its own calls behave exactly as before): ``end`` may be
a layer whose top has another name, a blob, or a list of names (the sum of their L2
objectives); ``deepdream`` takes a ``progress(octave, step)`` callback instead of
showing every step in IPython. :mod:`.fast` is the same algorithm kept on the device.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import numpy as np
import scipy.ndimage as nd

from caffe_compat.recipes.deepdream.targets import resolve_targets

Progress = Optional[Callable[[int, int], None]]


# ---- the notebook's helpers -------------------------------------------------------------
def preprocess(net, img: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) 0..255 -> the net's BGR (3, H, W) with the mean removed."""
    return np.float32(np.rollaxis(img, 2)[::-1]) - net.transformer.mean['data']


def deprocess(net, img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`preprocess`: (3, H, W) BGR minus mean -> RGB (H, W, 3)."""
    return np.dstack((img + net.transformer.mean['data'])[::-1])


def objective_L2(dst) -> None:
    """Maximise the L2 norm of the activations: d(0.5 |x|^2)/dx = x."""
    dst.diff[:] = dst.data


def objective_guide(dst, guide_features: np.ndarray) -> None:
    """The notebook's guided objective: each position pulls towards the guide feature
    vector it matches best (largest dot product)."""
    x = dst.data[0].copy()
    y = guide_features
    ch = x.shape[0]
    x = x.reshape(ch, -1)
    y = y.reshape(ch, -1)
    A = x.T.dot(y)  # compute the matrix of dot-products with guide features
    dst.diff[0].reshape(ch, -1)[:] = y[:, A.argmax(1)]  # select ones that match best


def guide_objective(guide_features: np.ndarray) -> Callable:
    """``objective_guide`` bound to features (the notebook's global ``guide_features``)."""
    return partial(objective_guide, guide_features=guide_features)


def guide_features(net, guide_img: np.ndarray, end: str) -> np.ndarray:
    """The notebook's guide: ``end``'s activations for ``guide_img`` (C, H', W')."""
    target = resolve_targets(net, end)
    if not target.single:
        raise ValueError("guide features come from one layer; got a list of ends")
    h, w = guide_img.shape[:2]
    src, dst = net.blobs['data'], net.blobs[target.blob_names[0]]
    src.reshape(1, 3, h, w)
    src.data[0] = preprocess(net, guide_img)
    net.forward(end=target.layer)
    return dst.data[0].copy()


# ---- one gradient-ascent step ----------------------------------------------------------
def _l2_gradient_of_several(net, target) -> None:
    """Forward to the deepest layer, then backward in stages, adding each blob's L2
    gradient (its data) where its last writer's top diff is complete."""
    names = list(net.top_names)  # layer names in order
    net.forward(end=target.layer)
    by_writer: dict[int, list] = {}
    for blob, writer in target.blobs:
        by_writer.setdefault(writer, []).append(blob)
    for blob, _ in target.blobs:   # a blob no later layer reads keeps a zero diff
        net.blobs[blob].diff[:] = 0
    current = target.layer_index   # next layer whose backward has not run
    for k in sorted(by_writer, reverse=True):
        if k < current:
            net.backward(start=names[current], end=names[k + 1])
            current = k
        for blob in by_writer[k]:
            net.blobs[blob].diff[:] += net.blobs[blob].data
    net.backward(start=names[current])


def make_step(net, step_size=1.5, end='inception_4c/output', jitter=32, clip=True,
              objective=objective_L2):
    """Basic gradient ascent step (the notebook's code; ``end`` may also be a list)."""
    target = resolve_targets(net, end)
    src = net.blobs['data']  # input image is stored in Net's 'data' blob
    ox, oy = np.random.randint(-jitter, jitter+1, 2)
    src.data[0] = np.roll(np.roll(src.data[0], ox, -1), oy, -2)  # apply jitter shift

    if target.single:
        dst = net.blobs[target.blob_names[0]]
        net.forward(end=target.layer)
        objective(dst)  # specify the optimization objective
        net.backward(start=target.layer)
    else:
        if objective is not objective_L2:
            raise ValueError("several end layers dream on the sum of their L2 objectives; "
                             "give one layer for another objective")
        _l2_gradient_of_several(net, target)
    g = src.diff[0]
    # apply normalized ascent step to the input image
    src.data[:] += step_size/np.abs(g).mean() * g

    src.data[0] = np.roll(np.roll(src.data[0], -ox, -1), -oy, -2)  # unshift image

    if clip:
        bias = net.transformer.mean['data']
        src.data[:] = np.clip(src.data, -bias, 255-bias)


# ---- octaves ---------------------------------------------------------------------------
def octave_pyramid(base: np.ndarray, octave_n: int, octave_scale: float) -> list[np.ndarray]:
    """The notebook's pyramid of (3, H, W) images, largest first."""
    octaves = [base]
    for i in range(octave_n-1):
        octaves.append(nd.zoom(octaves[-1], (1, 1.0/octave_scale, 1.0/octave_scale), order=1))
    return octaves


def upscale_detail(detail: np.ndarray, h: int, w: int) -> np.ndarray:
    """The notebook's upscaling of the previous octave's details to (h, w)."""
    h1, w1 = detail.shape[-2:]
    return nd.zoom(detail, (1, 1.0*h/h1, 1.0*w/w1), order=1)


def contrast_stretch(vis: np.ndarray) -> np.ndarray:
    """The notebook's display fix when clipping is off: scale the 99.98th percentile to 255."""
    return vis*(255.0/np.percentile(vis, 99.98))


def deepdream(net, base_img, iter_n=10, octave_n=4, octave_scale=1.4,
              end='inception_4c/output', clip=True, progress: Progress = None, **step_params):
    """The notebook's multi-octave dream of an RGB 0..255 image; returns the same shape.

    ``progress(octave, i)`` is called after every step (the notebook showed the picture).
    """
    # prepare base images for all octaves
    octaves = octave_pyramid(preprocess(net, base_img), octave_n, octave_scale)

    src = net.blobs['data']
    detail = np.zeros_like(octaves[-1])  # allocate image for network-produced details
    for octave, octave_base in enumerate(octaves[::-1]):
        h, w = octave_base.shape[-2:]
        if octave > 0:
            # upscale details from the previous octave
            detail = upscale_detail(detail, h, w)

        src.reshape(1, 3, h, w)  # resize the network's input image size
        src.data[0] = octave_base+detail
        for i in range(iter_n):
            make_step(net, end=end, clip=clip, **step_params)
            if progress is not None:
                progress(octave, i)

        # extract details produced on the current octave
        detail = src.data[0]-octave_base
    # returning the resulting image
    return deprocess(net, src.data[0])
