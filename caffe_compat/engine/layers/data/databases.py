"""Caffe's key-value databases (db::DB): LMDB (the ``lmdb`` package) and LevelDB
(``plyvel``), opened read-only, one handle per path and process, read in key order
and starting over after the last record.

    db = SharedDB.get("LMDB", "train_lmdb", error)     # error: ErrorFactory
    cursor = LoopingCursor(db, error)
    key, value = cursor.current(); cursor.advance()
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Callable

from caffe_compat.engine.layers.data.base import ErrorFactory


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
