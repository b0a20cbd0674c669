"""Which input pixels a unit of a blob sees, from the net's conv/pool geometry.

For every blob, along each spatial axis, unit ``i`` sees input pixels
``[offset + i * stride, offset + i * stride + size)`` (``offset`` is negative where
padding reaches outside the image). A layer with kernel ``k``, stride ``s``, pad ``p``
and dilation ``d`` (Convolution, Pooling, a WITHIN_CHANNEL LRN) maps the field of its
bottom ``(size, stride, offset)`` to
``(size + (d * (k - 1)) * stride, stride * s, offset - p * stride)``; point-wise layers
keep it; Eltwise and Concat take the union of their bottoms; Crop shifts it by its
offset. InnerProduct and global pooling see the whole input (no local field).
The kernel sizes are read from the engine's set-up layers, so they follow Caffe's
parameter rules (``kernel_h``/``kernel_w``, repeated values) exactly.

>>> rf = ReceptiveField(size=(10, 10), stride=(2, 2), offset=(-2, -2))
>>> rf.box(3, 0)              # (y0, x0, y1, x1), half-open, in input pixels
(4, -2, 14, 8)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from caffe_compat.engine.network import is_source_layer
from caffe_compat.errors import CaffeCompatError

#: Layer types whose output unit (y, x) sees exactly input unit (y, x).
POINTWISE = {"AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Dropout", "ELU", "Exp", "Log",
             "MVN", "Power", "PReLU", "ReLU", "Scale", "Sigmoid", "Softmax", "Split", "Swish",
             "TanH", "Threshold"}
#: Layer types after which units see the whole input.
GLOBAL = {"InnerProduct", "Reduction", "ArgMax", "Flatten", "Reshape"}


@dataclass(frozen=True)
class ReceptiveField:
    """Field of a blob's units along (H, W); ``size=None`` means the whole input."""
    size: Optional[tuple]
    stride: tuple = (1, 1)
    offset: tuple = (0, 0)

    @property
    def is_global(self) -> bool:
        return self.size is None

    def box(self, y: int, x: int) -> tuple:
        """(y0, x0, y1, x1) of unit (y, x), half-open, unclipped, in input pixels."""
        if self.size is None:
            raise CaffeCompatError("units of this blob see the whole input (no local field)")
        y0 = self.offset[0] + y * self.stride[0]
        x0 = self.offset[1] + x * self.stride[1]
        return (y0, x0, y0 + self.size[0], x0 + self.size[1])

    def center(self, y: float, x: float) -> tuple:
        """Centre (in pixel coordinates, pixel k spanning [k, k+1)) of unit (y, x)."""
        y0, x0, y1, x1 = self.box(0, 0)
        return (y0 + (y1 - y0) / 2 + y * self.stride[0], x0 + (x1 - x0) / 2 + x * self.stride[1])


def _kernel_layer(rf: ReceptiveField, kernel, stride, pad, dilation=(1, 1)) -> ReceptiveField:
    size = tuple(rs + d * (k - 1) * st for rs, k, d, st in zip(rf.size, kernel, dilation,
                                                                 rf.stride))
    return ReceptiveField(size, tuple(st * s for st, s in zip(rf.stride, stride)),
                          tuple(o - p * st for o, p, st in zip(rf.offset, pad, rf.stride)))


def _union(fields: list, where: str) -> ReceptiveField:
    if any(f.is_global for f in fields):
        return ReceptiveField(None)
    strides = {f.stride for f in fields}
    if len(strides) != 1:
        raise CaffeCompatError(f"receptive field: {where} joins blobs of different strides "
                               f"{sorted(strides)}")
    y0 = min(f.offset[0] for f in fields)
    x0 = min(f.offset[1] for f in fields)
    y1 = max(f.offset[0] + f.size[0] for f in fields)
    x1 = max(f.offset[1] + f.size[1] for f in fields)
    return ReceptiveField((y1 - y0, x1 - x0), fields[0].stride, (y0, x0))


def _layer_field(node, layer, bottoms: list) -> ReceptiveField:
    t = node.type
    where = f"layer {node.name!r} ({t})"
    if any(b.is_global for b in bottoms) or t in GLOBAL:
        return ReceptiveField(None)
    if t in POINTWISE:
        return bottoms[0]
    if t in ("Eltwise", "Concat"):
        if t == "Concat" and int(node.param.concat_param.axis) not in (1, -3):
            raise CaffeCompatError(f"receptive field: {where} concatenates a spatial axis")
        return _union(bottoms, where)
    if t in ("Convolution", "Im2col"):
        g = layer.geometry
        if len(g.kernel) != 2:
            raise CaffeCompatError(f"receptive field: {where} is not a 2-D convolution")
        return _kernel_layer(bottoms[0], g.kernel, g.stride, g.pad, g.dilation)
    if t == "Pooling":
        if layer.is_global:
            return ReceptiveField(None)
        return _kernel_layer(bottoms[0], layer.kernel, layer.stride, layer.pad)
    if t == "LRN":
        if int(node.param.lrn_param.norm_region) == 0:      # ACROSS_CHANNELS
            return bottoms[0]
        k = int(node.param.lrn_param.local_size)
        return _kernel_layer(bottoms[0], (k, k), (1, 1), ((k - 1) // 2, (k - 1) // 2))
    if t == "Crop":
        start = len(layer.bottom_shapes[0]) - 2
        offsets = list(node.param.crop_param.offset) or [0]
        axis = int(node.param.crop_param.axis) % len(layer.bottom_shapes[0])
        shift = []
        for a in (start, start + 1):
            if a < axis:
                shift.append(0)
            else:
                shift.append(int(offsets[0] if len(offsets) == 1 else offsets[a - axis]))
        rf = bottoms[0]
        return ReceptiveField(rf.size, rf.stride,
                              tuple(o + s * st for o, s, st in zip(rf.offset, shift, rf.stride)))
    raise CaffeCompatError(f"receptive field: {where} has no known spatial geometry")


def receptive_field(block, blob: str) -> ReceptiveField:
    """The :class:`ReceptiveField` of ``blob``'s units in the input image of ``block``
    (an engine CaffeNet; its layers must be set up, as any built net's are)."""
    fields: dict = {}
    for node, layer in zip(block.graph.layers, block.caffe_layers):
        if is_source_layer(layer):
            for top in node.tops:
                fields[top] = ReceptiveField((1, 1))
            continue
        if not node.bottoms:
            continue
        field = _layer_field(node, layer, [fields[b] for b in node.bottoms])
        for top in node.tops:
            fields[top] = field
    if blob not in fields:
        raise CaffeCompatError(f"net {block.graph.name!r} has no blob named {blob!r}")
    return fields[blob]
