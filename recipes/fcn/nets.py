"""NetSpec builders of FCN's train/val nets, as each ``<model>/net.py`` of
fcn.berkeleyvision.org writes them.

Every builder returns the ``NetParameter`` whose ``str()`` is that model's
``train.prototxt``/``val.prototxt`` (``trainval``/``test`` for NYUDv2 and SIFT Flow):
a Python data layer, the VGG-16 (or AlexNet) trunk padded by 100 with fc6/fc7 as
convolutions, 1x1 score layers, fixed (``lr_mult: 0``) bias-free ``Deconvolution``
upsampling, skip fusions cropped at the offsets coord_map computes (5, 9, 31 for
voc-fcn8s), and an unnormalised ``SoftmaxWithLoss`` ignoring 255.

>>> from caffe_compat.recipes.fcn import nets
>>> train = nets.voc_fcn(8, "train")
>>> [(l.name, list(l.crop_param.offset)) for l in train.layer if l.type == "Crop"]
[('score_pool4c', [5]), ('score_pool3c', [9]), ('score', [31])]
>>> train.layer[0].python_param.module, train.layer[0].python_param.layer
('voc_layers', 'SBDDSegDataLayer')

The data-layer module defaults to the original name (``voc_layers``, ...), so the
text equals the original files; pass ``module=LAYERS_MODULE`` for prototxts that find
caffe-compat's layers without :func:`caffe_compat.recipes.fcn.install_layer_modules`.
:func:`make_net` writes a model's pair of files, :data:`MODELS` describes each model
(the originals plus ``shapes-fcn8s``, the demo's small FCN-8s trained from scratch on
:mod:`caffe_compat.recipes.shapes` scenes; :func:`shapes_fcn_deploy` is its deploy net).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from caffe_compat.coord_map import crop
from caffe_compat.net_spec import NetSpec, layers as L, params as P
from caffe_compat.proto import caffe_pb2

#: The module path of caffe-compat's FCN data layers, for ``python_param.module``.
LAYERS_MODULE = "caffe_compat.recipes.fcn.layers"
#: The mean voc-fcn*/net.py put in the data layer's param_str.
PYDATA_MEAN = (104.00699, 116.66877, 122.67892)
#: Weights 1 (decayed), biases 2 (not decayed).
LEARNED = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
FROZEN = [dict(lr_mult=0)]


# ---------------------------------------------------------------------------- pieces
def conv_relu(bottom, nout: int, ks: int = 3, stride: int = 1, pad: int = 1):
    """VGG's learned convolution and its in-place ReLU (net.py's ``conv_relu``)."""
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         param=LEARNED)
    return conv, L.ReLU(conv, in_place=True)


def max_pool(bottom, ks: int = 2, stride: int = 2):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def score_layer(bottom, classes: int):
    """A learned 1x1 class-score convolution (score_fr, score_pool4, score_pool3)."""
    return L.Convolution(bottom, num_output=classes, kernel_size=1, pad=0, param=LEARNED)


def upsample(bottom, classes: int, kernel_size: int, stride: int):
    """A fixed, bias-free Deconvolution (``surgery.interp`` makes it bilinear)."""
    return L.Deconvolution(bottom, convolution_param=dict(num_output=classes,
                                                          kernel_size=kernel_size,
                                                          stride=stride, bias_term=False),
                           param=FROZEN)


def softmax_loss(score, label, normalize: bool = False):
    """FCN's loss: summed (``normalize: false``) softmax loss, void 255 ignored
    (voc-fcn-alexnet's net.py is the one that averages: ``normalize: true``)."""
    return L.SoftmaxWithLoss(score, label, loss_param=dict(normalize=normalize, ignore_label=255))


def vgg16_trunk(n: NetSpec, data, s: str = "", first_conv: str = "conv1_1",
                dropout: bool = True):
    """conv1_1 (pad 100) .. pool5, fc6 (7x7) and fc7 (1x1) as convolutions; names end
    in ``s`` (nyud-fcn32s-color-hha's ``modality_fcn``). Returns the top the score
    layer reads (drop7, or relu7 with ``dropout=False``, as net.py before drop6/7)."""
    n[first_conv + s], n["relu1_1" + s] = conv_relu(data, 64, pad=100)
    n["conv1_2" + s], n["relu1_2" + s] = conv_relu(n["relu1_1" + s], 64)
    n["pool1" + s] = max_pool(n["relu1_2" + s])
    x = n["pool1" + s]
    for stage, (convs, width) in enumerate(((2, 128), (3, 256), (3, 512), (3, 512)), start=2):
        for i in range(1, convs + 1):
            n[f"conv{stage}_{i}{s}"], n[f"relu{stage}_{i}{s}"] = conv_relu(x, width)
            x = n[f"relu{stage}_{i}{s}"]
        n[f"pool{stage}{s}"] = max_pool(x)
        x = n[f"pool{stage}{s}"]
    n["fc6" + s], n["relu6" + s] = conv_relu(x, 4096, ks=7, pad=0)
    x = n["relu6" + s]
    if dropout:
        n["drop6" + s] = x = L.Dropout(x, dropout_ratio=0.5, in_place=True)
    n["fc7" + s], n["relu7" + s] = conv_relu(x, 4096, ks=1, pad=0)
    x = n["relu7" + s]
    if dropout:
        n["drop7" + s] = x = L.Dropout(x, dropout_ratio=0.5, in_place=True)
    return x


def score_head(n: NetSpec, data, top, classes: int, stride: int, s: str = "",
               scale_skips: bool = False) -> None:
    """score_fr, the 32s/16s/8s upsampling and skip fusions, ``score`` cropped to data.

    Layer names end in ``s`` (SIFT Flow's ``_sem``/``_geo`` heads); ``scale_skips``
    puts voc-fcn8s-atonce's fixed Scale layers (0.01, 0.0001) on pool4/pool3.
    """
    n["score_fr" + s] = score_layer(top, classes)
    if stride == 32:
        n["upscore" + s] = upsample(n["score_fr" + s], classes, 64, 32)
        n["score" + s] = crop(n["upscore" + s], data)
        return
    n["upscore2" + s] = upsample(n["score_fr" + s], classes, 4, 2)
    pool4 = n["pool4"]
    if scale_skips:   # scale pool4 skip for compatibility
        n["scale_pool4" + s] = L.Scale(pool4, filler=dict(type="constant", value=0.01),
                                       param=FROZEN)
        pool4 = n["scale_pool4" + s]
    n["score_pool4" + s] = score_layer(pool4, classes)
    n["score_pool4" + s + "c"] = crop(n["score_pool4" + s], n["upscore2" + s])
    n["fuse_pool4" + s] = L.Eltwise(n["upscore2" + s], n["score_pool4" + s + "c"],
                                    operation=P.Eltwise.SUM)
    if stride == 16:
        n["upscore16" + s] = upsample(n["fuse_pool4" + s], classes, 32, 16)
        n["score" + s] = crop(n["upscore16" + s], data)
        return
    if stride != 8:
        raise ValueError(f"FCN strides are 32, 16 or 8, not {stride}")
    n["upscore_pool4" + s] = upsample(n["fuse_pool4" + s], classes, 4, 2)
    pool3 = n["pool3"]
    if scale_skips:   # scale pool3 skip for compatibility
        n["scale_pool3" + s] = L.Scale(pool3, filler=dict(type="constant", value=0.0001),
                                       param=FROZEN)
        pool3 = n["scale_pool3" + s]
    n["score_pool3" + s] = score_layer(pool3, classes)
    n["score_pool3" + s + "c"] = crop(n["score_pool3" + s], n["upscore_pool4" + s])
    n["fuse_pool3" + s] = L.Eltwise(n["upscore_pool4" + s], n["score_pool3" + s + "c"],
                                    operation=P.Eltwise.SUM)
    n["upscore8" + s] = upsample(n["fuse_pool3" + s], classes, 16, 8)
    n["score" + s] = crop(n["upscore8" + s], data)


def python_data(module: str, layer: str, ntop: int, params: dict):
    return L.Python(module=module, layer=layer, ntop=ntop, param_str=str(params))


# ---------------------------------------------------------------------------- nets
def voc_data(n: NetSpec, split: str, sbdd_dir: Optional[str], voc_dir: str,
             module: str) -> None:
    """voc-fcn*/net.py's data layer: SBDD for ``train`` (VOC when ``sbdd_dir`` is
    None), VOC for the other splits (seg11valid)."""
    pydata_params = dict(split=split, mean=PYDATA_MEAN, seed=1337)
    if split == "train" and sbdd_dir is not None:
        pydata_params["sbdd_dir"] = sbdd_dir
        pylayer = "SBDDSegDataLayer"
    else:
        pydata_params["voc_dir"] = voc_dir
        pylayer = "VOCSegDataLayer"
    n.data, n.label = python_data(module, pylayer, 2, pydata_params)


def voc_fcn(stride: int, split: str, *, sbdd_dir: Optional[str] = "../data/sbdd/dataset",
            voc_dir: str = "../data/pascal/VOC2011", module: str = "voc_layers",
            atonce: bool = False, dropout: bool = True) -> caffe_pb2.NetParameter:
    """voc-fcn32s/16s/8s (``atonce=True``: voc-fcn8s-atonce), 21 classes.

    ``dropout=False`` gives the net.py of before drop6/drop7 (the repository's older
    voc-fcn8s/train.prototxt)."""
    n = NetSpec()
    voc_data(n, split, sbdd_dir, voc_dir, module)
    top = vgg16_trunk(n, n.data, dropout=dropout)
    score_head(n, n.data, top, 21, stride, scale_skips=atonce)
    n.loss = softmax_loss(n.score, n.label)
    return n.to_proto()


def voc_fcn_alexnet(split: str, *, sbdd_dir: Optional[str] = "../../data/sbdd/dataset",
                    voc_dir: str = "../../data/pascal/VOC2011",
                    module: str = "voc_layers") -> caffe_pb2.NetParameter:
    """voc-fcn-alexnet: the CaffeNet trunk padded by 100, fc6 as 6x6, upscore 63/32."""
    n = NetSpec()
    voc_data(n, split, sbdd_dir, voc_dir, module)

    def conv_relu_ax(bottom, ks, nout, stride=1, pad=0, group=1):
        conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout,
                             pad=pad, group=group)
        return conv, L.ReLU(conv, in_place=True)

    n.conv1, n.relu1 = conv_relu_ax(n.data, 11, 96, stride=4, pad=100)
    n.pool1 = max_pool(n.relu1, 3, stride=2)
    n.norm1 = L.LRN(n.pool1, local_size=5, alpha=1e-4, beta=0.75)
    n.conv2, n.relu2 = conv_relu_ax(n.norm1, 5, 256, pad=2, group=2)
    n.pool2 = max_pool(n.relu2, 3, stride=2)
    n.norm2 = L.LRN(n.pool2, local_size=5, alpha=1e-4, beta=0.75)
    n.conv3, n.relu3 = conv_relu_ax(n.norm2, 3, 384, pad=1)
    n.conv4, n.relu4 = conv_relu_ax(n.relu3, 3, 384, pad=1, group=2)
    n.conv5, n.relu5 = conv_relu_ax(n.relu4, 3, 256, pad=1, group=2)
    n.pool5 = max_pool(n.relu5, 3, stride=2)
    n.fc6, n.relu6 = conv_relu_ax(n.pool5, 6, 4096)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = conv_relu_ax(n.drop6, 1, 4096)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = score_layer(n.drop7, 21)
    n.upscore = upsample(n.score_fr, 21, 63, 32)
    n.score = crop(n.upscore, n.data)
    n.loss = softmax_loss(n.score, n.label, normalize=True)
    return n.to_proto()


