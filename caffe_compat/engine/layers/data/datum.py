"""Datum records into batches: Caffe's DataLayer::load_batch.

A record's value is a serialized ``Datum`` (raw uint8 ``data``, ``float_data`` or an
encoded image); :func:`parse_datum` decodes one, naming the record key when it is
not a Datum, and :class:`DatumBatchLoader` turns ``batch_size`` records in key order
into one transformed float32 batch (plus labels).
"""
from __future__ import annotations

import numpy as np

from caffe_compat.engine.data_transformer import DataTransformer, TransformError
from caffe_compat.engine.layers.data.base import ErrorFactory
from caffe_compat.engine.layers.data.databases import LoopingCursor


def parse_datum(key: bytes, value: bytes, where: str, error: ErrorFactory):
    from google.protobuf.message import DecodeError
    from caffe_compat.proto import caffe_pb2
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as exc:
        raise error(f"{where}: record {show_key(key)} is not a Datum ({exc})") from None
    return datum


def show_key(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))


class DatumBatchLoader:
    """Caffe's DataLayer::load_batch: batch_size Datums in key order, transformed."""

    def __init__(self, cursor: LoopingCursor, transformer: DataTransformer, batch_size: int,
                 labels: bool, where: str, error: ErrorFactory):
        self.cursor, self.transformer = cursor, transformer
        self.batch_size, self.labels, self.where, self.error = batch_size, labels, where, error

    def read(self):
        """The current record as (key, C x H x W array, label)."""
        key, value = self.cursor.current()
        datum = parse_datum(key, value, self.where, self.error)
        try:
            pixels = self.transformer.datum_array(datum)
        except TransformError as exc:
            raise self.error(f"{self.where}: record {show_key(key)}: {exc}") from None
        return key, pixels, datum.label

    def load_batch(self) -> list[np.ndarray]:
        data = labels = None
        for item in range(self.batch_size):
            key, pixels, label = self.read()
            try:
                if item == 0:  # Caffe reshapes the batch to its first datum
                    shape = self.transformer.output_shape(pixels.shape)
                    data = np.empty((self.batch_size,) + shape, dtype=np.float32)
                    labels = np.empty((self.batch_size,), dtype=np.float32)
                out = self.transformer.transform_array(pixels)
            except TransformError as exc:
                raise self.error(f"{self.where}: record {show_key(key)}: {exc}") from None
            if out.shape != data.shape[1:]:
                raise self.error(f"{self.where}: record {show_key(key)} gives shape {out.shape} "
                                 f"but the batch's first record gives {data.shape[1:]} "
                                 "(records of one batch must have equal sizes)")
            data[item] = out
            labels[item] = label
            self.cursor.advance()
        return [data, labels] if self.labels else [data]

