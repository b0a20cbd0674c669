"""Regenerate the DeepDream recipe's shipped data (``recipes/deepdream/data/``).

    python -m caffe_compat.recipes.deepdream.make_embedded_model            # all files
    python -m caffe_compat.recipes.deepdream.make_embedded_model --images   # pictures only

What it writes, deterministically (fixed numpy, Caffe-filler and MXNet seeds: two runs
on one machine and MXNet build give byte-identical files; another BLAS or CPU kernel
can change the trained weights' last bits):

* ``sample.jpg`` (320x240) and ``guide.jpg`` (200x150): scikit-image's ``chelsea``
  and ``coffee`` photographs (both CC0), centre-cropped to 4:3 and resized;
* ``embedded_googlenet.prototxt``: bvlc_googlenet's stem and ``inception_3a``/``3b``
  with the same layer names and kernel/stride/pad, half the channels, then ``pool3``,
  a global average ``pool5/7x7_s1``, ``loss3/classifier`` over the synthetic classes
  and ``prob``;
* ``embedded_googlenet.caffemodel`` (~0.7 MB): ``conv1/7x7_s2`` is a fixed bank built in
  numpy (32 Gabor filters: 4 orientations x 2 wavelengths x 2 phases, each with both
  signs; 16 colour-opponent filters: red-green and blue-yellow centre blobs at two
  sizes with both signs, and oriented red-green / blue-yellow edges); every later
  layer starts from the prototxt's Caffe fillers and is trained (Adam, lr 1e-3 with
  cosine decay, 2000 steps of 32, softmax loss, autograd through the engine block; about
  15 minutes on two CPU cores) on 96x96 synthetic pictures of nine classes: stripes, rings, checkerboard, dot lattice, spiral, starburst, wavy
  lines, cell-like blobs, and plain background; every pattern gets random colours,
  scale, orientation and phase and is blended through a soft mask onto a crop of
  one of scikit-image's bundled photographs.

The dreams it gives are of those things: it is a stand-in that shows every stage of
the recipe offline, not a replacement for bvlc_googlenet.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from caffe_compat.recipes.deepdream.images import DATA_DIR
from caffe_compat.recipes.deepdream.models import (EMBEDDED_PROTOTXT, EMBEDDED_WEIGHTS,
                                                   NOTEBOOK_MEAN)

CLASSES = ["stripes", "rings", "checkerboard", "dots", "spiral", "starburst", "waves",
           "cells", "background"]
PATCH = 96
LEARNING_RATE = 1e-3
#: scikit-image photographs shipped inside its wheel (no download needed).
BACKGROUNDS = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png",
               "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
               "moon.png", "page.png", "rocket.jpg", "retina.jpg", "text.png",
               "motorcycle_left.png", "ihc.png"]

# Channel widths: bvlc_googlenet's halved (conv1 holds the 48-filter fixed bank).
WIDTHS = {
    "conv1": 48, "conv2_reduce": 32, "conv2": 96,
    "3a": (32, 48, 64, 8, 16, 16),     # 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj
    "3b": (64, 64, 96, 16, 48, 32),
}


# ---------------------------------------------------------------------------- prototxt
def _param(lr: bool) -> str:
    if not lr:   # the fixed filter bank
        return ("  param {\n    lr_mult: 0\n    decay_mult: 0\n  }\n"
                "  param {\n    lr_mult: 0\n    decay_mult: 0\n  }\n")
    return ("  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n"
            "  param {\n    lr_mult: 2\n    decay_mult: 0\n  }\n")


def _conv(name, bottom, num, kernel, stride=1, pad=0, lr=True) -> str:
    opts = f"    num_output: {num}\n"
    if pad:
        opts += f"    pad: {pad}\n"
    opts += f"    kernel_size: {kernel}\n"
    if stride != 1:
        opts += f"    stride: {stride}\n"
    opts += ('    weight_filler {\n      type: "xavier"\n      std: 0.1\n    }\n'
             '    bias_filler {\n      type: "constant"\n      value: 0.2\n    }\n')
    return (f'layer {{\n  name: "{name}"\n  type: "Convolution"\n  bottom: "{bottom}"\n'
            f'  top: "{name}"\n{_param(lr)}  convolution_param {{\n{opts}  }}\n}}\n')


def _relu(name, blob) -> str:
    return f'layer {{\n  name: "{name}"\n  type: "ReLU"\n  bottom: "{blob}"\n  top: "{blob}"\n}}\n'


def _pool(name, bottom, pool, kernel=0, stride=1, pad=0, global_=False) -> str:
    opts = f"    pool: {pool}\n"
    if global_:
        opts += "    global_pooling: true\n"
    else:
        opts += f"    kernel_size: {kernel}\n    stride: {stride}\n"
        if pad:
            opts += f"    pad: {pad}\n"
    return (f'layer {{\n  name: "{name}"\n  type: "Pooling"\n  bottom: "{bottom}"\n'
            f'  top: "{name}"\n  pooling_param {{\n{opts}  }}\n}}\n')


def _lrn(name, bottom) -> str:
    return (f'layer {{\n  name: "{name}"\n  type: "LRN"\n  bottom: "{bottom}"\n  top: "{name}"\n'
            f'  lrn_param {{\n    local_size: 5\n    alpha: 0.0001\n    beta: 0.75\n  }}\n}}\n')


def _inception(prefix: str, bottom: str, widths) -> str:
    n1, n3r, n3, n5r, n5, npp = widths
    p = prefix
    text = _conv(f"{p}/1x1", bottom, n1, 1) + _relu(f"{p}/relu_1x1", f"{p}/1x1")
    text += _conv(f"{p}/3x3_reduce", bottom, n3r, 1) + _relu(f"{p}/relu_3x3_reduce", f"{p}/3x3_reduce")
    text += _conv(f"{p}/3x3", f"{p}/3x3_reduce", n3, 3, pad=1) + _relu(f"{p}/relu_3x3", f"{p}/3x3")
    text += _conv(f"{p}/5x5_reduce", bottom, n5r, 1) + _relu(f"{p}/relu_5x5_reduce", f"{p}/5x5_reduce")
    text += _conv(f"{p}/5x5", f"{p}/5x5_reduce", n5, 5, pad=2) + _relu(f"{p}/relu_5x5", f"{p}/5x5")
    text += _pool(f"{p}/pool", bottom, "MAX", 3, 1, 1)
    text += _conv(f"{p}/pool_proj", f"{p}/pool", npp, 1) + _relu(f"{p}/relu_pool_proj", f"{p}/pool_proj")
    text += (f'layer {{\n  name: "{p}/output"\n  type: "Concat"\n  bottom: "{p}/1x1"\n'
             f'  bottom: "{p}/3x3"\n  bottom: "{p}/5x5"\n  bottom: "{p}/pool_proj"\n'
             f'  top: "{p}/output"\n}}\n')
    return text


def embedded_prototxt() -> str:
    """The deploy prototxt text of the embedded model."""
    w = WIDTHS
    text = ('name: "GoogleNet_embedded"\n'
            "# caffe-compat's embedded DeepDream model: bvlc_googlenet's stem and inception_3a/3b\n"
            "# (same layer names, kernels, strides and pads; half the channels), a global\n"
            "# average pool5 and a classifier over 9 synthetic texture classes.\n"
            "# conv1 is a fixed Gabor/colour-opponent bank; made by\n"
            "# recipes/deepdream/make_embedded_model.py. Input: BGR 0..255 minus [104, 116, 122].\n"
            'layer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
            '  input_param {\n    shape {\n      dim: 1\n      dim: 3\n      dim: 224\n'
            '      dim: 224\n    }\n  }\n}\n')
    text += _conv("conv1/7x7_s2", "data", w["conv1"], 7, stride=2, pad=3, lr=False)
    text += _relu("conv1/relu_7x7", "conv1/7x7_s2")
    text += _pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, 2)
    text += _lrn("pool1/norm1", "pool1/3x3_s2")
    text += _conv("conv2/3x3_reduce", "pool1/norm1", w["conv2_reduce"], 1)
    text += _relu("conv2/relu_3x3_reduce", "conv2/3x3_reduce")
    text += _conv("conv2/3x3", "conv2/3x3_reduce", w["conv2"], 3, pad=1)
    text += _relu("conv2/relu_3x3", "conv2/3x3")
    text += _lrn("conv2/norm2", "conv2/3x3")
    text += _pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2)
    text += _inception("inception_3a", "pool2/3x3_s2", w["3a"])
    text += _inception("inception_3b", "inception_3a/output", w["3b"])
    text += _pool("pool3/3x3_s2", "inception_3b/output", "MAX", 3, 2)
    text += _pool("pool5/7x7_s1", "pool3/3x3_s2", "AVE", global_=True)
    text += ('layer {\n  name: "pool5/drop_7x7_s1"\n  type: "Dropout"\n  bottom: "pool5/7x7_s1"\n'
             '  top: "pool5/7x7_s1"\n  dropout_param {\n    dropout_ratio: 0.4\n  }\n}\n')
    text += ('layer {\n  name: "loss3/classifier"\n  type: "InnerProduct"\n'
             '  bottom: "pool5/7x7_s1"\n  top: "loss3/classifier"\n' + _param(True) +
             f'  inner_product_param {{\n    num_output: {len(CLASSES)}\n'
             '    weight_filler {\n      type: "xavier"\n    }\n'
             '    bias_filler {\n      type: "constant"\n      value: 0\n    }\n  }\n}\n')
    text += ('layer {\n  name: "prob"\n  type: "Softmax"\n  bottom: "loss3/classifier"\n'
             '  top: "prob"\n}\n')
    return text


# ---------------------------------------------------------------------------- conv1 bank
def _gabor(size: int, theta: float, wavelength: float, phase: float) -> np.ndarray:
    r = (size - 1) / 2.0
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    sigma = 0.45 * wavelength
    g = np.exp(-(u ** 2 + v ** 2) / (2 * sigma ** 2)) * np.cos(2 * np.pi * u / wavelength + phase)
    g -= g.mean()
    return g / np.linalg.norm(g)


def _blob(size: int, sigma: float) -> np.ndarray:
    r = (size - 1) / 2.0
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    g = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    return g / np.linalg.norm(g)


def _edge(size: int, theta: float) -> np.ndarray:
    """An odd (edge-like) Gabor: one light-dark transition."""
    return _gabor(size, theta, 10.0, np.pi / 2)


def conv1_bank(gain: float = 1.0 / 32) -> tuple[np.ndarray, np.ndarray]:
    """The fixed (48, 3, 7, 7) conv1 weights (BGR input) and zero biases.

    Luminance Gabors act on B+G+R equally; colour opponents on R-G (BGR indices 2, 1)
    and B-Y (index 0 against the mean of 1 and 2). ``gain`` maps a 0..255 image's
    local contrast to responses of order one.
    """
    k = 7
    filters = []
    lum = np.ones(3) / np.sqrt(3)
    for wavelength in (4.0, 7.0):
        for theta in np.arange(4) * np.pi / 4:
            for phase in (0.0, np.pi / 2):
                g = _gabor(k, theta, wavelength, phase)
                for sign in (1, -1):
                    filters.append(sign * lum[:, None, None] * g[None])
    red_green = np.array([0.0, -1.0, 1.0]) / np.sqrt(2)          # BGR
    blue_yellow = np.array([1.0, -0.5, -0.5]) / np.sqrt(1.5)
    for opp in (red_green, blue_yellow):
        for sigma in (1.0, 2.2):
            b = _blob(k, sigma)
            for sign in (1, -1):
                filters.append(sign * opp[:, None, None] * b[None])
        for theta in (0.0, np.pi / 2):
            e = _edge(k, theta)
            for sign in (1, -1):
                filters.append(sign * opp[:, None, None] * e[None])
    w = np.float32(np.stack(filters) * gain)
    assert w.shape == (WIDTHS["conv1"], 3, k, k), w.shape
    return w, np.zeros(len(filters), np.float32)


# ---------------------------------------------------------------------------- data
def _backgrounds() -> list[np.ndarray]:
    import skimage.data
    from caffe_compat.images import read_as_pycaffe
    out = []
    for name in BACKGROUNDS:
        path = os.path.join(skimage.data.data_dir, name)
        if not os.path.isfile(path):
            continue
        im = read_as_pycaffe(path)
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = np.float32(im[..., :3])
        if im.max() <= 1.0:
            im *= 255.0
        if min(im.shape[:2]) >= PATCH:
            out.append(im)
    if not out:
        raise RuntimeError("scikit-image's bundled photographs are missing")
    return out


def _pattern(cls: str, rng: np.random.RandomState, n: int) -> np.ndarray:
    """A (n, n) pattern in [0, 1] for class ``cls``."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    period = rng.uniform(6, 18)
    phase = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(0.2 * n, 0.8 * n, 2)
    r = np.hypot(x - cx, y - cy)
    ang = np.arctan2(y - cy, x - cx)
    if cls == "stripes":
        s = np.sin(2 * np.pi * u / period + phase)
    elif cls == "rings":
        s = np.sin(2 * np.pi * r / period + phase)
    elif cls == "checkerboard":
        s = np.sin(np.pi * u / period * 2 + phase) * np.sin(np.pi * v / period * 2)
    elif cls == "dots":
        d = np.hypot((u % period) - period / 2, (v % period) - period / 2)
        return np.float32(d < period * rng.uniform(0.2, 0.35))
    elif cls == "spiral":
        arms = rng.randint(1, 5)
        s = np.sin(arms * ang + 2 * np.pi * r / period + phase)
    elif cls == "starburst":
        rays = rng.randint(5, 16)
        s = np.sin(rays * ang + phase)
    elif cls == "waves":
        amp, wl = rng.uniform(2, 8), rng.uniform(15, 40)
        s = np.sin(2 * np.pi * (v + amp * np.sin(2 * np.pi * u / wl)) / period + phase)
    elif cls == "cells":
        import scipy.ndimage as nd
        noise = nd.gaussian_filter(rng.randn(n, n), rng.uniform(2.0, 4.0))
        s = noise / (noise.std() + 1e-6)
        return np.float32(np.abs(s) < rng.uniform(0.25, 0.5))
    else:
        raise ValueError(cls)
    sharp = rng.uniform(1, 6)
    return np.float32(0.5 + 0.5 * np.tanh(sharp * s))


