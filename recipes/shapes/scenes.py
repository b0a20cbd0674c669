"""Synthetic scenes of drawn shapes on scikit-image's bundled photographs.

A scene is a 320 x 240 picture: a random crop of one of scikit-image's photographs
(shipped inside its wheel, so no download), then one to four filled shapes of three
classes -- circle, square, triangle -- each with a random colour, shading, size (28 to
120 px), position and rotation, drawn one after another so later shapes occlude earlier
ones, then sensor noise. Its truth is both an R-CNN's and a FCN's:

* boxes ``(xmin, ymin, xmax, ymax)``, 0-based, max inclusive, around each shape's VISIBLE
  pixels; a shape less than 40 % visible is marked ``difficult`` (VOC's rule: it neither
  counts as a positive nor makes a detection of it a false positive);
* a class map: 0 background, 1..3 the classes, 255 (VOC's void) on the anti-aliased rim
  of each shape.

:func:`write_voc` saves scenes as a PASCAL VOC folder (``JPEGImages/<id>.jpg``,
``Annotations/<id>.xml`` with VOC's 1-based corners, ``SegmentationClass/<id>.png`` with
the VOC palette, ``ImageSets/{Main,Segmentation}/<split>.txt``), which R-CNN's
``read_voc_annotation`` and FCN's ``VOCSegDataLayer`` read as they read VOC::

    rng = np.random.RandomState(0)
    scenes = [make_scene(rng, backgrounds(TRAIN_PHOTOS)) for _ in range(10)]
    write_voc("shapes-voc", "train", scenes)

Training and held-out scenes are drawn on different photographs
(:data:`TRAIN_PHOTOS`, :data:`HELD_OUT_PHOTOS`).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

#: Object classes, in label order (label k + 1 is CLASSES[k]; 0 is background).
CLASSES = ("circle", "square", "triangle")
#: Scene size (height, width).
SCENE_SIZE = (240, 320)
#: Void label on the shapes' anti-aliased rims (VOC's).
VOID = 255
#: A shape less visible than this is "difficult".
MIN_VISIBLE = 0.4
#: scikit-image photographs the training scenes are drawn on.
TRAIN_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "coins.png", "grass.png",
                "gravel.png", "hubble_deep_field.jpg", "moon.png", "page.png", "retina.jpg",
                "text.png", "motorcycle_left.png", "ihc.png", "clock_motion.png", "cell.png")
#: Photographs of the validation and test scenes (never seen in training).
HELD_OUT_PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg")

_SUPERSAMPLE = 4


@dataclass
class Scene:
    """One picture and its truth (see the module docstring)."""
    image: np.ndarray        # (H, W, 3) uint8 RGB
    boxes: np.ndarray        # (N, 4) int64 xmin, ymin, xmax, ymax (0-based, inclusive)
    labels: np.ndarray       # (N,) int64, 1-based classes
    difficult: np.ndarray    # (N,) bool
    segmentation: np.ndarray  # (H, W) uint8: 0 background, 1..3, VOID on rims


def backgrounds(names: Sequence[str]) -> List[np.ndarray]:
    """The named scikit-image photographs as (H, W, 3) uint8 RGB (grey ones repeated)."""
    import skimage.data
    from caffe_compat.images import read_as_pycaffe
    out = []
    for name in names:
        im = read_as_pycaffe(os.path.join(skimage.data.data_dir, name))
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = im[..., :3]
        if im.dtype != np.uint8:
            im = np.uint8(np.clip(np.float64(im) * (255.0 if im.max() <= 1 else 1.0), 0, 255))
        out.append(np.ascontiguousarray(im))
    return out


def _background(rng: np.random.RandomState, photo: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A random crop (30-100 % of the photo's short side, the scene's aspect), resized,
    maybe mirrored, with random brightness and contrast; float32 RGB."""
    import cv2
    h, w = size
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.3, 1.0) * min(ph / h, pw / w)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y0, x0 = rng.randint(0, ph - ch + 1), rng.randint(0, pw - cw + 1)
    crop = cv2.resize(photo[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.rand() < 0.5:
        crop = crop[:, ::-1]
    img = np.float32(crop)
    mean = img.mean()
    return (img - mean) * rng.uniform(0.6, 1.2) + mean * rng.uniform(0.7, 1.3)


def _outline(cls: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Polygon (K, 2) of a shape of ``size`` px (circle diameter, square side, triangle
    side x 1.2) centred at (cx, cy), rotated by ``angle``."""
    if cls == "circle":
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        r = np.full_like(t, size / 2)
    elif cls == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        r = np.full(4, size / np.sqrt(2))
    elif cls == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        r = np.full(3, 1.2 * size / np.sqrt(3))
    else:
        raise ValueError(f"unknown shape class {cls!r}; one of {CLASSES}")
    return np.stack([cx + r * np.cos(t + angle), cy + r * np.sin(t + angle)], axis=1)


def _coverage(polygon: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a polygon, (H, W) float32 (4x supersampled)."""
    import cv2
    h, w = size
    s = _SUPERSAMPLE
    canvas = np.zeros((h * s, w * s), np.uint8)
    points = np.round((polygon + 0.5) * s - 0.5).astype(np.int32)
    cv2.fillPoly(canvas, [points], 255)
    return np.float32(cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)) / 255.0


def _fill(rng: np.random.RandomState, size: Tuple[int, int]) -> np.ndarray:
    """A random colour with a linear shading gradient, (H, W, 3) float32."""
    h, w = size
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(theta) * x + np.sin(theta) * y) / max(h, w)
    return colour + rng.uniform(-60, 60) * (ramp - ramp.mean())[..., None]


def make_scene(rng: np.random.RandomState, photos: Sequence[np.ndarray],
               size: Tuple[int, int] = SCENE_SIZE, max_objects: int = 4) -> Scene:
    """One scene drawn with ``rng`` on a crop of one of ``photos`` (module docstring)."""
    h, w = size
    img = _background(rng, photos[rng.randint(len(photos))], size)
    owner = np.full(size, -1, np.int64)     # which shape each pixel shows
    rim = np.zeros(size, bool)
    classes, areas = [], []
    for k in range(rng.randint(1, max_objects + 1)):
        cls = rng.randint(len(CLASSES))
        side = rng.uniform(28, 120)
        cx, cy = rng.uniform(side * 0.4, w - side * 0.4), rng.uniform(side * 0.4, h - side * 0.4)
        alpha = _coverage(_outline(CLASSES[cls], cx, cy, side, rng.uniform(0, 2 * np.pi)), size)
        img = img * (1 - alpha[..., None]) + _fill(rng, size) * alpha[..., None]
        inside = alpha > 0.5
        owner[inside] = k
        rim = (rim & ~(alpha > 0.9)) | ((alpha > 0.1) & (alpha < 0.9))
        classes.append(cls + 1)
        areas.append(int(inside.sum()))
    img += rng.randn(h, w, 3).astype(np.float32) * rng.uniform(0, 8)
    boxes, labels, difficult = [], [], []
    for k, (cls, area) in enumerate(zip(classes, areas)):
        ys, xs = np.nonzero(owner == k)
        if len(xs) == 0:
            continue                         # hidden entirely
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        labels.append(cls)
        difficult.append(len(xs) < MIN_VISIBLE * max(area, 1))
    segmentation = np.zeros(size, np.uint8)
    shown = owner >= 0
    segmentation[shown] = np.asarray(classes, np.uint8)[owner[shown]]
    segmentation[rim] = VOID
    return Scene(np.uint8(np.clip(np.rint(img), 0, 255)), np.array(boxes, np.int64).reshape(-1, 4),
                 np.array(labels, np.int64), np.array(difficult, bool), segmentation)


# ---------------------------------------------------------------------------- VOC files
def annotation_xml(filename: str, scene: Scene) -> str:
    """The scene's VOC ``Annotations`` XML (1-based inclusive corners)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "shapes"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (scene.image.shape[1],
                                                         scene.image.shape[0], 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for box, label, hard in zip(scene.boxes, scene.labels, scene.difficult):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CLASSES[int(label) - 1]
        ET.SubElement(obj, "difficult").text = str(int(hard))
        bb = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bb, tag).text = str(int(value) + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def save_scene(scene: Scene, image_path: str, xml_path: str, label_path: str) -> None:
    """Write the picture (JPEG, quality 95), its VOC XML and its palette PNG."""
    from PIL import Image
    from caffe_compat.recipes.fcn.palette import label_image
    for path in (image_path, xml_path, label_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(scene.image).save(image_path, quality=95)
    with open(xml_path, "w", encoding="utf-8") as f:
        f.write(annotation_xml(os.path.basename(image_path), scene))
    label_image(scene.segmentation).save(label_path)


def write_voc(root: str, split: str, scenes: Sequence[Scene], prefix: str = "",
              segmented: Optional[int] = None) -> List[str]:
    """Save ``scenes`` into the VOC folder ``root`` as ids ``<prefix><split>_<i>`` and
    list them in ``ImageSets/Main/<split>.txt`` and (the first ``segmented`` of them, all
    by default: VOC's segmentation sets are subsets of its detection sets)
    ``ImageSets/Segmentation/<split>.txt``; returns the ids."""
    ids = [f"{prefix}{split}_{i:04d}" for i in range(len(scenes))]
    for idx, scene in zip(ids, scenes):
        save_scene(scene, os.path.join(root, "JPEGImages", idx + ".jpg"),
                   os.path.join(root, "Annotations", idx + ".xml"),
                   os.path.join(root, "SegmentationClass", idx + ".png"))
    for sets, listed in (("Main", ids), ("Segmentation", ids[:segmented])):
        folder = os.path.join(root, "ImageSets", sets)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, split + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in listed))
    return ids


__all__ = ["CLASSES", "HELD_OUT_PHOTOS", "MIN_VISIBLE", "SCENE_SIZE", "Scene", "TRAIN_PHOTOS",
           "VOID", "annotation_xml", "backgrounds", "make_scene", "save_scene", "write_voc"]
