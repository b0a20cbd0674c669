"""PASCAL VOC annotation files (``Annotations/<id>.xml``): the one parser.

Values are returned as written: corners 1-based and inclusive, as the VOC devkit
writes them. Each recipe turns them into its own convention (R-CNN's 0-based
inclusive pixel boxes, the localizer's continuous coordinates). GluonCV's
``VOCDetection`` is not used: it lowercases class names, silently skips unknown
classes and drops one-pixel-wide boxes, where Caffe's recipes refuse or keep them.

>>> import io
>>> xml = io.StringIO('<annotation><filename>a.jpg</filename><size><width>40</width>'
...     '<height>30</height></size><object><name>dog</name><difficult>1</difficult>'
...     '<bndbox><xmin>3</xmin><ymin>4</ymin><xmax>20</xmax><ymax>25</ymax></bndbox>'
...     '</object></annotation>')
>>> ann = read_voc_xml(xml)
>>> ann.filename, ann.width, ann.height, ann.objects[0]
('a.jpg', 40, 30, VOCObjectRecord(name='dog', bndbox=(3.0, 4.0, 20.0, 25.0), difficult=True))
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import IO, Optional, Union

from caffe_compat.errors import CaffeCompatError

__all__ = ["VOCAnnotationError", "VOCObjectRecord", "VOCAnnotationFile", "read_voc_xml"]


class VOCAnnotationError(CaffeCompatError):
    """A VOC annotation file that is not valid XML or lacks a field a box needs."""


@dataclass(frozen=True)
class VOCObjectRecord:
    """One ``<object>``: its ``<name>``, ``<bndbox>`` (xmin, ymin, xmax, ymax as written:
    1-based, inclusive) and ``<difficult>`` flag."""
    name: str
    bndbox: tuple
    difficult: bool = False


@dataclass(frozen=True)
class VOCAnnotationFile:
    """``<filename>`` (None when absent), ``<size>`` (None when absent) and the objects."""
    filename: Optional[str]
    width: Optional[int]
    height: Optional[int]
    objects: tuple


def _text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise VOCAnnotationError(f"{where}: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def _number(node, tag: str, where: str) -> float:
    value = _text(node, tag, where)
    try:
        return float(value)
    except ValueError:
        raise VOCAnnotationError(f"{where}: <{tag}> is {value!r}, not a number") from None


def read_voc_xml(source: Union[str, IO]) -> VOCAnnotationFile:
    """Parses one VOC annotation (a path or an open file); every problem is a
    :class:`VOCAnnotationError` naming the file."""
    where = source if isinstance(source, str) else getattr(source, "name", "<annotation>")
    try:
        root = ET.parse(source).getroot()
    except ET.ParseError as exc:
        raise VOCAnnotationError(f"{where}: not valid XML ({exc})") from None
    size = root.find("size")
    width = height = None
    if size is not None:
        width, height = int(_number(size, "width", where)), int(_number(size, "height", where))
    objects = []
    for obj in root.findall("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise VOCAnnotationError(f"{where}: an <object> has no <bndbox>")
        box = tuple(_number(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append(VOCObjectRecord(_text(obj, "name", where), box, difficult))
    filename = (root.findtext("filename") or "").strip() or None
    return VOCAnnotationFile(filename, width, height, tuple(objects))