def synthetic_batch(rng: np.random.RandomState, backgrounds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, PATCH, PATCH) BGR minus the notebook mean, and (n,) class labels."""
    import scipy.ndimage as nd
    labels = rng.randint(0, len(CLASSES), n)
    out = np.empty((n, 3, PATCH, PATCH), np.float32)
    for i, label in enumerate(labels):
        bg = backgrounds[rng.randint(len(backgrounds))]
        y0 = rng.randint(0, bg.shape[0] - PATCH + 1)
        x0 = rng.randint(0, bg.shape[1] - PATCH + 1)
        img = bg[y0:y0 + PATCH, x0:x0 + PATCH].copy()
        if rng.rand() < 0.5:
            img = img[:, ::-1]
        if CLASSES[label] != "background":
            p = _pattern(CLASSES[label], rng, PATCH)[..., None]
            c1, c2 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
            pattern = c1 * (1 - p) + c2 * p
            mask = nd.gaussian_filter(rng.randn(PATCH // 8, PATCH // 8), 1.0)
            mask = nd.zoom(mask, 8, order=1)
            mask = np.clip((mask - mask.mean()) / (mask.std() + 1e-6) + rng.uniform(0.8, 2.5),
                           0, 1)[..., None]
            alpha = rng.uniform(0.6, 1.0)
            img = img * (1 - alpha * mask) + pattern * alpha * mask
        img = img * rng.uniform(0.7, 1.2) + rng.randn(PATCH, PATCH, 3) * rng.uniform(0, 8)
        img = np.clip(img, 0, 255)
        out[i] = img[..., ::-1].transpose(2, 0, 1) - NOTEBOOK_MEAN[:, None, None]
    return out, labels.astype(np.float32)


# ---------------------------------------------------------------------------- training
def train(prototxt: Path, iterations: int, batch: int, seed: int, log=print):
    """Build the engine block from ``prototxt``, set conv1's bank, train the rest."""
    import mxnet as mx
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.engine.fillers import set_random_seed
    mx.random.seed(seed)
    np.random.seed(seed)
    set_random_seed(seed)    # the Caffe fillers' own RandomState
    from caffe_compat.context import current_context
    ctx = current_context()
    block = CaffeNet.from_prototxt(str(prototxt), 1, ctx=ctx)   # seeded Caffe fillers
    conv1 = block.layers_by_name()["conv1/7x7_s2"]
    w, b = conv1_bank()
    conv1.blobs()[0].set_data(mx.nd.array(w))
    conv1.blobs()[1].set_data(mx.nd.array(b))
    block.set_outputs(["loss3/classifier"])
    block.hybridize(static_alloc=True)
    trainable = {}
    for layer in block.caffe_layers:
        for p in layer.blobs():
            if p.lr_mult == 0:
                p.grad_req = "null"
            else:
                p.grad_req = "write"
                trainable[p.name] = p
    trainer = mx.gluon.Trainer(trainable, "adam", {"learning_rate": LEARNING_RATE, "wd": 1e-4})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(seed)
    backgrounds = _backgrounds()
    t0, seen, correct, running = time.time(), 0, 0, 0.0
    for it in range(iterations):
        lr = LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * it / iterations))   # cosine decay
        trainer.set_learning_rate(max(lr, LEARNING_RATE / 100))
        data, labels = synthetic_batch(rng, backgrounds, batch)
        x, y = mx.nd.array(data, ctx=ctx), mx.nd.array(labels, ctx=ctx)
        with mx.autograd.record():
            logits = block(x)
            loss = loss_fn(logits, y)
        loss.backward()
        trainer.step(batch)
        running = 0.98 * running + 0.02 * float(loss.mean().asscalar()) if it else \
            float(loss.mean().asscalar())
        correct += int((logits.argmax(axis=1) == y).sum().asscalar())
        seen += batch
        if (it + 1) % 100 == 0:
            log(f"iter {it + 1}/{iterations}: loss {running:.3f}, train acc {correct / seen:.3f}, "
                f"{time.time() - t0:.0f}s")
            correct = seen = 0
    return block, evaluate(block, seed + 1, 512)


