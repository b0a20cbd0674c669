"""Crop (crop_layer.cpp): cut bottom[0] down to bottom[1]'s shape from ``axis`` on.

Axes before ``axis`` (default 2; negative counts from the end) keep bottom[0]'s size.
``offset``: none = 0 everywhere, one value = the same offset on every cropped axis, or
one value per cropped axis; offsets count from the top-left corner (never centred).
Only bottom[0] gets a gradient (the cropped region of it); bottom[1] only gives a shape.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "c" type: "Crop" crop_param { axis: 2 offset: 2 offset: 0 }',
...                       caffe_pb2.LayerParameter())
>>> build_layer(p, [(2, 8, 20, 20), (2, 6, 18, 18)]).top_shapes
[(2, 8, 18, 18)]
"""
from __future__ import annotations

from caffe_compat.engine.layer import Layer, canonical_axis, register_layer
from caffe_compat.engine.onednn import slice_axes


@register_layer("Crop", origin="BVLC")
class Crop(Layer):
    """Caffe's CropLayer (FCN's alignment of upsampled scores)."""

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=2)
        cp = self.param.crop_param
        ndim = len(bottom_shapes[0])
        try:
            self.start_axis = canonical_axis(cp.axis, ndim)
        except IndexError as exc:
            raise self.error(str(exc)) from exc
        if len(cp.offset) > 1 and self.start_axis + len(cp.offset) != ndim:
            raise self.error("number of offset values specified must be equal to the number "
                             f"of dimensions following axis ({ndim - self.start_axis}), "
                             f"got {len(cp.offset)}")

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0

    def reshape(self, bottom_shapes):
        big, ref = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        if len(big) != len(ref):
            raise self.error(f"bottom[0] {big} and bottom[1] {ref} must have the same number "
                             "of axes")
        offsets = list(self.param.crop_param.offset)
        top, begin = [], []
        for i, size in enumerate(big):
            if i < self.start_axis:
                top.append(size)
                begin.append(0)
                continue
            offset = 0
            if len(offsets) == 1:
                offset = int(offsets[0])
            elif len(offsets) > 1:
                offset = int(offsets[i - self.start_axis])
            if size - offset < ref[i]:
                raise self.error(f"invalid crop parameters in dimension: {i} (size {size}, "
                                 f"offset {offset}, crop size {ref[i]})")
            top.append(ref[i])
            begin.append(offset)
        self.begin = tuple(begin)
        self.cropped_axes = tuple(range(self.start_axis, len(big)))
        return [tuple(top)]

    def hybrid_forward(self, F, x, like):
        if any(self.begin):
            x = slice_axes(F, x, begin=self.begin, end=(None,) * len(self.begin))
        # slice_like takes the size from bottom[1] and sends it no gradient
        return (F.slice_like(x, F.BlockGrad(like), axes=self.cropped_axes),)
