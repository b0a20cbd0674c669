"""Upgrading legacy Caffe nets and solvers, as Caffe's ``src/caffe/util/upgrade_proto.cpp``.

Works on messages, so nets read from a prototxt and from a ``.caffemodel`` are
upgraded alike::

    from caffe_compat.formats.upgrade import upgrade_net, upgrade_solver

    changed = upgrade_net(net_param)       # in place; True if anything was upgraded
    upgrade_solver(solver_param)           # solver_type: NESTEROV -> type: "Nesterov"

``upgrade_net_as_needed`` applies the steps in Caffe's order (``UpgradeNetAsNeeded``):

1. V0 -> V1 (``layers { layer { type: "conv" ... } }``; ``padding`` layers folded
   into the next conv/pool's ``pad``),
2. data-layer transform fields -> ``transform_param`` (on the V1 ``layers`` list),
3. V1 -> V2 (enum types -> type strings, ``blobs_lr``/``weight_decay``/named
   ``param`` -> ``param { lr_mult decay_mult name share_mode }``),
4. net ``input`` / ``input_dim`` / ``input_shape`` -> an ``Input`` layer named
   "input" placed first,
5. BatchNorm layers with three ``param`` specs -> their lr_mult/decay_mult set to 0.

Problems Caffe only logs (``LOG(ERROR)``, e.g. a V0 ``num_output`` on a ReLU) go to
``report`` (default: a :class:`UpgradeWarning`); the cases Caffe aborts on
(``LOG(FATAL)``/``CHECK``) raise :class:`NetUpgradeError`. ``LayerOrigins`` lets a
caller (the prototxt reader) keep per-layer data such as source lines in step
with layers that are removed, merged or inserted.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

__all__ = [
    "NetUpgradeError", "UpgradeWarning", "LayerOrigins",
    "net_needs_upgrade", "net_needs_v0_to_v1_upgrade", "net_needs_v1_to_v2_upgrade",
    "net_needs_data_upgrade", "net_needs_input_upgrade", "net_needs_batch_norm_upgrade",
    "upgrade_v0_net", "upgrade_net_data_transformation", "upgrade_v1_net",
    "upgrade_net_input", "upgrade_net_batch_norm", "upgrade_net_as_needed", "upgrade_net",
    "v0_layer_type_to_v1", "v1_layer_type_name",
    "solver_needs_type_upgrade", "upgrade_solver_type", "upgrade_solver",
    "upgrade_snapshot_prefix",
]

V1 = caffe_pb2.V1LayerParameter
Report = Callable[[str, Any], None]


class NetUpgradeError(CaffeCompatError):
    """A legacy net cannot be upgraded (where Caffe aborts with LOG(FATAL) / CHECK).

    ``origin`` is the :class:`LayerOrigins` entry of the layer involved (e.g. its
    source line), or None.
    """

    def __init__(self, reason: str, origin: Any = None):
        self.reason, self.origin = reason, origin
        super().__init__(reason)


class UpgradeWarning(UserWarning):
    """Caffe upgraded a legacy net but logged a problem (a setting was dropped)."""


@dataclass
class LayerOrigins:
    """Per-layer data (e.g. source lines) kept in step with the upgrade.

    ``layers`` is parallel to ``net.layers`` (legacy V0/V1 list), ``layer`` to
    ``net.layer`` (V2 list); ``input`` is the entry to give an ``Input`` layer made
    from the net's ``input`` fields. After ``upgrade_net_as_needed``, ``layer`` is
    parallel to the upgraded ``net.layer``.
    """
    layers: list = field(default_factory=list)
    layer: list = field(default_factory=list)
    input: Any = None

    @classmethod
    def blank(cls, net_param: caffe_pb2.NetParameter) -> "LayerOrigins":
        return cls(layers=[None] * len(net_param.layers), layer=[None] * len(net_param.layer))


def _warn(message: str, origin: Any) -> None:
    where = f" (layer at {origin})" if origin is not None else ""
    warnings.warn(message + where, UpgradeWarning, stacklevel=4)


def _origin(origins: Optional[list], i: int) -> Any:
    return origins[i] if origins is not None and i < len(origins) else None


# ---------------------------------------------------------------------------
# Which upgrades a net needs (Caffe's NetNeeds* functions)
# ---------------------------------------------------------------------------

def net_needs_v0_to_v1_upgrade(net_param: caffe_pb2.NetParameter) -> bool:
    """Any ``layers`` entry holds a V0 ``layer { }`` (NetNeedsV0ToV1Upgrade)."""
    return any(l.HasField("layer") for l in net_param.layers)


def net_needs_v1_to_v2_upgrade(net_param: caffe_pb2.NetParameter) -> bool:
    """The net uses the V1 ``layers`` list (NetNeedsV1ToV2Upgrade)."""
    return len(net_param.layers) > 0


_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")
# V1 data layer types whose own *_param once held the transform fields.
_DATA_TRANSFORM_LAYERS = ((V1.DATA, "data_param"), (V1.IMAGE_DATA, "image_data_param"),
                          (V1.WINDOW_DATA, "window_data_param"))


def net_needs_data_upgrade(net_param: caffe_pb2.NetParameter) -> bool:
    """A V1 Data/ImageData/WindowData layer sets scale/mean_file/crop_size/mirror in its
    own parameters instead of ``transform_param`` (NetNeedsDataUpgrade)."""
    for layer in net_param.layers:
        for layer_type, param_name in _DATA_TRANSFORM_LAYERS:
            if layer.type == layer_type:
                sub = getattr(layer, param_name)
                if any(sub.HasField(f) for f in _TRANSFORM_FIELDS):
                    return True
    return False


def net_needs_input_upgrade(net_param: caffe_pb2.NetParameter) -> bool:
    """The net declares net-level ``input`` fields (NetNeedsInputUpgrade)."""
    return len(net_param.input) > 0


def net_needs_batch_norm_upgrade(net_param: caffe_pb2.NetParameter) -> bool:
    """A BatchNorm layer declares exactly three ``param`` specs (NetNeedsBatchNormUpgrade)."""
    return any(l.type == "BatchNorm" and len(l.param) == 3 for l in net_param.layer)


def net_needs_upgrade(net_param: caffe_pb2.NetParameter) -> bool:
    """Any of the five upgrades applies (Caffe's NetNeedsUpgrade)."""
    return (net_needs_v0_to_v1_upgrade(net_param) or net_needs_v1_to_v2_upgrade(net_param)
            or net_needs_data_upgrade(net_param) or net_needs_input_upgrade(net_param)
            or net_needs_batch_norm_upgrade(net_param))


# ---------------------------------------------------------------------------
# V0 -> V1
# ---------------------------------------------------------------------------

_V0_TO_V1_TYPE = {
    "accuracy": V1.ACCURACY, "bnll": V1.BNLL, "concat": V1.CONCAT, "conv": V1.CONVOLUTION,
    "data": V1.DATA, "dropout": V1.DROPOUT, "euclidean_loss": V1.EUCLIDEAN_LOSS,
    "flatten": V1.FLATTEN, "hdf5_data": V1.HDF5_DATA, "hdf5_output": V1.HDF5_OUTPUT,
    "im2col": V1.IM2COL, "images": V1.IMAGE_DATA, "infogain_loss": V1.INFOGAIN_LOSS,
    "innerproduct": V1.INNER_PRODUCT, "lrn": V1.LRN,
    "multinomial_logistic_loss": V1.MULTINOMIAL_LOGISTIC_LOSS, "pool": V1.POOLING,
    "relu": V1.RELU, "sigmoid": V1.SIGMOID, "softmax": V1.SOFTMAX,
    "softmax_loss": V1.SOFTMAX_LOSS, "split": V1.SPLIT, "tanh": V1.TANH,
    "window_data": V1.WINDOW_DATA,
}


def v0_layer_type_to_v1(type_name: str, origin: Any = None) -> int:
    """V0 type string -> V1 enum (UpgradeV0LayerType): ``"conv"`` -> ``CONVOLUTION``."""
    try:
        return _V0_TO_V1_TYPE[type_name]
    except KeyError:
        raise NetUpgradeError(f'unknown V0 layer type "{type_name}"', origin) from None


def _fold_padding_layers(net_param: caffe_pb2.NetParameter, origins: Optional[list]):
    """UpgradeV0PaddingLayers: drop V0 ``padding`` layers and give their ``pad`` to the
    conv/pool layer that reads their output. Returns (connections, their origins)."""
    source = list(net_param.layers)
    kept, kept_origins = [], []
    last_top = {name: -1 for name in net_param.input}   # blob -> index of producing layer
    for i, conn in enumerate(source):
        v0 = conn.layer
        origin = _origin(origins, i)
        if v0.type != "padding":
            copy = V1()
            copy.CopyFrom(conn)
            kept.append(copy)
            kept_origins.append(origin)
        for j, blob in enumerate(conn.bottom):
            if blob not in last_top:
                raise NetUpgradeError(
                    f'unknown blob input "{blob}" to layer "{v0.name or conn.name}"', origin)
            producer = last_top[blob]
            if producer == -1:
                continue
            pad_layer = source[producer]
            if pad_layer.layer.type == "padding":
                # Caffe's CHECKs: only a single-input conv/pool may read a padding
                # layer, and the padding layer has one bottom and one top.
                if v0.type not in ("conv", "pool"):
                    raise NetUpgradeError(
                        "padding layer input to non-convolutional / non-pooling layer "
                        f'type "{v0.type}"', origin)
                if len(conn.bottom) != 1:
                    raise NetUpgradeError("Conv Layer takes a single blob as input.", origin)
                if len(pad_layer.bottom) != 1:
                    raise NetUpgradeError("Padding Layer takes a single blob as input.",
                                          _origin(origins, producer))
                if len(pad_layer.top) != 1:
                    raise NetUpgradeError("Padding Layer produces a single blob as output.",
                                          _origin(origins, producer))
                kept[-1].layer.pad = pad_layer.layer.pad
                kept[-1].bottom[j] = pad_layer.bottom[0]
        for blob in conn.top:
            last_top[blob] = i
    return kept, kept_origins


# V0 settings that move into one sub-message, by V0 type: field -> {type: (param, field)}
_V0_ROUTES = {
    "num_output": {"conv": ("convolution_param", "num_output"),
                   "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"),
                 "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"),
                    "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"),
                   "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"),
               "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "scale": {None: ("transform_param", "scale")},
    "meanfile": {None: ("transform_param", "mean_file")},
    "batchsize": {"data": ("data_param", "batch_size"),
                  "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "cropsize": {None: ("transform_param", "crop_size")},
    "mirror": {None: ("transform_param", "mirror")},
    "rand_skip": {"data": ("data_param", "rand_skip"),
                  "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
}
# Caffe names these differently in its "Unknown parameter X" message.
_V0_MESSAGE_NAME = {"shuffle_images": "shuffle"}


def _upgrade_v0_layer(conn: V1, origin: Any, report: Report) -> V1:
    """UpgradeV0LayerParameter: one V0 connection -> a V1 layer."""
    out = V1()
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    if not conn.HasField("layer"):
        return out
    v0 = conn.layer
    if v0.HasField("name"):
        out.name = v0.name
    v0_type = v0.type
    if v0.HasField("type"):
        out.type = v0_layer_type_to_v1(v0_type, origin)
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for v0_field, routes in _V0_ROUTES.items():
        if not v0.HasField(v0_field):
            continue
        route = routes.get(None) or routes.get(v0_type)
        if route is None:
            name = _V0_MESSAGE_NAME.get(v0_field, v0_field)
            report(f'Unknown parameter {name} for layer type "{v0_type}" (dropped by the '
                   "V0 upgrade, as Caffe does)", origin)
            continue
        param_name, target = route
        sub = getattr(out, param_name)
        value = getattr(v0, v0_field)
        if target is None:                       # hdf5_output_param: whole message
            sub.CopyFrom(value)
            continue
        tfield = sub.DESCRIPTOR.fields_by_name[target]
        if tfield.is_repeated:                   # conv pad / kernel_size / stride
            getattr(sub, target).append(value)
        elif tfield.cpp_type == tfield.CPPTYPE_MESSAGE:
            getattr(sub, target).CopyFrom(value)
        else:
            setattr(sub, target, value)          # V0 / Pooling enums share numbers
    return out


def upgrade_v0_net(net_param: caffe_pb2.NetParameter, origins: Optional[LayerOrigins] = None,
                   report: Optional[Report] = None) -> None:
    """UpgradeV0Net, in place: V0 connections -> V1 layers.

    As in Caffe only ``name``, the layers, ``input``, ``input_dim`` and
    ``force_backward`` survive; other net-level fields are dropped.
    """
    report = report or _warn
    layer_origins = origins.layers if origins is not None else None
    folded, folded_origins = _fold_padding_layers(net_param, layer_origins)
    upgraded = [_upgrade_v0_layer(conn, o, report) for conn, o in zip(folded, folded_origins)]
    name = net_param.name if net_param.HasField("name") else None
    inputs, input_dims = list(net_param.input), list(net_param.input_dim)
    force_backward = (net_param.force_backward if net_param.HasField("force_backward")
                      else None)
    net_param.Clear()
    if name is not None:
        net_param.name = name
    net_param.layers.extend(upgraded)
    net_param.input.extend(inputs)
    net_param.input_dim.extend(input_dims)
    if force_backward is not None:
        net_param.force_backward = force_backward
    if origins is not None:
        origins.layers = folded_origins
        origins.layer = []


# ---------------------------------------------------------------------------
# Data transformation fields -> transform_param (on V1 layers)
# ---------------------------------------------------------------------------

def upgrade_net_data_transformation(net_param: caffe_pb2.NetParameter) -> None:
    """UpgradeNetDataTransformation, in place.

    Like Caffe, every V1 Data/ImageData/WindowData layer ends up with its
    ``*_param`` and ``transform_param`` present (possibly empty).
    """
    for layer in net_param.layers:
        for layer_type, param_name in _DATA_TRANSFORM_LAYERS:
            if layer.type != layer_type:
                continue
            sub = getattr(layer, param_name)
            sub.SetInParent()
            layer.transform_param.SetInParent()
            for f in _TRANSFORM_FIELDS:
                if sub.HasField(f):
                    setattr(layer.transform_param, f, getattr(sub, f))
                    sub.ClearField(f)


# ---------------------------------------------------------------------------
# V1 -> V2
# ---------------------------------------------------------------------------

V1_TYPE_NAMES = {
    V1.NONE: "", V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax",
    V1.BNLL: "BNLL", V1.CONCAT: "Concat", V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    V1.CONVOLUTION: "Convolution", V1.DECONVOLUTION: "Deconvolution", V1.DATA: "Data",
    V1.DROPOUT: "Dropout", V1.DUMMY_DATA: "DummyData", V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    V1.ELTWISE: "Eltwise", V1.EXP: "Exp", V1.FLATTEN: "Flatten", V1.HDF5_DATA: "HDF5Data",
    V1.HDF5_OUTPUT: "HDF5Output", V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData", V1.INFOGAIN_LOSS: "InfogainLoss",
    V1.INNER_PRODUCT: "InnerProduct", V1.LRN: "LRN", V1.MEMORY_DATA: "MemoryData",
    V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss", V1.MVN: "MVN",
    V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax", V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split",
    V1.SLICE: "Slice", V1.TANH: "TanH", V1.WINDOW_DATA: "WindowData",
    V1.THRESHOLD: "Threshold",
    # FCN's Caffe (longjon/caffe future, torrvision/caffe for CRF-RNN): a Crop that
    # finds its own offsets; formats/legacy_crop.py gives the V2 layer those offsets.
    V1.CROP: "Crop",
    V1.MULTI_STAGE_MEANFIELD: "MultiStageMeanfield",   # CRF-RNN; refused by name when built
}

# The sub-messages UpgradeV1LayerParameter copies unchanged (same name in both).
_V1_COPIED_PARAMS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param",
    "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param",
    "image_data_param", "infogain_loss_param", "inner_product_param", "lrn_param",
    "memory_data_param", "mvn_param", "pooling_param", "power_param", "relu_param",
    "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param", "transform_param", "loss_param",
)


