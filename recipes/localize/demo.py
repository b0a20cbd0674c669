"""The localisation stage of ``caffe-compat demo``, offline, into ``out_dir``:

1. ``heatmap.png``: the DeepDream recipe's shipped classifier made fully convolutional
   and run over the sample picture scaled to 480 x 640, its top class's map drawn over it;
2. ``boxes.png``: a box-regression head fine-tuned with the SGD solver on a synthetic
   VOC folder (bright rectangles on noise, written under ``out_dir/voc``) and scored on
   held-out images (truth green, prediction red), with its mean IoU next to the
   mean-box baseline's. ``quick=True`` trains for fewer iterations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

#: A small classifier (32 x 32 input) the synthetic localisation demo starts from.
TOY_CLASSIFIER = """name: "toy_classifier"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 16 kernel_size: 5 pad: 2
          weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1
          weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6"
        inner_product_param { num_output: 64 weight_filler { type: "xavier" } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "fc7" top: "prob" }
"""


def synthetic_voc(root, count: int, seed: int, size: int = 32) -> str:
    """A VOC folder of noise images, each with one bright rectangle (class ``box``)."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(count):
        img = (rng.rand(size, size, 3) * 80).astype(np.uint8)
        w, h = rng.randint(size // 4, 2 * size // 3, size=2)
        x0, y0 = rng.randint(0, size - w + 1), rng.randint(0, size - h + 1)
        img[y0:y0 + h, x0:x0 + w] = 200 + rng.randint(0, 56, size=(h, w, 3))
        Image.fromarray(img).save(os.path.join(root, "JPEGImages", f"{i:04d}.png"))
        with open(os.path.join(root, "Annotations", f"{i:04d}.xml"), "w") as f:
            f.write(f"<annotation><filename>{i:04d}.png</filename><size><width>{size}</width>"
                    f"<height>{size}</height><depth>3</depth></size><object><name>box</name>"
                    f"<difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}"
                    f"</ymin><xmax>{x0 + w}</xmax><ymax>{y0 + h}</ymax></bndbox></object>"
                    f"</annotation>\n")
    return str(root)


def draw_box(picture: np.ndarray, box, colour) -> None:
    """Outline a (x0, y0, x1, y1) pixel box on a uint8 picture, in place."""
    h, w = picture.shape[:2]
    x0, y0 = int(np.clip(np.floor(box[0]), 0, w - 1)), int(np.clip(np.floor(box[1]), 0, h - 1))
    x1 = int(np.clip(np.ceil(box[2]) - 1, 0, w - 1))
    y1 = int(np.clip(np.ceil(box[3]) - 1, 0, h - 1))
    picture[y0, x0:x1 + 1] = picture[y1, x0:x1 + 1] = colour
    picture[y0:y1 + 1, x0] = picture[y0:y1 + 1, x1] = colour


def run_demo(out_dir, quick: bool = False, log: Callable[[str], None] = print) -> list:
    """Write the stage's pictures into ``out_dir``; return their paths."""
    import caffe_compat as caffe
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.recipes.deepdream.images import sample_image
    from caffe_compat.recipes.localize.heatmap import class_heatmap
    from caffe_compat.recipes.localize.train import train_localizer
    from caffe_compat.recipes.localize.voc import load_dataset, main_object
    from caffe_compat.recipes.visualize.demo import embedded_source
    from caffe_compat.recipes.visualize.render import grid, save_png, to_uint8
    from caffe_compat.recipes.visualize.source import NetSource, Preprocessing, load_image
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    hm = class_heatmap(embedded_source(), str(sample_image()), short_side=240 if quick else 480)
    written.append(save_png(str(out / "heatmap.png"), hm.picture()))
    log(f"heatmap: class {hm.class_index} on a {hm.scores.shape[1]}x{hm.scores.shape[2]} "
        f"map -> {written[-1]}")

    proto = out / "toy_classifier.prototxt"
    proto.write_text(TOY_CLASSIFIER)
    caffe.set_random_seed(0)
    CaffeNet.from_prototxt(str(proto)).save_caffemodel(str(out / "toy_classifier.caffemodel"))
    train_dir = synthetic_voc(out / "voc" / "train", 64, seed=0)
    val_dir = synthetic_voc(out / "voc" / "val", 32, seed=1)
    source = NetSource.from_files(proto, out / "toy_classifier.caffemodel",
                                  Preprocessing(mean=(0.3, 0.3, 0.3), raw_scale=1.0))
    iters = 60 if quick else 300
    model = train_localizer(source, train_dir, str(out / "localizer"), iters=iters,
                            batch_size=16, base_lr=0.01, cache=True)
    score = model.evaluate(val_dir)
    log(f"box head, {iters} SGD iterations on {train_dir}: {score.summary()}")
    pictures = []
    for ann in load_dataset(val_dir)[:12]:
        pic = to_uint8(load_image(ann.image))
        draw_box(pic, main_object(ann).box, (0, 255, 0))
        draw_box(pic, model.predict(ann.image), (255, 0, 0))
        pictures.append(np.kron(pic, np.ones((3, 3, 1), np.uint8)))
    written.append(save_png(str(out / "boxes.png"), grid(pictures, 6)))
    log(f"predicted (red) and true (green) boxes -> {written[-1]}")
    return written
