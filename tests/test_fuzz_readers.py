"""Seeded fuzzing of every reader: truncations, bit flips, inflated length prefixes and
0xFF runs of real files. Every mutant must load or raise a ``CaffeCompatError`` (naming
the file); never another exception, a crash, a hang, or memory beyond a few times the
file size.

Mutants run in child processes (many per child) under an address-space limit and a
timeout, so a crash or a runaway allocation is reported as the failing mutant instead of
ending pytest. Seed files are written here with caffe-compat's own writers (so the test
always runs) plus, when ../shared/corpus is present, a few real Caffe files.
Marked ``fuzz``: ``pytest -m fuzz`` runs it alone.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.fuzz

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpus"))
SEED = 20261205
MUTANTS_PER_FILE = 60
CHILD_TIMEOUT = 120        # seconds for one child's whole batch
MEMORY_FACTOR = 8          # address space allowed beyond the warmed-up child: 64 MiB + 8 x file

# ---------------------------------------------------------------------------------------
# The child: read each mutant with the reader named, report one JSON line per mutant
# ---------------------------------------------------------------------------------------
CHILD = textwrap.dedent(r'''
    import json, os, resource, sys, traceback
    reader, allowance = sys.argv[1], int(sys.argv[2])
    import numpy as np
    from caffe_compat.errors import CaffeCompatError

    def read(path):
        if reader == "caffemodel":
            from caffe_compat.formats.caffemodel import read_caffemodel
            return read_caffemodel(path)
        if reader == "weights":
            from caffe_compat.formats.weights import read_weights
            return read_weights(path)
        if reader == "binaryproto":
            from caffe_compat.formats.binaryproto import read_binaryproto
            return read_binaryproto(path)
        if reader == "solverstate":
            from caffe_compat.formats.solverstate import read_solverstate
            return read_solverstate(path)
        if reader == "prototxt":
            import warnings
            from caffe_compat.formats.prototxt import read_net
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return read_net(path)
        if reader == "datum":
            from caffe_compat.engine.layers.data_records import read_datum_record
            with open(path, "rb") as handle:
                return read_datum_record(handle.read(), path, crop_size=0)
        raise SystemExit("unknown reader " + reader)

    # warm up the imports before capping memory (the cap is for the reading itself)
    from caffe_compat.formats import caffemodel, binaryproto, solverstate, prototxt, weights
    from caffe_compat.formats import hdf5_weights
    from caffe_compat.engine.layers import data_records
    # Cap the address space at what the warmed-up process maps now plus the allowance
    # (a few times the file size): an allocation trusting a corrupt length fails here.
    with open("/proc/self/status") as status:
        vm = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + allowance, vm + allowance))
    for line in sys.stdin:
        path = line.strip()
        print(json.dumps({"start": path}), flush=True)
        try:
            read(path)
            outcome = {"path": path, "result": "loaded"}
        except CaffeCompatError as exc:
            outcome = {"path": path, "result": "error", "message": str(exc)[:300]}
        except MemoryError:
            outcome = {"path": path, "result": "bug", "message": "MemoryError"}
        except BaseException as exc:
            outcome = {"path": path, "result": "bug",
                       "message": f"{type(exc).__name__}: {exc}"[:300],
                       "where": traceback.format_exc().splitlines()[-3:]}
        print(json.dumps(outcome), flush=True)
''')


def run_mutants(reader: str, paths: list, allowance: int, tmp_path) -> dict:
    """{mutant path: outcome}; a child that dies or hangs marks the mutant it was on and
    the rest are retried in a fresh child."""
    script = tmp_path / "fuzz_child.py"
    script.write_text(CHILD)
    results, queue = {}, list(paths)
    while queue:
        proc = subprocess.run([sys.executable, str(script), reader, str(allowance)],
                              input="\n".join(queue) + "\n", capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        current = None
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            if "start" in rec:
                current = rec["start"]
            else:
                results[rec["path"]] = rec
                current = None
        done = set(results)
        if current is not None:          # died on this one
            results[current] = {"path": current, "result": "bug",
                                "message": f"child exited with {proc.returncode}: "
                                           + proc.stderr.strip()[-300:]}
            done.add(current)
        remaining = [p for p in queue if p not in done]
        if remaining and current is None and proc.returncode != 0:
            raise AssertionError(f"fuzz child failed before reading: {proc.stderr[-2000:]}")
        queue = remaining
    return results


# ---------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------
def varint_offsets(data: bytes, limit: int = 4000) -> list:
    """Offsets of length prefixes of length-delimited protobuf fields (walking the top
    level and one level down where the payload parses as fields)."""
    out = []

    def walk(start: int, end: int, depth: int) -> None:
        pos = start
        while pos < end and len(out) < limit:
            key, pos2 = _varint(data, pos)
            if key is None or key == 0:
                return
            wire = key & 7
            if wire == 0:
                _, pos = _varint(data, pos2)
                if pos is None:
                    return
            elif wire == 1:
                pos = pos2 + 8
            elif wire == 5:
                pos = pos2 + 4
            elif wire == 2:
                length, body = _varint(data, pos2)
                if length is None or body + length > end:
                    return
                out.append(pos2)
                if depth < 2:
                    walk(body, body + length, depth + 1)
                pos = body + length
            else:
                return

    walk(0, len(data), 0)
    return out


def _varint(data: bytes, pos: int):
    result, shift = 0, 0
    while pos < len(data) and shift < 64:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    return None, None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def mutants(data: bytes, rng: random.Random, count: int, protobuf: bool) -> list:
    """``count`` mutated copies of ``data`` (each with a short description)."""
    out = []
    lengths = varint_offsets(data) if protobuf else []
    kinds = ["truncate", "flip", "flips", "ff_run"] + (["inflate"] * 2 if lengths else [])
    for i in range(count):
        kind = kinds[i % len(kinds)]
        buf = bytearray(data)
        if kind == "truncate":
            cut = rng.randrange(0, max(1, len(data)))
            buf = buf[:cut]
        elif kind == "flip":
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == "flips":
            for _ in range(rng.randint(2, 16)):
                pos = rng.randrange(len(buf))
                buf[pos] ^= 1 << rng.randrange(8)
        elif kind == "ff_run":
            pos = rng.randrange(len(buf))
            run = rng.randint(1, 12)
            buf[pos:pos + run] = b"\xff" * min(run, len(buf) - pos)
        else:                               # a length prefix made huge or off by a little
            pos = rng.choice(lengths)
            old, end = _varint(bytes(buf), pos)
            new = rng.choice([2 ** 31 - 1, 2 ** 40, 2 ** 62, old + rng.randint(1, 64),
                              max(0, old - rng.randint(1, 8))])
            buf = buf[:pos] + _encode_varint(new) + buf[end:]
        out.append((kind, bytes(buf)))
    return out


# ---------------------------------------------------------------------------------------
# Seed files
# ---------------------------------------------------------------------------------------
def seed_files(tmp_path) -> dict:
    """{reader: [(name, path)]}: files written by caffe-compat, plus real corpus files."""
    from caffe_compat.formats.binaryproto import write_binaryproto
    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    from caffe_compat.formats.hdf5_weights import write_hdf5_weights
    from caffe_compat.formats.solverstate import SolverState, write_solverstate
    from caffe_compat.io import array_to_datum
    rng = np.random.default_rng(0)
    layers = [LayerWeights("conv1", "Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                                     rng.standard_normal(4).astype(np.float32)]),
              LayerWeights("ip", "InnerProduct", [rng.standard_normal((5, 16)).astype(np.float32)]),
              LayerWeights("bn", "BatchNorm", [np.ones(4, np.float32), np.ones(4, np.float32),
                                                np.ones(1, np.float32)])]
    d = tmp_path / "seeds"
    d.mkdir()
    files = {"caffemodel": [], "weights": [], "binaryproto": [], "solverstate": [],
             "prototxt": [], "datum": []}
    write_caffemodel(d / "net.caffemodel", layers)
    files["caffemodel"].append(("ours.caffemodel", d / "net.caffemodel"))
    write_hdf5_weights(d / "net.caffemodel.h5", layers)
    files["weights"].append(("ours.caffemodel.h5", d / "net.caffemodel.h5"))
    write_binaryproto(d / "mean.binaryproto", rng.uniform(0, 255, (3, 8, 8)).astype(np.float32))
    files["binaryproto"].append(("ours.binaryproto", d / "mean.binaryproto"))
    state = SolverState(iter=7, current_step=1, learned_net="net.caffemodel",
                        history=[rng.standard_normal((4, 3)).astype(np.float32),
                                 rng.standard_normal(6).astype(np.float32)])
    write_solverstate(d / "snap.solverstate", state)
    files["solverstate"].append(("ours.solverstate", d / "snap.solverstate"))
    write_solverstate(d / "snap.solverstate.h5", state, format="hdf5")
    files["solverstate"].append(("ours.solverstate.h5", d / "snap.solverstate.h5"))
    golden_net = os.path.join(HERE, "golden", "googlenet_tiny", "net.prototxt")
    files["prototxt"].append(("googlenet_tiny.prototxt", golden_net))
    files["caffemodel"].append(("caffenet_tiny_v1.caffemodel",
                                os.path.join(HERE, "golden", "caffenet_tiny", "weights_v1.caffemodel")))
    datum = array_to_datum(rng.integers(0, 255, (3, 6, 5)).astype(np.uint8), label=3)
    (d / "uint8.datum").write_bytes(datum.SerializeToString())
    files["datum"].append(("uint8.datum", d / "uint8.datum"))
    fdatum = array_to_datum(rng.standard_normal((2, 4, 4)).astype(np.float32), label=1)
    (d / "float.datum").write_bytes(fdatum.SerializeToString())
    files["datum"].append(("float.datum", d / "float.datum"))
    if os.path.isdir(CORPUS):
        for reader, rel in (("caffemodel", "weights/lenet_mnist/lenet_iter_10000.caffemodel"),
                            ("binaryproto", "GilLevi__AgeGenderDeepLearning/models/mean.binaryproto"),
                            ("prototxt", "bvlc_caffe_v0_format/examples/cifar10/cifar10_full.prototxt"),
                            ("prototxt", "weiliu89__caffe_ssd/data/VOC0712/labelmap_voc.prototxt")):
            path = os.path.join(CORPUS, rel)
            if os.path.isfile(path):
                files[reader].append((os.path.basename(rel), path))
    return files


@pytest.mark.parametrize("reader", ["caffemodel", "weights", "binaryproto", "solverstate",
                                    "prototxt", "datum"])
def test_every_mutant_loads_or_raises_a_caffe_compat_error(reader, tmp_path):
    seeds = seed_files(tmp_path)[reader]
    rng = random.Random(f"{SEED}-{reader}")
    out_dir = tmp_path / "mutants"
    out_dir.mkdir()
    paths, sizes = [], []
    for name, path in seeds:
        with open(path, "rb") as handle:
            data = handle.read()
        binary = reader not in ("prototxt",) and not str(path).endswith(".h5")
        for i, (kind, blob) in enumerate(mutants(data, rng, MUTANTS_PER_FILE, binary)):
            p = out_dir / f"{name}.{i:03d}.{kind}"
            p.write_bytes(blob)
            paths.append(str(p))
        sizes.append(len(data))
    allowance = 64 * 2 ** 20 + MEMORY_FACTOR * max(sizes)
    results = run_mutants(reader, paths, allowance, tmp_path)
    assert set(results) == set(paths)
    bugs = [f"{os.path.basename(r['path'])}: {r['message']} {r.get('where', '')}"
            for r in results.values() if r["result"] == "bug"]
    counts = {k: sum(r["result"] == k for r in results.values()) for k in ("loaded", "error")}
    print(f"{reader}: {len(paths)} mutants of {len(seeds)} files: {counts}")
    assert not bugs, f"{len(bugs)} mutants escaped as crashes or foreign exceptions:\n" + \
        "\n".join(bugs[:20])
    # the errors name the file they are about
    named = [r for r in results.values() if r["result"] == "error"]
    assert all(os.path.basename(r["path"]) in r["message"] for r in named[:50])