def pascalcontext_fcn(stride: int, split: str, *, voc_dir: str = "../../data/pascal",
                      context_dir: str = "../../data/pascal-context",
                      module: str = "pascalcontext_layers") -> caffe_pb2.NetParameter:
    """pascalcontext-fcn32s/16s/8s: 60 classes (59 + background)."""
    n = NetSpec()
    n.data, n.label = python_data(module, "PASCALContextSegDataLayer", 2,
                                  dict(voc_dir=voc_dir, context_dir=context_dir, split=split,
                                       seed=1337))
    score_head(n, n.data, vgg16_trunk(n, n.data), 60, stride)
    n.loss = softmax_loss(n.score, n.label)
    return n.to_proto()


#: NYUDv2 modality -> the data layer's tops (nyud-fcn32s-*/net.py's make_net).
NYUD_TOPS = {"color": ["color", "label"], "hha": ["hha", "label"],
             "color-d": ["color", "depth", "label"], "color-hha": ["color", "hha", "label"]}


def nyud_fcn32s(modality: str, split: str, *, nyud_dir: str = "../data/nyud",
                module: str = "nyud_layers") -> caffe_pb2.NetParameter:
    """nyud-fcn32s-{color,hha,color-d,color-hha}: 40 classes, stride 32; color-d fuses
    early (Concat -> conv1_1_bgrd), color-hha late (two trunks, scores averaged)."""
    if modality not in NYUD_TOPS:
        raise ValueError(f"unknown NYUDv2 modality {modality!r}; one of {sorted(NYUD_TOPS)}")
    tops = NYUD_TOPS[modality]
    n = NetSpec()
    data = python_data(module, "NYUDSegDataLayer", len(tops),
                       dict(nyud_dir=nyud_dir, split=split, tops=tops, seed=1337))
    if modality in ("color", "hha"):
        n.data, n.label = data
        score_head(n, n.data, vgg16_trunk(n, n.data), 40, 32)
    elif modality == "color-d":
        n.color, n.depth, n.label = data
        n.data = L.Concat(n.color, n.depth)
        score_head(n, n.data, vgg16_trunk(n, n.data, first_conv="conv1_1_bgrd"), 40, 32)
    else:
        n.color, n.hha, n.label = data
        for m in ("color", "hha"):
            n["score_fr" + m] = score_layer(vgg16_trunk(n, n[m], s=m), 40)
        n.score_fused = L.Eltwise(n.score_frcolor, n.score_frhha, operation=P.Eltwise.SUM,
                                  coeff=[0.5, 0.5])
        n.upscore = upsample(n.score_fused, 40, 64, 32)
        n.score = crop(n.upscore, n.color)
    n.loss = softmax_loss(n.score, n.label)
    return n.to_proto()


