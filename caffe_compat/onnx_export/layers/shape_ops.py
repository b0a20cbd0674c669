"""Layers that move data without arithmetic: Concat, Slice, Split, Flatten, Reshape,
Permute, Tile, Crop, ShuffleChannel, BatchReindex, Parameter and Silence.

Shapes are static in the export (the net's current input shapes), so Flatten and
Reshape write Caffe's computed top shape; Crop's offsets and Slice's bounds are the
ones the engine's layer derived at reshape (crop_layer.cpp, slice_layer.cpp).
"""
from __future__ import annotations

from onnx import TensorProto

from caffe_compat.engine.layer import canonical_axis
from caffe_compat.onnx_export.registry import emits, refuses


@emits("Split")
def split(ctx):
    """split_layer.cpp: every top is the bottom."""
    return [ctx.inputs[0]] * len(ctx.node.tops)


@emits("Concat")
def concat(ctx):
    """concat_layer.cpp: join along ``axis`` (or legacy ``concat_dim``)."""
    if len(ctx.inputs) == 1:
        return [ctx.inputs[0]]
    return [ctx.op("Concat", *ctx.inputs, axis=ctx.layer.axis)]


@emits("Slice")
def slice_layer(ctx):
    """slice_layer.cpp: cut ``axis`` at the slice points (or evenly), one top each."""
    layer = ctx.layer
    if len(layer.bounds) == 2:
        return [ctx.inputs[0]]
    sizes = [hi - lo for lo, hi in zip(layer.bounds, layer.bounds[1:])]
    return ctx.op("Split", ctx.inputs[0], ctx.ints(sizes, "split"), axis=layer.axis,
                  num_outputs=len(sizes))


@emits("Flatten", "Reshape")
def reshape(ctx):
    """flatten_layer.cpp / reshape_layer.cpp: the same data in Caffe's top shape."""
    return [ctx.reshape(ctx.inputs[0], ctx.top_shapes[0])]


@emits("Permute")
def permute(ctx):
    """permute_layer.cpp (SSD): top axis i is bottom axis ``order[i]``."""
    return [ctx.op("Transpose", ctx.inputs[0], perm=list(ctx.layer.order))]


@emits("Tile")
def tile(ctx):
    """tile_layer.cpp: the slab from ``axis`` on repeated ``tiles`` times, i.e. that many
    copies concatenated along ``axis`` (ONNX Tile says the same; OpenCV 4.11 gets it wrong)."""
    p = ctx.layer.param.tile_param
    axis = canonical_axis(p.axis, len(ctx.bottom_shapes[0]))
    if p.tiles == 1:
        return [ctx.inputs[0]]
    return [ctx.op("Concat", *[ctx.inputs[0]] * int(p.tiles), axis=axis)]


@emits("Crop")
def crop(ctx):
    """crop_layer.cpp: bottom[0] cut to bottom[1]'s size from ``axis`` on, starting at
    the offsets (from the top-left corner); bottom[1] only gives the shape."""
    layer, top = ctx.layer, ctx.top_shapes[0]
    axes = list(layer.cropped_axes)
    starts = [layer.begin[a] for a in axes]
    ends = [layer.begin[a] + top[a] for a in axes]
    return [ctx.op("Slice", ctx.inputs[0], ctx.ints(starts, "starts"), ctx.ints(ends, "ends"),
                   ctx.ints(axes, "axes"))]


@emits("ShuffleChannel")
def shuffle_channel(ctx):
    """shuffle_channel_layer.cpp (ShuffleNet): channels as (group, C/group), transposed."""
    shape, group = tuple(ctx.bottom_shapes[0]), ctx.layer.group
    grouped = ctx.reshape(ctx.inputs[0], (shape[0], group, shape[1] // group) + shape[2:])
    perm = [0, 2, 1] + list(range(3, len(shape) + 1))
    return [ctx.reshape(ctx.op("Transpose", grouped, perm=perm), shape)]


@emits("BatchReindex")
def batch_reindex(ctx):
    """batch_reindex_layer.cpp: top item i is bottom item ``int(index[i])``."""
    index = ctx.op("Cast", ctx.inputs[1], to=TensorProto.INT64)     # truncates, as C++
    return [ctx.op("Gather", ctx.inputs[0], index, axis=0)]


@emits("Parameter")
def parameter(ctx):
    """parameter_layer.hpp: the learnable blob is the top."""
    return [ctx.blob("blob", ctx.top_shapes[0])]


@emits("Silence")
def silence(ctx):
    """silence_layer.cpp: no tops."""
    return []


refuses("its output size depends on the selector's values, and the export has static "
        "shapes", "Filter")
