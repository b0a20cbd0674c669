"""caffe_compat.download against a real HTTP server on 127.0.0.1 (nothing leaves the machine).

Covers: a good download; a resume after the server cuts the body half way (the retry
must carry a Range header and get a 206); a server that ignores Range; a corrupted
file (rejected, nothing left in the cache, the URL named); two processes fetching one
file at once (one transfer, intact file); no network (one clear line, CLI exit 2);
unverified files; mirrors given as a folder or file:// URL; installing a local file.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from caffe_compat import download as dl
from caffe_compat.download import ChecksumError, DownloadError, download, install_file


class FileServer:
    """``http.server`` in a thread on 127.0.0.1 serving ``files`` (name -> bytes).

    Supports ``Range: bytes=N-`` (206 + Content-Range). Knobs: ``cut_next`` (that many
    next responses send half the body under a full Content-Length, then close),
    ``ignore_range`` (answer every request 200 with the whole file), ``delay`` (seconds
    slept per 64 KiB chunk). ``requests`` logs (path, Range header, status).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []
        self.cut_next = 0
        self.ignore_range = False
        self.delay = 0.0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/models"

    def gets(self, name: str) -> list[tuple[str, str | None, int]]:
        return [r for r in self.requests if r[0].endswith("/" + name)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                data = server.files.get(path.rsplit("/", 1)[-1])
                rng = self.headers.get("Range")
                if data is None:
                    self._status(path, rng, 404)
                    return
                start, status = 0, 200
                match = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if match and not server.ignore_range:
                    start, status = int(match.group(1)), 206
                    if start >= len(data):
                        self._status(path, rng, 416)
                        return
                body = data[start:]
                with server._lock:
                    cut = server.cut_next > 0
                    server.cut_next -= cut
                    server.requests.append((path, rng, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if cut:
                    body = body[:len(body) // 2]
                for i in range(0, len(body), 1 << 16):
                    self.wfile.write(body[i:i + (1 << 16)])
                    if server.delay:
                        time.sleep(server.delay)
                if cut:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

            def _status(self, path, rng, code):
                with server._lock:
                    server.requests.append((path, rng, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private CAFFE_COMPAT_HOME; no mirror unless a test sets one."""
    h = tmp_path / "home"
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(h))
    monkeypatch.delenv("CAFFE_COMPAT_MIRROR", raising=False)
    monkeypatch.delenv("CAFFE_COMPAT_REGISTRY", raising=False)
    return h


def payload(n: int = 300_000, seed: int = 1) -> bytes:
    import numpy as np
    return np.random.RandomState(seed).bytes(n)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/models"


def cache_leftovers(folder: Path) -> list[str]:
    """Files in the cache folder other than lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


# --------------------------------------------------------------------------- cache home

def test_cache_home_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "h"))
    assert dl.cache_home() == tmp_path / "h"
    monkeypatch.delenv("CAFFE_COMPAT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.cache_home() == tmp_path / "xdg" / "caffe-compat"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dl.cache_home() == Path.home() / ".cache" / "caffe-compat"


def test_mirror_replaces_every_base_url(monkeypatch, tmp_path):
    urls = ["http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel",
            "https://other.org/x/bvlc_alexnet.caffemodel?dl=1"]
    monkeypatch.delenv("CAFFE_COMPAT_MIRROR", raising=False)
    assert dl.mirror_sources(urls) == urls
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", "http://127.0.0.1:8/m/")
    assert dl.mirror_sources(urls) == ["http://127.0.0.1:8/m/bvlc_alexnet.caffemodel"]
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", str(tmp_path))
    assert dl.mirror_sources(urls) == [tmp_path.resolve().as_uri() + "/bvlc_alexnet.caffemodel"]


# --------------------------------------------------------------------------- downloads

def test_good_download_then_cached_without_network(server, home, monkeypatch):
    data = payload()
    server.files["w.caffemodel"] = data
    dest = home / "models" / "m" / "w.caffemodel"
    got = download([server.url + "/w.caffemodel"], dest, sha1(data), len(data), progress=False)
    assert got == dest and dest.read_bytes() == data
    assert cache_leftovers(dest.parent) == ["w.caffemodel", "w.caffemodel.verified"]
    assert [r[2] for r in server.requests] == [200]

    # second call: stamp says verified -> no request, and no re-hash
    monkeypatch.setattr(dl, "sha1_of", lambda p: pytest.fail("re-hashed a stamped file"))
    download([server.url + "/w.caffemodel"], dest, sha1(data), len(data), progress=False)
    assert len(server.requests) == 1


def test_resume_after_connection_cut_uses_range(server, home):
    data = payload(1_000_000)
    server.files["w.caffemodel"] = data
    server.cut_next = 1
    dest = home / "models" / "m" / "w.caffemodel"
    download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    assert dest.read_bytes() == data
    (first, rng0, st0), (second, rng1, st1) = server.requests
    assert (rng0, st0) == (None, 200)
    assert rng1 == f"bytes={len(data) // 2}-" and st1 == 206
    assert cache_leftovers(dest.parent) == ["w.caffemodel", "w.caffemodel.verified"]


def test_resume_falls_back_to_full_download_on_200(server, home):
    data = payload(400_000, seed=2)
    server.files["w.caffemodel"] = data
    server.cut_next = 1
    server.ignore_range = True
    dest = home / "w.caffemodel"
    download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    assert dest.read_bytes() == data
    assert server.requests[1][1] is not None and server.requests[1][2] == 200


def test_interrupted_part_file_is_resumed_by_a_later_call(server, home):
    data = payload(500_000, seed=3)
    server.files["w.caffemodel"] = data
    dest = home / "w.caffemodel"
    dest.parent.mkdir(parents=True)
    (home / "w.caffemodel.part").write_bytes(data[:123_456])   # left by a killed process
    download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    assert dest.read_bytes() == data
    assert server.requests == [("/models/w.caffemodel", "bytes=123456-", 206)]


def test_corrupted_download_is_rejected_and_deleted(server, home):
    data = payload()
    server.files["w.caffemodel"] = data[:-1] + bytes([data[-1] ^ 0xFF])
    dest = home / "models" / "m" / "w.caffemodel"
    with pytest.raises(ChecksumError) as err:
        download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    msg = str(err.value)
    assert server.url + "/w.caffemodel" in msg and sha1(data) in msg and "\n" not in msg
    assert cache_leftovers(dest.parent) == []


def test_wrong_size_is_rejected(server, home):
    data = payload()
    server.files["w.caffemodel"] = data
    dest = home / "w.caffemodel"
    with pytest.raises(ChecksumError, match=r"served 300000 bytes .* should have 300001"):
        download([server.url + "/w.caffemodel"], dest, sha1(data), len(data) + 1, progress=False)
    assert cache_leftovers(home) == []


def test_second_url_used_when_first_is_missing(server, home):
    data = payload(seed=4)
    server.files["w.caffemodel"] = data
    dest = home / "w.caffemodel"
    download([server.url + "/gone/nothing.caffemodel", server.url + "/w.caffemodel"],
             dest, sha1(data), progress=False)
    assert dest.read_bytes() == data
    assert [r[2] for r in server.requests] == [404, 200]


def test_offline_gives_one_clear_line(home, monkeypatch):
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", closed_port_url())
    dest = home / "w.caffemodel"
    with pytest.raises(DownloadError) as err:
        download(["http://dl.caffe.berkeleyvision.org/w.caffemodel"], dest, "0" * 40,
                 manual_hint="to place the file by hand: caffe-compat zoo import m FILE")
    msg = str(err.value)
    assert "\n" not in msg
    assert os.environ["CAFFE_COMPAT_MIRROR"] + "/w.caffemodel" in msg
    assert "caffe-compat zoo import m FILE" in msg
    assert not dest.exists()


def test_unverified_needs_consent(server, home):
    data = payload(seed=5)
    server.files["w.caffemodel"] = data
    dest = home / "w.caffemodel"
    with pytest.raises(DownloadError, match="no SHA-1.*allow_unverified=True.*--no-verify"):
        download([server.url + "/w.caffemodel"], dest, None, progress=False)
    assert server.requests == [] and not dest.exists()
    download([server.url + "/w.caffemodel"], dest, None, progress=False, allow_unverified=True)
    stamp = dl.read_stamp(dest)
    assert stamp["sha1"] == sha1(data) and stamp["verified"] is False
    # once accepted, later calls find it without the flag and without network
    download([server.url + "/w.caffemodel"], dest, None, progress=False)
    assert len(server.requests) == 1


@pytest.mark.parametrize("as_uri", [False, True])
def test_mirror_folder_or_file_uri(home, tmp_path, monkeypatch, as_uri):
    data = payload(seed=6)
    folder = tmp_path / "mirror dir"
    folder.mkdir()
    (folder / "w.caffemodel").write_bytes(data)
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", folder.as_uri() if as_uri else str(folder))
    dest = home / "w.caffemodel"
    download(["http://nowhere.invalid/a/w.caffemodel"], dest, sha1(data), progress=False)
    assert dest.read_bytes() == data


def test_mirror_folder_without_the_file(home, tmp_path, monkeypatch):
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", str(tmp_path))
    with pytest.raises(DownloadError, match=r"cannot download w\.caffemodel: file://.*w\.caffemodel"):
        download(["http://nowhere.invalid/w.caffemodel"], home / "w.caffemodel", "0" * 40)


def test_a_tampered_cached_file_is_fetched_again(server, home):
    data = payload(seed=7)
    server.files["w.caffemodel"] = data
    dest = home / "w.caffemodel"
    download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    dest.write_bytes(b"tampered")                     # stamp no longer matches size/mtime
    download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    assert dest.read_bytes() == data and len(server.requests) == 2


# --------------------------------------------------------------------------- two processes

def test_two_processes_one_transfer(server, home, tmp_path):
    data = payload(1_500_000, seed=8)
    server.files["w.caffemodel"] = data
    server.delay = 0.05                                # ~1.2 s transfer: the fetches overlap
    dest = home / "models" / "m" / "w.caffemodel"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        from caffe_compat.download import download
        open(sys.argv[1], "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        download([{server.url + '/w.caffemodel'!r}], {str(dest)!r}, {sha1(data)!r}, progress=False)
        print("ok")
    """)
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(r)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.time() + 60
    while not all(r.exists() for r in ready):
        assert time.time() < deadline, "worker processes did not start"
        time.sleep(0.02)
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["ok", "ok"]
    assert len(server.gets("w.caffemodel")) == 1
    assert dest.read_bytes() == data
    assert cache_leftovers(dest.parent) == ["w.caffemodel", "w.caffemodel.verified"]


# --------------------------------------------------------------------------- local files

def test_install_file_checks_sha1(home, tmp_path):
    data = payload(seed=9)
    src = tmp_path / "mine.caffemodel"
    src.write_bytes(data)
    dest = home / "models" / "m" / "w.caffemodel"
    with pytest.raises(ChecksumError, match=f"{re.escape(str(src))} has SHA-1 {sha1(data)}"):
        install_file(src, dest, "1" * 40)
    assert not dest.exists()
    install_file(src, dest, sha1(data))
    assert dest.read_bytes() == data and dl.read_stamp(dest)["verified"] is True
    with pytest.raises(DownloadError, match="no SHA-1"):
        install_file(src, home / "other.caffemodel", None)
    install_file(src, home / "other.caffemodel", None, allow_unverified=True)
    assert dl.read_stamp(home / "other.caffemodel")["verified"] is False


def test_remove_cached(server, home):
    data = payload(seed=10)
    server.files["w.caffemodel"] = data
    dest = home / "w.caffemodel"
    download([server.url + "/w.caffemodel"], dest, sha1(data), progress=False)
    removed = dl.remove_cached(dest)
    assert {p.name for p in removed} == {"w.caffemodel", "w.caffemodel.verified"}
    assert cache_leftovers(home) == [] and not (home / "w.caffemodel.lock").exists()
