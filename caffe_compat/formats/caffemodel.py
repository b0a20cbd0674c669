"""Read and write ``.caffemodel`` files (binary ``NetParameter``) without protobuf's float lists.

Reading walks the wire format (:mod:`~caffe_compat.formats.wire`): each blob's float
payload is copied once, from the file straight into its final numpy array; everything
else in each layer (name, type, params, ...) is parsed with ``caffe_pb2`` with the blob
fields cut out, so callers get a light ``NetParameter`` to inspect or upgrade. The file
is closed when :func:`read_caffemodel` returns; the arrays own their memory. There is
no 64 MB / 2 GB limit, and a truncated or corrupt file raises
:class:`~caffe_compat.errors.WeightsFormatError` naming the byte offset.

All three generations of Caffe's net format are read:

* V2 (``layer``, field 100, ``LayerParameter`` with string ``type``);
* V1 (``layers``, field 2, ``V1LayerParameter`` with enum ``type``), types mapped to
  the V2 strings as Caffe's ``UpgradeV1LayerType`` does;
* V0 (a ``V0LayerParameter`` nested in each V1 ``layers`` entry as ``layer``), types
  mapped as ``UpgradeV0LayerType`` + ``UpgradeV1LayerType`` do; V0 ``padding`` layers
  (which carry no blobs and which Caffe folds into the next layer) are not listed.

The ``net_param`` keeps the V1/V0 structure as stored: upgrading the net definition
is the text side's job (``caffe_compat.formats.upgrade``). Legacy blobs (V1-era
num/channels/height/width instead of ``shape``) come back 4-d as stored and are
flagged; :meth:`LayerWeights.blob_for` reshapes one to its target shape with Caffe's
legacy rule (:func:`legacy_shape_matches`).

Usage::

    model = read_caffemodel("bvlc_alexnet.caffemodel")
    for layer in model.layers:                 # LayerWeights(name, type, blobs, legacy)
        print(layer.name, layer.type, [b.shape for b in layer.blobs])
    w = model.by_name()["fc6"].blob_for(0, (4096, 9216))

    write_caffemodel("out.caffemodel", model.layers, name="AlexNet")
    write_caffemodel("out.caffemodel", model.layers, net_param=deploy_net)  # like net.save()
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from google.protobuf.message import DecodeError

from caffe_compat.errors import WeightsFormatError, WeightsMismatchError
from caffe_compat.formats.binaryproto import (blob_field_chunks, chunks_size, decode_blob,
                                              write_chunks)
from caffe_compat.formats.upgrade import V1_TYPE_NAMES
from caffe_compat.formats.wire import (LEN, VARINT, WireReader, atomic_write, expect_wire_type,
                                       len_field, len_header, open_buffer)
from caffe_compat.proto import caffe_pb2

PathLike = Union[str, os.PathLike]

# Field numbers (caffe.proto).
_NET_NAME, _NET_LAYERS_V1, _NET_LAYER = 1, 2, 100
_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS = 1, 2, 7            # LayerParameter
_V1_LAYER_V0, _V1_NAME, _V1_TYPE, _V1_BLOBS = 1, 4, 5, 6     # V1LayerParameter
_V0_NAME, _V0_TYPE, _V0_BLOBS = 1, 2, 50                     # V0LayerParameter
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Caffe's UpgradeV1LayerType (upgrade_proto.cpp): V1LayerParameter.LayerType -> V2 type;
# the one table lives with the prototxt upgrade.
V1_LAYER_TYPES: Dict[int, str] = {int(k): v for k, v in V1_TYPE_NAMES.items()}

# Caffe's UpgradeV0LayerType followed by UpgradeV1LayerType: V0 type string -> V2 type.
V0_LAYER_TYPES: Dict[str, str] = {
    "accuracy": "Accuracy", "bnll": "BNLL", "concat": "Concat", "conv": "Convolution",
    "data": "Data", "dropout": "Dropout", "euclidean_loss": "EuclideanLoss",
    "flatten": "Flatten", "hdf5_data": "HDF5Data", "hdf5_output": "HDF5Output",
    "im2col": "Im2col", "images": "ImageData", "infogain_loss": "InfogainLoss",
    "innerproduct": "InnerProduct", "lrn": "LRN",
    "multinomial_logistic_loss": "MultinomialLogisticLoss", "pool": "Pooling",
    "relu": "ReLU", "sigmoid": "Sigmoid", "softmax": "Softmax",
    "softmax_loss": "SoftmaxWithLoss", "split": "Split", "tanh": "TanH",
    "window_data": "WindowData",
}


def legacy_shape_matches(blob_shape: Sequence[int], target_shape: Sequence[int]) -> bool:
    """Caffe's ``Blob::ShapeEquals(BlobProto)`` for a legacy (num, channels, height, width) blob.

    The legacy dims are compared with the target's last 4 axes, missing leading axes
    counting as 1 (``Blob::LegacyShape``); a target of more than 4 axes never matches.

    >>> legacy_shape_matches((1, 1, 1, 12), (12,))          # V1 bias
    True
    >>> legacy_shape_matches((1, 1, 10, 20), (10, 20))      # V1 InnerProduct weight
    True
    >>> legacy_shape_matches((1, 1, 20, 10), (10, 20))
    False
    """
    legacy = tuple(int(d) for d in blob_shape)
    target = tuple(int(d) for d in target_shape)
    if len(legacy) != 4 or len(target) > 4:
        return False
    return (1,) * (4 - len(target)) + target == legacy


@dataclass
class LayerWeights:
    """The learned blobs of one layer.

    ``blobs[i]`` has the shape stored in the file; ``legacy[i]`` says it was stored
    as legacy 4-d num/channels/height/width (then use :meth:`blob_for` to reshape).
    ``diffs`` is filled only when the reader was asked for diffs. ``type`` is the V2
    type string ("" when the file does not record it, e.g. HDF5 weights). In HDF5
    weights a weight-shared blob that Caffe did not save is ``None``.
    """
    name: str
    type: str
    blobs: List[Optional[np.ndarray]]
    legacy: List[bool] = field(default_factory=list)
    diffs: Optional[List[Optional[np.ndarray]]] = None

    def __post_init__(self):
        self.blobs = list(self.blobs)
        self.legacy = list(self.legacy) + [False] * (len(self.blobs) - len(self.legacy))

    def blob_for(self, index: int, target_shape: Sequence[int]) -> np.ndarray:
        """Blob ``index`` shaped as ``target_shape``, accepted as Caffe's copy_from accepts it.

        Same shape: returned as is. Legacy blob: reshaped when
        :func:`legacy_shape_matches`. Otherwise :class:`WeightsMismatchError`.
        """
        if index >= len(self.blobs) or self.blobs[index] is None:
            raise WeightsMismatchError(f'layer "{self.name}": no blob {index} in the weights '
                                       f"(it has {len(self.blobs)})")
        array = self.blobs[index]
        target = tuple(int(d) for d in target_shape)
        if array.shape == target:
            return array
        if self.legacy[index] and legacy_shape_matches(array.shape, target):
            return array.reshape(target)
        kind = "legacy 4-d " if self.legacy[index] else ""
        raise WeightsMismatchError(f'layer "{self.name}" blob {index}: the weights have '
                                   f"{kind}shape {array.shape}, the net expects {target}")


@dataclass
class CaffeModel:
    """What :func:`read_caffemodel` found.

    ``layers``: every layer entry in file order (layers without blobs included).
    ``net_param``: the whole ``NetParameter`` minus the blob payloads, as stored
    (V1/V0 nets keep their ``layers`` entries; upgrade them with the text side).
    ``is_v1``: the net uses V1 ``layers``; ``has_v0_layers``: some of them nest V0
    layers; ``has_legacy_shapes``: some blob uses num/channels/height/width. A file
    with both V1 ``layers`` and V2 ``layer`` entries lists both (Caffe's upgrade would
    drop the V2 ones).
    """
    path: str
    layers: List[LayerWeights]
    net_param: caffe_pb2.NetParameter
    is_v1: bool = False
    has_v0_layers: bool = False
    has_legacy_shapes: bool = False

    def by_name(self) -> Dict[str, LayerWeights]:
        """Layers by name; with duplicate names the first wins, like Caffe's copy_from."""
        named: Dict[str, LayerWeights] = {}
        for layer in self.layers:
            named.setdefault(layer.name, layer)
        return named


