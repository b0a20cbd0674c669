"""The images to learn from: an ImageNet-style folder or a Caffe list file, split for validation.

* A folder with one sub-folder per class (``flowers/daisy/*.jpg``, ``flowers/rose/*.jpg``):
  classes are the sub-folder names in sorted order (class index = position), images are
  the image files under each sub-folder (recursively), in sorted order.
* A Caffe ``ImageData`` list file (``path label`` per line, split at the last space as
  Caffe does): relative paths are taken from ``root_folder`` (Caffe's
  ``image_data_param.root_folder``; default: the list file's folder). Class names come
  from a labels file (one name per line) when given, else ``class_0`` ... ``class_<K-1>``.

>>> ds = read_dataset("flowers/")                               # doctest: +SKIP
>>> train, val = stratified_split(ds, val_fraction=0.2, seed=0)  # doctest: +SKIP
>>> write_list(train, "train.txt")                              # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from caffe_compat.errors import CaffeCompatError

#: File endings read as images (what OpenCV's imread decodes).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff",
                    ".webp", ".jpe", ".jp2")

PathLike = Union[str, os.PathLike]


class DatasetError(CaffeCompatError):
    """The data folder or list file cannot be used (named in the message)."""


@dataclass(frozen=True)
class Sample:
    """One image and its class index."""
    path: str
    label: int


@dataclass(frozen=True)
class Dataset:
    """Samples (absolute paths) and the class names (``class_names[label]``)."""
    samples: tuple
    class_names: tuple
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> list[int]:
        """Images per class."""
        out = [0] * self.num_classes
        for s in self.samples:
            out[s.label] += 1
        return out


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def read_folder(folder: PathLike) -> Dataset:
    """An ImageNet-style folder: one sub-folder per class, images inside."""
    root = Path(folder)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"{root}: needs one sub-folder per class (at least 2), found "
                           f"{len(classes)}")
    samples = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (root / name).rglob("*") if _is_image(p))
        if not images:
            raise DatasetError(f"{root / name}: class folder holds no images "
                               f"({', '.join(IMAGE_EXTENSIONS[:5])} ...)")
        samples += [Sample(str(p.resolve()), label) for p in images]
    return Dataset(tuple(samples), tuple(classes), str(root))


def read_labels_file(path: PathLike) -> list[str]:
    """One class name per line (blank lines ignored), e.g. a ``labels.txt``."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise DatasetError(f"{path}: labels file names no classes")
    return names


def read_list_file(list_file: PathLike, root_folder: Optional[PathLike] = None,
                   labels: Optional[PathLike] = None) -> Dataset:
    """Caffe's ImageData list file (``path label`` lines) as a Dataset."""
    from caffe_compat.engine.layers.data import parse_image_list
    list_file = Path(list_file)
    root = Path(root_folder) if root_folder is not None else list_file.resolve().parent
    entries = parse_image_list(str(list_file), lambda msg: DatasetError(msg))
    samples = []
    for filename, label, line in entries:
        if label < 0:
            raise DatasetError(f"{list_file}:{line}: label {label} is negative")
        path = Path(filename)
        if not path.is_absolute():
            path = root / path
        if not path.is_file():
            raise DatasetError(f"{list_file}:{line}: no image file {path}")
        samples.append(Sample(str(path.resolve()), int(label)))
    num = max(s.label for s in samples) + 1
    if labels is not None:
        names = read_labels_file(labels)
        if len(names) < num:
            raise DatasetError(f"{labels} names {len(names)} classes but {list_file} uses "
                               f"label {num - 1}")
    else:
        names = [f"class_{i}" for i in range(num)]
    if len(names) < 2:
        raise DatasetError(f"{list_file}: needs at least 2 classes, found {len(names)}")
    return Dataset(tuple(samples), tuple(names), str(list_file))


def read_dataset(source: PathLike, root_folder: Optional[PathLike] = None,
                 labels: Optional[PathLike] = None) -> Dataset:
    """A folder (one sub-folder per class) or a Caffe list file, whichever ``source`` is."""
    path = Path(source)
    if path.is_dir():
        if labels is not None:
            raise DatasetError("--labels is for list files; a folder's classes are its "
                               "sub-folder names")
        return read_folder(path)
    if path.is_file():
        return read_list_file(path, root_folder, labels)
    raise FileNotFoundError(2, "No such file or directory", str(path))


def stratified_split(dataset: Dataset, val_fraction: float = 0.2,
                     seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(train, val): ``round(n * val_fraction)`` images of each class go to validation.

    Deterministic: each class's images are sorted by path and shuffled with
    ``RandomState(seed)``; a class with at least 2 images keeps at least one on each side.
    Both lists are returned in a fixed interleaved order (sorted by path).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.RandomState(seed)
    train, val = [], []
    for label in range(dataset.num_classes):
        members = sorted((s for s in dataset.samples if s.label == label), key=lambda s: s.path)
        n = len(members)
        if n == 0:
            continue
        order = rng.permutation(n)
        n_val = int(round(n * val_fraction))
        if n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = 0
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    if not val:
        raise DatasetError(f"{dataset.source}: too few images for a validation split")
    return sorted(train, key=lambda s: s.path), sorted(val, key=lambda s: s.path)


def write_list(samples: Sequence[Sample], path: PathLike) -> Path:
    """Write ``path label`` lines (Caffe's ImageData list file); returns the path."""
    for s in samples:
        if "\n" in s.path:
            raise DatasetError(f"image path {s.path!r} contains a newline")
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        for s in samples:
            f.write(f"{s.path} {s.label}\n")
    return Path(path)
