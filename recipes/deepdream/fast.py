"""DeepDream kept on the MXNet device: the notebook's algorithm without numpy blob views.

:class:`FastDreamer` runs the engine's :class:`~caffe_compat.engine.network.CaffeNet`
truncated at ``end`` (``set_outputs([blob], end=layer)``, hybridized), takes the
gradient of the objective w.r.t. the input with autograd, and does the jitter
(``np.roll`` as ``mx.nd`` slices), the step normalisation and the clipping as ``mx.nd``
ops. Only the two jitter offsets come from numpy's global RNG, drawn exactly as the
notebook draws them, so with the same seed it makes the same picture as
:func:`caffe_compat.recipes.deepdream.notebook.deepdream` (rel. error ~1e-8, see
tests/test_deepdream.py). The octave pyramid and the per-octave detail rescaling are the
notebook's scipy code, once per octave.

Floating point: the step scale ``step_size / mean|g|`` is summed in another order than
numpy's, and a hybridized graph's convolutions in another than the layer-by-layer
path's, so the paths differ in the last bits; where a max-pooling window holds an
exact tie (random weights make some) a last-bit difference can send that window's
gradient elsewhere, and over many steps the images then drift apart by ~1e-4
(``benchmarks/dream.py`` shows one step). ``hybridize=False`` runs the very ops of the
pycaffe path, about as fast on a CPU.

    from caffe_compat.recipes.deepdream import FastDreamer, load_image
    dreamer = FastDreamer.from_zoo("bvlc_googlenet")          # GPU when MXNet sees one
    frame = dreamer.deepdream(load_image("sky.jpg"))          # notebook defaults
    frame = dreamer.deepdream(img, end="inception_3b/5x5_reduce", iter_n=20)
    guide = dreamer.guide_features(load_image("flowers.jpg"), end="inception_3b/output")
    frame = dreamer.deepdream(img, end="inception_3b/output", objective=guide)

The dreamer freezes the block's parameters (``grad_req='null'``): it is for dreaming.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Union

import mxnet as mx
import numpy as np

from caffe_compat.recipes.deepdream.models import GOOGLENET_END, NOTEBOOK_MEAN
from caffe_compat.recipes.deepdream.notebook import (Progress, octave_pyramid,
                                                     upscale_detail)
from caffe_compat.recipes.deepdream.targets import EndSpec, resolve_targets

Objective = Callable[[mx.nd.NDArray], mx.nd.NDArray]


# ---- a block cut after the dream layer -----------------------------------------------------
def truncate_block(block, last_layer: str):
    """A CaffeNet of ``block``'s layers up to ``last_layer`` sharing its Parameters.

    Shape inference then stops there, so pictures too small for the classifier head
    (``pool5/7x7_s1`` of bvlc_googlenet) still dream; the weights are not copied.
    """
    from caffe_compat.engine import fillers
    from caffe_compat.engine.graph import build_graph
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.proto import caffe_pb2
    graph = block.graph
    last = graph.layer_index(last_layer)
    net_param = caffe_pb2.NetParameter()
    net_param.name = graph.name
    net_param.force_backward = graph.force_backward
    nodes = graph.layers[:last + 1]   # Caffe's Split layers included: their tops are bottoms
    for node in nodes:
        net_param.layer.add().CopyFrom(node.param)
    sub_graph = build_graph(net_param, graph.path, [node.source[1] for node in nodes])
    params = list(block.collect_params().values())
    ctx = params[0].list_ctx()[0] if params else None
    shapes = {name: block.blob_shapes[name] for name in block.input_names}
    filler_state = fillers.rng().get_state()   # the fillers' values are replaced below:
    sub = CaffeNet(sub_graph, block.phase, input_shapes=shapes, ctx=ctx)
    fillers.rng().set_state(filler_state)      # leave caffe.set_random_seed's sequence be
    source = block.layers_by_name()
    for layer in sub.caffe_layers:
        theirs = source[layer.name]
        for mine, their in zip(layer.blob_names, theirs.blob_names):
            layer.share_blob(mine, getattr(theirs, their))
    return sub


# ---- device ops -------------------------------------------------------------------------
def nd_roll(x: mx.nd.NDArray, shift: int, axis: int) -> mx.nd.NDArray:
    """``np.roll(x, shift, axis)`` with two slices and a concat (stays on x's device)."""
    n = x.shape[axis]
    k = int(shift) % n
    if k == 0:
        return x
    return mx.nd.concat(mx.nd.slice_axis(x, axis=axis, begin=n - k, end=n),
                        mx.nd.slice_axis(x, axis=axis, begin=0, end=n - k), dim=axis)


def l2_objective(dst: mx.nd.NDArray) -> mx.nd.NDArray:
    """The notebook's ``objective_L2`` as a head gradient: d(0.5 |x|^2)/dx = x."""
    return dst


class GuideObjective:
    """The notebook's ``objective_guide`` on the device, for a (C, H', W') guide.

    Every position of the dream layer gets the guide feature vector with the largest
    dot product as its gradient (first one on ties, like ``np.argmax``).
    """

    def __init__(self, features: Union[np.ndarray, mx.nd.NDArray], ctx: Optional[mx.Context] = None):
        feats = features if isinstance(features, mx.nd.NDArray) else mx.nd.array(features, ctx=ctx)
        if ctx is not None:
            feats = feats.as_in_context(ctx)
        self.channels = int(feats.shape[0])
        self.features = mx.nd.reshape(feats, shape=(self.channels, -1))

    def __call__(self, dst: mx.nd.NDArray) -> mx.nd.NDArray:
        n, ch = dst.shape[:2]
        if ch != self.channels:
            raise ValueError(f"guide features have {self.channels} channels, the dream "
                             f"layer {ch}: compute them at the same layer")
        if n != 1:
            raise ValueError("the guided objective dreams one image at a time")
        x = mx.nd.reshape(dst, shape=(ch, -1))   # an op: dst may be in oneDNN layout
        y = self.features.as_in_context(dst.context)
        A = mx.nd.dot(x, y, transpose_a=True)  # dot products with the guide features
        best = mx.nd.argmax(A, axis=1)
        return mx.nd.reshape(mx.nd.take(y, best, axis=1), shape=dst.shape)


def dream_context(ctx: Optional[mx.Context] = None) -> mx.Context:
    """``ctx``, else the GPU when MXNet sees one (the one ``set_mode_gpu``/``set_device``
    chose, else GPU 0), else the CPU; device choice itself is caffe_compat.context's."""
    from caffe_compat.context import context_from_flag, current_context, gpu_count
    if ctx is not None:
        return ctx
    current = current_context()
    if current.device_type == "gpu" or not gpu_count():
        return current
    return context_from_flag("0")[0]


# ---- the dreamer --------------------------------------------------------------------------
class FastDreamer:
    """DeepDream on an engine block; ``deepdream`` has the notebook's signature."""

    def __init__(self, block, mean=NOTEBOOK_MEAN, end: EndSpec = GOOGLENET_END,
                 hybridize: bool = True, input_name: str = "data"):
        self.source = block
        self.block = None
        params = list(block.collect_params().values())
        from caffe_compat.context import current_context
        self.ctx = params[0].list_ctx()[0] if params else current_context()
        for p in params:   # gradients w.r.t. the image only
            p.grad_req = "null"
        if input_name not in block.input_names:
            raise ValueError(f"net input {input_name!r} not found; inputs are {block.input_names}")
        if len(block.input_names) != 1:
            raise ValueError(f"DeepDream needs a net with one input; this one has {block.input_names}")
        self.mean = np.float32(mean).reshape(3, 1, 1)   # the notebook's transformer.mean['data']
        self._bias = mx.nd.array(self.mean.reshape(1, 3, 1, 1), ctx=self.ctx)
        self._hybridize = hybridize
        self._blocks: dict[str, object] = {}
        self.end = None
        self.targets = None
        self.set_end(end)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_files(cls, prototxt, weights, mean=NOTEBOOK_MEAN, end: EndSpec = GOOGLENET_END,
                   ctx: Optional[mx.Context] = None, **kwargs) -> "FastDreamer":
        """A dreamer over ``prototxt`` + ``weights`` (no force_backward needed here).

        ``ctx=None``: the GPU when MXNet sees one, else the CPU (:func:`dream_context`).
        """
        from caffe_compat.engine.network import CaffeNet
        for p in (prototxt, weights):
            if p is not None and not os.path.isfile(p):
                raise FileNotFoundError(2, "No such file", str(p))
        block = CaffeNet.from_prototxt(str(prototxt), 1, weights=None if weights is None
                                       else str(weights), ctx=dream_context(ctx))
        return cls(block, mean=mean, end=end, **kwargs)

    @classmethod
    def from_zoo(cls, name: str = "bvlc_googlenet", end: EndSpec = GOOGLENET_END,
                 ctx: Optional[mx.Context] = None, mean=NOTEBOOK_MEAN, progress: bool = True,
                 **kwargs) -> "FastDreamer":
        """A zoo model (weights downloaded on first use) with the notebook's mean."""
        from caffe_compat import zoo
        return cls(zoo.load(name, ctx=dream_context(ctx), progress=progress), mean=mean,
                   end=end, **kwargs)

    @classmethod
    def from_net(cls, net, end: EndSpec = GOOGLENET_END, **kwargs) -> "FastDreamer":
        """Over a pycaffe ``Classifier``'s block and its transformer's mean (shared weights)."""
        return cls(net.block, mean=net.transformer.mean['data'], end=end, **kwargs)

    def set_end(self, end: EndSpec) -> None:
        """Dream on ``end`` (a name or a list of names): the block is cut after it."""
        key = end if isinstance(end, str) else tuple(end)
        if key == self.end:
            return
        targets = resolve_targets(self.source, end)
        block = self._blocks.get(targets.layer)
        if block is None:
            block = truncate_block(self.source, targets.layer)
            if self._hybridize:
                block.hybridize(static_alloc=True)
            self._blocks[targets.layer] = block
        block.set_outputs(targets.blob_names, end=targets.layer)
        self.block, self.end, self.targets = block, key, targets

    # -- the notebook's helpers, on numpy (once per octave) ---------------------------------
    def preprocess(self, img: np.ndarray) -> np.ndarray:
        return np.float32(np.rollaxis(img, 2)[::-1]) - self.mean

    def deprocess(self, img: np.ndarray) -> np.ndarray:
        return np.dstack((img + self.mean)[::-1])

    def _outputs(self, x: mx.nd.NDArray) -> list:
        out = self.block(x)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    # -- one step --------------------------------------------------------------------
    def make_step(self, x: mx.nd.NDArray, step_size=1.5, jitter=32, clip=True,
                  objective: Optional[Objective] = None) -> mx.nd.NDArray:
        """One normalised gradient-ascent step on ``x`` (1, 3, H, W); returns the new image."""
        ox, oy = np.random.randint(-jitter, jitter+1, 2)
        x = nd_roll(nd_roll(x, ox, 3), oy, 2)                      # apply jitter shift
        x.attach_grad()
        with mx.autograd.record():
            outs = self._outputs(x)
        if objective is None or objective is l2_objective:
            heads = [o.detach() for o in outs]
        else:
            if len(outs) != 1:
                raise ValueError("several end layers dream on the sum of their L2 "
                                 "objectives; give one layer for another objective")
            heads = [objective(outs[0].detach())]
        mx.autograd.backward(outs, head_grads=heads)
        g = x.grad
        scale = step_size / mx.nd.mean(mx.nd.abs(g))
        x = x.detach() + mx.nd.broadcast_mul(g, scale.reshape((1, 1, 1, 1)))
        x = nd_roll(nd_roll(x, -ox, 3), -oy, 2)                    # unshift image
        if clip:
            x = mx.nd.broadcast_minimum(mx.nd.broadcast_maximum(x, -self._bias),
                                        255 - self._bias)
        return x

    # -- octaves ---------------------------------------------------------------------
    def deepdream(self, base_img: np.ndarray, iter_n=10, octave_n=4, octave_scale=1.4,
                  end: Optional[EndSpec] = None, clip=True, progress: Progress = None,
                  **step_params) -> np.ndarray:
        """The notebook's ``deepdream`` (RGB 0..255 in and out, same shape)."""
        if end is not None:
            self.set_end(end)
        octaves = octave_pyramid(self.preprocess(base_img), octave_n, octave_scale)
        detail = np.zeros_like(octaves[-1])
        x = None
        for octave, octave_base in enumerate(octaves[::-1]):
            h, w = octave_base.shape[-2:]
            if octave > 0:
                detail = upscale_detail(detail, h, w)
            x = mx.nd.array((octave_base + detail)[None], ctx=self.ctx, dtype="float32")
            for i in range(iter_n):
                x = self.make_step(x, clip=clip, **step_params)
                if progress is not None:
                    progress(octave, i)
            detail = x.asnumpy()[0] - octave_base
        return self.deprocess(x.asnumpy()[0])

    def guide_features(self, guide_img: np.ndarray, end: Optional[EndSpec] = None) -> GuideObjective:
        """The guided objective for ``guide_img`` at ``end`` (the layer to dream on)."""
        if end is not None:
            self.set_end(end)
        if not self.targets.single:
            raise ValueError("guide features come from one layer; got a list of ends")
        x = mx.nd.array(self.preprocess(guide_img)[None], ctx=self.ctx, dtype="float32")
        feats = self._outputs(x)[0]
        return GuideObjective(mx.nd.reshape(feats, shape=feats.shape[1:]).copy())
