"""FCN's Python data layers (fcn.berkeleyvision.org ``*_layers.py``) for caffe-compat.

One image per forward, the net reshaped to it (FCNs take any size): the layers load an
(image, label) pair in ``reshape`` and copy it to the tops in ``forward``, then move to
the next index, exactly as the originals do. ``param_str`` is the ``str()`` of a dict
with the original keys:

==========================  ====================================  ======================
layer                       keys                                  tops
==========================  ====================================  ======================
VOCSegDataLayer             voc_dir, split, mean, randomize, seed data, label
SBDDSegDataLayer            sbdd_dir, split, mean, randomize, seed data, label
PASCALContextSegDataLayer   voc_dir, context_dir, split, ...      data, label
NYUDSegDataLayer            nyud_dir, split, tops, randomize, ... any of color, depth,
                                                                  hha, label
SIFTFlowSegDataLayer        siftflow_dir, split, randomize, seed  data, sem, geo
==========================  ====================================  ======================

Shared behaviour (the originals'): ``randomize`` defaults to True but is switched off
unless the split name contains ``train`` (evaluation is deterministic); a randomised
layer seeds a ``random.Random(seed)`` and draws ``randint(0, len - 1)`` for the first
and every next index (the same sequence as the originals' ``random.seed(seed)`` +
``random.randint``, without touching the global generator); otherwise indices run in
file order and wrap. Images are read with PIL, cast to float32, RGB -> BGR, the mean
subtracted and transposed to C x H x W; labels get a leading singleton axis.

Prototxts name the module: ``module: "caffe_compat.recipes.fcn.layers"`` works as is;
for the original prototxts (``module: "voc_layers"`` etc.) call
:func:`caffe_compat.recipes.fcn.install_layer_modules` first.
"""
from __future__ import annotations

import ast
import random
from typing import Optional

import numpy as np

from caffe_compat import images
from caffe_compat.engine.layers.python_layer import PyLayer

#: The VOC mean the FCN nets put in their param_str (BGR).
VOC_MEAN = (104.00699, 116.66877, 122.67892)
#: siftflow_layers.py's fixed mean.
SIFTFLOW_MEAN = (114.578, 115.294, 108.353)
#: pascalcontext_layers.py's fixed mean.
CONTEXT_MEAN = (104.007, 116.669, 122.679)
#: nyud_layers.py's means: colour (BGR), HHA, log-depth.
NYUD_MEAN_BGR = (116.190, 97.203, 92.318)
NYUD_MEAN_HHA = (132.431, 94.076, 118.477)
NYUD_MEAN_LOGD = (7.844,)
#: SIFT Flow's image/label subfolder.
SIFTFLOW_SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"


def parse_param_str(param_str: str, layer: str) -> dict:
    """The dict a FCN data layer's ``param_str`` holds (a Python literal, as ``str(dict)``
    writes it; the originals ``eval`` it, this only accepts literals)."""
    try:
        params = ast.literal_eval(param_str)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{layer}: param_str must be a Python dict literal such as "
                         f"\"{{'split': 'val', ...}}\": {exc}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{layer}: param_str must hold a dict, got {type(params).__name__}")
    return params


def read_rgb(path: str) -> np.ndarray:
    """An image file as an (H, W, 3) array; palette/grey/RGBA images are converted to RGB."""
    return np.array(images.read_rgb(path), dtype=np.float32)


def bgr_minus_mean(rgb: np.ndarray, mean) -> np.ndarray:
    """FCN's preprocessing: RGB -> BGR, subtract the (BGR) mean, to C x H x W."""
    in_ = np.array(rgb[:, :, ::-1], dtype=np.float32)
    in_ -= np.asarray(mean)   # in place, as the originals: float64 means subtract in float64
    return np.ascontiguousarray(in_.transpose((2, 0, 1)))


def read_split(path: str) -> list[str]:
    """The ids of a split file, one a line (``splitlines``, as the originals)."""
    with open(path) as f:
        return f.read().splitlines()


def load_sbdd_label(path: str) -> np.ndarray:
    """SBD's ``cls/<id>.mat``: ``GTcls.Segmentation`` as 1 x H x W uint8."""
    import scipy.io
    mat = scipy.io.loadmat(path)
    label = mat["GTcls"][0]["Segmentation"][0].astype(np.uint8)
    return label[np.newaxis, ...]


