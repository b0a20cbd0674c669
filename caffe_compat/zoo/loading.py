"""Loading a zoo model as the engine's block or a pycaffe ``Net`` (weights fetched once,
converted once)."""
from __future__ import annotations

import logging
from pathlib import Path

from caffe_compat.download import file_lock
from caffe_compat.errors import WeightsMismatchError
from caffe_compat.zoo.cache import fetch
from caffe_compat.zoo.params import _StaleParams, load_params, params_path, save_params, weights_sha1
from caffe_compat.zoo.registry import ModelEntry, ModelRef, get

log = logging.getLogger("caffe_compat.zoo")
TEST = 1  # caffe_pb2.TEST


def _load_weights(block, entry: ModelEntry, weights: Path) -> None:
    """Fill ``block`` from the cached .params, or convert the caffemodel once and cache it."""
    import mxnet as mx
    cached = params_path(weights_sha1(entry))
    with file_lock(cached):
        if cached.is_file():
            try:
                load_params(block, cached)
                return
            except (_StaleParams, mx.base.MXNetError, OSError) as exc:
                log.warning("%s does not fit %s's net (%s); converting the weights again",
                            cached, entry.name, exc)
        loaded = set(block.copy_from(str(weights)))
        missing = [layer.name for layer in block.caffe_layers
                   if layer.blobs() and layer.name not in loaded]
        if missing:   # copy_from leaves them at their fillers: a wrong prototxt, not weights
            raise WeightsMismatchError(
                f"{weights} has no weights for layer(s) {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} of {entry.name}'s net "
                f"({entry.prototxt.get('deploy')}); the prototxt does not fit these weights")
        save_params(block, cached)


def load(name: ModelRef, ctx=None, phase: int = TEST, *, allow_unverified: bool = False,
         progress: bool = True):
    """The model as the engine's :class:`~caffe_compat.engine.network.CaffeNet` with weights.

    Fetches the weights if needed; the first load converts them to a cached ``.params``.
    ``ctx``: an MXNet context (default: the one chosen by ``set_mode_cpu/gpu``).
    """
    from caffe_compat.context import current_context
    from caffe_compat.engine.network import CaffeNet
    entry = get(name)
    deploy = entry.deploy
    weights = fetch(entry, allow_unverified=allow_unverified, progress=progress)
    ctx = ctx or current_context()
    # no filler draws: every learnable blob comes from the weights (checked below)
    block = CaffeNet.from_prototxt(str(deploy), phase, ctx=ctx, fill=False)
    _load_weights(block, entry, weights)
    return block


def load_pycaffe(name: ModelRef, ctx=None, phase: int = TEST, *,
                 allow_unverified: bool = False, progress: bool = True):
    """The model as a pycaffe-style :class:`caffe_compat.Net` (``net.blobs``, ``net.forward()``)."""
    from caffe_compat.pycaffe.net import Net
    return Net.from_block(load(name, ctx, phase, allow_unverified=allow_unverified,
                               progress=progress))
