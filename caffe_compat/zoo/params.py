"""The converted-parameters cache: a model's weights as a Gluon ``.params`` file keyed by
the weights' SHA-1, written on the first load and read by the next."""
from __future__ import annotations

import os
from pathlib import Path

from caffe_compat.download import cache_home, cached_sha1
from caffe_compat.zoo.registry import ModelRef, RegistryError, get


def params_path(sha1: str) -> Path:
    """``<cache>/params/<sha1>.params``: the converted parameters of those weights.

    An MXNet NDArray file (``mx.nd.load`` reads it) with one array per Caffe blob, keyed
    ``"<layer name>/<blob index>"``, so it stays valid whatever order the layers have.
    """
    return cache_home() / "params" / f"{sha1}.params"


class _StaleParams(Exception):
    """The cached .params does not fit the net (layers or shapes differ)."""


def _blob_params(block) -> dict[str, list]:
    """``"<layer>/<i>"`` -> the Gluon Parameters holding that Caffe blob (all same-named layers)."""
    out: dict[str, list] = {}
    for layer in block.caffe_layers:
        for i, p in enumerate(layer.blobs()):
            out.setdefault(f"{layer.name}/{i}", []).append(p)
    return out


def save_params(block, path: Path) -> None:
    """Write every blob of ``block`` to ``path`` atomically (see :func:`params_path`)."""
    import mxnet as mx
    arrays = {key: params[0].data() for key, params in _blob_params(block).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    mx.nd.save(str(tmp), arrays)
    os.replace(tmp, path)


def load_params(block, path: Path) -> None:
    """Fill ``block`` from a file of :func:`save_params`; it must hold exactly its blobs."""
    import mxnet as mx
    arrays = mx.nd.load(str(path))
    wanted = _blob_params(block)
    if not isinstance(arrays, dict) or set(arrays) != set(wanted):
        raise _StaleParams("its blobs are not the net's")
    for key, params in wanted.items():
        if tuple(arrays[key].shape) != tuple(params[0].shape):
            raise _StaleParams(f"blob {key} has shape {arrays[key].shape}, the net wants "
                               f"{params[0].shape}")
    for key, params in wanted.items():
        for p in params:
            p.set_data(arrays[key])


def weights_sha1(name: ModelRef) -> str:
    """SHA-1 of the model's cached weights (the registry's, or the one recorded on fetch)."""
    entry = get(name)
    if entry.weights.sha1:
        return entry.weights.sha1
    digest = cached_sha1(entry.weights_path)
    if digest is None:
        raise RegistryError(f"model {entry.name!r}: weights are not cached; fetch them first")
    return digest