def evaluate(block, seed: int, n: int) -> float:
    """Accuracy on ``n`` fresh synthetic pictures."""
    import mxnet as mx
    from caffe_compat.context import current_context
    ctx = current_context()
    rng = np.random.RandomState(seed)
    backgrounds = _backgrounds()
    hits = 0
    for start in range(0, n, 64):
        data, labels = synthetic_batch(rng, backgrounds, min(64, n - start))
        pred = block(mx.nd.array(data, ctx=ctx)).argmax(axis=1).asnumpy()
        hits += int((pred == labels).sum())
    return hits / n


# ---------------------------------------------------------------------------- files
def _crop_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import PIL.Image
    h, w = img.shape[:2]
    want = size[0] / size[1]
    if w / h > want:
        cw = int(round(h * want))
        img = img[:, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = int(round(w / want))
        img = img[(h - ch) // 2:(h - ch) // 2 + ch]
    return np.asarray(PIL.Image.fromarray(img).resize(size, PIL.Image.LANCZOS))


def write_images(out_dir: Path) -> list[Path]:
    """sample.jpg (chelsea, 320x240) and guide.jpg (coffee, 200x150)."""
    import PIL.Image
    import skimage.data
    out = []
    for name, img, size in (("sample.jpg", skimage.data.chelsea(), (320, 240)),
                            ("guide.jpg", skimage.data.coffee(), (200, 150))):
        path = out_dir / name
        PIL.Image.fromarray(_crop_resize(img, size)).save(path, quality=92)
        out.append(path)
    return out


def write_model(out_dir: Path, iterations: int, batch: int, seed: int) -> tuple[Path, Path, float]:
    prototxt = out_dir / EMBEDDED_PROTOTXT.name
    prototxt.write_text(embedded_prototxt())
    block, accuracy = train(prototxt, iterations, batch, seed)
    weights = out_dir / EMBEDDED_WEIGHTS.name
    block.save_caffemodel(str(weights))
    return prototxt, weights, accuracy


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=DATA_DIR)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", action="store_true", help="write the sample pictures only")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in write_images(args.out_dir):
        print(f"wrote {path}")
    if args.images:
        return 0
    prototxt, weights, accuracy = write_model(args.out_dir, args.iterations, args.batch, args.seed)
    print(f"wrote {prototxt}\nwrote {weights} ({weights.stat().st_size / 1e6:.2f} MB); "
          f"held-out synthetic accuracy {accuracy:.3f} over {len(CLASSES)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