def v1_layer_type_name(v1_type: int, origin: Any = None) -> str:
    """V1 enum -> V2 type string (UpgradeV1LayerType): ``SOFTMAX_LOSS`` -> ``"SoftmaxWithLoss"``."""
    try:
        return V1_TYPE_NAMES[v1_type]
    except KeyError:
        raise NetUpgradeError(f"unknown V1LayerParameter layer type {v1_type}", origin) from None


def _upgrade_v1_layer(v1: V1, origin: Any, report: Report) -> caffe_pb2.LayerParameter:
    """UpgradeV1LayerParameter: one V1 layer -> a V2 LayerParameter."""
    out = caffe_pb2.LayerParameter()
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField("name"):
        out.name = v1.name
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        out.type = v1_layer_type_name(v1.type, origin)
    out.blobs.extend(v1.blobs)

    def param(i: int) -> caffe_pb2.ParamSpec:
        while len(out.param) <= i:
            out.param.add()
        return out.param[i]

    for i, name in enumerate(v1.param):                 # weight sharing by name
        param(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):       # same numbers in both enums
        param(i).share_mode = mode
    for i, lr in enumerate(v1.blobs_lr):
        param(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        param(i).decay_mult = decay
    out.loss_weight.extend(v1.loss_weight)
    for name in _V1_COPIED_PARAMS:
        if v1.HasField(name):
            getattr(out, name).CopyFrom(getattr(v1, name))
    if v1.HasField("layer"):
        report("Input NetParameter has V0 layer -- ignoring.", origin)
    return out


def upgrade_v1_net(net_param: caffe_pb2.NetParameter, origins: Optional[LayerOrigins] = None,
                   report: Optional[Report] = None) -> None:
    """UpgradeV1Net, in place: ``layers`` (V1) -> ``layer`` (V2); other fields kept.

    Like Caffe, refuses a net that has both ``layer`` and ``layers`` entries.
    """
    report = report or _warn
    layer_origins = origins.layers if origins is not None else None
    if len(net_param.layer) > 0:
        raise NetUpgradeError(
            "Refusing to upgrade inconsistent NetParameter input; the definition includes "
            "both 'layer' and 'layers' fields. The current format defines 'layer' fields "
            "with string type like layer { type: 'Layer' ... } and not layers { type: "
            "LAYER ... }. Manually switch the definition to 'layer' format to continue.",
            _origin(layer_origins, 0))
    upgraded = [_upgrade_v1_layer(v1, _origin(layer_origins, i), report)
                for i, v1 in enumerate(net_param.layers)]
    legacy_crops = [i for i, v1 in enumerate(net_param.layers) if v1.type == V1.CROP]
    net_param.ClearField("layers")
    net_param.layer.extend(upgraded)
    if legacy_crops:
        from caffe_compat.formats.legacy_crop import LegacyCropError, resolve_legacy_crops
        try:
            resolve_legacy_crops(net_param, legacy_crops)
        except LegacyCropError as exc:
            raise NetUpgradeError(str(exc), _origin(layer_origins, legacy_crops[0])) from None
    if origins is not None:
        origins.layer = [_origin(layer_origins, i) for i in range(len(upgraded))]
        origins.layers = []


# ---------------------------------------------------------------------------
# input fields -> Input layer; BatchNorm
# ---------------------------------------------------------------------------

def upgrade_net_input(net_param: caffe_pb2.NetParameter,
                      origins: Optional[LayerOrigins] = None) -> None:
    """UpgradeNetInput, in place: ``input`` + ``input_shape``/``input_dim`` -> a first
    layer ``{name: "input" type: "Input" top: <inputs> input_param {shape ...}}``.

    An ``input`` without shapes (old caffemodels) is only removed, as in Caffe.
    """
    has_shape, has_dim = len(net_param.input_shape) > 0, len(net_param.input_dim) > 0
    if has_shape or has_dim:
        origin = origins.input if origins is not None else None
        count = len(net_param.input)
        if has_shape and len(net_param.input_shape) < count:
            raise NetUpgradeError(f"{count} inputs but only {len(net_param.input_shape)} "
                                  "input_shape entries", origin)
        if not has_shape and len(net_param.input_dim) < 4 * count:
            raise NetUpgradeError(f"{count} inputs need {4 * count} input_dim values "
                                  f"(4 per input), found {len(net_param.input_dim)}", origin)
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        for i, blob in enumerate(net_param.input):
            layer.top.append(blob)
            shape = layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net_param.input_shape[i])
            else:
                shape.dim.extend(net_param.input_dim[4 * i:4 * i + 4])
        layers = [layer] + list(net_param.layer)
        net_param.ClearField("layer")
        net_param.layer.extend(layers)
        if origins is not None:
            origins.layer = [origin] + list(origins.layer)
    net_param.ClearField("input")
    net_param.ClearField("input_shape")
    net_param.ClearField("input_dim")