class _WalkedLayer(NamedTuple):
    name: Optional[str]
    type: Union[str, int, None]       # V2/V0: string; V1: enum number
    blobs: list                       # DecodedBlob per blob field
    kept: bytes                       # every other field, as stored
    nested: Optional["_WalkedLayer"]  # a V1 layer's V0 layer


class _LayerWalk:
    """Reads one layer message: name, type and blobs decoded; other fields kept as bytes."""

    def __init__(self, buf, raw, path: str, with_diff: bool):
        self.buf, self.raw, self.path, self.with_diff = buf, raw, path, with_diff

    def _string(self, reader: WireReader, fld, what: str) -> str:
        expect_wire_type(reader, fld, LEN, what)
        return bytes(self.buf[fld.start:fld.end]).decode("utf-8", "surrogateescape")

    def walk(self, start: int, end: int, name_no: int, type_no: int, blobs_no: int,
             nested_no: Optional[int] = None, nested=None) -> _WalkedLayer:
        """Decode name, type and blobs of the layer in ``buf[start:end]``; keep the rest."""
        reader = WireReader(self.buf, self.path, start, end)
        name, type_value, blobs, kept, nested_result = None, None, [], [], None
        for fld in reader.fields():
            number = fld.number
            if number == blobs_no:
                expect_wire_type(reader, fld, LEN, "a layer's blobs")
                blobs.append(decode_blob(self.buf, self.path, fld.start, fld.end, raw=self.raw,
                                         with_diff=self.with_diff))
                continue
            if number == nested_no:
                expect_wire_type(reader, fld, LEN, "a V1 layer's nested V0 layer")
                nested_result = nested(fld.start, fld.end)
                kept.append(len_field(number, nested_result.kept))
                continue
            if number == name_no:
                name = self._string(reader, fld, "a layer name")
            elif number == type_no:
                if fld.wire_type == VARINT:
                    type_value = fld.value
                else:
                    type_value = self._string(reader, fld, "a layer type")
            kept.append(bytes(self.buf[fld.offset:reader.pos]))
        return _WalkedLayer(name, type_value, blobs, b"".join(kept), nested_result)


