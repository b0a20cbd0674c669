"""The one place caffe-compat downloads files: mirrors, resume, SHA-1, locking, cache.

Every file the model zoo needs (weights, mean files) goes through :func:`download`:

* it streams to ``<dest>.part`` in the cache folder with a tqdm progress bar (only on
  a terminal), resuming an interrupted transfer with an HTTP ``Range`` request
  (a server that answers ``200`` instead of ``206`` gets a full download);
* it checks the size and SHA-1 recorded for the file and moves it into place with
  ``os.replace`` only when they match; a mismatch deletes the bad file and raises
  :class:`ChecksumError` naming the URL that served it;
* a ``fcntl.flock`` on ``<dest>.lock`` serialises processes fetching the same file:
  the second one waits, then finds the file present and verified;
* a verified file gets a stamp ``<dest>.verified`` (sha1, size, mtime) so later
  calls trust it without re-hashing (``caffe-compat zoo verify`` re-hashes);
* a file with no recorded SHA-1 is refused unless ``allow_unverified=True``.

Environment: ``CAFFE_COMPAT_HOME`` (cache root, default ``$XDG_CACHE_HOME/caffe-compat``
or ``~/.cache/caffe-compat``) and ``CAFFE_COMPAT_MIRROR`` (fetch every file from
``$CAFFE_COMPAT_MIRROR/<file name of its URL>``; an ``http(s)://`` or ``file://`` URL
or a local folder).

>>> path = download(["http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel"],
...                 cache_home() / "weights" / "bvlc_alexnet.caffemodel",
...                 sha1="9116a64c0fbe4459d18f4bb6b56d647b63920377")   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, Sequence

from caffe_compat.errors import CaffeCompatError

CHUNK = 1 << 20
USER_AGENT = "caffe-compat/0.1 (+model zoo)"
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                   socket.timeout, TimeoutError, OSError)


class DownloadError(CaffeCompatError):
    """A file could not be fetched, verified or installed (one line, names the URL/file)."""


class ChecksumError(DownloadError):
    """A file's SHA-1 or size differs from the registry's; the bad file was deleted."""


# --------------------------------------------------------------------------- locations

def cache_home() -> Path:
    """Root of caffe-compat's cache: ``$CAFFE_COMPAT_HOME`` or the platform cache dir."""
    home = os.environ.get("CAFFE_COMPAT_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "caffe-compat"


def url_file_name(url: str) -> str:
    """The file name part of a URL (``.../bvlc_alexnet.caffemodel?dl=1`` -> the name)."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])


def mirror_sources(urls: Sequence[str]) -> list[str]:
    """The URLs to try, in order: ``urls``, or the mirror's copy when CAFFE_COMPAT_MIRROR is set.

    >>> os.environ["CAFFE_COMPAT_MIRROR"] = "http://127.0.0.1:8000/models"
    >>> mirror_sources(["http://a.org/x/w.caffemodel", "https://b.org/w.caffemodel"])
    ['http://127.0.0.1:8000/models/w.caffemodel']
    >>> del os.environ["CAFFE_COMPAT_MIRROR"]
    """
    mirror = os.environ.get("CAFFE_COMPAT_MIRROR", "").strip()
    if not mirror:
        return list(dict.fromkeys(urls))
    names = list(dict.fromkeys(url_file_name(u) for u in urls))
    if "://" not in mirror:
        mirror = Path(mirror).expanduser().resolve().as_uri()
    return [mirror.rstrip("/") + "/" + urllib.parse.quote(n) for n in names]


# --------------------------------------------------------------------------- hashing

def sha1_of(path: os.PathLike | str) -> str:
    """Hex SHA-1 of a file, read in 1 MiB chunks."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def read_stamp(dest: Path) -> Optional[dict]:
    """The ``.verified`` stamp of a cached file if it still describes the file on disk."""
    try:
        stamp = json.loads(_stamp_path(dest).read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return None
    if stamp.get("size") != st.st_size or stamp.get("mtime_ns") != st.st_mtime_ns:
        return None
    return stamp


def write_stamp(dest: Path, sha1: str, verified: bool, source: str) -> dict:
    """Record that ``dest`` has ``sha1`` (``verified``: it matched the registry's)."""
    st = dest.stat()
    stamp = {"sha1": sha1, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "verified": verified, "source": source}
    tmp = _stamp_path(dest).with_name(_stamp_path(dest).name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, _stamp_path(dest))
    return stamp


def cached_sha1(dest: Path, expected_sha1: Optional[str] = None) -> Optional[str]:
    """SHA-1 of a cached file, from its stamp (cheap) or by hashing it (stamp refreshed).

    Returns None when the file is absent or its hash differs from ``expected_sha1``.
    """
    if not dest.is_file():
        return None
    stamp = read_stamp(dest)
    if stamp and (expected_sha1 is None or stamp["sha1"] == expected_sha1.lower()):
        return stamp["sha1"]
    digest = sha1_of(dest)
    if expected_sha1 is not None and digest != expected_sha1.lower():
        return None
    write_stamp(dest, digest, verified=expected_sha1 is not None,
                source=(stamp or {}).get("source", str(dest)))
    return digest


# --------------------------------------------------------------------------- locking

@contextlib.contextmanager
def file_lock(dest: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<dest>.lock``; a second process blocks until it is released."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.with_name(dest.name + ".lock")
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- transfer

class _Interrupted(Exception):
    """The body stopped early; the partial file is kept for a Range resume."""


def _progress(total: Optional[int], initial: int, name: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=None if enabled else True, file=sys.stderr, leave=False)


def _copy_local(url: str, part: Path, name: str, progress: bool) -> None:
    """Copy a ``file://`` source into ``part`` (resume is pointless for a local file)."""
    src = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    if not src.is_file():
        raise FileNotFoundError(errno.ENOENT, "No such file", str(src))
    with open(src, "rb") as fin, open(part, "wb") as fout, \
            _progress(src.stat().st_size, 0, name, progress) as bar:
        for block in iter(lambda: fin.read(CHUNK), b""):
            fout.write(block)
            bar.update(len(block))


def _fetch_http(url: str, part: Path, name: str, progress: bool, timeout: float) -> None:
    """One HTTP attempt: resume ``part`` with Range if it has bytes, else download it whole.

    Raises :class:`_Interrupted` when the connection drops mid-body (``part`` keeps the
    bytes received), ``urllib.error.URLError``/``HTTPError`` when the server is
    unreachable or refuses.
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:          # our partial file is not a prefix: start over
            part.unlink()
            raise _Interrupted(f"HTTP 416 for a resume of {have} bytes") from None
        raise
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Interrupted(f"server resumed at byte {start}, not {have}")
            mode, total = "ab", (have + length if length is not None else None)
        else:                                  # 200: the server sent the whole file
            mode, have, total = "wb", 0, length
        received = 0
        with open(part, mode) as out, _progress(total, have, name, progress) as bar:
            try:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, ConnectionError, socket.timeout,
                    TimeoutError) as exc:
                raise _Interrupted(f"connection lost after {have + received} bytes: "
                                   f"{exc.__class__.__name__}") from None
        if length is not None and received < length:
            raise _Interrupted(f"connection closed after {have + received} of "
                               f"{have + length} bytes")


def _content_range_start(value: Optional[str]) -> Optional[int]:
    """``bytes 100-199/200`` -> 100."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or exc.__class__.__name__


def _fetch_one(url: str, part: Path, name: str, progress: bool, timeout: float,
               retries: int) -> None:
    """Fetch ``url`` into ``part``, resuming after drops (at most ``retries`` in a row
    without progress)."""
    if urllib.parse.urlsplit(url).scheme == "file":
        _copy_local(url, part, name, progress)
        return
    stalled = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_http(url, part, name, progress, timeout)
            return
        except _Interrupted:
            after = part.stat().st_size if part.exists() else 0
            stalled = 0 if after > before else stalled + 1
            if stalled >= retries:
                raise


def _check(part: Path, sha1: Optional[str], size: Optional[int], url: str) -> str:
    """SHA-1 of the finished ``part``; deletes it and raises ChecksumError on a mismatch."""
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise ChecksumError(f"{url} served {actual_size} bytes but {part.name[:-5]} should "
                            f"have {size}; the file was deleted")
    digest = sha1_of(part)
    if sha1 is not None and digest != sha1.lower():
        part.unlink()
        raise ChecksumError(f"{url} served a file with SHA-1 {digest}, expected {sha1}; "
                            f"the file was deleted")
    return digest


def download(urls: Sequence[str], dest: os.PathLike | str, sha1: Optional[str] = None,
             size: Optional[int] = None, *, allow_unverified: bool = False,
             progress: bool = True, timeout: float = 60.0, retries: int = 5,
             manual_hint: Optional[str] = None) -> Path:
    """Make ``dest`` hold the verified file from ``urls`` (tried in order); return ``dest``.

    Already cached and verified: returns at once, no network. ``sha1=None`` needs
    ``allow_unverified=True`` (the file is then cached, and its SHA-1 recorded in the
    stamp). ``manual_hint`` ends the error message when every URL failed (e.g. how to
    place the file by hand).
    """
    dest = Path(dest)
    if sha1 is None and not allow_unverified and not _accepted_unverified(dest):
        raise DownloadError(f"{dest.name} has no SHA-1 in the registry, so it cannot be "
                            f"verified; pass allow_unverified=True (CLI: --no-verify) to "
                            f"download it anyway")
    sources = mirror_sources(urls)
    if not sources:
        raise DownloadError(f"{dest.name}: no download URL is known"
                            + (f"; {manual_hint}" if manual_hint else ""))
    with file_lock(dest):
        if _is_ready(dest, sha1):
            return dest
        part = dest.with_name(dest.name + ".part")
        failures = []
        for url in sources:
            try:
                _fetch_one(url, part, dest.name, progress, timeout, retries)
            except (_Interrupted, *_NETWORK_ERRORS) as exc:
                failures.append(f"{url}: {_reason(exc)}")
                continue
            try:
                digest = _check(part, sha1, size, url)
            except ChecksumError as exc:
                if url == sources[-1]:
                    raise
                failures.append(str(exc))
                continue
            os.replace(part, dest)
            write_stamp(dest, digest, verified=sha1 is not None, source=url)
            return dest
        hint = f"; {manual_hint}" if manual_hint else ""
        raise DownloadError(f"cannot download {dest.name}: " + "; ".join(failures) + hint)


def _accepted_unverified(dest: Path) -> bool:
    """A file the user already accepted without a checksum (its stamp says so)."""
    return dest.is_file() and read_stamp(dest) is not None


def _is_ready(dest: Path, sha1: Optional[str]) -> bool:
    if not dest.is_file():
        return False
    if sha1 is None:
        return read_stamp(dest) is not None
    return cached_sha1(dest, sha1) is not None


def install_file(src: os.PathLike | str, dest: os.PathLike | str, sha1: Optional[str] = None,
                 size: Optional[int] = None, *, allow_unverified: bool = False) -> Path:
    """Copy a file the user already has into the cache at ``dest``, checking its SHA-1.

    The source is hashed before anything is copied; a mismatch raises ChecksumError and
    leaves the cache untouched.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise FileNotFoundError(errno.ENOENT, "No such file", str(src))
    if sha1 is None and not allow_unverified:
        raise DownloadError(f"{dest.name} has no SHA-1 in the registry, so {src} cannot be "
                            f"verified; pass allow_unverified=True (CLI: --no-verify)")
    actual_size = src.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{src} has {actual_size} bytes but {dest.name} should have {size}")
    digest = sha1_of(src)
    if sha1 is not None and digest != sha1.lower():
        raise ChecksumError(f"{src} has SHA-1 {digest}, but {dest.name} should have {sha1}")
    with file_lock(dest):
        part = dest.with_name(dest.name + f".{os.getpid()}.import")
        try:
            shutil.copyfile(src, part)
            os.replace(part, dest)
        finally:
            if part.exists():
                part.unlink()
        write_stamp(dest, digest, verified=sha1 is not None, source=str(src.resolve()))
    return dest


def remove_cached(dest: os.PathLike | str) -> list[Path]:
    """Delete a cached file with its stamp, partial download and lock; returns what went."""
    dest = Path(dest)
    removed = []
    with file_lock(dest):
        for p in (dest, _stamp_path(dest), dest.with_name(dest.name + ".part")):
            if p.exists():
                p.unlink()
                removed.append(p)
    lock = dest.with_name(dest.name + ".lock")
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()
    return removed