def siftflow_fcn(stride: int, split: str, *, siftflow_dir: str = "../data/sift-flow",
                 module: str = "siftflow_layers") -> caffe_pb2.NetParameter:
    """siftflow-fcn32s/16s/8s: one trunk, a semantic (33 classes, loss ``loss``) and a
    geometric (3 classes, loss ``loss_geo``) head."""
    n = NetSpec()
    n.data, n.sem, n.geo = python_data(module, "SIFTFlowSegDataLayer", 3,
                                       dict(siftflow_dir=siftflow_dir, split=split, seed=1337))
    top = vgg16_trunk(n, n.data)
    score_head(n, n.data, top, 33, stride, s="_sem")
    n.loss = softmax_loss(n.score_sem, n.sem)   # "loss" to make score happy (o.w. loss_sem)
    score_head(n, n.data, top, 3, stride, s="_geo")
    n.loss_geo = softmax_loss(n.score_geo, n.geo)
    return n.to_proto()


#: The shapes FCN's trunk: channels of its five conv + pool stages, and of fc6/fc7.
SHAPES_WIDTHS = (16, 32, 48, 64, 48)
SHAPES_FC = 64
#: The shapes FCN's classes: background, circle, square, triangle.
SHAPES_CLASSES = 4


def small_trunk(n: NetSpec, data, widths: Sequence[int] = SHAPES_WIDTHS, fc: int = SHAPES_FC,
                dropout: bool = True):
    """A narrow trunk with VGG's layout and names: conv1_1 (pad 100) .. pool5, one 3x3
    convolution per stage (``widths``), fc6 (7x7) and fc7 (1x1) as convolutions, MSRA
    fillers (it trains from scratch). Returns the top the score layer reads."""
    filler = dict(type="msra")
    x = data
    for stage, width in enumerate(widths, start=1):
        # conv1_1 sees BGR 0..255 minus the mean (std ~60): its MSRA scale divided by 60
        first = dict(type="gaussian", std=float(np.sqrt(2.0 / 27) / 60))
        conv = L.Convolution(x, kernel_size=3, num_output=width, pad=100 if stage == 1 else 1,
                             weight_filler=first if stage == 1 else filler, param=LEARNED)
        n[f"conv{stage}_1"], n[f"relu{stage}_1"] = conv, L.ReLU(conv, in_place=True)
        n[f"pool{stage}"] = x = max_pool(n[f"relu{stage}_1"])
    for name, ks in (("fc6", 7), ("fc7", 1)):
        conv = L.Convolution(x, kernel_size=ks, num_output=fc, pad=0, weight_filler=filler,
                             param=LEARNED)
        relu = "relu" + name[2:]
        n[name], n[relu] = conv, L.ReLU(conv, in_place=True)
        x = n[relu]
        if dropout:
            n["drop" + name[2:]] = x = L.Dropout(x, dropout_ratio=0.5, in_place=True)
    return x


