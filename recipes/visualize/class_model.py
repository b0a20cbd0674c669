"""Class-model visualisation (Simonyan, Vedaldi & Zisserman 2014, section 2): an image
``I`` that maximises a class score ``S_c`` (pre-softmax) under an L2 penalty on ``I``,
found by gradient ascent from the zero image (the dataset mean, as the paper starts)
plus faint Gaussian noise (``init_std``, input units): at exactly zero, ReLUs of a net
without biases pass no gradient at all and the ascent would never start.

Each step moves the image ``lr`` input units (on average over pixels) along the class
gradient and applies the L2 penalty as a decay, ``I <- (1 - decay) * I + lr * g /
mean|g|`` (the form of Yosinski et al. 2015; the gradient of ``-lambda ||I||^2`` is a
pull towards zero proportional to ``I``), so the same settings suit any net whatever
the scale of its scores. Optional regularisers from that paper: ``jitter`` (a random
shift of the image before each step, undone after) and a Gaussian ``blur`` every
``blur_every`` steps::

    from caffe_compat.recipes.visualize import class_model
    result = class_model(block, 281, iters=200, lr=1.0, decay=0.01)
    result.scores[0], result.scores[-1]          # the class score rises
    save_png("tabby.png", result.picture())
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from caffe_compat.recipes.visualize.backprop import (Target, activation, class_gradient,
                                                     class_score_target)
from caffe_compat.recipes.visualize.render import gradient_picture
from caffe_compat.recipes.visualize.source import image_input


@dataclass
class ClassModelResult:
    """``data``: the optimised net input (C, H, W); ``scores``: the class score before
    every step and after the last one."""
    data: np.ndarray
    scores: list = field(default_factory=list)
    channel_swap: Optional[Sequence[int]] = (2, 1, 0)

    def picture(self, percentile: float = 99.0) -> np.ndarray:
        """uint8 RGB of ``data`` (the offset from the mean image), 0 at mid-gray and
        stretched so the ``percentile`` of |data| reaches the ends (a few spikes do not
        wash the rest out)."""
        return gradient_picture(self.data, self.channel_swap, percentile)


def class_model(block, class_index: int, *, iters: int = 200, lr: float = 1.0,
                decay: float = 0.01, jitter: int = 0, blur_every: int = 0,
                blur_sigma: float = 0.5, score: Optional[Target] = None,
                init: Optional[np.ndarray] = None, init_std: float = 1.0, seed: int = 0,
                channel_swap: Optional[Sequence[int]] = (2, 1, 0)) -> ClassModelResult:
    """Gradient ascent on class ``class_index``'s score with L2 decay (see the module
    docstring); ``score`` names the score blob (default: the one under the Softmax)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), not {decay}")
    from scipy.ndimage import gaussian_filter
    name, shape = image_input(block)
    shape = (1,) + tuple(shape[1:])
    rng = np.random.RandomState(seed)
    if init is None:
        x = (rng.randn(*shape) * init_std).astype(np.float32)
    else:
        x = np.array(init, np.float32).reshape(shape)
    target = score or class_score_target(block)
    scores = []
    for step in range(iters):
        oy, ox = (rng.randint(-jitter, jitter + 1, size=2) if jitter else (0, 0))
        shifted = np.roll(x, (oy, ox), axis=(2, 3))
        result = class_gradient(block, shifted, class_index, "backprop", target)
        scores.append(float(result.activation[0, class_index].sum()))
        g = np.roll(result.gradient, (-oy, -ox), axis=(2, 3))
        x = (1.0 - decay) * x + lr * g / (np.abs(g).mean() + 1e-20)
        if blur_every and (step + 1) % blur_every == 0:
            x = gaussian_filter(x, sigma=(0, 0, blur_sigma, blur_sigma)).astype(np.float32)
    scores.append(float(activation(block, x, target)[0, class_index].sum()))
    return ClassModelResult(x[0], scores, channel_swap)
