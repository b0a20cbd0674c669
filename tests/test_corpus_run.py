"""Every real net of ../shared/corpus built through the pycaffe API, run, and compared with
OpenCV (see corpus_harness.py for how). Marked ``corpus``: run alone with
``pytest -m corpus``; part of ``make test`` whenever the corpus is present.

A net passes when it matches OpenCV (rel. L2 <= 1e-4 on every compared output), or when it
is one of the named exceptions, each counted in the summary:

* OpenCV deviates from Caffe on one of its layers (proven in test_opencv_deviations.py):
  the blobs upstream of it must still match;
* OpenCV cannot load or run the file (our forward must still run, finite);
* its inputs come from data files the corpus does not carry, or from a Python data
  layer whose module is not importable;
* real Caffe itself refuses the file (the reasons are listed in REFUSED_BY_CAFFE);
* it uses a fork layer that caffe-compat refuses by name, with the reason
  (engine/refused_layers.py), counted on its own line.

Crashes, hangs, wrong numbers and any other error fail the net's own test case.
"""
from __future__ import annotations

import collections
import json
import os
import re

import pytest

import corpus_harness as harness

pytestmark = pytest.mark.corpus

FILES = harness.corpus_net_files() if os.path.isdir(harness.CORPUS) else []

#: Build errors that are the file's fault, as real Caffe (or its fork) would also stop:
#: category -> pattern of our error message.
REFUSED_BY_CAFFE = {
    "data files not in the corpus (Caffe's data layer fails in SetUp too)":
        r"LMDB source .* does not exist|cannot open LevelDB|failed to open source file|"
        r"cannot open image list|failed to open window file|does not exist|"
        r"\.setup raised FileNotFoundError",
    "Python layer whose module is not importable (data layers of the training nets, ENet's spatial dropout)":
        r"cannot import Python layer module",
    "a blob no layer of this phase produces (Caffe: 'Unknown bottom blob')":
        r"unknown bottom blob",
}

#: Fork layers caffe-compat refuses by name (engine/refused_layers.py: training, evaluation
#: and input layers, and CRF-RNN's mean-field): counted apart, they are not Caffe's refusal.
REFUSED_FORK_LAYER = "uses a fork layer caffe-compat refuses by name (engine/refused_layers.py)"

#: Statuses accepted without further condition, with the summary's wording.
ACCEPTED = {
    "match": "match OpenCV",
    "opencv-deviation": "match OpenCV upstream of a proven OpenCV deviation",
    "opencv-cannot-run": "OpenCV cannot load or run the file (ours ran, finite)",
    "no-declared-input": "inputs come from data layers (nothing to feed)",
}


@pytest.fixture(scope="session")
def corpus_results():
    if not FILES:
        pytest.skip(f"corpus not present at {harness.CORPUS}")
    workers = int(os.environ.get("CORPUS_WORKERS", "2"))
    results = harness.run_nets(FILES, workers=workers)
    dump = os.environ.get("CORPUS_RESULTS_JSON")      # for a developer's closer look
    if dump:
        with open(dump, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


def refusal_category(error: str):
    for category, pattern in REFUSED_BY_CAFFE.items():
        if re.search(pattern, error):
            return category
    return None


def outcome(result: dict) -> tuple:
    """(accepted?, summary category) of one net's result."""
    status = result["status"]
    if status in ACCEPTED:
        return True, ACCEPTED[status]
    if status == "build-error":
        category = refusal_category(result.get("error", ""))
        if category:
            return True, category
        if "): not supported: " in result.get("error", ""):
            return True, REFUSED_FORK_LAYER
    return False, status


@pytest.mark.parametrize("path", FILES or [None],
                         ids=[os.path.relpath(p, harness.CORPUS) for p in FILES] or ["no-corpus"])
def test_corpus_net(path, corpus_results):
    result = corpus_results[path]
    ok, category = outcome(result)
    assert ok, (f"{result['path']}: {category}: "
                f"{result.get('error') or result.get('details')} {result.get('notes', '')}")


def test_corpus_summary(corpus_results):
    """Prints the counts the README quotes; fails on nothing the per-net tests do not."""
    counts = collections.Counter(outcome(r)[1] for r in corpus_results.values())
    deviations = collections.Counter(why for r in corpus_results.values()
                                     for why in set(r.get("deviations", {}).values()))
    lines = [f"corpus run: {len(corpus_results)} nets"]
    lines += [f"  {n:4d}  {c}" for c, n in counts.most_common()]
    lines += [f"        deviation: {why} ({n} nets)" for why, n in deviations.most_common()]
    print("\n".join(lines))
    assert sum(counts.values()) == len(FILES)
