"""A model's downloaded files: fetch, import by hand, read the mean and labels, verify,
remove (download and checksum rules live in :mod:`caffe_compat.download`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from caffe_compat.download import (download, install_file, read_stamp, remove_cached,
                                   sha1_of, write_stamp)
from caffe_compat.zoo.params import params_path
from caffe_compat.zoo.registry import ModelRef, RegistryError, get, models


def path(name: ModelRef) -> Path:
    """Where the model's weights are cached (whether or not they are there yet)."""
    return get(name).weights_path


def is_cached(name: ModelRef) -> bool:
    return get(name).is_cached


def fetch(name: ModelRef, *, allow_unverified: bool = False, progress: bool = True) -> Path:
    """Download the model's weights into the cache if needed; return their path."""
    entry = get(name)
    dest = entry.weights_path
    w = entry.weights
    return download(w.urls, dest, w.sha1, w.size, allow_unverified=allow_unverified,
                    progress=progress, manual_hint=entry.manual_hint())


def fetch_mean(name: ModelRef, *, allow_unverified: bool = False,
               progress: bool = True) -> Optional[Path]:
    """Download the model's mean ``.binaryproto`` if it has one; None otherwise."""
    entry = get(name)
    m = entry.mean_file
    if m is None:
        return None
    hint = f"to place it by hand: copy {m.file} into {entry.cache_dir}/"
    return download(m.urls, entry.cache_dir / m.file, m.sha1, m.size,
                    allow_unverified=allow_unverified, progress=progress, manual_hint=hint)


def mean(name: ModelRef, *, per_channel: bool = False, allow_unverified: bool = False):
    """The model's input mean as numpy: (C,) values, or the (C, H, W) mean image.

    Models with a mean ``.binaryproto`` give the image (downloaded on first use) unless
    ``per_channel=True`` and per-channel values are recorded; ``per_channel=True`` on
    an image-only model averages the image over H and W.
    """
    import numpy as np
    entry = get(name)
    if entry.mean_values is not None and (per_channel or entry.mean_file is None):
        return np.asarray(entry.mean_values, dtype=np.float32)
    if entry.mean_file is None:
        raise RegistryError(f"model {entry.name!r} records no mean")
    from caffe_compat.formats.binaryproto import read_binaryproto
    image = np.asarray(read_binaryproto(fetch_mean(entry, allow_unverified=allow_unverified)),
                       dtype=np.float32)
    if image.ndim == 4:
        image = image[0]
    return image.mean(axis=(1, 2)) if per_channel else image


def labels(name: ModelRef, output: Optional[str] = None) -> list[str]:
    """Class names of the model's output (``output`` picks one of several heads)."""
    entry = get(name)
    if not entry.labels:
        raise RegistryError(f"model {entry.name!r} has no labels file")
    key = output if output is not None else ("" if "" in entry.labels else next(iter(entry.labels)))
    if key not in entry.labels:
        raise RegistryError(f"model {entry.name!r} has labels for {sorted(entry.labels)}, "
                            f"not {output!r}")
    with open(entry.labels[key], encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def import_file(name: ModelRef, src: Union[str, os.PathLike], *,
                allow_unverified: bool = False) -> Path:
    """Install weights the user already has (checked against the registry's SHA-1)."""
    entry = get(name)
    dest = entry.weights_path
    w = entry.weights
    return install_file(src, dest, w.sha1, w.size, allow_unverified=allow_unverified)


def remove(name: ModelRef) -> list[Path]:
    """Delete the model's cached files (weights, mean, converted params); returns them."""
    entry = get(name)
    removed: list[Path] = []
    sha1 = None
    if entry.weights is not None and entry.weights_path.is_file():
        stamp = read_stamp(entry.weights_path)
        sha1 = entry.weights.sha1 or (stamp or {}).get("sha1")
    for remote in (entry.weights, entry.mean_file):
        if remote is not None:
            removed += remove_cached(entry.cache_dir / remote.file)
    if sha1:
        params = params_path(sha1)
        if params.is_file():
            params.unlink()
            removed.append(params)
    if entry.cache_dir.is_dir() and not any(entry.cache_dir.iterdir()):
        entry.cache_dir.rmdir()
    return removed


@dataclass(frozen=True)
class VerifyResult:
    model: str
    path: Path
    ok: bool
    message: str


def verify(names: Optional[Sequence[str]] = None) -> list[VerifyResult]:
    """Re-hash cached files of ``names`` (default: every cached model) against the registry.

    Files with no registry SHA-1 are checked against the SHA-1 recorded when they were
    accepted. Nothing is deleted; a bad file is reported (``caffe-compat zoo remove``).
    """
    entries = [get(n) for n in names] if names else list(models().values())
    results = []
    seen = set()
    for entry in entries:
        for remote in (entry.weights, entry.mean_file):
            if remote is None:
                continue
            file = entry.cache_dir / remote.file
            if file in seen or not file.is_file():
                continue
            seen.add(file)
            stamp = read_stamp(file) or {}
            expected = remote.sha1 or stamp.get("sha1")
            digest = sha1_of(file)
            if expected is None:
                ok, msg = True, f"sha1 {digest} (unverified: no checksum recorded)"
            elif digest == expected:
                ok, msg = True, f"sha1 {digest}" + ("" if remote.sha1 else " (as accepted; no registry checksum)")
            else:
                ok, msg = False, f"sha1 {digest}, expected {expected}"
            if ok:
                write_stamp(file, digest, verified=remote.sha1 is not None,
                            source=stamp.get("source", str(file)))
            results.append(VerifyResult(entry.name, file, ok, msg))
    return results
