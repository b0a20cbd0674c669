"""The localisation head's Python data layer: batches of (image, box target) from a VOC
folder.

``param_str`` is JSON (written by :mod:`.head`)::

    {"voc_dir": "...", "split": null, "classes": ["cat", "dog"], "per_class": false,
     "batch_size": 16, "input_shape": [3, 227, 227], "preprocessing": {...},
     "mirror": true, "shuffle": true, "seed": 0, "cache": false}

Tops: ``data`` (N x C x H x W, the :class:`Preprocessing` of the net), ``bbox_target``
(N x 4, the main object's box as image fractions, :func:`.boxes.encode`), and with
``per_class`` a ``4 * len(classes)`` target holding the box in the true class's four
slots and a ``bbox_weight`` of the same shape: 1 on those slots, 0 elsewhere, so the
loss only sees the true class (R-CNN's class-specific regression). Images are visited
in a seeded random order, reshuffled every epoch; ``mirror`` flips half of them
(and their boxes) at random.
"""
from __future__ import annotations

import json
import random

import numpy as np

from caffe_compat.engine.layers.python_layer import PyLayer
from caffe_compat.recipes.localize import boxes
from caffe_compat.recipes.localize.voc import load_dataset, main_object
from caffe_compat.recipes.visualize.source import Preprocessing, load_image


def sample_targets(ann, classes: list, per_class: bool) -> tuple:
    """(target, weight or None) rows for one annotation (see the module docstring)."""
    obj = main_object(ann)
    enc = np.asarray(boxes.encode(obj.box, ann.width, ann.height), np.float32)
    if not per_class:
        return enc, None
    if obj.name not in classes:
        raise ValueError(f"{ann.id}: class {obj.name!r} is not one of {classes}")
    k = classes.index(obj.name)
    target = np.zeros(4 * len(classes), np.float32)
    weight = np.zeros(4 * len(classes), np.float32)
    target[4 * k:4 * k + 4] = enc
    weight[4 * k:4 * k + 4] = 1.0
    return target, weight


class VOCBoxDataLayer(PyLayer):
    """``python_param { module: "caffe_compat.recipes.localize.data"
    layer: "VOCBoxDataLayer" param_str: "<json>" }``."""

    def setup(self, bottom, top):
        p = json.loads(self.param_str)
        self.anns = load_dataset(p["voc_dir"], p.get("split"))
        self.classes = list(p.get("classes") or [])
        self.per_class = bool(p.get("per_class", False))
        want = 3 if self.per_class else 2
        if len(top) != want:
            raise ValueError(f"VOCBoxDataLayer makes {want} tops (data, bbox_target"
                             f"{', bbox_weight' if self.per_class else ''}), not {len(top)}")
        if bottom:
            raise ValueError("VOCBoxDataLayer takes no bottoms")
        self.batch_size = int(p.get("batch_size", 16))
        self.shape = tuple(int(d) for d in p["input_shape"])
        self.pre = Preprocessing.from_json(p.get("preprocessing") or {})
        self.mirror = bool(p.get("mirror", True))
        self.shuffle = bool(p.get("shuffle", True))
        self.rng = random.Random(int(p.get("seed", 0)))
        self.cache = {} if p.get("cache", False) else None
        self.order: list = []
        for ann in self.anns:                      # fail now, not mid-training
            sample_targets(ann, self.classes, self.per_class)

    def reshape(self, bottom, top):
        n = self.batch_size
        width = 4 * len(self.classes) if self.per_class else 4
        top[0].reshape(n, *self.shape)
        top[1].reshape(n, width)
        if self.per_class:
            top[2].reshape(n, width)

    def _next(self):
        if not self.order:
            self.order = list(range(len(self.anns)))
            if self.shuffle:
                self.rng.shuffle(self.order)
        return self.anns[self.order.pop(0)]

    def _image(self, ann) -> np.ndarray:
        if self.cache is not None and ann.id in self.cache:
            return self.cache[ann.id]
        data = self.pre.apply(load_image(ann.image), (1,) + self.shape)
        if self.cache is not None:
            self.cache[ann.id] = data
        return data

    def forward(self, bottom, top):
        for i in range(self.batch_size):
            ann = self._next()
            data = self._image(ann)
            target, weight = sample_targets(ann, self.classes, self.per_class)
            if self.mirror and self.rng.random() < 0.5:
                data = data[:, :, ::-1]
                rows = target.reshape(-1, 4)
                target = np.stack([boxes.mirror(r) for r in rows]).ravel() * (
                    weight if weight is not None else 1.0)
            top[0].data[i] = data
            top[1].data[i] = target
            if self.per_class:
                top[2].data[i] = weight

    def backward(self, top, propagate_down, bottom):
        pass
