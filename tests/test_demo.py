"""``make demo`` (``caffe-compat demo``) offline: every recipe stage runs, each says in
exactly one line that it could not download its zoo model, and writes its files; the
R-CNN and FCN stages show real results of their shipped shapes models on the bundled
held-out scenes, well above chance."""
from __future__ import annotations

import re
import socket

import numpy as np
from PIL import Image

from caffe_compat.cli.cmd_demo import STAGES
from caffe_compat.cli.main import main
from caffe_compat.recipes.fcn import score
from caffe_compat.recipes.shapes import models


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _figure(lines, prefix: str) -> float:
    found = [re.fullmatch(re.escape(prefix) + r" (\d\.\d{3})", l) for l in lines]
    values = [float(m.group(1)) for m in found if m]
    assert len(values) == 1, f"expected one line '{prefix} X'"
    return values[0]


def _all_background_mean_iu() -> float:
    """Chance for the FCN: mean IU of labelling every pixel background."""
    n = len(models.FCN_CLASSES)
    hist = np.zeros((n, n))
    for scene in models.bundled_scenes():
        truth = np.array(Image.open(scene.segmentation)).flatten()
        hist += score.fast_hist(truth, np.zeros_like(truth), n)
    return score.segmentation_metrics(hist).mean_iu


def test_whole_demo_runs_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAFFE_COMPAT_MIRROR", f"http://127.0.0.1:{_closed_port()}/models")
    monkeypatch.setenv("CAFFE_COMPAT_HOME", str(tmp_path / "cache"))
    out = tmp_path / "demo-out"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    offline = [l for l in lines if l.startswith("offline:")]
    assert len(offline) == 3          # deepdream, rcnn and fcn use zoo weights
    assert not [l for l in lines if "meaningless" in l]
    for stage in STAGES:
        files = [p for p in (out / stage.name).rglob("*") if p.is_file()]
        assert files, f"stage {stage.name} wrote nothing"
        assert any(f"== {stage.name} done" in l for l in lines)
    assert "demo finished" in lines[-1]

    # the shipped models on the held-out scenes (a random detector's VOC AP is near 0;
    # labelling everything background gives the FCN's chance level below)
    assert _figure(lines, "rcnn: mAP@0.5") >= 0.5
    chance = _all_background_mean_iu()
    assert chance < 0.3 and _figure(lines, "fcn: mean IU") >= max(0.5, chance + 0.2)
    scenes = [s.name for s in models.bundled_scenes()]
    assert {f"rcnn_{n}.png" for n in scenes} <= {p.name for p in (out / "rcnn").iterdir()}
    assert {f"fcn_{n}_overlay.png" for n in scenes} <= {p.name for p in (out / "fcn").iterdir()}
