"""Gradients of a chosen activation w.r.t. the image, with a choice of ReLU backward rule.

The net runs layer by layer on the engine's own layer blocks under MXNet autograd (the
same loop as ``CaffeNet.hybrid_forward``), so every layer's backward is the engine's,
which matches Caffe's. Only ``ReLU`` layers change, and only their backward: each is
wrapped in an ``mx.autograd.Function`` whose forward is the engine layer and whose
backward applies one of three rules to the top diff ``g`` with the ReLU's bottom
(pre-activation) data ``x`` (Caffe nets run ReLU in place, so ``x`` is the value the
layer received, not the blob's value afterwards):

=============  =========================================  ===============================
method         bottom diff                                from
=============  =========================================  ===============================
``backprop``   ``g * (x > 0)`` (the true gradient)        Simonyan et al. 2014 (saliency)
``deconvnet``  ``g * (g > 0)``                            Zeiler & Fergus 2013
``guided``     ``g * (x > 0) * (g > 0)``                  Springenberg et al. 2015
=============  =========================================  ===============================

(For a leaky ReLU, ``(x > 0)`` above is the layer's own slope mask
``(x > 0) + negative_slope * (x <= 0)``.) Weights are never edited.

"Pick a layer, set the gradient there to all zeros except one 1 for a neuron of
interest, backprop to the image"::

    from caffe_compat.recipes.visualize.backprop import resolve_target, unit_gradient
    target = resolve_target(block, "conv5")                 # blob or layer name
    result = unit_gradient(block, data, target, unit=12, method="guided")
    result.gradient.shape                                   # (1, 3, 227, 227)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import mxnet as mx
import numpy as np

from caffe_compat.engine.network import _as_list, is_source_layer
from caffe_compat.errors import CaffeCompatError
from caffe_compat.recipes.visualize.source import block_context, image_input

METHODS = ("backprop", "deconvnet", "guided")


def relu_backward(method: str, top_diff, bottom_data, negative_slope: float = 0.0):
    """A ReLU's bottom diff under ``method`` (numpy arrays or MXNet NDArrays alike).

    >>> relu_backward("guided", np.array([1., -1., 2.]), np.array([-3., 3., 3.]))
    array([ 0., -0.,  2.])
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "deconvnet":
        return top_diff * (top_diff > 0)
    mask = bottom_data > 0
    if negative_slope:
        mask = mask + negative_slope * (bottom_data <= 0)
    if method == "backprop":
        return top_diff * mask
    return top_diff * mask * (top_diff > 0)


class _RuleReLU(mx.autograd.Function):
    """One ReLU layer: the engine layer forward, ``relu_backward(method)`` backward."""

    def __init__(self, layer, method: str):
        super().__init__()
        self.layer = layer
        self.method = method

    def forward(self, x):
        self.save_for_backward(x)
        return _as_list(self.layer(x))[0]

    def backward(self, dy):
        x, = self.saved_tensors
        slope = float(self.layer.param.relu_param.negative_slope)
        return relu_backward(self.method, dy, x, slope)


@dataclass(frozen=True)
class Target:
    """An activation to start backward from: blob ``blob`` as it is right after layer
    number ``layer_index`` ran (in-place layers later in the net do not apply)."""
    blob: str
    layer_index: int
    layer: str


def _last_writer(block, blob: str, before: Optional[int] = None) -> int:
    last = None
    for node in block.graph.layers[:before]:
        if blob in node.tops:
            last = node.index
    if last is None:
        raise CaffeCompatError(f"no layer of net {block.graph.name!r} produces blob {blob!r}")
    return last


def layer_target(block, layer: str, top: int = 0) -> Target:
    """Top ``top`` of layer ``layer`` right after that layer ran (for ``conv1`` followed
    by an in-place ``relu1``: the pre-ReLU value)."""
    for node in block.graph.layers:
        if node.name == layer:
            if top >= len(node.tops):
                raise CaffeCompatError(f"layer {layer!r} has {len(node.tops)} top(s), not "
                                       f"{top + 1}")
            return Target(node.tops[top], node.index, node.name)
    raise CaffeCompatError(f"net {block.graph.name!r} has no layer named {layer!r}")


