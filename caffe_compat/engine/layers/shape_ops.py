"""Caffe layers that move data without arithmetic: Concat, Slice, Split, Flatten,
Reshape, Tile, BatchReindex and Filter. Their gradients are the exact adjoints
(copies, sums of copies), which is what Caffe's Backward computes.

    >>> from google.protobuf import text_format
    >>> from caffe_compat.proto import caffe_pb2
    >>> from caffe_compat.engine.build import build_layer
    >>> p = text_format.Parse('name: "r" type: "Reshape" bottom: "x" top: "y" '
    ...     'reshape_param { shape { dim: 0 dim: -1 dim: 4 } }', caffe_pb2.LayerParameter())
    >>> build_layer(p, [(2, 3, 8)]).top_shapes
    [(2, 6, 4)]
"""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.onednn import plain_layout_grad
from caffe_compat.engine.layer import Layer, Shape, canonical_axis, count, register_layer


def mx_shape(shape: Sequence[int]) -> tuple:
    """The MXNet shape holding a Caffe shape: a 0-d Caffe blob is held as (1,)."""
    return tuple(int(d) for d in shape) or (1,)


@register_layer("Concat", origin="BVLC")
class Concat(Layer):
    """Joins bottoms along ``concat_param.axis`` (default 1; legacy ``concat_dim``) as
    concat_layer.cpp; the other dims must agree."""

    def concat_axis(self, num_axes: int) -> int:
        p = self.param.concat_param
        if p.HasField("concat_dim"):
            if p.HasField("axis"):
                raise self.error("give either axis or concat_dim, not both")
            return int(p.concat_dim)
        return canonical_axis(p.axis, num_axes)

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, at_least=1)
        first = list(bottom_shapes[0])
        axis = self.concat_axis(len(first))
        if not 0 <= axis < len(first):
            raise self.error(f"concat axis {axis} out of range for {len(first)}-D bottoms")
        top = list(first)
        for i, s in enumerate(bottom_shapes[1:], start=1):
            if len(s) != len(first) or any(s[d] != first[d] for d in range(len(s)) if d != axis):
                raise self.error(f"bottom {i} has shape {tuple(s)}; all bottoms must match "
                                 f"{tuple(first)} except on axis {axis}")
            top[axis] += s[axis]
        self.axis = axis
        return [tuple(top)]

    def hybrid_forward(self, F, *bottoms):
        if len(bottoms) == 1:
            return (F.identity(bottoms[0]),)
        # oneDNN's concat backward crashes on blocked-layout gradients (engine/onednn.py)
        return (plain_layout_grad(F, F.concat(*bottoms, dim=self.axis)),)


@register_layer("Slice", origin="BVLC")
class Slice(Layer):
    """Cuts the bottom along ``slice_param.axis`` (default 1; legacy ``slice_dim``) at
    the ``slice_point``s, or into equal parts, one per top (slice_layer.cpp)."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = list(bottom_shapes[0])
        p = self.param.slice_param
        if p.HasField("slice_dim"):
            if p.HasField("axis"):
                raise self.error("give either axis or slice_dim, not both")
            axis = int(p.slice_dim)
        else:
            axis = canonical_axis(p.axis, len(shape))
        if not 0 <= axis < len(shape):
            raise self.error(f"slice axis {axis} out of range for a {len(shape)}-D bottom")
        tops = len(self.param.top)
        dim = shape[axis]
        if p.slice_point:
            points = [int(q) for q in p.slice_point]
            if len(points) != tops - 1:
                raise self.error(f"{len(points)} slice_point(s) need {len(points) + 1} tops, "
                                 f"got {tops}")
            if tops > dim:
                raise self.error(f"cannot cut axis {axis} of size {dim} into {tops} parts")
            bounds = [0] + points + [dim]
            for lo, hi in zip(bounds, bounds[1:]):
                if hi <= lo:
                    raise self.error(f"slice points must increase inside (0, {dim}), "
                                     f"got {points}")
        else:
            if tops < 1 or dim % tops:
                raise self.error(f"{tops} top(s) do not evenly divide axis {axis} of size {dim}")
            step = dim // tops
            bounds = [i * step for i in range(tops + 1)]
        self.axis = axis
        self.bounds = bounds
        out = []
        for lo, hi in zip(bounds, bounds[1:]):
            s = list(shape)
            s[axis] = hi - lo
            out.append(tuple(s))
        return out

    def hybrid_forward(self, F, x):
        if len(self.bounds) == 2:
            return (F.identity(x),)
        return tuple(F.slice_axis(x, axis=self.axis, begin=lo, end=hi)
                     for lo, hi in zip(self.bounds, self.bounds[1:]))


@register_layer("Split", origin="BVLC")
class Split(Layer):
    """Copies its bottom to every top; the bottom's gradient is the sum of the tops'
    gradients (split_layer.cpp). Caffe inserts these for blobs with several consumers."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        return [tuple(bottom_shapes[0])] * max(len(self.param.top), 1)

    def passes_bottom_through(self) -> bool:
        return True

    def hybrid_forward(self, F, x):
        return tuple(F.identity(x) for _ in range(max(len(self.param.top), 1)))


