"""The pretrained net to start from: a zoo model or a user's prototxt + caffemodel.

>>> src = SourceModel.from_zoo("bvlc_reference_caffenet")            # doctest: +SKIP
>>> src = SourceModel.from_files("deploy.prototxt", "w.caffemodel",  # doctest: +SKIP
...                              mean=(104, 117, 123))
>>> block = build_block(src.net, phase=1)                           # doctest: +SKIP
>>> loaded = src.load_into(block)  # layer names that got weights # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2
from caffe_compat.recipes.finetune.preprocess import IMAGENET_MEAN, Preprocess
from caffe_compat.recipes.finetune.surgery import input_shape

TEST = 1


def read_deploy(prototxt: str) -> caffe_pb2.NetParameter:
    """A deploy prototxt (any Caffe generation) upgraded and filtered to TEST."""
    from caffe_compat.formats.net_filter import filter_net
    from caffe_compat.formats.prototxt import read_net
    if not os.path.isfile(prototxt):
        raise FileNotFoundError(2, "No such file or directory", str(prototxt))
    return filter_net(read_net(str(prototxt)), TEST).param


def build_block(net: caffe_pb2.NetParameter, phase: int = TEST, ctx=None):
    """The engine's CaffeNet for a NetParameter (Caffe's fillers fill new layers)."""
    from caffe_compat.engine.graph import build_graph
    from caffe_compat.engine.network import CaffeNet
    return CaffeNet(build_graph(net), phase, ctx=ctx)


@dataclass
class SourceModel:
    """A pretrained net: its TEST deploy NetParameter, mean, and how to load its weights.

    ``loader(block)`` copies the weights into any CaffeNet by layer name and returns the
    names it loaded (layers the block lacks are skipped, as Caffe's copy_from does).
    """
    name: str
    net: caffe_pb2.NetParameter
    mean: tuple
    loader: Callable
    channel_order: str = "BGR"

    @classmethod
    def from_zoo(cls, name: str, ctx=None, progress: bool = True) -> "SourceModel":
        """A zoo model: its bundled deploy prototxt, recorded mean and weights (fetched
        on first use; ``zoo.load``'s converted-params cache makes later loads fast)."""
        from caffe_compat import zoo
        entry = zoo.get(name)
        if entry.channel_order not in ("BGR",) or entry.channels != 3:
            raise CaffeCompatError(f"model {entry.name!r} takes {entry.channels} "
                                   f"{entry.channel_order} channels; fine-tuning reads images "
                                   "as Caffe's ImageData does (3 BGR channels)")
        zoo.fetch(entry, progress=progress)   # fail early, in one line, when offline
        mean = tuple(float(v) for v in zoo.mean(entry, per_channel=True))

        def loader(block) -> list[str]:
            source = zoo.load(entry, ctx=ctx, progress=progress)
            wanted = {layer.name for layer in block.caffe_layers if layer.blob_names}
            pairs = [(layer.name, [p.data().asnumpy() for p in layer.blobs()])
                     for layer in source.caffe_layers if layer.name in wanted]
            return block.load_layer_blobs(pairs, source=entry.name)

        return cls(entry.name, read_deploy(str(entry.deploy)), mean, loader)

    @classmethod
    def from_files(cls, prototxt: str, weights: str,
                   mean: Optional[Sequence[float]] = None) -> "SourceModel":
        """A user's deploy prototxt and caffemodel (.caffemodel or .h5); ``mean`` in the
        net's channel order (default: the ImageNet BGR mean 104, 117, 123)."""
        if not os.path.isfile(weights):
            raise FileNotFoundError(2, "No such file or directory", str(weights))
        net = read_deploy(prototxt)
        channels = input_shape(net)[0]
        if mean is None:
            mean = IMAGENET_MEAN if channels == 3 else (0.0,) * channels

        def loader(block) -> list[str]:
            return block.copy_from(str(weights))

        return cls(str(prototxt), net, tuple(float(m) for m in mean), loader)

    def preprocess(self, resize: Optional[int] = None) -> Preprocess:
        """Caffe preprocessing for this net's input (see :meth:`Preprocess.for_input`)."""
        c, h, w = input_shape(self.net)
        return Preprocess.for_input((h, w), self.mean, resize=resize, channels=c)

    def load_into(self, block, required: Sequence[str] = ()) -> list[str]:
        """Copy the weights into ``block``; every layer named in ``required`` must get them."""
        loaded = set(self.loader(block))
        missing = [n for n in required if n not in loaded]
        if missing:
            raise CaffeCompatError(f"the weights of {self.name} have no blobs for layer(s) "
                                   f"{', '.join(missing[:5])}: prototxt and weights do not match")
        return sorted(loaded)