def _weights(name: str, layer_type: str, blobs, with_diff: bool) -> LayerWeights:
    return LayerWeights(name=name, type=layer_type, blobs=[b.data for b in blobs],
                        legacy=[b.legacy for b in blobs],
                        diffs=[b.diff for b in blobs] if with_diff else None)


def _parse(message, payload: bytes, path: str, offset: int, what: str):
    """Merge ``payload`` into ``message``; a protobuf decode error becomes WeightsFormatError."""
    try:
        message.MergeFromString(payload)
    except DecodeError as exc:
        raise WeightsFormatError(path, offset, f"a valid {what} ({exc})") from None
    return message


def _read_v1_layer(walker: _LayerWalk, fld, with_diff: bool,
                   net) -> Tuple[Optional[LayerWeights], bool]:
    """One V1 ``layers`` entry; returns ``(weights or None for a V0 padding layer, is_v0)``."""
    path = walker.path

    def v0_layer(start, end):
        return walker.walk(start, end, _V0_NAME, _V0_TYPE, _V0_BLOBS)

    v1 = walker.walk(fld.start, fld.end, _V1_NAME, _V1_TYPE, _V1_BLOBS, _V1_LAYER_V0, v0_layer)
    _parse(net.layers.add(), v1.kept, path, fld.start, "V1LayerParameter")
    if v1.nested is not None:
        # Caffe's V0->V1 upgrade takes name, type and blobs from the nested V0 layer.
        v0_type = v1.nested.type
        if v0_type == "padding":
            return None, True
        if v0_type is None:
            layer_type = ""
        elif isinstance(v0_type, str) and v0_type in V0_LAYER_TYPES:
            layer_type = V0_LAYER_TYPES[v0_type]
        else:
            raise WeightsFormatError(path, fld.start, f"a known V0 layer type (got {v0_type!r}; "
                                                      f"Caffe's UpgradeV0LayerType knows "
                                                      f"{', '.join(sorted(V0_LAYER_TYPES))})")
        return _weights(v1.nested.name or "", layer_type, v1.nested.blobs, with_diff), True
    if v1.type is None:
        layer_type = ""
    elif isinstance(v1.type, int) and v1.type in V1_LAYER_TYPES:
        layer_type = V1_LAYER_TYPES[v1.type]
    else:
        raise WeightsFormatError(path, fld.start, f"a known V1LayerParameter.type enum value "
                                                  f"(got {v1.type!r})")
    return _weights(v1.name or "", layer_type, v1.blobs, with_diff), False