@register_layer("Flatten", origin="BVLC")
class Flatten(Layer):
    """Merges axes ``axis`` .. ``end_axis`` (defaults 1 and -1) into one (flatten_layer.cpp)."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = list(bottom_shapes[0])
        p = self.param.flatten_param
        start = canonical_axis(p.axis, len(shape))
        end = canonical_axis(p.end_axis, len(shape))
        if end < start:
            raise self.error(f"end_axis {p.end_axis} comes before axis {p.axis}")
        top = shape[:start] + [count(shape, start, end + 1)] + shape[end + 1:]
        self.top_shape = mx_shape(top)
        return [tuple(top)]

    def hybrid_forward(self, F, x):
        return (F.reshape(x, shape=self.top_shape),)


@register_layer("Reshape", origin="BVLC")
class Reshape(Layer):
    """reshape_layer.cpp: ``shape`` replaces bottom axes [axis, axis + num_axes) (all from
    ``axis`` when num_axes is -1); a 0 copies the bottom dim at that position, one -1 is
    inferred from the count."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        bottom = list(bottom_shapes[0])
        p = self.param.reshape_param
        dims = [int(d) for d in p.shape.dim]
        copy_axes = [i for i, d in enumerate(dims) if d == 0]
        inferred = [i for i, d in enumerate(dims) if d == -1]
        if len(inferred) > 1:
            raise self.error("new shape contains more than one -1 (inferred) dimension")
        if any(d < -1 for d in dims):
            raise self.error(f"new shape dims must be >= -1, got {dims}")
        start = p.axis if p.axis >= 0 else len(bottom) + p.axis + 1
        if not 0 <= start <= len(bottom):
            raise self.error(f"axis {p.axis} out of range for a {len(bottom)}-D bottom")
        if p.num_axes < -1:
            raise self.error("num_axes must be >= 0, or -1 for all")
        end = len(bottom) if p.num_axes == -1 else start + p.num_axes
        if end > len(bottom):
            raise self.error(f"axis {p.axis} + num_axes {p.num_axes} exceeds the bottom's "
                             f"{len(bottom)} axes")
        top = bottom[:start] + list(dims) + bottom[end:]
        for i in copy_axes:
            if start + i >= len(bottom):
                raise self.error("new shape contains a 0, but there is no corresponding "
                                 "bottom axis to copy")
            top[start + i] = bottom[start + i]
        if inferred:
            explicit = count(bottom, 0, start) * count(bottom, end)
            for i, d in enumerate(dims):
                if d > 0:
                    explicit *= d
                elif d == 0:
                    explicit *= top[start + i]
            total = count(bottom)
            if explicit == 0 or total % explicit:
                raise self.error(f"cannot infer the -1 dim: bottom count {total} is not a "
                                 f"multiple of {explicit}")
            top[start + inferred[0]] = total // explicit
        if count(top) != count(bottom):
            raise self.error(f"output count {count(top)} ({tuple(top)}) must match input "
                             f"count {count(bottom)} ({tuple(bottom)})")
        self.top_shape = mx_shape(top)
        return [tuple(top)]

    def hybrid_forward(self, F, x):
        return (F.reshape(x, shape=self.top_shape),)