def resolve_target(block, name: str) -> Target:
    """A blob name (its final value, as ``net.blobs[name]`` in pycaffe) or else a layer
    name (its first top right after it ran; see :func:`layer_target`)."""
    graph = block.graph
    if name in graph.blob_names:
        index = _last_writer(block, name)
        return Target(name, index, graph.layers[index].name)
    if any(node.name == name for node in graph.layers):
        return layer_target(block, name)
    raise CaffeCompatError(f"net {graph.name!r} has no blob or layer named {name!r}")


def class_score_target(block, name: Optional[str] = None) -> Target:
    """The pre-softmax class scores: ``name`` when given, else the bottom of the
    Softmax that makes a net output (``fc8`` under ``prob``), else the single output."""
    if name is not None:
        return resolve_target(block, name)
    graph = block.graph
    for node in reversed(graph.layers):
        if node.type == "Softmax" and node.tops and node.tops[0] in graph.outputs:
            index = _last_writer(block, node.bottoms[0], before=node.index)
            return Target(node.bottoms[0], index, graph.layers[index].name)
    if len(graph.outputs) == 1:
        return resolve_target(block, graph.outputs[0])
    raise CaffeCompatError(f"net {graph.name!r} has outputs {graph.outputs} and no Softmax "
                           "output; name the class score layer")


def prepare_input(block, data) -> tuple[str, mx.nd.NDArray]:
    """(input name, ``data`` as an NDArray on the block's device); the block is reshaped
    to ``data``'s shape (N x C x H x W, or C x H x W for one image) when it differs."""
    name, shape = image_input(block)
    ctx = block_context(block)
    if isinstance(data, mx.nd.NDArray):
        x = data.as_in_context(ctx)
    else:
        x = mx.nd.array(np.asarray(data, np.float32), ctx=ctx, dtype="float32")
    if x.ndim == 3:
        x = x.expand_dims(0)
    if tuple(x.shape) != shape:
        if tuple(x.shape[1:2]) != shape[1:2]:
            raise CaffeCompatError(f"input has shape {tuple(x.shape)} but the net's {name!r} "
                                   f"takes {shape[1]} channels")
        block.reshape({name: tuple(x.shape)})
    return name, x


def run_layers(block, values: dict, last: int, method: Optional[str] = None,
               wrt: Optional[Target] = None) -> tuple[dict, Optional[mx.nd.NDArray]]:
    """Run layers 0..``last`` on ``values`` (blob -> NDArray, inputs filled); ReLUs use
    :class:`_RuleReLU` when ``method`` is not None. With ``wrt``, that layer's top is
    replaced by a leaf with a gradient buffer (returned) before later layers see it.
    Returns (values after ``last``, the leaf or None)."""
    leaf = None
    for node, layer in zip(block.graph.layers[:last + 1], block.caffe_layers[:last + 1]):
        if is_source_layer(layer) or not node.tops:
            continue
        args = [values[b] for b in node.bottoms] or [next(iter(values.values()))]
        if method is not None and node.type == "ReLU":
            tops = [_RuleReLU(layer, method)(args[0])]
        else:
            tops = _as_list(layer(*args))
        if wrt is not None and node.index == wrt.layer_index:
            i = node.tops.index(wrt.blob)
            leaf = tops[i].detach()
            leaf.attach_grad()
            tops = list(tops)
            tops[i] = leaf
        for top, value in zip(node.tops, tops):
            values[top] = value
    return values, leaf


def activation(block, data, target: Target) -> np.ndarray:
    """``target``'s value for input ``data`` (N x C x H x W numpy), forward only."""
    name, x = prepare_input(block, data)
    values, _ = run_layers(block, {name: x}, target.layer_index)
    return values[target.blob].asnumpy()


@dataclass
class GradientResult:
    """``gradient``: d(sum(head * activation)) / d(input) (or d/d ``wrt``), numpy;
    ``activation``: the target's value; ``head``: the top diff that was set."""
    gradient: np.ndarray
    activation: np.ndarray
    head: np.ndarray


