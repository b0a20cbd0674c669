"""The feature extractor for style transfer: a Caffe net cut after its deepest used layer.

The deploy prototxt is cut after the last layer that writes one of the requested
blobs (with its in-place ReLU, so ``conv4_2`` means VGG's blob after ``relu4_2``, as in
Gatys et al. and fzliu/style-transfer), so any picture size works (the fully connected
head needs 224 x 224 and is never built). The result is the engine's ``CaffeNet``
returning the requested blobs (``set_outputs``), hybridized, parameters frozen; autograd
gives the gradient w.r.t. the input image on the device.

``pool="avg"`` turns max pooling into average pooling (Gatys et al.: "slightly more
appealing results"); the default keeps the net's own pooling.

>>> fx = FeatureNet.from_zoo("vgg19", ["conv1_1", "conv4_2"])                  # doctest: +SKIP
>>> fx = FeatureNet.from_files("deploy.prototxt", "w.caffemodel", ["conv1_1"])  # doctest: +SKIP
>>> feats = fx(mx.nd.zeros((1, 3, 128, 96)))  # {name: NDArray}          # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import mxnet as mx

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2
from caffe_compat.recipes.finetune.model import read_deploy
from caffe_compat.recipes.finetune.surgery import (Cut, SurgeryError, cut_blob, input_layer,
                                                   needed_layers)

POOLING = ("max", "avg", "net")


def feature_net_param(net: caffe_pb2.NetParameter, names: Sequence[str],
                      pool: str = "net") -> tuple[caffe_pb2.NetParameter, list[str], str]:
    """(cut NetParameter, blob of each name, last layer) for the requested layers/blobs."""
    if pool not in POOLING:
        raise CaffeCompatError(f"pool must be one of {', '.join(POOLING)}, got {pool!r}")
    try:
        cuts = [cut_blob(net, n) for n in names]
    except SurgeryError as exc:
        raise CaffeCompatError(str(exc).replace("--layer", "style/content layer")) from None
    last = max(c.last for c in cuts)
    keep = set()
    for c in cuts:
        keep.update(needed_layers(net, Cut(c.blob, last)))
    out = caffe_pb2.NetParameter()
    out.name = net.name
    image = input_layer(net)
    for j in sorted(keep):
        lp = out.layer.add()
        lp.CopyFrom(net.layer[j])
        if lp.type == "Pooling" and pool != "net":
            lp.pooling_param.pool = (caffe_pb2.PoolingParameter.AVE if pool == "avg"
                                     else caffe_pb2.PoolingParameter.MAX)
    if image.name not in {lp.name for lp in out.layer}:
        raise CaffeCompatError("the style/content layers do not depend on the net input")
    return out, [c.blob for c in cuts], out.layer[len(out.layer) - 1].name


def share_blobs(block, source_layers: dict) -> list[str]:
    """Make ``block``'s layers use the Parameters of the same-named ``source_layers``
    (no copy); returns the names shared."""
    shared = []
    for layer in block.caffe_layers:
        src = source_layers.get(layer.name)
        if src is None or not layer.blob_names:
            continue
        if [p.shape for p in src.blobs()] != [p.shape for p in layer.blobs()]:
            raise CaffeCompatError(f'layer "{layer.name}": the zoo weights have blob shapes '
                                   f"{[p.shape for p in src.blobs()]}, the net "
                                   f"{[p.shape for p in layer.blobs()]}")
        for mine, theirs in zip(layer.blob_names, src.blob_names):
            layer.share_blob(mine, getattr(src, theirs))
        shared.append(layer.name)
    return shared


class FeatureNet:
    """Returns ``{name: (1, C, H, W) NDArray}`` for the style and content layers."""

    def __init__(self, net: caffe_pb2.NetParameter, names: Sequence[str], loader,
                 pool: str = "net", ctx: Optional[mx.Context] = None, hybridize: bool = True):
        from caffe_compat.engine.graph import build_graph
        from caffe_compat.engine.network import CaffeNet
        from caffe_compat.context import current_context
        self.names = list(dict.fromkeys(names))
        param, blobs, last = feature_net_param(net, self.names, pool)
        self.blobs = dict(zip(self.names, blobs))
        self.ctx = ctx or current_context()
        self.block = CaffeNet(build_graph(param), 1, ctx=self.ctx)
        loaded = set(loader(self.block))
        missing = [layer.name for layer in self.block.caffe_layers
                   if layer.blobs() and layer.name not in loaded]
        if missing:
            raise CaffeCompatError(f"the weights have no blobs for layer(s) "
                                   f"{', '.join(missing[:5])}: prototxt and weights do not match")
        if len(self.block.input_names) != 1:
            raise CaffeCompatError(f"style transfer needs a net with one input, this one has "
                                   f"{self.block.input_names}")
        self.channels = int(self.block.blob_shapes[self.block.input_names[0]][1])
        for p in self.block.collect_params().values():
            p.grad_req = "null"            # gradients w.r.t. the image only
        self._outputs = list(dict.fromkeys(blobs))
        self.block.set_outputs(self._outputs, end=last)
        # (oneDNN's LRN backward bug inside whole-graph backward is handled by the engine's
        # LRN layer itself: caffe_compat/engine/onednn.py.)
        if hybridize:
            self.block.hybridize(static_alloc=True)

    @classmethod
    def from_files(cls, prototxt: str, weights: str, names: Sequence[str], **kwargs) -> "FeatureNet":
        """Over a user's deploy prototxt + caffemodel (only the layers used are loaded)."""
        if not os.path.isfile(weights):
            raise FileNotFoundError(2, "No such file or directory", str(weights))
        return cls(read_deploy(prototxt), names, lambda block: block.copy_from(str(weights)),
                   **kwargs)

    @classmethod
    def from_zoo(cls, name: str, names: Sequence[str], progress: bool = True,
                 **kwargs) -> "FeatureNet":
        """Over a zoo model (weights fetched on first use, then the converted cache)."""
        from caffe_compat import zoo
        entry = zoo.get(name)
        zoo.fetch(entry, progress=progress)

        def loader(block):
            source = zoo.load(entry, ctx=kwargs.get("ctx"), progress=progress).layers_by_name()
            return share_blobs(block, source)

        return cls(read_deploy(str(entry.deploy)), names, loader, **kwargs)

    def __call__(self, x: mx.nd.NDArray) -> dict:
        out = self.block(x)
        values = dict(zip(self._outputs, out if isinstance(out, (list, tuple)) else [out]))
        return {n: values[self.blobs[n]] for n in self.names}