class SegDataLayer(PyLayer):
    """Shared setup/reshape/forward of the FCN data layers (one image per batch).

    Subclasses set ``top_names`` (expected tops) and implement :meth:`split_path`
    (the split file of a param dict), :meth:`configure` (read the dataset keys) and
    :meth:`load` (one top's array for one id).
    """

    top_names: tuple = ("data", "label")

    def split_path(self, params: dict) -> str:
        raise NotImplementedError

    def configure(self, params: dict) -> None:
        raise NotImplementedError

    def load(self, top: str, idx: str) -> np.ndarray:
        raise NotImplementedError

    def check_tops(self, top) -> None:
        if len(top) != len(self.top_names):
            raise ValueError(f"{type(self).__name__}: need {len(self.top_names)} tops: "
                             f"{', '.join(self.top_names)} (the prototxt gives {len(top)})")

    def setup(self, bottom, top) -> None:
        params = parse_param_str(self.param_str, type(self).__name__)
        self.params = params
        try:
            self.split = params["split"]
            self.configure(params)
            split_f = self.split_path(params)
        except KeyError as exc:
            raise ValueError(f"{type(self).__name__}: param_str lacks the key {exc}") from None
        self.random = params.get("randomize", True)
        self.seed = params.get("seed", None)
        self.check_tops(top)
        if len(bottom) != 0:
            raise ValueError(f"{type(self).__name__}: a data layer takes no bottom")
        self.indices = read_split(split_f)
        if not self.indices:
            raise ValueError(f"{type(self).__name__}: split file {split_f} lists no image")
        self.idx = 0
        # make eval deterministic
        if "train" not in self.split:
            self.random = False
        self.rng: Optional[random.Random] = None
        if self.random:
            self.rng = random.Random(self.seed)
            self.idx = self.rng.randint(0, len(self.indices) - 1)

    def reshape(self, bottom, top) -> None:
        idx = self.indices[self.idx]
        self.data = {t: self.load(t, idx) for t in self.top_names}
        for i, t in enumerate(self.top_names):
            top[i].reshape(1, *self.data[t].shape)

    def forward(self, bottom, top) -> None:
        for i, t in enumerate(self.top_names):
            top[i].data[...] = self.data[t]
        # pick next input
        if self.random:
            self.idx = self.rng.randint(0, len(self.indices) - 1)
        else:
            self.idx += 1
            if self.idx == len(self.indices):
                self.idx = 0

    def backward(self, top, propagate_down, bottom) -> None:
        pass


class VOCSegDataLayer(SegDataLayer):
    """PASCAL VOC: ``<voc_dir>/ImageSets/Segmentation/<split>.txt``, images
    ``JPEGImages/<id>.jpg``, labels ``SegmentationClass/<id>.png`` (palette indices;
    255 = void)."""

    def split_path(self, params: dict) -> str:
        return "{}/ImageSets/Segmentation/{}.txt".format(params["voc_dir"], params["split"])

    def configure(self, params: dict) -> None:
        self.voc_dir = params["voc_dir"]
        self.mean = np.array(params["mean"])

    def load(self, top: str, idx: str) -> np.ndarray:
        return self.load_image(idx) if top == "data" else self.load_label(idx)

    def load_image(self, idx: str) -> np.ndarray:
        return bgr_minus_mean(read_rgb("{}/JPEGImages/{}.jpg".format(self.voc_dir, idx)), self.mean)

    def load_label(self, idx: str) -> np.ndarray:
        im = images.open_as_stored("{}/SegmentationClass/{}.png".format(self.voc_dir, idx))
        label = np.array(im, dtype=np.uint8)   # P mode: the palette indices themselves
        return label[np.newaxis, ...]


class SBDDSegDataLayer(SegDataLayer):
    """SBD (Hariharan et al.): ``<sbdd_dir>/<split>.txt``, images ``img/<id>.jpg``,
    labels ``cls/<id>.mat`` (``GTcls.Segmentation``)."""

    def split_path(self, params: dict) -> str:
        return "{}/{}.txt".format(params["sbdd_dir"], params["split"])

    def configure(self, params: dict) -> None:
        self.sbdd_dir = params["sbdd_dir"]
        self.mean = np.array(params["mean"])

    def load(self, top: str, idx: str) -> np.ndarray:
        return self.load_image(idx) if top == "data" else self.load_label(idx)

    def load_image(self, idx: str) -> np.ndarray:
        return bgr_minus_mean(read_rgb("{}/img/{}.jpg".format(self.sbdd_dir, idx)), self.mean)

    def load_label(self, idx: str) -> np.ndarray:
        return load_sbdd_label("{}/cls/{}.mat".format(self.sbdd_dir, idx))


