"""Caffe's Data layer: Datums from an LMDB or LevelDB (data_layer.cpp)."""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.data_transformer import TransformError
from caffe_compat.engine.layer import Shape, register_layer
from caffe_compat.engine.layers.data.base import PrefetchingDataLayer, caffe_rng_rand
from caffe_compat.engine.layers.data.databases import LoopingCursor, SharedDB
from caffe_compat.engine.layers.data.datum import DatumBatchLoader


@register_layer("Data", origin="BVLC")
class DataLayer(PrefetchingDataLayer):
    """Caffe's DataLayer: Datums from an LMDB (``backend: LMDB``) or LevelDB (the
    default backend, read with ``plyvel``) in key order, ``batch_size`` per batch,
    through ``transform_param``; starts over after the last record. One top (data) or
    two (data, label). ``rand_skip`` skips ``rand() % rand_skip`` records at start.
    """

    top_counts = (None, 1, 2)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        from caffe_compat.proto import caffe_pb2
        self.setup_source(bottom_shapes)
        dp = self.param.data_param
        self.warn_deprecated(dp, ("scale", "mean_file", "crop_size", "mirror"))
        if not dp.source:
            raise self.error("data_param.source is required")
        if dp.batch_size <= 0:
            raise self.error("data_param.batch_size must be positive")
        backend = "LMDB" if dp.backend == caffe_pb2.DataParameter.LMDB else "LEVELDB"
        error = self.error_factory()
        cursor = LoopingCursor(SharedDB.get(backend, dp.source, error), error)
        if dp.rand_skip:
            for _ in range(caffe_rng_rand() % dp.rand_skip):
                cursor.advance()
        transformer = self.transformer()
        loader = DatumBatchLoader(cursor, transformer, int(dp.batch_size),
                                  len(self.param.top) == 2, f"{backend} {dp.source!r}", error)
        _, pixels, _ = loader.read()
        try:
            shape = transformer.output_shape(pixels.shape)
        except TransformError as exc:
            raise self.error(f"{dp.source!r}: first record: {exc}") from None
        self.declared_tops = [(int(dp.batch_size),) + shape]
        if len(self.param.top) == 2:
            self.declared_tops.append((int(dp.batch_size),))
        self.start_loader(loader)