def shapes_fcn(split: str, *, voc_dir: str = "shapes-voc", module: str = "voc_layers",
               stride: int = 8) -> caffe_pb2.NetParameter:
    """shapes-fcn8s: :func:`small_trunk` and FCN-8s's head (skips from pool4 and pool3,
    bilinear ``up*`` layers, crops at the offsets coord_map computes) over 4 classes
    (background and the three shapes of :mod:`caffe_compat.recipes.shapes.scenes`),
    VOCSegDataLayer on ``voc_dir``'s ``split``; the loss is normalised (as
    voc-fcn-alexnet's, for plain SGD from scratch)."""
    n = NetSpec()
    voc_data(n, split, None, voc_dir, module)
    score_head(n, n.data, small_trunk(n, n.data), SHAPES_CLASSES, stride)
    n.loss = softmax_loss(n.score, n.label, normalize=True)
    return n.to_proto()


def shapes_fcn_deploy(stride: int = 8, shape: Sequence[int] = (1, 3, 240, 320)
                      ) -> caffe_pb2.NetParameter:
    """shapes-fcn8s's deploy net: an Input ``data`` of ``shape``, no dropout, no loss."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    score_head(n, n.data, small_trunk(n, n.data, dropout=False), SHAPES_CLASSES, stride)
    proto = n.to_proto()
    proto.name = f"shapes-fcn{stride}s"
    return proto


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class FCNModel:
    """How one FCN model is built, trained and scored.

    ``build(split, module=..., **dataset_dirs)`` gives its net; ``splits`` are its
    (train, val) split names and ``files`` the prototxt names make_net writes;
    ``dataset_dirs`` the builder's directory keywords; ``scores`` the
    (score blob, label blob) pairs seg_tests evaluates; ``init`` the zoo model whose
    weights ``solve`` transplants (None: the net's own fillers, training from scratch).
    """
    name: str
    build: Callable[..., caffe_pb2.NetParameter]
    splits: tuple = ("train", "seg11valid")
    files: tuple = ("train.prototxt", "val.prototxt")
    dataset_dirs: tuple = ("sbdd_dir", "voc_dir")
    scores: tuple = (("score", "label"),)
    init: Optional[str] = "vgg16"


_CONTEXT = dict(splits=("train", "val"), dataset_dirs=("voc_dir", "context_dir"))
_NYUD = dict(splits=("trainval", "test"), files=("trainval.prototxt", "test.prototxt"),
             dataset_dirs=("nyud_dir",))
_SIFT = dict(splits=("trainval", "test"), files=("trainval.prototxt", "test.prototxt"),
             dataset_dirs=("siftflow_dir",), scores=(("score_sem", "sem"), ("score_geo", "geo")))

MODELS: dict[str, FCNModel] = {m.name: m for m in [
    FCNModel("voc-fcn32s", partial(voc_fcn, 32)),
    FCNModel("voc-fcn16s", partial(voc_fcn, 16)),
    FCNModel("voc-fcn8s", partial(voc_fcn, 8)),
    FCNModel("voc-fcn8s-atonce", partial(voc_fcn, 8, atonce=True)),
    FCNModel("voc-fcn-alexnet", voc_fcn_alexnet, init="bvlc_alexnet"),
    FCNModel("pascalcontext-fcn32s", partial(pascalcontext_fcn, 32), **_CONTEXT),
    FCNModel("pascalcontext-fcn16s", partial(pascalcontext_fcn, 16), **_CONTEXT),
    FCNModel("pascalcontext-fcn8s", partial(pascalcontext_fcn, 8), **_CONTEXT),
    FCNModel("nyud-fcn32s-color", partial(nyud_fcn32s, "color"), **_NYUD),
    FCNModel("nyud-fcn32s-hha", partial(nyud_fcn32s, "hha"), **_NYUD),
    FCNModel("nyud-fcn32s-color-d", partial(nyud_fcn32s, "color-d"), **_NYUD),
    FCNModel("nyud-fcn32s-color-hha", partial(nyud_fcn32s, "color-hha"), **_NYUD),
    FCNModel("siftflow-fcn32s", partial(siftflow_fcn, 32), **_SIFT),
    FCNModel("siftflow-fcn16s", partial(siftflow_fcn, 16), **_SIFT),
    FCNModel("siftflow-fcn8s", partial(siftflow_fcn, 8), **_SIFT),
    FCNModel("shapes-fcn8s", shapes_fcn, splits=("train", "val"), dataset_dirs=("voc_dir",),
             init=None),
]}


def get_model(name: str) -> FCNModel:
    """The :class:`FCNModel` called ``name`` (ValueError listing the known ones)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown FCN model {name!r}; known: {', '.join(MODELS)}") from None


def build(name: str, split: str, **kwargs) -> caffe_pb2.NetParameter:
    """``name``'s net for ``split`` (keywords: dataset dirs, ``module``)."""
    return get_model(name).build(split, **kwargs)


def make_net(name: str, folder: str = ".", splits: Optional[Sequence[str]] = None,
             **kwargs) -> list[str]:
    """Write ``name``'s train and val prototxts into ``folder`` as its net.py's
    ``make_net()`` does (``splits`` overrides the model's (train, val) split names);
    returns their paths."""
    model = get_model(name)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for split, file in zip(splits or model.splits, model.files):
        path = os.path.join(folder, file)
        with open(path, "w") as f:
            f.write(str(model.build(split, **kwargs)))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- shapes
def read_net_param(path: str) -> caffe_pb2.NetParameter:
    """A prototxt file (any Caffe generation, upgraded) as a NetParameter."""
    from caffe_compat.formats.prototxt import read_net
    return read_net(str(path)).param


def infer_shapes(prototxt, input_shapes: Mapping[str, Sequence[int]],
                 phase: int = caffe_pb2.TEST) -> dict[str, tuple]:
    """Every blob's shape for these input shapes, by the layers' own Caffe shape rules,
    WITHOUT allocating any weights (``CaffeNet.reshape`` gives the same shapes but
    builds the whole net first).

    ``prototxt``: a path, prototxt text or NetParameter. Only nets whose sources are
    ``Input`` layers (deploy nets).

    >>> infer_shapes("prototxt/voc-fcn8s/deploy.prototxt", {"data": (1, 3, 375, 500)})["score"]
    ... # doctest: +SKIP
    (1, 21, 375, 500)
    """
    from caffe_compat.engine.build import instantiate_layer, shape_layer
    from caffe_compat.engine.graph import build_graph
    from caffe_compat.engine.network import is_source_layer
    from caffe_compat.formats.net_filter import filter_net
    from caffe_compat.formats.prototxt import NetDefinition, read_net
    if isinstance(prototxt, caffe_pb2.NetParameter):
        definition = NetDefinition(prototxt, None, [None] * len(prototxt.layer))
    else:
        definition = read_net(str(prototxt))
    definition = filter_net(definition, phase)
    graph = build_graph(definition.param, definition.path, definition.layer_lines)
    given = {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
    shapes: dict[str, tuple] = {}
    for node in graph.layers:
        layer = instantiate_layer(node.param, phase, node.source)
        if is_source_layer(layer):
            declared = shape_layer(layer, [], first=True)
            for top, s in zip(node.tops, declared):
                shapes[top] = given.get(top, tuple(s))
            continue
        tops = shape_layer(layer, [shapes[b] for b in node.bottoms], first=True)
        shapes.update(zip(node.tops, (tuple(t) for t in tops)))
    unknown = set(given) - set(shapes)
    if unknown:
        raise KeyError(f"not blobs of the net: {sorted(unknown)}")
    return shapes
