"""Boxes from a PASCAL VOC-layout folder: ``JPEGImages/<id>.jpg`` and
``Annotations/<id>.xml``, optionally ``ImageSets/Main/<split>.txt`` listing ids.

The XML is VOC's (``<annotation><filename>``, ``<size><width><height>``, one
``<object>`` per box with ``<name>``, ``<difficult>`` and ``<bndbox>``
``xmin ymin xmax ymax``); parsed by :mod:`caffe_compat.formats.voc_xml`. VOC corners are 1-based and
inclusive, so a box here is ``(xmin - 1, ymin - 1, xmax, ymax)``: continuous pixel
coordinates where pixel k spans [k, k + 1), the convention :mod:`.boxes` uses::

    from caffe_compat.recipes.localize.voc import load_dataset, main_object
    anns = load_dataset("VOC2007", split="train")
    main_object(anns[0]).name, main_object(anns[0]).box     # 'dog', (47.0, 239.0, 195.0, 371.0)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from caffe_compat.errors import CaffeCompatError
from caffe_compat.formats.voc_xml import read_voc_xml


@dataclass(frozen=True)
class VOCObject:
    name: str
    box: tuple               # (x0, y0, x1, y1), continuous pixel coordinates
    difficult: bool = False

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True)
class Annotation:
    id: str
    image: str               # path of the image file
    width: int
    height: int
    objects: tuple


def read_annotation(xml_path: str, voc_dir: Optional[str] = None) -> Annotation:
    """One ``Annotations/<id>.xml`` (the image is looked up in ``voc_dir/JPEGImages``)."""
    parsed = read_voc_xml(xml_path)
    ann_id = os.path.splitext(os.path.basename(xml_path))[0]
    voc_dir = voc_dir or os.path.dirname(os.path.dirname(os.path.abspath(xml_path)))
    image = os.path.join(voc_dir, "JPEGImages", parsed.filename or ann_id + ".jpg")
    if parsed.width is None:
        raise CaffeCompatError(f"{xml_path}: no <size>")
    objects = []
    for obj in parsed.objects:
        xmin, ymin, xmax, ymax = obj.bndbox
        if xmax < xmin or ymax < ymin:
            raise CaffeCompatError(f"{xml_path}: box ({xmin}, {ymin}, {xmax}, {ymax}) has "
                                   "max < min")
        objects.append(VOCObject(obj.name, (xmin - 1, ymin - 1, xmax, ymax), obj.difficult))
    return Annotation(ann_id, image, parsed.width, parsed.height, tuple(objects))


def dataset_ids(voc_dir: str, split: Optional[str] = None) -> list:
    """Ids of ``ImageSets/Main/<split>.txt`` (first word of each line), or every
    ``Annotations/*.xml`` (sorted) when ``split`` is None."""
    if not os.path.isdir(voc_dir):
        raise FileNotFoundError(2, "No such directory", voc_dir)
    if split is not None:
        path = os.path.join(voc_dir, "ImageSets", "Main", split + ".txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such split file", path)
        with open(path, encoding="utf-8") as f:
            return [line.split()[0] for line in f if line.strip()]
    folder = os.path.join(voc_dir, "Annotations")
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "No Annotations folder", folder)
    return sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith(".xml"))


def load_dataset(voc_dir: str, split: Optional[str] = None) -> list:
    """Every annotation of the split that has at least one object."""
    anns = [read_annotation(os.path.join(voc_dir, "Annotations", i + ".xml"), voc_dir)
            for i in dataset_ids(voc_dir, split)]
    anns = [a for a in anns if a.objects]
    if not anns:
        raise CaffeCompatError(f"{voc_dir}: no annotated objects"
                               + (f" in split {split!r}" if split else ""))
    return anns


def main_object(ann: Annotation) -> VOCObject:
    """The object to localise: the largest non-difficult box (any box if all are
    difficult), as single-object localisation (ILSVRC's task) needs one per image."""
    easy = [o for o in ann.objects if not o.difficult] or list(ann.objects)
    return max(easy, key=lambda o: o.area)


def class_names(annotations) -> list:
    """Sorted names of the main objects' classes."""
    return sorted({main_object(a).name for a in annotations})
