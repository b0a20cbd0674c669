"""Background batch loading, as Caffe's BasePrefetchingDataLayer does it.

A :class:`Prefetcher` runs one worker thread that calls a loader's ``load_batch()``
and keeps up to ``depth`` finished batches in a bounded queue (Caffe's ``prefetch``
batches, ``data_param.prefetch``, default 4), so reading and decoding overlap the
model's forward and backward. Batches come out in the order the loader made them, and
the loader is only ever called from the worker, so a seeded run gives the same
batches whatever the thread timing.

An exception inside the worker (a missing image, a corrupt record) is handed to the
caller: :meth:`Prefetcher.next` raises it, with its message naming the file and line,
and keeps raising it on later calls. Nothing is skipped silently.

>>> import itertools
>>> counter = itertools.count()
>>> class Loader:
...     def load_batch(self):
...         return [next(counter)]
>>> p = Prefetcher(Loader(), depth=2, name="demo")
>>> p.next(), p.next()
([0], [1])
>>> p.stop()

The worker holds no reference to the Prefetcher, so dropping the last reference stops
the thread (also done explicitly by :meth:`Prefetcher.stop`).
"""
from __future__ import annotations

import queue
import threading
import weakref
from typing import Any, Optional, Protocol

#: How often (seconds) a blocked worker or caller re-checks for stop / worker death.
_POLL = 0.1


class BatchLoader(Protocol):
    """What a Prefetcher runs: ``load_batch()`` returns the next batch (any object)."""

    def load_batch(self) -> Any: ...


class _Failure:
    """A worker exception travelling through the queue to the caller."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def _work(loader: BatchLoader, out: "queue.Queue", stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            item: Any = loader.load_batch()
        except BaseException as exc:  # handed to the caller, never swallowed
            item = _Failure(exc)
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL)
                break
            except queue.Full:
                continue
        if isinstance(item, _Failure):
            return


class Prefetcher:
    """Loads batches ahead in a daemon thread; :meth:`next` hands them out in order.

    The thread starts on the first :meth:`next` (or :meth:`start`), so a net that is
    only built and inspected reads nothing in the background.
    """

    def __init__(self, loader: BatchLoader, depth: int = 4, name: str = "data"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self.loader = loader
        self.depth = int(depth)
        self.name = name
        self._queue: "queue.Queue" = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None
        weakref.finalize(self, self._stop.set)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker (no-op when it already runs or has failed)."""
        if self._thread is not None or self._stop.is_set():
            return
        thread = threading.Thread(target=_work, args=(self.loader, self._queue, self._stop),
                                  name=f"caffe-compat prefetch {self.name}", daemon=True)
        thread.start()          # kept only once started: stop() joins it
        self._thread = thread

    def next(self) -> Any:
        """The next batch; re-raises the worker's exception if loading failed."""
        if self._failure is not None:
            raise self._failure
        if self._stop.is_set():
            raise RuntimeError(f"prefetcher for {self.name} was stopped")
        self.start()
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(f"prefetch thread for {self.name} ended without a batch")
        if isinstance(item, _Failure):
            self._failure = item.exc
            self._stop.set()
            raise item.exc
        return item

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker and drop prefetched batches (the loader's position is lost
        for them, as when Caffe destroys a data layer)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