@register_layer("Tile", origin="BVLC")
class Tile(Layer):
    """Repeats the bottom ``tiles`` times along ``axis`` (tile_layer.cpp: each slab from
    ``axis`` on is copied ``tiles`` times in a row); the gradient sums the copies."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=1)
        shape = list(bottom_shapes[0])
        p = self.param.tile_param
        if not p.HasField("tiles"):
            raise self.error("tile_param.tiles (number of tiles) must be specified")
        if p.tiles <= 0:
            raise self.error(f"tile_param.tiles must be positive, got {p.tiles}")
        axis = canonical_axis(p.axis, len(shape))
        self.reps = tuple(int(p.tiles) if d == axis else 1 for d in range(len(shape)))
        shape[axis] *= int(p.tiles)
        return [tuple(shape)]

    def hybrid_forward(self, F, x):
        return (F.tile(x, reps=self.reps),)


@register_layer("BatchReindex", origin="BVLC")
class BatchReindex(Layer):
    """Top item i is bottom[0] item ``int(bottom[1][i])`` (batch_reindex_layer.cpp); the
    gradient of repeated indices accumulates into bottom[0], none goes to the indices.

    Caffe does not check the index range in release builds; here an index outside
    [0, N) is clipped to the nearest valid item.
    """

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, exactly=2)
        data, index = bottom_shapes
        if len(index) != 1:
            raise self.error(f"the index bottom must be 1-D, got shape {tuple(index)}")
        if len(data) < 1:
            raise self.error("the data bottom must have at least one axis")
        return [(index[0],) + tuple(data[1:])]

    def hybrid_forward(self, F, data, index):
        return (F.take(data, F.trunc(F.BlockGrad(index)), axis=0, mode="clip"),)


@register_layer("Filter", origin="BVLC")
class Filter(Layer):
    """Keeps the items (axis 0) whose selector, the last bottom, is non-zero; one top per
    other bottom (filter_layer.cpp). The gradient goes back to the kept items only; the
    selector gets none.

    The number of kept items depends on the selector's DATA. ``reshape`` reports the full
    batch (as Caffe's first Reshape does); the real top shapes come from the forward, so
    a net containing Filter must take its downstream shapes from the arrays it produces.
    Imperative use works for any selector. Hybridized (MXNet's boolean_mask is a
    dynamic-shape operator, run outside the static plan) it works while at least one
    item is kept; keeping none fails in MXNet's shape inference (0-size output).
    """

    def allow_backward(self, bottom_index: int) -> bool:
        return bottom_index != len(self.param.bottom) - 1

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        self.check_bottoms(bottom_shapes, at_least=2)
        selector = bottom_shapes[-1]
        if len(self.param.top) and len(self.param.top) != len(bottom_shapes) - 1:
            raise self.error(f"needs one top per filtered bottom ({len(bottom_shapes) - 1}), "
                             f"got {len(self.param.top)}")
        if not selector or any(d != 1 for d in selector[1:]):
            raise self.error(f"selector (last bottom) dims must be 1 except the first, "
                             f"got {tuple(selector)}")
        for i, s in enumerate(bottom_shapes[:-1]):
            if not s or s[0] != selector[0]:
                raise self.error(f"bottom {i} has {s[0] if s else 0} items but the selector "
                                 f"has {selector[0]}")
        return [tuple(s) for s in bottom_shapes[:-1]]

    def hybrid_forward(self, F, *bottoms):
        keep = F.reshape(F.BlockGrad(bottoms[-1]), shape=(-1,)) != 0
        return tuple(F.contrib.boolean_mask(b, keep) for b in bottoms[:-1])