def gradient(block, data, target: Target, head: Callable[[np.ndarray], np.ndarray],
             method: str = "backprop", wrt: Optional[Target] = None) -> GradientResult:
    """Backward from ``target`` with the top diff ``head(activation)`` under ``method``.

    The gradient is w.r.t. the net input, or w.r.t. ``wrt`` (an earlier activation,
    e.g. a ReLU's bottom) when given. Parameter gradients are not touched.
    """
    if method not in METHODS:
        raise CaffeCompatError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if wrt is not None and wrt.layer_index > target.layer_index:
        raise CaffeCompatError(f"{wrt.blob!r} comes after {target.blob!r} in the net")
    name, x = prepare_input(block, data)
    if wrt is not None and wrt.blob == name:
        wrt = None                                   # the input itself
    x.attach_grad()
    rule = None if method == "backprop" else method
    with mx.autograd.record(train_mode=False):
        values, leaf = run_layers(block, {name: x}, target.layer_index, rule, wrt)
        out = values[target.blob]
    act = out.asnumpy()
    top_diff = np.asarray(head(act), np.float32).reshape(act.shape)
    var = leaf if wrt is not None else x
    if wrt is not None and wrt.layer_index == target.layer_index and wrt.blob == target.blob:
        grad = mx.nd.array(top_diff, ctx=x.context)
    else:
        grad = mx.autograd.grad(out, [var], head_grads=mx.nd.array(top_diff, ctx=x.context),
                                retain_graph=False, train_mode=False)[0]
    return GradientResult(grad.asnumpy(), act, top_diff)


# --------------------------------------------------------------------------- heads

def class_head(class_index: int) -> Callable[[np.ndarray], np.ndarray]:
    """Top diff 1 at class ``class_index`` (every position of a score map), 0 elsewhere."""
    def head(act: np.ndarray) -> np.ndarray:
        if act.ndim < 2 or not 0 <= class_index < act.shape[1]:
            raise CaffeCompatError(f"class {class_index} is out of range: the score blob has "
                                   f"shape {act.shape}")
        h = np.zeros_like(act)
        h[:, class_index] = 1.0
        return h
    return head


def unit_position(act: np.ndarray, unit: int,
                  position: Optional[Sequence[int]] = None) -> Optional[tuple]:
    """The spatial index of unit ``unit`` to use: ``position`` or, for a map, the
    strongest activation of the channel in the first image (Zeiler & Fergus)."""
    if act.ndim < 2 or not 0 <= unit < act.shape[1]:
        raise CaffeCompatError(f"unit {unit} is out of range: the blob has shape {act.shape}")
    spatial = act.shape[2:]
    if not spatial:
        return None
    if position is None:
        return tuple(int(i) for i in np.unravel_index(np.argmax(act[0, unit]), spatial))
    position = tuple(int(i) for i in position)
    if len(position) != len(spatial) or any(not 0 <= p < s for p, s in zip(position, spatial)):
        raise CaffeCompatError(f"position {position} is outside the unit's map {spatial}")
    return position


def unit_head(unit: int, position: Optional[Sequence[int]] = None) -> Callable:
    """Top diff: all zeros except one 1 at (``unit``, ``position``) for every image."""
    def head(act: np.ndarray) -> np.ndarray:
        pos = unit_position(act, unit, position)
        h = np.zeros_like(act)
        h[(slice(None), unit) + (pos or ())] = 1.0
        return h
    return head


def class_gradient(block, data, class_index: int, method: str = "backprop",
                   score: Optional[Target] = None) -> GradientResult:
    """d(class score) / d(image): the score is pre-softmax (:func:`class_score_target`)."""
    return gradient(block, data, score or class_score_target(block), class_head(class_index),
                    method)


def unit_gradient(block, data, target: Target, unit: int,
                  position: Optional[Sequence[int]] = None,
                  method: str = "guided") -> GradientResult:
    """Project one neuron to the image: ``unit`` (channel) at ``position`` (default: its
    strongest activation) of ``target``, through ``method``'s ReLU rule."""
    return gradient(block, data, target, unit_head(unit, position), method)
