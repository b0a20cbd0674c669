"""Net surgery on the prototxt: a new classifier head, a deploy net, a train net, frozen layers.

What Caffe's flickr-style fine-tuning example does by hand in
``models/finetune_flickr_style/train_val.prototxt``:

* the classifier (the net's last ``InnerProduct``, ``fc8``) is replaced by one with
  the task's number of classes and a NEW name (``fc8_flickr``), so ``copy_from`` /
  ``-weights`` loads every other layer from the ImageNet model and leaves the head at
  its filler (gaussian std 0.01, bias 0);
* the head learns faster: ``param { lr_mult: 10 decay_mult: 1 } param { lr_mult: 20
  decay_mult: 0 }``;
* layers that should not learn get ``lr_mult: 0`` (Caffe then skips their backward).

>>> from caffe_compat.formats.prototxt import read_net
>>> net = read_net("deploy.prototxt").param                          # doctest: +SKIP
>>> cls = find_classifier(net)                                       # doctest: +SKIP
>>> deploy = deploy_net(net, cut_blob(net, "fc7"), head_spec(net, 5, "flowers"))  # doctest: +SKIP
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from caffe_compat.engine.graph import SOURCE_TYPES
from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

#: The flickr-style example's head multipliers: (weights, bias) lr_mult and decay_mult.
HEAD_LR_MULT = (10.0, 20.0)
HEAD_DECAY_MULT = (1.0, 0.0)
#: The example's head fillers.
HEAD_WEIGHT_STD = 0.01


class SurgeryError(CaffeCompatError):
    """The net cannot be cut or re-headed as asked (the message names the layer)."""


def task_name(text: str) -> str:
    """A layer-name-safe task name (``"My Flowers!"`` -> ``"my_flowers"``)."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return name or "task"


def find_classifier(net: caffe_pb2.NetParameter) -> int:
    """Index of the classifier to replace: the net's last InnerProduct layer."""
    for i in range(len(net.layer) - 1, -1, -1):
        if net.layer[i].type == "InnerProduct":
            return i
    raise SurgeryError(f"net {net.name!r} has no InnerProduct layer to replace with a new "
                       "classifier (fully convolutional classifiers are not supported)")


def input_layer(net: caffe_pb2.NetParameter) -> caffe_pb2.LayerParameter:
    """The net's single image input (an Input layer with one 4-d top)."""
    inputs = [lp for lp in net.layer if lp.type in SOURCE_TYPES]
    if len(inputs) != 1 or inputs[0].type != "Input" or len(inputs[0].top) != 1:
        raise SurgeryError(f"net {net.name!r} must have exactly one Input layer with one top "
                           "(a deploy prototxt); found "
                           + (", ".join(f"{lp.name} ({lp.type})" for lp in inputs) or "none"))
    lp = inputs[0]
    if not lp.input_param.shape or len(lp.input_param.shape[0].dim) != 4:
        raise SurgeryError(f'input layer "{lp.name}" must declare a 4-d shape (N, C, H, W)')
    return lp


def input_shape(net: caffe_pb2.NetParameter) -> tuple:
    """(C, H, W) of the net input."""
    dims = [int(d) for d in input_layer(net).input_param.shape[0].dim]
    return tuple(dims[1:])


@dataclass(frozen=True)
class Cut:
    """Where the kept part of a net ends: the blob the head reads and the index of the
    last layer that writes it (its in-place followers included)."""
    blob: str
    last: int


def _in_place_on(lp, blob: str) -> bool:
    return any(b == blob and j < len(lp.top) and lp.top[j] == blob
               for j, b in enumerate(lp.bottom))


