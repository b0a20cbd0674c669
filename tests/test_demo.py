"""``make demo`` (``caffe-compat demo``) offline: every recipe stage runs, each says in
exactly one line that it fell back to a shipped or random model, and writes its files."""
from __future__ import annotations

import socket

from caffe_compat.cli.cmd_demo import STAGES
from caffe_compat.cli.main import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_whole_demo_runs_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", f"http://127.0.0.1:{_closed_port()}/models")
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "cache"))
    out = tmp_path / "demo-out"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    offline = [l for l in lines if l.startswith("offline:")]
    assert len(offline) == 3          # deepdream, rcnn and fcn use zoo weights
    for stage in STAGES:
        files = [p for p in (out / stage.name).rglob("*") if p.is_file()]
        assert files, f"stage {stage.name} wrote nothing"
        assert any(f"== {stage.name} done" in l for l in lines)
    assert "demo finished" in lines[-1]