def upgrade_net_batch_norm(net_param: caffe_pb2.NetParameter) -> None:
    """UpgradeNetBatchNorm (Caffe master), in place: a BatchNorm layer with three
    ``param`` specs gets lr_mult and decay_mult 0 in each (names etc. kept)."""
    for layer in net_param.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0


# ---------------------------------------------------------------------------
# All steps
# ---------------------------------------------------------------------------

def upgrade_net_as_needed(net_param: caffe_pb2.NetParameter,
                          origins: Optional[LayerOrigins] = None,
                          report: Optional[Report] = None) -> list:
    """Caffe's UpgradeNetAsNeeded, in place; returns the names of the steps applied.

    ``origins`` (optional) is updated so that ``origins.layer`` stays parallel to
    ``net_param.layer``; ``report(message, origin)`` receives the problems Caffe
    only logs (default: issue an :class:`UpgradeWarning`).

    >>> net = caffe_pb2.NetParameter(input=["data"], input_dim=[1, 3, 4, 4])
    >>> upgrade_net_as_needed(net), net.layer[0].type
    (['input fields'], 'Input')
    """
    report = report or _warn
    if origins is None:
        origins = LayerOrigins.blank(net_param)
    steps = []
    if net_needs_v0_to_v1_upgrade(net_param):
        upgrade_v0_net(net_param, origins, report)
        steps.append("V0->V1")
    if net_needs_data_upgrade(net_param):
        upgrade_net_data_transformation(net_param)
        steps.append("data transform fields")
    if net_needs_v1_to_v2_upgrade(net_param):
        upgrade_v1_net(net_param, origins, report)
        steps.append("V1->V2")
    if net_needs_input_upgrade(net_param):
        upgrade_net_input(net_param, origins)
        steps.append("input fields")
    if net_needs_batch_norm_upgrade(net_param):
        upgrade_net_batch_norm(net_param)
        steps.append("BatchNorm params")
    return steps


