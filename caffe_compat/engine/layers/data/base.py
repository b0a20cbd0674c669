"""What every data layer shares: no bottoms, tops fed from the host, batches made
in the caller (:class:`HostDataLayer`) or in a background thread
(:class:`PrefetchingDataLayer`, Caffe's BasePrefetchingDataLayer), errors that name
the layer, and seeded random draws.

A subclass implements ``setup`` (Caffe's DataLayerSetUp: validate, open the source,
set ``declared_tops``) and ``next_batch()`` (one float32 array per top)::

    class MyData(HostDataLayer):
        def setup(self, bottom_shapes):
            self.setup_source(bottom_shapes)
            self.declared_tops = [(4, 3, 8, 8)]
        def next_batch(self):
            return [np.zeros((4, 3, 8, 8), np.float32)]
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable, Sequence

import numpy as np

from caffe_compat.engine.data_transformer import DataTransformer, TransformError
from caffe_compat.engine.layer import Layer, Shape
from caffe_compat.engine.prefetch import Prefetcher
from caffe_compat.errors import LayerError

#: Makes a layer's LayerError from a message; keeps no reference to the layer.
ErrorFactory = Callable[[str], LayerError]


def seeded_rng() -> np.random.RandomState:
    """A generator of its own, seeded from the shared one (Caffe: ``caffe_rng_rand()``
    seeds each layer's prefetch_rng_)."""
    from caffe_compat.engine.fillers import rng
    return np.random.RandomState(rng().randint(0, 2 ** 32, dtype=np.uint64))


def caffe_rng_rand() -> int:
    """One draw of Caffe's ``caffe_rng_rand()`` (an unsigned 32-bit value)."""
    from caffe_compat.engine.fillers import rng
    return int(rng().randint(0, 2 ** 32, dtype=np.uint64))


def source_tokens(path: str, what: str, error: ErrorFactory) -> list[tuple[str, int]]:
    """The whitespace-separated tokens of a text source file (as Caffe reads them with
    ``>>``), each with its 1-based line number; ``what`` names the file in errors."""
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().split("\n")
    except OSError as exc:
        raise error(f"failed to open {what} {path!r}: {exc.strerror or exc}") from None
    return [(tok, n) for n, line in enumerate(lines, start=1) for tok in line.split()]


# ---- the shared base -------------------------------------------------------------------
class HostDataLayer(Layer):
    """Base of the data layers: no bottoms, tops fed from the host.

    Subclasses implement :meth:`setup` (validate, open the source, return nothing) and
    set ``self.declared_tops`` (Caffe's top shapes after DataLayerSetUp), plus
    :meth:`next_batch`.
    """

    host_source = True
    #: (exactly, at_least, at_most) number of tops, Caffe's Exact/Min/MaxTopBlobs.
    top_counts: tuple = (None, 1, None)

    def __init__(self, param, phase: int):
        super().__init__(param, phase)
        self.declared_tops: list[Shape] = []

    def error_factory(self) -> ErrorFactory:
        """A callable making this layer's LayerError that keeps no reference to the
        layer (safe to hand to a worker thread)."""
        path, line = self.source
        return functools.partial(_layer_error, self.param.name, self.param.type, path, line)

    def check_tops(self) -> int:
        exactly, at_least, at_most = self.top_counts
        n = len(self.param.top)
        if exactly is not None and n != exactly:
            raise self.error(f"takes exactly {exactly} top blob(s), got {n}")
        if at_least is not None and n < at_least:
            raise self.error(f"takes at least {at_least} top blob(s), got {n}")
        if at_most is not None and n > at_most:
            raise self.error(f"takes at most {at_most} top blob(s), got {n}")
        return n

    def setup_source(self, bottom_shapes: Sequence[Shape]) -> None:
        """The checks every data layer makes before its own setup."""
        if bottom_shapes:
            raise self.error(f"takes no bottom blobs, got {len(bottom_shapes)}")
        self.check_tops()

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        """The declared top shapes; with one shape per top (arrays fed directly, as
        for ``Input``) those shapes."""
        if not bottom_shapes:
            return list(self.declared_tops)
        if len(bottom_shapes) != len(self.param.top):
            raise self.error(f"fed {len(bottom_shapes)} array(s) for {len(self.param.top)} top(s)")
        return [tuple(s) for s in bottom_shapes]

    def next_batch(self) -> list[np.ndarray]:
        raise NotImplementedError

    def hybrid_forward(self, F, *fed):
        return tuple(F.identity(x) for x in fed)

    def transformer(self) -> DataTransformer:
        """Caffe's data_transformer_ for ``transform_param`` and this phase."""
        tp = self.param.transform_param if self.param.HasField("transform_param") else None
        try:
            return DataTransformer(tp, self.phase)
        except TransformError as exc:
            raise self.error(f"transform_param: {exc}") from None

    def warn_deprecated(self, sub_param, fields: Sequence[str]) -> None:
        """Caffe ignores the old per-layer transformation fields in V2 layers."""
        for f in fields:
            if sub_param.HasField(f):
                warnings.warn(f'layer "{self.name}" (type {self.type}): {f} inside '
                              f"{sub_param.DESCRIPTOR.name} is ignored by Caffe for this "
                              f"layer; set it in transform_param", stacklevel=4)


def _layer_error(name: str, type_: str, path, line, message: str) -> LayerError:
    return LayerError(name, type_, message, path=path, line=line)


class PrefetchingDataLayer(HostDataLayer):
    """A data layer whose batches are made by a loader in a background thread."""

    def start_loader(self, loader) -> None:
        depth = int(self.param.data_param.prefetch)  # Caffe: every prefetching layer reads it
        if depth < 1:
            raise self.error(f"data_param.prefetch must be at least 1, got {depth}")
        self._prefetcher = Prefetcher(loader, depth=depth, name=f'layer "{self.name}"')

    def next_batch(self) -> list[np.ndarray]:
        """The next batch (one float32 array per top), prepared in the background."""
        prefetcher = getattr(self, "_prefetcher", None)
        if prefetcher is None:
            raise self.error("the layer is not set up (call setup first)")
        return prefetcher.next()

    def close(self) -> None:
        """Stop the background loader (it also stops when the layer is collected)."""
        prefetcher = getattr(self, "_prefetcher", None)
        if prefetcher is not None:
            prefetcher.stop()