def _read_label_names(path: str) -> list[str]:
    """``idx: name`` lines (PASCAL-Context labels.txt / 59_labels.txt), spaces removed."""
    names = []
    with open(path) as f:
        for line in f:
            if line.strip():
                names.append(line.split(":", 1)[1].replace(" ", "").strip())
    return names


class PASCALContextSegDataLayer(SegDataLayer):
    """PASCAL-Context, 59-class task: images ``<voc_dir>/VOC2010/JPEGImages/<id>.jpg``,
    split ``VOC2010/ImageSets/Main/<split>.txt``, labels ``<context_dir>/trainval/<id>.mat``
    (``LabelMap`` over the 400 labels of ``labels.txt``) mapped to ``59_labels.txt``
    (1..59, 0 = everything else)."""

    def split_path(self, params: dict) -> str:
        return "{}/VOC2010/ImageSets/Main/{}.txt".format(params["voc_dir"], params["split"])

    def configure(self, params: dict) -> None:
        self.voc_dir = params["voc_dir"] + "/VOC2010"
        self.context_dir = params["context_dir"]
        self.mean = np.array(CONTEXT_MEAN, dtype=np.float32)
        self.labels_400 = _read_label_names(self.context_dir + "/labels.txt")
        self.labels_59 = _read_label_names(self.context_dir + "/59_labels.txt")
        # resolve the naming inconsistencies by mapping to the full 400 labels
        for main_label, task_label in zip(("table", "bedclothes", "cloth"),
                                          ("diningtable", "bedcloth", "clothes")):
            if task_label in self.labels_59:
                self.labels_59[self.labels_59.index(task_label)] = main_label

    def load(self, top: str, idx: str) -> np.ndarray:
        return self.load_image(idx) if top == "data" else self.load_label(idx)

    def load_image(self, idx: str) -> np.ndarray:
        return bgr_minus_mean(read_rgb("{}/JPEGImages/{}.jpg".format(self.voc_dir, idx)), self.mean)

    def load_label(self, idx: str) -> np.ndarray:
        import scipy.io
        label_400 = scipy.io.loadmat("{}/trainval/{}.mat".format(self.context_dir, idx))["LabelMap"]
        label = np.zeros_like(label_400, dtype=np.uint8)
        for i, name in enumerate(self.labels_59):
            idx_400 = self.labels_400.index(name) + 1
            label[label_400 == idx_400] = i + 1
        return label[np.newaxis, ...]


class NYUDSegDataLayer(SegDataLayer):
    """NYUDv2, 40-class task (Gupta et al.): ``<nyud_dir>/<split>.txt``; the ``tops``
    key lists the outputs in order, each one of ``color`` (``data/images/img_<id>.png``),
    ``depth`` (``data/depth/img_<id>.png``, log, minus 7.844), ``hha``
    (``data/hha/img_<id>.png``) and ``label`` (``segmentation/img_<id>.mat``, shifted
    so classes are 0..39 and void 255)."""

    def split_path(self, params: dict) -> str:
        return "{}/{}.txt".format(params["nyud_dir"], params["split"])

    def configure(self, params: dict) -> None:
        self.nyud_dir = params["nyud_dir"]
        self.top_names = tuple(params["tops"])
        unknown = [t for t in self.top_names if t not in ("color", "depth", "hha", "label")]
        if unknown:
            raise ValueError(f"NYUDSegDataLayer: unknown output type(s) {unknown}; "
                             "pick from color, depth, hha, label")
        self.mean_bgr = np.array(NYUD_MEAN_BGR, dtype=np.float32)
        self.mean_hha = np.array(NYUD_MEAN_HHA, dtype=np.float32)
        self.mean_logd = np.array(NYUD_MEAN_LOGD, dtype=np.float32)

    def load(self, top: str, idx: str) -> np.ndarray:
        return {"color": self.load_image, "label": self.load_label,
                "depth": self.load_depth, "hha": self.load_hha}[top](idx)

    def load_image(self, idx: str) -> np.ndarray:
        rgb = read_rgb("{}/data/images/img_{}.png".format(self.nyud_dir, idx))
        return bgr_minus_mean(rgb, self.mean_bgr)

    def load_label(self, idx: str) -> np.ndarray:
        import scipy.io
        label = scipy.io.loadmat("{}/segmentation/img_{}.mat".format(self.nyud_dir, idx))
        label = label["segmentation"].astype(np.uint8)
        label -= 1  # rotate labels: void 0 -> 255
        return label[np.newaxis, ...]

    def load_depth(self, idx: str) -> np.ndarray:
        im = images.open_as_stored("{}/data/depth/img_{}.png".format(self.nyud_dir, idx))
        d = np.array(im, dtype=np.float32)
        with np.errstate(divide="ignore"):   # as the original: log(0) = -inf
            d = np.log(d)
        d -= self.mean_logd
        return d[np.newaxis, ...]

    def load_hha(self, idx: str) -> np.ndarray:
        hha = read_rgb("{}/data/hha/img_{}.png".format(self.nyud_dir, idx))
        hha -= self.mean_hha
        return np.ascontiguousarray(hha.transpose((2, 0, 1)))


