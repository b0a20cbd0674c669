"""Caffe's key-value databases (db::DB: LMDB and LevelDB) and their Datum records.

The Data layer (data.py) reads its source through :class:`SharedDB` (one open database
per path and process), walks it with :class:`LoopingCursor` in key order, and decodes
each record with :func:`read_datum_record`. Nothing here creates a file: a missing or
foreign database is reported, and every malformed record raises the layer's error
naming the database and key (tests/test_fuzz_readers.py mutates records to check it).

>>> from caffe_compat.io import array_to_datum
>>> import numpy as np
>>> value = array_to_datum(np.zeros((3, 2, 2), np.uint8), label=4).SerializeToString()
>>> read_datum_record(value, "db").shape
(3, 2, 2)
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Callable

import numpy as np

from caffe_compat.errors import LayerError

ErrorFactory = Callable[[str], LayerError]


# ---- key-value databases (Caffe's db::DB: LMDB and LevelDB) ---------------------------
class SharedDB:
    """One open database per path and process (neither LMDB nor LevelDB lets a process
    open the same database twice); closed when no layer uses it any more."""

    _open: "weakref.WeakValueDictionary[tuple, SharedDB]" = weakref.WeakValueDictionary()
    _lock = threading.Lock()

    def __init__(self, backend: str, path: str, handle, closer: Callable[[], None]):
        self.backend, self.path, self.handle = backend, path, handle
        weakref.finalize(self, closer)

    @classmethod
    def get(cls, backend: str, path: str, error: ErrorFactory) -> "SharedDB":
        key = (backend, os.path.realpath(path))
        with cls._lock:
            db = cls._open.get(key)
            if db is None:
                opener = _open_lmdb if backend == "LMDB" else _open_leveldb
                handle = opener(path, error)
                db = cls(backend, path, handle, handle.close)
                cls._open[key] = db
            return db


def _open_lmdb(path: str, error: ErrorFactory):
    import lmdb
    if not os.path.isdir(path):
        hint = (" (it looks like a LevelDB directory: set data_param.backend: LEVELDB)"
                if os.path.isfile(os.path.join(path, "CURRENT")) else "")
        raise error(f"LMDB source {path!r} is not a directory{hint}" if os.path.exists(path)
                    else f"LMDB source {path!r} does not exist")
    try:
        return lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True,
                         max_readers=126)
    except lmdb.Error as exc:
        hint = (" (it looks like a LevelDB directory: set data_param.backend: LEVELDB)"
                if os.path.isfile(os.path.join(path, "CURRENT")) else "")
        raise error(f"cannot open LMDB {path!r}: {exc}{hint}") from None


def _open_leveldb(path: str, error: ErrorFactory):
    if os.path.isfile(os.path.join(path, "data.mdb")):
        raise error(f"source {path!r} is an LMDB database but data_param.backend is LEVELDB "
                    "(Caffe's default): add 'backend: LMDB' to data_param")
    try:
        import plyvel
    except ImportError:
        raise error("LevelDB sources need the 'plyvel' package (pip install plyvel); or "
                    "convert the database to LMDB (read it with plyvel elsewhere and write "
                    "each key/value with the 'lmdb' package) and set backend: LMDB") from None
    # LevelDB creates the directory (and LOCK/LOG files) before it finds there is no
    # database: check first, so that building a net never leaves files behind.
    if not os.path.exists(path):
        raise error(f"LevelDB source {path!r} does not exist")
    if not os.path.isfile(os.path.join(path, "CURRENT")):
        raise error(f"LevelDB source {path!r} is not a LevelDB database (no CURRENT file)")
    try:
        return plyvel.DB(path, create_if_missing=False)
    except plyvel.Error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise error(f"cannot open LevelDB {path!r}: {detail}") from None


class LoopingCursor:
    """Records in key order, starting again at the first after the last (Caffe's
    DataLayer::Next: 'Restarting data prefetching from start')."""

    def __init__(self, db: SharedDB, error: ErrorFactory):
        self.db = db  # keeps the database open
        self.error = error
        if db.backend == "LMDB":
            self._txn = db.handle.begin(buffers=False)
            self._it = self._txn.cursor()
        else:
            self._it = db.handle.raw_iterator()
        if not self._first():
            raise error(f"{db.backend} {db.path!r} holds no records")

    def _first(self) -> bool:
        if self.db.backend == "LMDB":
            return self._it.first()
        self._it.seek_to_first()
        return self._it.valid()

    def current(self) -> tuple[bytes, bytes]:
        return bytes(self._it.key()), bytes(self._it.value())

    def advance(self) -> None:
        if self.db.backend == "LMDB":
            moved = self._it.next()
        else:
            self._it.next()
            moved = self._it.valid()
        if not moved:
            self._first()


def parse_datum(key: bytes, value: bytes, where: str, error: ErrorFactory):
    """One record as a ``Datum``; bytes that are not one raise ``error`` naming the key."""
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


def read_datum_record(value: bytes, where: str, crop_size: int = 0,
                      error: ErrorFactory = None) -> np.ndarray:
    """A record's C x H x W pixels, decoded as the Data layer decodes it (Datum, then
    DataTransformer.datum_array). Malformed bytes raise a LayerError naming ``where``."""
    from caffe_compat.engine.data_transformer import DataTransformer, TransformError
    from caffe_compat.proto import caffe_pb2
    if error is None:
        def error(message: str) -> LayerError:
            return LayerError("<record>", "Data", message, path=where)
    datum = parse_datum(b"record", value, where, error)
    param = caffe_pb2.TransformationParameter(crop_size=crop_size)
    transformer = DataTransformer(param, caffe_pb2.TEST, where=where)
    try:
        return transformer.datum_array(datum)
    except TransformError as exc:
        raise error(f"{where}: {exc}") from None
