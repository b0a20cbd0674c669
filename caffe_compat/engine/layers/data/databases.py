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


def _close_all(closers: list, close_db: Callable[[], None]) -> None:
    for close in closers:
        close()
    close_db()


class SharedDB:
    """One open database per path and process (neither LMDB nor LevelDB lets a process
    open the same database twice); closed when no layer uses it any more.

    Iterators and transactions opened on it are registered with :meth:`opened` and
    closed before the database. The finalizer holds them, so a garbage collection that
    frees a layer, its cursor and the database together cannot free the database first
    (plyvel then frees a LevelDB iterator over a deleted database: a segfault).
    """

    _open: "weakref.WeakValueDictionary[tuple, SharedDB]" = weakref.WeakValueDictionary()
    _lock = threading.Lock()

    def __init__(self, backend: str, path: str, handle):
        self.backend, self.path, self.handle = backend, path, handle
        self._closers: list[Callable[[], None]] = []
        weakref.finalize(self, _close_all, self._closers, handle.close)

    def opened(self, close: Callable[[], None]) -> None:
        """Register the ``close`` of an iterator or transaction over this database."""
        self._closers.append(close)

    @classmethod
    def get(cls, backend: str, path: str, error: ErrorFactory) -> "SharedDB":
        key = (backend, os.path.realpath(path))
        with cls._lock:
            db = cls._open.get(key)
            if db is None:
                opener = _open_lmdb if backend == "LMDB" else _open_leveldb
                handle = opener(path, error)
                db = cls(backend, path, handle)
                cls._open[key] = db
            return db


_LEVELDB_HINT = " (it looks like a LevelDB directory: set data_param.backend: LEVELDB)"


def _check_source_dir(backend: str, path: str, marker: str, error: ErrorFactory,
                      hint: str = "") -> None:
    """A database source must be an existing directory holding ``marker`` (LMDB's
    data.mdb, LevelDB's CURRENT); checked before opening so that nothing is created."""
    if not os.path.exists(path):
        raise error(f"{backend} source {path!r} does not exist")
    if not os.path.isdir(path):
        raise error(f"{backend} source {path!r} is not a directory{hint}")
    if not os.path.isfile(os.path.join(path, marker)):
        raise error(f"{backend} source {path!r} is not a {backend} database (it has no "
                    f"{marker}){hint}")


def _open_lmdb(path: str, error: ErrorFactory):
    import lmdb
    hint = _LEVELDB_HINT if os.path.isfile(os.path.join(path, "CURRENT")) else ""
    _check_source_dir("LMDB", path, "data.mdb", error, hint)
    size = os.path.getsize(os.path.join(path, "data.mdb"))
    try:
        # A reader maps the file's own size (LMDB raises it to the pages in use),
        # not the lmdb package's default 10 MB or the size the writer chose.
        env = lmdb.open(path, readonly=True, create=False, lock=False, readahead=False,
                        subdir=True, max_readers=126, map_size=max(size, 1))
    except lmdb.Error as exc:
        raise error(f"cannot open LMDB {path!r}: {exc}{hint}") from None
    # LMDB maps the file and trusts it: pages past the end of a truncated data.mdb
    # would fault (SIGBUS) when read. Its meta page says where the last page ends.
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if size < needed:
        env.close()
        raise error(f"LMDB {path!r} is truncated or corrupt: data.mdb holds {size} bytes "
                    f"but its pages run to byte {needed}")
    return env


def _db_message(exc) -> str:
    return exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
        exc.args[0], bytes) else str(exc)


def _open_leveldb(path: str, error: ErrorFactory):
    if os.path.isfile(os.path.join(path, "data.mdb")):
        raise error(f"source {path!r} is an LMDB database but data_param.backend is LEVELDB "
                    "(Caffe's default): add 'backend: LMDB' to data_param")
    # LevelDB creates the directory (and LOCK, LOG) before it finds the database
    # missing, even with create_if_missing=False: check first, create nothing.
    _check_source_dir("LevelDB", path, "CURRENT", error)
    try:
        import plyvel
    except ImportError:
        raise error("LevelDB sources need the 'plyvel' package (pip install plyvel); or "
                    "convert the database to LMDB (read it with plyvel elsewhere and write "
                    "each key/value with the 'lmdb' package) and set backend: LMDB") from None
    try:
        return plyvel.DB(path, create_if_missing=False)
    except plyvel.Error as exc:
        raise error(f"cannot open LevelDB {path!r}: {_db_message(exc)}") from None


class LoopingCursor:
    """Records in key order, starting again at the first after the last (Caffe's
    DataLayer::Next: 'Restarting data prefetching from start').

    A database that turns out corrupt while it is read (LMDB's MDB_CORRUPTED, a
    LevelDB block whose checksum fails) raises the layer's error naming the database
    and the last good key.
    """

    def __init__(self, db: SharedDB, error: ErrorFactory):
        self.db = db  # keeps the database open
        self.error = error
        self._key = None
        if db.backend == "LMDB":
            import lmdb
            self._db_error = lmdb.Error
            self._size = os.path.getsize(os.path.join(db.path, "data.mdb"))
            # buffers: key and value come as views into the map, so their sizes can be
            # checked before they are copied (a corrupt size would read past the file).
            self._txn = db.handle.begin(buffers=True)
            db.opened(self._txn.abort)
            self._it = self._txn.cursor()
        else:
            import plyvel
            self._db_error = plyvel.Error
            # LevelDB checksums every block; Caffe does not ask it to check them, but a
            # flipped bit then decodes as a wrong record instead of an error.
            self._it = db.handle.raw_iterator(verify_checksums=True)
            db.opened(self._it.close)
        if not self._guarded(self._first):
            raise error(f"{db.backend} {db.path!r} holds no records")

    def _guarded(self, step):
        try:
            return step()
        except self._db_error as exc:
            after = "" if self._key is None else f" after record {self._key!r}"
            raise self.error(f"{self.db.backend} {self.db.path!r} is corrupt{after}: "
                             f"{_db_message(exc)}") from None

    def _first(self) -> bool:
        if self.db.backend == "LMDB":
            return self._it.first()
        self._it.seek_to_first()
        return self._it.valid()

    def _lmdb_current(self) -> tuple[bytes, bytes]:
        key, value = self._it.key(), self._it.value()
        if len(key) + len(value) > self._size:
            raise self.error(f"LMDB {self.db.path!r} is corrupt after record {self._key!r}: "
                             f"a record of {len(key) + len(value)} bytes in a "
                             f"{self._size}-byte data.mdb")
        return bytes(key), bytes(value)

    def current(self) -> tuple[bytes, bytes]:
        if self.db.backend == "LMDB":
            key, value = self._guarded(self._lmdb_current)
        else:
            key, value = self._guarded(lambda: (self._it.key(), self._it.value()))
        self._key = key.decode("utf-8", "replace")
        return key, value

    def _next(self) -> bool:
        if self.db.backend == "LMDB":
            return self._it.next()
        self._it.next()
        return self._it.valid()

    def advance(self) -> None:
        if not self._guarded(self._next):
            self._guarded(self._first)