def upgrade_net(net_param: caffe_pb2.NetParameter, origins: Optional[LayerOrigins] = None,
                report: Optional[Report] = None) -> bool:
    """Upgrades a NetParameter in place to the current (V2) format; True if it changed.

    >>> net = caffe_pb2.NetParameter()
    >>> l = net.layers.add(name="c", type=caffe_pb2.V1LayerParameter.CONVOLUTION, blobs_lr=[1, 2])
    >>> upgrade_net(net), net.layer[0].type, [p.lr_mult for p in net.layer[0].param]
    (True, 'Convolution', [1.0, 2.0])
    """
    return bool(upgrade_net_as_needed(net_param, origins, report))


# ---------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------

_SOLVER_TYPE_NAMES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}


def solver_needs_type_upgrade(solver_param: caffe_pb2.SolverParameter) -> bool:
    """The solver sets the deprecated ``solver_type`` enum (SolverNeedsTypeUpgrade)."""
    return solver_param.HasField("solver_type")


def upgrade_solver_type(solver_param: caffe_pb2.SolverParameter) -> bool:
    """UpgradeSolverType, in place: ``solver_type: ADAM`` -> ``type: "Adam"``.

    Raises :class:`NetUpgradeError` if both ``solver_type`` and ``type`` are set
    (Caffe's CHECK); returns False when there is nothing to upgrade.
    """
    if not solver_param.HasField("solver_type"):
        return False
    if solver_param.HasField("type"):
        raise NetUpgradeError(
            "Failed to upgrade solver: old solver_type field (enum) and new type field "
            "(string) cannot be both specified in solver proto text.")
    solver_param.type = _SOLVER_TYPE_NAMES[solver_param.solver_type]
    solver_param.ClearField("solver_type")
    return True