def cut_blob(net: caffe_pb2.NetParameter, name: str) -> Cut:
    """Resolve a layer or blob ``name`` to the feature blob and the last layer to keep.

    A layer gives its first top (``fc7`` -> blob ``fc7``, ``relu7`` -> blob ``fc7``); a
    blob name is taken as is. The cut extends over later in-place layers on the blob
    (``relu7``, ``drop7``) until the first layer that consumes it out of place.
    """
    start = None
    for i, lp in enumerate(net.layer):
        if lp.name == name:
            if lp.type in SOURCE_TYPES:
                raise SurgeryError(f"--layer {name!r} is the net's input; pick a layer above it")
            if not lp.top:
                raise SurgeryError(f'layer "{name}" has no top blob')
            start, blob = i, lp.top[0]
            break
    if start is None:
        writers = [i for i, lp in enumerate(net.layer) if name in lp.top]
        if not writers:
            names = [lp.name for lp in net.layer if lp.type not in SOURCE_TYPES]
            raise SurgeryError(f"--layer {name!r} is no layer or blob of net {net.name!r}; "
                               f"layers: {', '.join(names)}")
        start, blob = writers[0], name
        if net.layer[start].type in SOURCE_TYPES:
            raise SurgeryError(f"--layer {name!r} is the net's input; pick a layer above it")
    last = start
    for j in range(start + 1, len(net.layer)):
        lp = net.layer[j]
        if _in_place_on(lp, blob):
            last = j
        elif blob in lp.bottom:
            break
    return Cut(blob, last)


def classifier_cut(net: caffe_pb2.NetParameter) -> Cut:
    """The cut just below the classifier: its bottom blob, every layer before it."""
    i = find_classifier(net)
    bottom = net.layer[i].bottom[0]
    writers = [j for j in range(i) if bottom in net.layer[j].top]
    return Cut(bottom, writers[-1])


def needed_layers(net: caffe_pb2.NetParameter, cut: Cut) -> list[int]:
    """Indices of the layers up to ``cut.last`` that ``cut.blob`` depends on (dead
    branches dropped, so the cut net has no stray outputs)."""
    needed = {cut.blob}
    keep = []
    for j in range(cut.last, -1, -1):
        lp = net.layer[j]
        if needed.intersection(lp.top):
            keep.append(j)
            needed.update(lp.bottom)
    return sorted(keep)


def _clean_copy(lp: caffe_pb2.LayerParameter) -> caffe_pb2.LayerParameter:
    out = caffe_pb2.LayerParameter()
    out.CopyFrom(lp)
    del out.include[:]
    del out.exclude[:]
    out.ClearField("phase")
    return out


@dataclass(frozen=True)
class HeadSpec:
    """The new classifier: layer (= top) name, number of classes, and the prob blob."""
    name: str
    num_output: int
    prob: str = "prob"


def head_spec(net: caffe_pb2.NetParameter, num_classes: int, task: str) -> HeadSpec:
    """``<classifier>_<task>`` (fc8 -> fc8_flowers), as the flickr example names it."""
    index = find_classifier(net)
    name = f"{net.layer[index].name}_{task_name(task)}"
    kept = net.layer[:index]        # the classifier and what follows it are replaced
    taken = {lp.name for lp in kept} | {t for lp in kept for t in lp.top}
    if name in taken or name == net.layer[index].name:
        raise SurgeryError(f"the new classifier's name {name!r} is already used in the net; "
                           "choose another --task")
    prob = "prob" if "prob" not in taken else f"prob_{task_name(task)}"
    return HeadSpec(name, int(num_classes), prob)


def head_layer(spec: HeadSpec, bottom: str) -> caffe_pb2.LayerParameter:
    """The new InnerProduct with the flickr example's multipliers and fillers."""
    lp = caffe_pb2.LayerParameter()
    lp.name, lp.type = spec.name, "InnerProduct"
    lp.bottom.append(bottom)
    lp.top.append(spec.name)
    for lr, decay in zip(HEAD_LR_MULT, HEAD_DECAY_MULT):
        ps = lp.param.add()
        ps.lr_mult, ps.decay_mult = lr, decay
    ip = lp.inner_product_param
    ip.num_output = spec.num_output
    ip.weight_filler.type = "gaussian"
    ip.weight_filler.std = HEAD_WEIGHT_STD
    ip.bias_filler.type = "constant"
    ip.bias_filler.value = 0.0
    return lp


