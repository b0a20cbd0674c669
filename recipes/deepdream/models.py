"""Loading a net to dream with: the notebook's ``force_backward`` patch done for the user.

bvlc_googlenet's deploy.prototxt, like most deploy files, lacks ``force_backward: true``,
so pycaffe computes no gradient for ``data``; the notebook re-writes the prototxt with
it set and builds ``caffe.Classifier(..., mean=[104, 116, 122], channel_swap=(2, 1, 0))``.

>>> from caffe_compat.recipes.deepdream.models import load_dream_net, embedded_model
>>> net = load_dream_net(*embedded_model())         # pycaffe Classifier, force_backward on
>>> net.transformer.mean["data"].ravel()
array([104., 116., 122.], dtype=float32)
>>> net = load_zoo_dream_net("bvlc_googlenet")      # doctest: +SKIP
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np

from caffe_compat.recipes.deepdream.images import DATA_DIR
from caffe_compat.recipes.deepdream.targets import EndSpec, resolve_targets

#: The notebook's mean (BGR) and channel swap for bvlc_googlenet.
NOTEBOOK_MEAN = np.float32([104.0, 116.0, 122.0])
NOTEBOOK_CHANNEL_SWAP = (2, 1, 0)
#: The notebook's default dream layer on bvlc_googlenet.
GOOGLENET_END = "inception_4c/output"
#: The deepest Inception output of the embedded model.
EMBEDDED_END = "inception_3b/output"
EMBEDDED_PROTOTXT = DATA_DIR / "embedded_googlenet.prototxt"
EMBEDDED_WEIGHTS = DATA_DIR / "embedded_googlenet.caffemodel"

PathLike = Union[str, os.PathLike]
TEST = 1  # caffe_pb2.TEST


def embedded_model() -> tuple[Path, Path]:
    """(deploy prototxt, caffemodel) of the small GoogLeNet-style model shipped here.

    Same layer names as bvlc_googlenet's stem + inception_3a/3b (half the channels),
    conv1 = fixed Gabor and colour-opponent filters, the rest trained briefly on
    synthetic textures; ``make_embedded_model.py`` regenerates both files.
    """
    for p in (EMBEDDED_PROTOTXT, EMBEDDED_WEIGHTS):
        if not p.is_file():
            raise FileNotFoundError(2, "embedded DeepDream model missing (run python -m "
                                       "caffe_compat.recipes.deepdream.make_embedded_model)",
                                    str(p))
    return EMBEDDED_PROTOTXT, EMBEDDED_WEIGHTS


def dream_prototxt(prototxt: PathLike, out_path: PathLike, end: Optional[EndSpec] = None) -> Path:
    """Write the net to dream with: ``prototxt`` (TEST phase, upgraded to V2) with
    ``force_backward: true``, cut after the deepest layer of ``end`` when given.

    Cutting matters for small pictures: bvlc_googlenet's ``pool5/7x7_s1`` needs about
    224 pixels, so the small octaves of a 320x240 image cannot reshape the whole net
    (real Caffe fails there too), while the layers up to ``inception_4c`` can.
    """
    from caffe_compat.engine.graph import build_graph
    from caffe_compat.formats.net_filter import filter_net
    from caffe_compat.formats.prototxt import read_net, write_net
    definition = filter_net(read_net(str(prototxt)), TEST)
    net_param = definition.param
    net_param.force_backward = True
    if end is not None:
        last = resolve_targets(build_graph(net_param, definition.path, definition.layer_lines),
                               end).layer
        keep = [lp.name for lp in net_param.layer].index(last) + 1
        del net_param.layer[keep:]
    write_net(net_param, str(out_path))
    return Path(out_path)


def load_dream_net(prototxt: PathLike, weights: Optional[PathLike],
                   end: Optional[EndSpec] = None, mean: np.ndarray = NOTEBOOK_MEAN,
                   channel_swap=NOTEBOOK_CHANNEL_SWAP):
    """The notebook's net: ``caffe.Classifier`` over a force_backward copy of ``prototxt``.

    ``end`` (a layer, blob or list) cuts the net after the deepest of them (see
    :func:`dream_prototxt`); None keeps every layer, as the notebook did. The patched
    copy lives in a temporary file only while the net is built.
    """
    from caffe_compat.pycaffe.classifier import Classifier
    if not os.path.isfile(prototxt):
        raise FileNotFoundError(2, "No such file", str(prototxt))
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(2, "No such file", str(weights))
    with tempfile.TemporaryDirectory(prefix="deepdream-") as tmp:
        patched = dream_prototxt(prototxt, Path(tmp) / "tmp.prototxt", end)
        return Classifier(str(patched), None if weights is None else str(weights),
                          mean=np.float32(mean), channel_swap=channel_swap)


def load_zoo_dream_net(name: str = "bvlc_googlenet", end: Optional[EndSpec] = None,
                       progress: bool = True):
    """A zoo model as the notebook's Classifier (downloads the weights on first use)."""
    from caffe_compat import zoo
    entry = zoo.get(name)
    weights = zoo.fetch(entry, progress=progress)
    return load_dream_net(entry.deploy, weights, end=end)