def upgrade_solver(solver_param: caffe_pb2.SolverParameter) -> bool:
    """UpgradeSolverAsNeeded, in place; True if the solver changed.

    >>> s = caffe_pb2.SolverParameter(solver_type=caffe_pb2.SolverParameter.NESTEROV)
    >>> upgrade_solver(s), s.type, s.HasField("solver_type")
    (True, 'Nesterov', False)
    """
    return upgrade_solver_type(solver_param) if solver_needs_type_upgrade(solver_param) else False


def upgrade_snapshot_prefix(solver_param: caffe_pb2.SolverParameter, solver_file: str) -> bool:
    """UpgradeSnapshotPrefixProperty (Caffe master), in place; True if changed.

    No ``snapshot_prefix`` -> the solver file's path without its extension; a
    ``snapshot_prefix`` naming an existing directory -> that directory joined
    with the solver file's stem (e.g. ``snapshots/lenet_solver``).
    """
    root, _ = os.path.splitext(solver_file)
    if not solver_param.HasField("snapshot_prefix"):
        solver_param.snapshot_prefix = root
        return True
    if os.path.isdir(solver_param.snapshot_prefix):
        stem = os.path.basename(root)
        solver_param.snapshot_prefix = os.path.join(solver_param.snapshot_prefix, stem)
        return True
    return False
