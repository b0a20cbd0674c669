"""Gatys et al.'s neural style transfer on a Caffe net (VGG-19 by default).

The picture x (Caffe's input space: BGR, mean subtracted, 0..255 scale) minimises::

    content_weight * sum_l c_l * 0.5 * |F_l(x) - F_l(content)|^2
  + style_weight   * sum_l s_l * |G_l(x) - G_l(style)|^2 / (4 N_l^2)
  + tv_weight      * TV(x)

(normalisation: :mod:`.losses`; layers and weights as the paper and fzliu/style-transfer:
content conv4_2 (1.0), style conv1_1 ... conv5_1 (0.2 each), style/content ratio 1e4).
Features, Gram matrices, losses and the gradient w.r.t. x are computed on the MXNet
device by the engine block (autograd through ``CaffeNet``). The optimiser is L-BFGS-B
(``scipy.optimize.minimize``, pixel bounds [0, 255] per channel; the only host copies
are the vector it needs each evaluation) or Adam (``mx.optimizer.Adam``, entirely on
the device, clipped to the same bounds). Multi-scale: the picture is optimised at
``size / 2**(scales-1)``, ..., ``size / 2``, ``size`` (long edge), each scale starting
from the previous result upsampled (coarse to fine).

>>> from caffe_compat.recipes.style import NeuralStyle, load_image, save_image
>>> ns = NeuralStyle.from_zoo("vgg19")                                   # doctest: +SKIP
>>> out = ns.transfer(load_image("tubingen.jpg"), load_image("starry.jpg"),
...                   size=512, iters=500)                               # doctest: +SKIP
>>> save_image(out, "out.png")                                           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import mxnet as mx
import numpy as np

from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes.style.features import FeatureNet
from caffe_compat.recipes.style.losses import (content_layer_loss, gram, relative_distance,
                                               style_layer_loss, tv_loss)

#: Gatys et al. / fzliu's VGG layers: content conv4_2, style conv1_1..conv5_1 (1/5 each).
CONTENT_LAYERS = {"conv4_2": 1.0}
STYLE_LAYERS = {"conv1_1": 0.2, "conv2_1": 0.2, "conv3_1": 0.2, "conv4_1": 0.2, "conv5_1": 0.2}
#: The VGG models' mean (BGR), recorded in the zoo for vgg16/vgg19.
VGG_MEAN = (103.939, 116.779, 123.68)
DEFAULTS = dict(content_weight=1.0, style_weight=1e4, tv_weight=1e-3)
OPTIMIZERS = ("lbfgs", "adam")
#: Adam's step (pixel units of the 0..255 scale), jcjohnson/neural-style's default.
ADAM_LR = 10.0

Progress = Optional[Callable[[int, float], None]]


@dataclass
class Losses:
    """One evaluation: total and its parts (floats)."""
    total: float
    content: float
    style: float
    tv: float
    per_layer: dict = field(default_factory=dict)


# ---- image conversion -------------------------------------------------------------------
def resize_to(img: np.ndarray, long_edge: int) -> np.ndarray:
    """An H x W x 3 image scaled so its longer side is ``long_edge`` (bilinear)."""
    import cv2
    h, w = img.shape[:2]
    scale = long_edge / float(max(h, w))
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if size == (w, h):
        return img
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interp)


class NeuralStyle:
    """Style transfer with one feature net; see the module docstring for the objective."""

    def __init__(self, features: FeatureNet, mean: Sequence[float] = VGG_MEAN,
                 content_layers: Mapping[str, float] = CONTENT_LAYERS,
                 style_layers: Mapping[str, float] = STYLE_LAYERS,
                 content_weight: float = DEFAULTS["content_weight"],
                 style_weight: float = DEFAULTS["style_weight"],
                 tv_weight: float = DEFAULTS["tv_weight"]):
        self.features = features
        self.ctx = features.ctx
        if features.channels != 3:
            raise CaffeCompatError(f"style transfer needs a 3-channel (BGR) net input; this "
                                   f"one has {features.channels}")
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        if self.mean.size == 1:
            self.mean = np.repeat(self.mean, 3)
        if self.mean.size != 3:
            raise CaffeCompatError(f"the mean takes 3 values (B, G, R), got {self.mean.size}")
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        unknown = set(self.content_layers) | set(self.style_layers)
        unknown -= set(features.names)
        if unknown:
            raise CaffeCompatError(f"layers {sorted(unknown)} are not computed by the feature net "
                                   f"(it has {features.names})")
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self._mean_nd = mx.nd.array(self.mean.reshape(1, 3, 1, 1), ctx=self.ctx)
        self.content_targets: dict = {}
        self.style_targets: dict = {}

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def layer_names(content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS) -> list[str]:
        return list(dict.fromkeys(list(content_layers) + list(style_layers)))

    @classmethod
    def from_zoo(cls, name: str = "vgg19", pool: str = "net", ctx=None, progress: bool = True,
                 content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS,
                 mean: Optional[Sequence[float]] = None, **weights) -> "NeuralStyle":
        """A zoo model (vgg19 / vgg16 or any with the named layers) with its mean
        (``mean`` overrides it)."""
        from caffe_compat import zoo
        entry = zoo.get(name)
        if entry.channel_order != "BGR":
            raise CaffeCompatError(f"model {entry.name!r} takes {entry.channel_order} input; "
                                   "style transfer feeds BGR")
        if mean is None:
            mean = zoo.mean(entry, per_channel=True)
        fx = FeatureNet.from_zoo(entry.name, cls.layer_names(content_layers, style_layers),
                                 pool=pool, ctx=ctx, progress=progress)
        return cls(fx, mean, content_layers, style_layers, **weights)

    @classmethod
    def from_files(cls, prototxt: str, weights_file: str, mean: Sequence[float] = VGG_MEAN,
                   pool: str = "net", ctx=None, content_layers=CONTENT_LAYERS,
                   style_layers=STYLE_LAYERS, **weights) -> "NeuralStyle":
        """A user's deploy prototxt + caffemodel that has the named layers."""
        fx = FeatureNet.from_files(prototxt, weights_file,
                                   cls.layer_names(content_layers, style_layers), pool=pool,
                                   ctx=ctx)
        return cls(fx, mean, content_layers, style_layers, **weights)

    # -- pixels <-> net input ----------------------------------------------------------
    def preprocess(self, img: np.ndarray) -> mx.nd.NDArray:
        """RGB H x W x 3 (uint8, or float in [0, 1]) -> (1, 3, H, W) BGR minus mean."""
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise CaffeCompatError(f"expected an H x W x 3 RGB image, got shape {arr.shape}")
        arr = arr[:, :, :3].astype(np.float32)
        if np.asarray(img).dtype != np.uint8 and arr.max() <= 1.0:
            arr = arr * 255.0
        bgr = arr[:, :, ::-1].transpose(2, 0, 1)[None] - self.mean.reshape(1, 3, 1, 1)
        return mx.nd.array(np.ascontiguousarray(bgr), ctx=self.ctx, dtype="float32")

    def deprocess(self, x: mx.nd.NDArray) -> np.ndarray:
        """(1, 3, H, W) net input -> RGB H x W x 3 uint8."""
        arr = x.asnumpy()[0] + self.mean.reshape(3, 1, 1)
        return np.clip(np.rint(arr[::-1].transpose(1, 2, 0)), 0, 255).astype(np.uint8)

    def bounds(self) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
        """Per-channel (low, high) of valid pixels in net-input space: -mean, 255 - mean."""
        return -self._mean_nd, 255.0 - self._mean_nd

    # -- targets -----------------------------------------------------------------------
    def set_content(self, content: mx.nd.NDArray) -> None:
        """P_l: the content picture's features (net input, (1, 3, H, W))."""
        feats = self.features(content)
        self.content_targets = {n: feats[n].copy() for n in self.content_layers}

    def set_style(self, style: mx.nd.NDArray) -> None:
        """A_l: the style picture's M-normalised Gram matrices (any size)."""
        feats = self.features(style)
        self.style_targets = {n: gram(feats[n]).copy() for n in self.style_layers}

    def style_distance(self, x: mx.nd.NDArray) -> dict:
        """Per style layer, ``|G(x) - A| / |A|`` (how far x's Gram matrices are)."""
        feats = self.features(x)
        return {n: relative_distance(gram(feats[n]), self.style_targets[n])
                for n in self.style_layers}

    # -- the objective -----------------------------------------------------------------
    def _objective(self, x: mx.nd.NDArray) -> tuple:
        feats = self.features(x)
        zero = mx.nd.zeros((1,), ctx=self.ctx, dtype=x.dtype)
        content, style, parts = zero, zero, {}
        for n, w in self.content_layers.items():
            term = content_layer_loss(feats[n], self.content_targets[n])
            parts[f"content/{n}"] = term
            content = content + w * term
        for n, w in self.style_layers.items():
            term = style_layer_loss(feats[n], self.style_targets[n])
            parts[f"style/{n}"] = term
            style = style + w * term
        tv = tv_loss(x) if self.tv_weight else zero
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        return total, content, style, tv, parts

    def loss_and_grad(self, x: mx.nd.NDArray) -> tuple[Losses, mx.nd.NDArray]:
        """The objective at ``x`` and its gradient w.r.t. ``x`` (on the device)."""
        if not self.content_targets and self.content_weight:
            raise CaffeCompatError("call set_content first")
        if not self.style_targets and self.style_weight:
            raise CaffeCompatError("call set_style first")
        x = x.copy()
        x.attach_grad()
        with mx.autograd.record():
            total, content, style, tv, parts = self._objective(x)
        total.backward()
        losses = Losses(float(total.asscalar()), float(content.asscalar()),
                        float(style.asscalar()), float(tv.asscalar()),
                        {k: float(v.asscalar()) for k, v in parts.items()})
        return losses, x.grad

    def loss(self, x: mx.nd.NDArray) -> Losses:
        total, content, style, tv, parts = self._objective(x)
        return Losses(float(total.asscalar()), float(content.asscalar()),
                      float(style.asscalar()), float(tv.asscalar()),
                      {k: float(v.asscalar()) for k, v in parts.items()})

    # -- optimisers --------------------------------------------------------------------
    def optimize(self, x0: mx.nd.NDArray, iters: int, optimizer: str = "lbfgs",
                 lr: float = ADAM_LR, progress: Progress = None) -> tuple[mx.nd.NDArray, list]:
        """Minimise from ``x0`` for ``iters`` iterations; returns (x, loss per iteration)."""
        if optimizer not in OPTIMIZERS:
            raise CaffeCompatError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                                   f"got {optimizer!r}")
        if iters <= 0:
            return x0, []
        if optimizer == "adam":
            return self._adam(x0, iters, lr, progress)
        return self._lbfgs(x0, iters, progress)

    def _lbfgs(self, x0: mx.nd.NDArray, iters: int, progress: Progress):
        from scipy.optimize import Bounds, minimize
        shape = x0.shape
        low, high = (b.broadcast_to(shape).asnumpy().astype(np.float64).ravel()
                     for b in self.bounds())
        history: list[float] = []
        last = {"loss": None}

        def fun(flat: np.ndarray):
            x = mx.nd.array(flat.reshape(shape), ctx=self.ctx, dtype="float32")
            losses, grad = self.loss_and_grad(x)
            last["loss"] = losses.total
            return losses.total, grad.asnumpy().astype(np.float64).ravel()

        def callback(_xk):
            history.append(last["loss"])
            if progress is not None:
                progress(len(history), last["loss"])

        res = minimize(fun, x0.asnumpy().astype(np.float64).ravel(), jac=True,
                       method="L-BFGS-B", bounds=Bounds(low, high), callback=callback,
                       options={"maxiter": int(iters), "maxcor": 8, "ftol": 0.0, "gtol": 0.0})
        x = mx.nd.array(res.x.reshape(shape), ctx=self.ctx, dtype="float32")
        return x, history

    def _adam(self, x0: mx.nd.NDArray, iters: int, lr: float, progress: Progress):
        opt = mx.optimizer.Adam(learning_rate=lr)
        update = mx.optimizer.get_updater(opt)
        low, high = self.bounds()
        x = x0.copy()
        history: list[float] = []
        for i in range(iters):
            losses, grad = self.loss_and_grad(x)
            update(0, grad, x)
            x = mx.nd.broadcast_minimum(mx.nd.broadcast_maximum(x, low), high)
            history.append(losses.total)
            if progress is not None:
                progress(i + 1, losses.total)
        return x, history

    # -- the whole recipe --------------------------------------------------------------
    def transfer(self, content: np.ndarray, style: np.ndarray, size: int = 512,
                 iters: int = 500, scales: int = 1, optimizer: str = "lbfgs",
                 lr: float = ADAM_LR, init: str = "content", style_scale: float = 1.0,
                 seed: int = 0, progress: Optional[Callable[[int, int, float], None]] = None
                 ) -> np.ndarray:
        """Paint ``content`` (RGB) in the style of ``style`` (RGB); returns RGB uint8.

        ``size``: long edge of the result; ``scales``: coarse-to-fine levels (each half
        the size of the next), ``iters`` iterations at each; ``init``: ``content`` (the
        content picture, as fzliu/kaishengtai) or ``noise`` (uniform random pixels,
        Gatys et al.); ``style_scale``: style picture size relative to the result's.
        ``progress(scale_index, iteration, loss)`` after every iteration.
        """
        if scales < 1 or size < 8:
            raise CaffeCompatError("scales must be >= 1 and size >= 8")
        if init not in ("content", "noise"):
            raise CaffeCompatError(f"init must be 'content' or 'noise', got {init!r}")
        sizes = [max(8, int(round(size / 2 ** k))) for k in range(scales - 1, -1, -1)]
        x = None
        for level, edge in enumerate(sizes):
            content_x = self.preprocess(resize_to(np.asarray(content), edge))
            style_edge = max(8, int(round(edge * style_scale)))
            self.set_content(content_x)
            self.set_style(self.preprocess(resize_to(np.asarray(style), style_edge)))
            if x is None:
                if init == "content":
                    x = content_x
                else:
                    rng = np.random.RandomState(seed)
                    noise = rng.uniform(0, 255, content_x.shape[2:] + (3,)).astype(np.uint8)
                    x = self.preprocess(noise)
            else:
                x = mx.nd.contrib.BilinearResize2D(x, height=content_x.shape[2],
                                                   width=content_x.shape[3])
            step = None if progress is None else (lambda i, loss, _l=level: progress(_l, i, loss))
            x, _ = self.optimize(x, iters, optimizer, lr, step)
        return self.deprocess(x)


def load_image(path: str) -> np.ndarray:
    """RGB uint8 H x W x 3 (grey and alpha images converted)."""
    from caffe_compat.images import read_bgr
    return np.ascontiguousarray(read_bgr(path)[:, :, ::-1])


def save_image(img: np.ndarray, path: str) -> None:
    """Write an RGB uint8 image (format from the extension, e.g. .png)."""
    import cv2
    if not cv2.imwrite(str(path), np.ascontiguousarray(np.asarray(img)[:, :, ::-1])):
        raise CaffeCompatError(f"{path}: could not write the image (unknown extension or "
                               "folder missing)")