def _body(net: caffe_pb2.NetParameter, cut: Cut) -> list[caffe_pb2.LayerParameter]:
    return [_clean_copy(net.layer[j]) for j in needed_layers(net, cut)]


def deploy_net(net: caffe_pb2.NetParameter, cut: Cut, spec: HeadSpec) -> caffe_pb2.NetParameter:
    """The deployable net: ``net`` up to ``cut``, the new head on ``cut.blob``, Softmax."""
    out = caffe_pb2.NetParameter()
    out.name = f"{net.name}_{spec.name}" if net.name else spec.name
    for lp in _body(net, cut):
        out.layer.add().CopyFrom(lp)
    out.layer.add().CopyFrom(head_layer(spec, cut.blob))
    prob = out.layer.add()
    prob.name, prob.type = spec.prob, "Softmax"
    prob.bottom.append(spec.name)
    prob.top.append(spec.prob)
    return out


def learnable_layers(net: caffe_pb2.NetParameter,
                     blob_counts: Mapping[str, int]) -> list[str]:
    """Names of the layers with learnable blobs, in net order."""
    return [lp.name for lp in net.layer if blob_counts.get(lp.name, 0)]


def freeze(lp: caffe_pb2.LayerParameter, num_blobs: int) -> None:
    """``lr_mult: 0`` and ``decay_mult: 0`` on each of the layer's ``num_blobs`` blobs
    (existing ParamSpecs keep their names, so weight sharing still holds)."""
    while len(lp.param) < num_blobs:
        lp.param.add()
    for ps in lp.param[:num_blobs]:
        ps.lr_mult = 0.0
        ps.decay_mult = 0.0


def train_net(deploy: caffe_pb2.NetParameter, spec: HeadSpec, data: caffe_pb2.LayerParameter,
              label: str, frozen: Sequence[str] = (),
              blob_counts: Optional[Mapping[str, int]] = None) -> caffe_pb2.NetParameter:
    """The TRAIN net for the solver: ``data`` (an ImageData layer with tops
    [image blob, ``label``]) instead of the Input layer, the deploy body with the layers
    named in ``frozen`` at lr_mult 0, BatchNorm on its stored statistics
    (``use_global_stats``, batches are small when fine-tuning), the head, and
    ``SoftmaxWithLoss`` instead of the Softmax."""
    counts = dict(blob_counts or {})
    out = caffe_pb2.NetParameter()
    out.name = deploy.name
    image_blob = input_layer(deploy).top[0]
    if list(data.top) != [image_blob, label]:
        raise SurgeryError(f"data layer tops must be [{image_blob!r}, {label!r}], got "
                           f"{list(data.top)}")
    out.layer.add().CopyFrom(data)
    frozen = set(frozen)
    for lp in deploy.layer:
        if lp.type == "Input" or lp.name == spec.prob:
            continue
        layer = out.layer.add()
        layer.CopyFrom(lp)
        if lp.name in frozen:
            freeze(layer, counts.get(lp.name, 0))
        if lp.type == "BatchNorm":
            layer.batch_norm_param.use_global_stats = True
    loss = out.layer.add()
    loss.name, loss.type = "loss", "SoftmaxWithLoss"
    loss.bottom.extend([spec.name, label])
    loss.top.append("loss")
    return out


def image_data_layer(name: str, tops: Sequence[str], image_data: caffe_pb2.ImageDataParameter,
                     transform: caffe_pb2.TransformationParameter) -> caffe_pb2.LayerParameter:
    """An ImageData layer (tops: image, label)."""
    lp = caffe_pb2.LayerParameter()
    lp.name, lp.type = name, "ImageData"
    lp.top.extend(tops)
    lp.image_data_param.CopyFrom(image_data)
    lp.transform_param.CopyFrom(transform)
    return lp


def unused_blob_name(net: caffe_pb2.NetParameter, wanted: str) -> str:
    """``wanted``, or ``wanted_<n>`` when the net already has a blob of that name."""
    taken = {t for lp in net.layer for t in list(lp.top) + list(lp.bottom)}
    name, n = wanted, 1
    while name in taken:
        name, n = f"{wanted}_{n}", n + 1
    return name