def read_caffemodel(path: PathLike, *, with_diff: bool = False) -> CaffeModel:
    """Read a binary ``NetParameter`` (``.caffemodel``) into :class:`CaffeModel`.

    ``with_diff=True`` also reads each blob's ``diff`` (Caffe writes none by default).
    A file cut exactly between two top-level fields is still a valid (shorter)
    protobuf message and cannot be told from a complete one; every other cut or
    corruption of the structure raises :class:`WeightsFormatError`. An empty file is
    an empty NetParameter, no layers (Caffe's ReadProtoFromBinaryFile accepts it and
    CopyTrainedLayersFrom then copies nothing).
    """
    path = os.fspath(path)
    with open_buffer(path) as (buf, raw):
        if buf[:8] == _HDF5_SIGNATURE:
            raise WeightsFormatError(path, 0, "a binary NetParameter (this is an HDF5 file: "
                                              "use hdf5_weights.read_hdf5_weights)")
        walker = _LayerWalk(buf, raw, path, with_diff)
        top = WireReader(buf, path)
        layers: List[LayerWeights] = []
        net = caffe_pb2.NetParameter()
        header: List[bytes] = []
        is_v1 = has_v0 = False
        for fld in top.fields():
            if fld.number == _NET_LAYER:
                expect_wire_type(top, fld, LEN, "NetParameter.layer")
                v2 = walker.walk(fld.start, fld.end, _LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS)
                if v2.type is not None and not isinstance(v2.type, str):
                    raise WeightsFormatError(path, fld.start, "LayerParameter.type as a string")
                layers.append(_weights(v2.name or "", v2.type or "", v2.blobs, with_diff))
                _parse(net.layer.add(), v2.kept, path, fld.start, "LayerParameter")
            elif fld.number == _NET_LAYERS_V1:
                expect_wire_type(top, fld, LEN, "NetParameter.layers (V1)")
                is_v1 = True
                weights, is_v0 = _read_v1_layer(walker, fld, with_diff, net)
                has_v0 = has_v0 or is_v0
                if weights is not None:
                    layers.append(weights)
            else:
                header.append(bytes(buf[fld.offset:top.pos]))
        _parse(net, b"".join(header), path, 0, "NetParameter")
    return CaffeModel(path=path, layers=layers, net_param=net, is_v1=is_v1,
                      has_v0_layers=has_v0,
                      has_legacy_shapes=any(any(layer.legacy) for layer in layers))


# --------------------------------------------------------------------------- writing

WeightsInput = Union[Sequence[LayerWeights], Mapping[str, Sequence[np.ndarray]]]


def _as_layer_weights(layers: WeightsInput) -> List[LayerWeights]:
    if isinstance(layers, Mapping):
        return [LayerWeights(name, "", list(blobs)) for name, blobs in layers.items()]
    return list(layers)


