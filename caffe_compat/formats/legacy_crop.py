"""The offsets of the first FCN-era ``Crop`` layer (V1 ``type: CROP``).

Before BVLC's Crop layer (with ``crop_param { axis offset }``) existed, FCN's Caffe
(longjon/caffe ``future``, kept by torrvision/caffe for CRF-RNN) had a parameterless
V1 ``CROP`` layer that worked its offsets out itself, in ``CropLayer::LayerSetUp``
(crop_layer.cpp): walk back from each bottom through the first bottom of every producing
layer to a blob both walks reach, compose the layers' coordinate maps on the way
(Convolution/Pooling ``scale 1/stride, shift (pad - (kernel-1)/2)/stride``,
Deconvolution the inverse, element-wise layers the identity), and crop by minus the
shift of ``map(bottom[1]) o map(bottom[0])^-1``, on H and W.

The upgrade to a V2 ``Crop`` must carry those offsets (``axis: 2``, one offset per
spatial axis): a Crop with offset 0 would silently misalign the two blobs.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> net = text_format.Parse('''
... layer { name: "in" type: "Input" top: "data" }
... layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
...         convolution_param { num_output: 1 kernel_size: 3 pad: 100 } }
... layer { name: "crop" type: "Crop" bottom: "conv" bottom: "data" top: "c" }''',
...     caffe_pb2.NetParameter())
>>> legacy_crop_offsets(net, 2)
[99, 99]
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from caffe_compat.coord_map import compose, inverse

#: Layers whose coordinate map is the identity in FCN's Caffe (neuron layers, Eltwise,
#: Split, Concat, BatchNorm/Scale and the other shape-keeping layers).
_IDENTITY_TYPES = {"AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Exp",
                   "Log", "LRN", "MVN", "Power", "PReLU", "ReLU", "Scale", "Sigmoid", "Split",
                   "TanH", "Threshold", "Concat", "Softmax"}


class LegacyCropError(ValueError):
    """The offsets cannot be worked out (Caffe's CHECKs in CropLayer::LayerSetUp)."""


def _spatial(values, default: int) -> np.ndarray:
    v = [int(x) for x in values] or [default]
    return np.array((v * 2)[:2] if len(v) == 1 else v[:2], dtype=np.float64)


def _filter_geometry(lp) -> tuple:
    """(stride, extent, pad) per spatial axis of a Convolution/Deconvolution/Pooling."""
    if lp.type == "Pooling":
        p = lp.pooling_param
        kernel = [p.kernel_h, p.kernel_w] if p.HasField("kernel_h") else [p.kernel_size]
        stride = [p.stride_h, p.stride_w] if p.HasField("stride_h") else [p.stride]
        pad = [p.pad_h, p.pad_w] if p.HasField("pad_h") else [p.pad]
        return _spatial(stride, 1), _spatial(kernel, 1), _spatial(pad, 0)
    p = lp.convolution_param
    kernel = [p.kernel_h, p.kernel_w] if p.HasField("kernel_h") else list(p.kernel_size)
    stride = [p.stride_h, p.stride_w] if p.HasField("stride_h") else list(p.stride)
    pad = [p.pad_h, p.pad_w] if p.HasField("pad_h") else list(p.pad)
    extent = (_spatial(kernel, 1) - 1) * _spatial(p.dilation, 1) + 1
    return _spatial(stride, 1), extent, _spatial(pad, 0)


def _layer_map(lp, offsets_of_crops: dict) -> tuple:
    """The (axis, scale, shift) map from a layer's first bottom to its top."""
    if lp.type in ("Convolution", "Pooling"):
        stride, extent, pad = _filter_geometry(lp)
        return 1, 1 / stride, (pad - (extent - 1) / 2) / stride
    if lp.type == "Deconvolution":
        stride, extent, pad = _filter_geometry(lp)
        return 1, stride, (extent - 1) / 2 - pad
    if lp.type == "Crop":
        offset = offsets_of_crops.get(id(lp))
        if offset is None:
            offset = _spatial(lp.crop_param.offset, 0)
        return 1, np.ones(2), -np.asarray(offset, dtype=np.float64)
    if lp.type in _IDENTITY_TYPES:
        return None, 1, 0
    raise LegacyCropError(f"no coordinate map for a {lp.type} layer ('{lp.name}') on the path")


def legacy_crop_offsets(net_param, index: int, known: Optional[dict] = None) -> list:
    """[offset_h, offset_w] of the legacy crop ``net_param.layer[index]``."""
    known = known or {}
    layers = list(net_param.layer)[:index]
    producer: dict = {}
    for i, lp in enumerate(layers):              # first producer of each blob, like
        for top in lp.top:                       # CropLayer's down_map (in place skipped)
            producer.setdefault(top, i)
    crop = net_param.layer[index]
    if len(crop.bottom) != 2:
        raise LegacyCropError(f"layer '{crop.name}' (CROP) needs two bottoms")

    def walk(blob):
        path = [blob]
        while blob in producer and layers[producer[blob]].bottom:
            blob = layers[producer[blob]].bottom[0]
            path.append(blob)
        return path

    first_path = walk(crop.bottom[0])
    meet = next((b for b in walk(crop.bottom[1]) if b in first_path), None)
    if meet is None:
        raise LegacyCropError(f"layer '{crop.name}': cannot align apparently disconnected blobs "
                              f"'{crop.bottom[0]}' and '{crop.bottom[1]}'")
    maps = []
    for start in crop.bottom:
        m = (None, 1, 0)
        blob = start
        while blob != meet:
            lp = layers[producer[blob]]
            m = compose(m, _layer_map(lp, known))
            blob = lp.bottom[0]
        maps.append(m)
    _, scale, shift = compose(maps[1], inverse(maps[0]))
    scale, shift = np.broadcast_to(scale, (2,)), np.broadcast_to(shift, (2,))
    if not np.allclose(scale, 1):
        raise LegacyCropError(f"layer '{crop.name}': the two bottoms have different scales")
    if (shift > 0).any():
        raise LegacyCropError(f"layer '{crop.name}': negative crop width")
    if not np.allclose(shift, np.round(shift)):
        raise LegacyCropError(f"layer '{crop.name}': the crop width is not an integer")
    return [int(-round(v)) for v in shift]


def resolve_legacy_crops(net_param, indices) -> None:
    """Give each legacy crop at ``indices`` its ``crop_param { axis: 2 offset: h offset: w }``."""
    known: dict = {}
    for index in sorted(indices):
        lp = net_param.layer[index]
        offsets = legacy_crop_offsets(net_param, index, known)
        lp.crop_param.axis = 2
        del lp.crop_param.offset[:]
        lp.crop_param.offset.extend(offsets)
        known[id(lp)] = offsets