class SIFTFlowSegDataLayer(SegDataLayer):
    """SIFT Flow: ``<siftflow_dir>/<split>.txt``; three tops: the image, the semantic
    labels (0..32, void 255) and the geometric labels (0..2, void 255) from
    ``SemanticLabels/`` and ``GeoLabels/`` ``.mat`` files (``S``)."""

    top_names = ("data", "sem", "geo")

    def check_tops(self, top) -> None:
        if len(top) != 3:
            raise ValueError("SIFTFlowSegDataLayer: need three tops: data, semantic label, "
                             f"and geometric label (the prototxt gives {len(top)})")

    def split_path(self, params: dict) -> str:
        return "{}/{}.txt".format(params["siftflow_dir"], params["split"])

    def configure(self, params: dict) -> None:
        self.siftflow_dir = params["siftflow_dir"]
        self.mean = np.array(SIFTFLOW_MEAN, dtype=np.float32)

    def load(self, top: str, idx: str) -> np.ndarray:
        if top == "data":
            return self.load_image(idx)
        return self.load_label(idx, label_type="semantic" if top == "sem" else "geometric")

    def load_image(self, idx: str) -> np.ndarray:
        path = "{}/Images/{}/{}.jpg".format(self.siftflow_dir, SIFTFLOW_SUBDIR, idx)
        return bgr_minus_mean(read_rgb(path), self.mean)

    def load_label(self, idx: str, label_type: str) -> np.ndarray:
        import scipy.io
        folder = {"semantic": "SemanticLabels", "geometric": "GeoLabels"}[label_type]
        label = scipy.io.loadmat("{}/{}/{}/{}.mat".format(self.siftflow_dir, folder,
                                                          SIFTFLOW_SUBDIR, idx))["S"]
        if label_type == "geometric":
            label[label == -1] = 0
        label = label.astype(np.uint8)
        label -= 1  # rotate labels so classes start at 0, void is 255
        return label[np.newaxis, ...].copy()


#: Every data layer, by class name (the ``layer:`` of python_param).
DATA_LAYERS = {cls.__name__: cls for cls in (VOCSegDataLayer, SBDDSegDataLayer,
                                             PASCALContextSegDataLayer, NYUDSegDataLayer,
                                             SIFTFlowSegDataLayer)}


def data_layer_ids(layer_param) -> list[str]:
    """The image ids a FCN data layer (its ``LayerParameter``) iterates over, read from
    its split file (solve.py's ``np.loadtxt(split file)`` for ``seg_tests``)."""
    pp = layer_param.python_param
    cls = DATA_LAYERS.get(pp.layer)
    if cls is None:
        raise ValueError(f"layer {layer_param.name!r}: {pp.layer!r} is not a FCN data layer "
                         f"({', '.join(DATA_LAYERS)})")
    params = parse_param_str(pp.param_str, pp.layer)
    try:
        return read_split(cls().split_path(params))
    except KeyError as exc:
        raise ValueError(f"{pp.layer}: param_str lacks the key {exc}") from None