def _blob_chunks(number: int, layer: LayerWeights) -> List:
    chunks: List = []
    for index, array in enumerate(layer.blobs):
        if array is None:
            raise ValueError(f'layer "{layer.name}": blob {index} is missing (None); a '
                             f".caffemodel stores every blob")
        chunks += blob_field_chunks(number, array, legacy=layer.legacy[index])
    return chunks


def _split_before_blobs(layer_bytes: bytes) -> Tuple[bytes, bytes]:
    """Split a serialized LayerParameter where field 7 (blobs) belongs in number order."""
    reader = WireReader(layer_bytes, "<LayerParameter>")
    for fld in reader.fields():
        if fld.number > _LAYER_BLOBS:
            return layer_bytes[:fld.offset], layer_bytes[fld.offset:]
    return layer_bytes, b""


def _write_layer(out, head: bytes, blob_chunks: List, tail: bytes) -> None:
    body = [head] + blob_chunks + [tail]
    write_chunks(out, [len_header(_NET_LAYER, chunks_size(body))] + body)


def write_caffemodel(path: PathLike, layers: WeightsInput,
                     net_param: Optional[caffe_pb2.NetParameter] = None, *,
                     name: Optional[str] = None) -> None:
    """Write weights as a V2 binary ``NetParameter`` that Caffe and OpenCV load.

    ``layers``: :class:`LayerWeights` (or ``{layer_name: [arrays]}``). Each blob is
    written as ``BlobProto`` with packed float32 ``data`` and a ``shape`` (legacy
    blobs keep num/channels/height/width), streaming each array's bytes to the file.

    Without ``net_param``: ``name`` (if given), then one ``layer`` per entry with its
    name, type and blobs. With ``net_param`` (a V2 ``NetParameter``, e.g. a parsed
    deploy prototxt), like Caffe's ``net.save()``: every layer of the net, in the
    net's order, with all its ``LayerParameter`` fields plus the blobs of the same
    name (a layer with no weights given keeps any blobs it has); the net-level fields
    (name, input, ...) are written as given. Weights for a layer the net lacks raise
    ``ValueError`` rather than being dropped silently.
    """
    weights = _as_layer_weights(layers)

    if net_param is None:
        def write(out):
            if name is not None:
                out.write(len_field(_NET_NAME, name.encode("utf-8", "surrogateescape")))
            for layer in weights:
                head = len_field(_LAYER_NAME, layer.name.encode("utf-8", "surrogateescape"))
                if layer.type:
                    head += len_field(_LAYER_TYPE, layer.type.encode("utf-8"))
                _write_layer(out, head, _blob_chunks(_LAYER_BLOBS, layer), b"")
        atomic_write(path, write)
        return

    if len(net_param.layers):
        raise ValueError("net_param uses V1 'layers'; upgrade it to V2 'layer' first "
                         "(caffe_compat.formats.upgrade)")
    by_name: Dict[str, LayerWeights] = {}
    for layer in weights:
        if layer.name in by_name:
            raise ValueError(f'two sets of weights for layer "{layer.name}"')
        by_name[layer.name] = layer
    missing = [n for n in by_name if n not in {lp.name for lp in net_param.layer}]
    if missing:
        raise ValueError(f"weights for layers the net does not have: {', '.join(missing)}")
    header = caffe_pb2.NetParameter()
    header.CopyFrom(net_param)
    header.ClearField("layer")
    if name is not None:
        header.name = name

    def write_with_net(out):
        out.write(header.SerializeToString())
        for layer_param in net_param.layer:
            layer = by_name.get(layer_param.name)
            if layer is None:
                out.write(len_field(_NET_LAYER, layer_param.SerializeToString()))
                continue
            stripped = caffe_pb2.LayerParameter()
            stripped.CopyFrom(layer_param)
            stripped.ClearField("blobs")
            head, tail = _split_before_blobs(stripped.SerializeToString())
            _write_layer(out, head, _blob_chunks(_LAYER_BLOBS, layer), tail)
    atomic_write(path, write_with_net)
