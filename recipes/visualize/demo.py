"""The visualisation stage of ``caffe-compat demo``: every picture of the recipe, offline.

It runs on the small GoogLeNet-style classifier shipped with the DeepDream recipe
(:func:`caffe_compat.recipes.deepdream.embedded_model`, 9 texture classes) and its
sample picture, and writes into ``out_dir``:

1. ``saliency.png``, ``deconvnet.png``, ``guided.png``: image | map for the predicted
   class (the ``saliency`` command's pictures);
2. ``unit.png``: guided backpropagation of the strongest ``inception_3b/output`` unit;
3. ``patches.png``: that unit's top-activating patches over crops of the picture;
4. ``class_model.png``: the class-model visualisation of the predicted class.

``run_demo(out_dir, quick=True)`` takes fewer gradient-ascent steps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from caffe_compat.recipes.visualize.backprop import activation, resolve_target, unit_gradient
from caffe_compat.recipes.visualize.class_model import class_model
from caffe_compat.recipes.visualize.patches import patch_picture, top_patches
from caffe_compat.recipes.visualize.render import (gradient_picture, save_png, side_by_side,
                                                   to_uint8)
from caffe_compat.recipes.visualize.saliency import (PICTURE_METHODS, explain_image,
                                                     explanation_picture)
from caffe_compat.recipes.visualize.source import NetSource, Preprocessing, load_image

UNIT_BLOB = "inception_3b/output"


def embedded_source() -> NetSource:
    """The DeepDream recipe's shipped classifier as a :class:`NetSource`."""
    from caffe_compat.recipes.deepdream.models import NOTEBOOK_MEAN, embedded_model
    prototxt, weights = embedded_model()
    return NetSource.from_files(prototxt, weights,
                                Preprocessing(mean=tuple(float(v) for v in NOTEBOOK_MEAN)))


def _tiles(image_path: Path, folder: Path, size: int = 112) -> list:
    """Overlapping square crops of the picture, written as PNGs (the patch search set)."""
    from caffe_compat.images import open_rgb
    img = open_rgb(image_path)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, y in enumerate(range(0, img.height - size + 1, size // 2)):
        for j, x in enumerate(range(0, img.width - size + 1, size // 2)):
            path = folder / f"tile_{i}_{j}.png"
            img.crop((x, y, x + size, y + size)).save(path)
            files.append(str(path))
    return files


def run_demo(out_dir, quick: bool = False, log: Callable[[str], None] = print) -> list:
    """Write the stage's pictures into ``out_dir``; return their paths."""
    from caffe_compat.recipes.deepdream.images import sample_image
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = embedded_source()
    block = source.load()
    image = str(sample_image())
    written = []
    for method in PICTURE_METHODS:
        ex = explain_image(source, image, method=method, block=block)
        written.append(save_png(str(out / f"{method}.png"), explanation_picture(ex)))
        log(f"{method}: {ex.target}, score {ex.score:.3g} -> {written[-1]}")
    predicted = ex.class_index

    target = resolve_target(block, UNIT_BLOB)
    data = source.preprocessing.apply(load_image(image), (1, 3, 224, 224))[None]
    act = activation(block, data, target)
    unit = int(np.argmax(act[0].reshape(act.shape[1], -1).max(axis=1)))
    g = unit_gradient(block, data, target, unit, method="guided").gradient[0]
    shown = to_uint8(source.preprocessing.invert(data[0], (1, 3, 224, 224)))
    written.append(save_png(str(out / "unit.png"), side_by_side([shown, gradient_picture(g)])))
    log(f"guided backprop of {UNIT_BLOB} unit {unit} -> {written[-1]}")

    tiles = _tiles(Path(image), out / "tiles")
    patches = top_patches(source, tiles, UNIT_BLOB, unit, top=6, block=block)
    written.append(save_png(str(out / "patches.png"), patch_picture(patches, cell=72)))
    log(f"top patches of that unit over {len(tiles)} crops (best {patches[0].score:.3g}) "
        f"-> {written[-1]}")

    iters = 8 if quick else 60
    model = class_model(block, predicted, iters=iters, lr=2.0, jitter=4, blur_every=4)
    written.append(save_png(str(out / "class_model.png"), model.picture()))
    log(f"class model of class {predicted}: score {model.scores[0]:.3g} -> "
        f"{model.scores[-1]:.3g} in {iters} steps -> {written[-1]}")
    return written
