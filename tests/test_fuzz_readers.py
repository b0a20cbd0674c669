"""Seeded fuzzing of every reader: prototxt, caffemodel, binaryproto, solverstate, HDF5
weights, snapshots and HDF5Data files, LMDB and LevelDB databases and the Datum records
in them.

Each seed file (a real Caffe file from tests/golden or /work/shared/corpus, or one this
module writes with the project's writers) gets a fixed set of mutants drawn from a
generator seeded by the seed's name: truncations, single and multiple bit flips, runs of
0xFF bytes; protobuf length prefixes and varint values inflated to huge values and runs
of nested start-group tags; huge numbers and deeply nested braces in prototxt. A child
process reads each mutant under a memory cap (RLIMIT_AS: what the child already maps +
4 x the file size + a thread's stack + 8 MB) and a timeout. A mutant passes when it loads or raises a
``CaffeCompatError`` whose message names the file; another exception, a signal, a hang
or running out of memory fails the test naming the mutant. One child reads many mutants
and is restarted after a crash.

Replay one mutant in this process (a failure message names the seed and the ids)::

    python tests/test_fuzz_readers.py --replay NAME ID
"""
from __future__ import annotations

import glob
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "corpus"   # /work/shared/corpus next to the checkout
# A longer or different run: CAFFE_COMPAT_FUZZ_MUTANTS=1000 CAFFE_COMPAT_FUZZ_SEED=7 pytest -m fuzz
MUTANTS_PER_SEED = int(os.environ.get("CAFFE_COMPAT_FUZZ_MUTANTS", 60))
FUZZ_SEED = os.environ.get("CAFFE_COMPAT_FUZZ_SEED", "0")
MEMORY_FACTOR = 4            # the cap: current mapping + MEMORY_FACTOR x file size + slack


def _thread_stack_bytes() -> int:
    """The address space a new thread maps for its stack (a Data layer starts one)."""
    size = threading.stack_size() or resource.getrlimit(resource.RLIMIT_STACK)[0]
    return size if 0 < size < (1 << 30) else 8 << 20


MEMORY_SLACK = _thread_stack_bytes() + (8 << 20)   # + small allocations, allocator pages
MUTANT_TIMEOUT = 20.0        # seconds; a read that takes longer is a hang
STARTUP_TIMEOUT = 120.0

pytestmark = pytest.mark.fuzz


# ==== the readers (run in the child) ========================================================
DATA_LAYER = ('name: "data" type: "Data" top: "data" top: "label" '
              'data_param {{ source: "{source}" backend: {backend} batch_size: 2 }} '
              'transform_param {{ scale: 0.5 }}')


def _data_layer_batches(source: str, backend: str) -> None:
    """Build a Data layer on ``source`` (as a net does) and read three batches."""
    from google.protobuf import text_format
    from caffe_compat.engine.build import build_layer
    from caffe_compat.proto import caffe_pb2
    param = text_format.Parse(DATA_LAYER.format(source=source, backend=backend),
                              caffe_pb2.LayerParameter())
    layer = build_layer(param, [], phase=caffe_pb2.TEST)
    try:
        for _ in range(3):
            layer.next_batch()
    finally:
        layer.close()


def write_lmdb(path: str, records, map_size: int = 1 << 20) -> None:
    import lmdb
    env = lmdb.open(path, map_size=map_size)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    env.close()


def _datum_record(path: str) -> None:
    """A Datum record (the file's bytes) stored in an LMDB, read by a Data layer."""
    db = path + ".lmdb"
    with open(path, "rb") as f:
        write_lmdb(db, [(b"00000000", f.read())])
    _data_layer_batches(db, "LMDB")


HDF5_DATA_LAYER = ('name: "h5" type: "HDF5Data" top: "data" top: "label" '
                   'hdf5_data_param {{ source: "{source}" batch_size: 2 }}')


def _hdf5_data_batches(path: str) -> None:
    """An HDF5Data layer whose source list names the file, three batches read."""
    from google.protobuf import text_format
    from caffe_compat.engine.build import build_layer
    from caffe_compat.proto import caffe_pb2
    with open(path + ".txt", "w") as f:
        f.write(path + "\n")
    param = text_format.Parse(HDF5_DATA_LAYER.format(source=path + ".txt"),
                              caffe_pb2.LayerParameter())
    layer = build_layer(param, [], phase=caffe_pb2.TEST)
    for _ in range(3):
        layer.next_batch()


def _reader(name: str):
    from caffe_compat.formats import read_net, read_solver
    from caffe_compat.formats.binaryproto import read_binaryproto, read_blob_proto_vector
    from caffe_compat.formats.solverstate import read_solverstate
    from caffe_compat.formats.weights import read_weights
    return {
        "weights": read_weights,                       # .caffemodel or .caffemodel.h5
        "binaryproto": read_binaryproto,
        "blob_proto_vector": read_blob_proto_vector,
        "solverstate": read_solverstate,
        "prototxt": read_net,
        "solver": read_solver,
        "lmdb": lambda p: _data_layer_batches(p, "LMDB"),
        "leveldb": lambda p: _data_layer_batches(p, "LEVELDB"),
        "datum": _datum_record,
        "hdf5_data": _hdf5_data_batches,
        # the harness's own checks: a foreign exception, a crash, running out of memory
        "selftest_keyerror": lambda p: {}[p],
        "selftest_crash": lambda p: os.kill(os.getpid(), signal.SIGSEGV),
        "selftest_memory": lambda p: bytearray(1 << 31),
        "selftest_hang": lambda p: time.sleep(60),
    }[name]


# ==== mutations ==============================================================================
def apply_ops(data: bytes, ops) -> bytes:
    """``ops``: ["trunc", n] | ["xor", offset, mask] | ["splice", offset, length, hex]."""
    out = bytearray(data)
    for op in ops:
        if op[0] == "trunc":
            del out[op[1]:]
        elif op[0] == "xor":
            out[op[1]] ^= op[2]
        elif op[0] == "splice":
            out[op[1]:op[1] + op[2]] = bytes.fromhex(op[3])
    return bytes(out)


def make_mutant(seed: str, target: str, ops, where: str) -> tuple[str, int]:
    """Write the mutant of ``seed`` (a file, or a directory whose ``target`` file is
    mutated) to ``where``; returns (path, size in bytes)."""
    if target:
        shutil.copytree(seed, where)
        victim = os.path.join(where, target)
    else:
        victim = where
    with open(os.path.join(seed, target) if target else seed, "rb") as f:
        mutated = apply_ops(f.read(), ops)
    with open(victim, "wb") as f:
        f.write(mutated)
    if target:
        return where, sum(os.path.getsize(os.path.join(where, n)) for n in os.listdir(where))
    return where, len(mutated)


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _raised_at(exc: BaseException) -> str:
    """``file:line`` of the innermost frame that raised ``exc``."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{frame.filename}:{frame.lineno}"


def run_mutant(request: dict, scratch: str) -> dict:
    """Read one mutant under the memory cap; the outcome as a JSON-able dict."""
    from caffe_compat.errors import CaffeCompatError
    where = os.path.join(scratch, f"m{request['id']}{request.get('suffix', '')}")
    path, size = make_mutant(request["seed"], request["target"], request["ops"], where)
    read = _reader(request["reader"])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS,
                       (_mapped_bytes() + MEMORY_FACTOR * size + MEMORY_SLACK, hard))
    try:
        read(path)
        outcome = {"status": "ok"}
    except BaseException as exc:   # every outcome is reported, none escapes the child
        message = str(exc)
        outcome = {"status": "error", "caffe": isinstance(exc, CaffeCompatError),
                   "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                   "message": message[:400], "names_file": os.path.basename(where) in message,
                   "where": "" if isinstance(exc, CaffeCompatError) else _raised_at(exc)}
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        for leftover in glob.glob(where + "*"):   # the mutant and what its reader made
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.remove(leftover)
    return outcome


def child_main() -> None:
    """Serve mutants: one JSON request per line on stdin, one JSON outcome per line back."""
    import gc
    import warnings
    warnings.simplefilter("ignore")
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                      # anything the libraries print goes to stderr
    import caffe_compat.engine.layers  # noqa: F401  (import everything before the cap)
    for name in ("weights", "lmdb"):
        _reader(name)
    scratch = tempfile.mkdtemp(prefix="caffe-compat-fuzz-")
    try:
        protocol.write("ready\n")
        protocol.flush()
        for count, line in enumerate(sys.stdin, start=1):
            outcome = run_mutant(json.loads(line), scratch)
            if count % 16 == 0:
                gc.collect()           # close the databases of finished layers (a full
                                       # collection costs ~30 ms with MXNet loaded)
            protocol.write(json.dumps(outcome) + "\n")
            protocol.flush()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class FuzzChild:
    """Drives child processes (this file with --child); restarts one after a crash."""

    def __init__(self):
        self.proc = None
        self.log = tempfile.TemporaryFile()

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, bufsize=0)
        line = self._read_line(STARTUP_TIMEOUT)
        if line != "ready":
            raise RuntimeError(f"fuzz child did not start: {line!r}\n{self._log_tail()}")

    def _read_line(self, timeout: float):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().decode().strip()

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-800:]

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, request: dict, timeout: float = MUTANT_TIMEOUT) -> dict:
        """The outcome of one mutant: ok, error (with its type and message), crash or hang."""
        if self.proc is None:
            self._start()
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        line = self._read_line(timeout)
        if line:
            return json.loads(line)
        if line is None:
            self._kill()
            return {"status": "hang", "message": f"no answer within {timeout:.0f} s"}
        code = self.proc.wait()
        self.proc = None
        name = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        return {"status": "crash", "message": f"the child died ({name})",
                "where": self._log_tail()[-300:]}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None
        self.log.close()


# ==== mutant generation (in the parent) ======================================================
class Structure(NamedTuple):
    """Where a seed's structure sits, so mutants hit it and not only float payloads."""
    points: list[int]                # tags, token boundaries, header bytes
    lengths: list[tuple[int, int]]   # protobuf length prefixes: (offset, bytes)
    values: list[tuple[int, int]]    # protobuf varint values, packed ones too; text numbers


def protobuf_structure(data: bytes) -> Structure:
    """The fields of the message in ``data`` and of the nested messages that parse as
    such; a short payload that does not is read as packed varints (e.g. shape dims)."""
    from caffe_compat.errors import WeightsFormatError
    from caffe_compat.formats.wire import LEN, VARINT, WireReader
    found = Structure([], [], [])

    def packed(start: int, end: int) -> None:
        reader = WireReader(data, "seed", start, end)
        try:
            while not reader.at_end():
                at = reader.pos
                reader.read_varint()
                found.values.append((at, reader.pos - at))
        except WeightsFormatError:
            pass

    def walk(start: int, end: int, depth: int) -> None:
        try:
            fields = list(WireReader(data, "seed", start, end).fields())
        except WeightsFormatError:
            if end - start <= 256:
                packed(start, end)
            return
        for fld in fields:
            found.points.append(fld.offset)
            if fld.wire_type == VARINT:
                found.values.append((fld.start, fld.end - fld.start))
            if fld.wire_type != LEN:
                continue
            at = WireReader(data, "seed", fld.offset, fld.end)
            at.read_tag()
            found.lengths.append((at.pos, fld.start - at.pos))
            if depth < 4 and fld.end - fld.start < (1 << 20) and len(found.lengths) < 5000:
                walk(fld.start, fld.end, depth + 1)

    walk(0, len(data), 0)
    return found


def text_structure(data: bytes) -> Structure:
    numbers = [(m.start(), m.end() - m.start()) for m in re.finditer(rb"-?\d[\d.e+-]*", data)]
    return Structure([i for i, c in enumerate(data) if c in b'{}:"\n'], [], numbers)


HUGE_INTS = [(1 << 31) - 1, 1 << 31, (1 << 32) + 7, (1 << 63) - 1, (1 << 64) - 1]
HUGE_TEXT_NUMBERS = ["99999999999999999999999", "-2147483649", "1e999", "-0", "nan"]


def generate_mutants(name: str, data: bytes, kind: str, count: int = MUTANTS_PER_SEED):
    """``count`` (label, ops) pairs for ``data``; ``kind``: protobuf, text or binary.

    Every kind gets truncations, bit flips and 0xFF runs; protobuf files also huge
    length prefixes and varint values and a run of nested start-group tags; text files
    huge numbers and deeply nested braces.
    """
    from caffe_compat.formats.wire import varint
    rng = random.Random(f"caffe-compat fuzz {FUZZ_SEED} {name}")
    size = len(data)
    if kind == "protobuf":
        structure = protobuf_structure(data)
    elif kind == "text":
        structure = text_structure(data)
    else:   # headers and metadata sit at the start of HDF5 and database files
        structure = Structure(list(range(min(size, 8192))), [], [])
    points = structure.points or [0]

    def offset() -> int:
        return rng.choice(points) if rng.random() < 0.5 else rng.randrange(size)

    out = [("truncate@1", [["trunc", 1]]), (f"truncate@{size - 1}", [["trunc", size - 1]])]
    plan = ["trunc"] * 8 + ["flip"] * 8 + ["flips"] * 5 + ["ff"] * 5
    plan += ["length"] * 6 if structure.lengths else ["flip"] * 3 + ["ff"] * 3
    plan += ["value"] * 4 if structure.values else ["flips"] * 4
    plan += ["nest"] * 2 if kind in ("protobuf", "text") else ["trunc"] * 2
    todo = count - len(out)      # the plan's proportions, stretched or thinned to fit
    for step in [plan[i * len(plan) // todo] for i in range(todo)]:
        if step == "trunc":
            n = min(offset() + rng.randrange(3), size - 1)
            out.append((f"truncate@{n}", [["trunc", n]]))
        elif step in ("flip", "flips"):
            flips = [["xor", offset(), 1 << rng.randrange(8)]
                     for _ in range(1 if step == "flip" else rng.randint(2, 8))]
            out.append(("bitflip " + ",".join(f"{o}^{m:#x}" for _, o, m in flips), flips))
        elif step == "ff":
            at, n = offset(), rng.randint(1, 64)
            out.append((f"0xff*{n}@{at}", [["splice", at, n, "ff" * n]]))
        elif step in ("length", "value"):
            at, width = rng.choice(structure.lengths if step == "length" else structure.values)
            if kind == "text":
                new = rng.choice(HUGE_TEXT_NUMBERS).encode()
            else:
                new = varint(rng.choice(HUGE_INTS + [(1 << (7 * width)) - 1]))
            shown = new.decode() if kind == "text" else new.hex()
            out.append((f"{step}@{at}={shown}", [["splice", at, width, new.hex()]]))
        else:   # nesting deeper than any parser should recurse
            at = rng.choice(points)
            bomb = b"\x0b" * 3000 if kind == "protobuf" else b" a { " * 3000
            out.append((f"nest*3000@{at}", [["splice", at, 0, bomb.hex()]]))
    return out


# ==== seeds ==================================================================================
GOLDEN = HERE / "golden"
WRITTEN = ["net.caffemodel", "mean.binaryproto", "legacy_mean.binaryproto",
           "means.binaryproto", "snap.solverstate", "snap.solverstate.h5", "net.caffemodel.h5",
           "train.h5",
           "train.lmdb", "train.leveldb", "raw.datum", "float.datum", "png.datum", "jpeg.datum"]
REPO_SEEDS = sorted(str(p.relative_to(HERE)) for p in GOLDEN.glob("*/*.caffemodel")) + [
    "golden/caffenet_tiny/net.prototxt", "data/prototxt/v0_train.prototxt",
    "data/prototxt/v2_train_val.prototxt", "data/prototxt/legacy_solver.prototxt"]
CORPUS_SEEDS = sorted(str(p.relative_to(CORPUS)) for pattern in
                      ("weights/*/*.caffemodel*", "*/*.binaryproto", "*/*/*.binaryproto")
                      for p in CORPUS.glob(pattern)) if CORPUS.is_dir() else []


def reader_for(name: str) -> tuple[str, str]:
    """(reader, mutation kind) for a seed file name."""
    if name.endswith(".prototxt"):
        return ("solver" if "solver" in name else "prototxt"), "text"
    if name.endswith(".h5"):
        reader = "solverstate" if "solverstate" in name else "weights" if "caffemodel" in name \
            else "hdf5_data"
        return reader, "binary"
    table = {".caffemodel": "weights", ".solverstate": "solverstate", ".lmdb": "lmdb",
             ".leveldb": "leveldb", ".datum": "datum",
             ".binaryproto": "blob_proto_vector" if name.endswith("means.binaryproto")
             else "binaryproto"}
    return table[os.path.splitext(name)[1]], "protobuf" if name.endswith(
        (".caffemodel", ".solverstate", ".binaryproto", ".datum")) else "binary"


def _datums():
    import cv2
    import numpy as np
    from caffe_compat.io import array_to_datum
    from caffe_compat.proto import caffe_pb2
    rs = np.random.RandomState(0)
    pixels = rs.randint(0, 256, (3, 8, 8)).astype(np.uint8)
    encoded = {ext: cv2.imencode(ext, pixels.transpose(1, 2, 0))[1].tobytes()
               for ext in (".png", ".jpg")}
    return {"raw": array_to_datum(pixels, label=3),
            "float": array_to_datum(rs.randn(3, 8, 8).astype(np.float32), label=1),
            "png": caffe_pb2.Datum(data=encoded[".png"], encoded=True, label=2),
            "jpeg": caffe_pb2.Datum(data=encoded[".jpg"], encoded=True, label=5)}


def write_seeds(root: Path) -> None:
    """The seeds written with the project's own writers (always available)."""
    import h5py
    import numpy as np
    import plyvel
    from caffe_compat.formats.binaryproto import write_binaryproto, write_blob_proto_vector
    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    from caffe_compat.formats.hdf5_weights import write_hdf5_weights
    from caffe_compat.formats.prototxt import read_net
    from caffe_compat.formats.solverstate import SolverState, write_solverstate
    rs = np.random.RandomState(0)
    layers = [LayerWeights("conv1", "Convolution", [rs.randn(4, 3, 3, 3).astype(np.float32),
                                                    rs.randn(4).astype(np.float32)]),
              LayerWeights("ip1", "InnerProduct", [rs.randn(10, 16).astype(np.float32),
                                                   rs.randn(10).astype(np.float32)])]
    net = read_net(str(HERE / "data/prototxt/v2_deploy.prototxt")).param
    names = [lp.name for lp in net.layer]
    write_caffemodel(root / "net.caffemodel", [LayerWeights(names[-1], "", layers[0].blobs)],
                     net_param=net)
    write_hdf5_weights(root / "net.caffemodel.h5", layers)
    with h5py.File(root / "train.h5", "w") as f:
        f.create_dataset("data", data=rs.randn(4, 3, 2, 2).astype(np.float32))
        f.create_dataset("label", data=np.arange(4, dtype=np.float32))
    mean = rs.uniform(0, 255, (1, 3, 8, 8)).astype(np.float32)
    write_binaryproto(root / "mean.binaryproto", mean)
    write_binaryproto(root / "legacy_mean.binaryproto", mean, legacy=True)
    write_blob_proto_vector(root / "means.binaryproto", [mean[0, 0], mean[0]])
    state = SolverState(iter=120, learned_net="snap_iter_120.caffemodel",
                        history=[b for layer in layers for b in layer.blobs], current_step=2)
    write_solverstate(root / "snap.solverstate", state)
    write_solverstate(root / "snap.solverstate.h5", state)
    datums = _datums()
    for name, datum in datums.items():
        (root / f"{name}.datum").write_bytes(datum.SerializeToString())
    records = [(b"%08d" % i, d.SerializeToString()) for i, d in enumerate(datums.values())]
    write_lmdb(str(root / "train.lmdb"), records, map_size=1 << 40)   # as convert_imageset
    db = plyvel.DB(str(root / "train.leveldb"), create_if_missing=True)
    for key, value in records:
        db.put(key, value)
    db.compact_range()
    db.close()


def db_targets(path: Path) -> list[tuple[str, int]]:
    """(file, number of mutants) for the files of a database directory."""
    if (path / "data.mdb").exists():
        return [("data.mdb", MUTANTS_PER_SEED)]
    names = sorted(os.listdir(path))
    table = [n for n in names if n.endswith(".ldb")][0]
    manifest = [n for n in names if n.startswith("MANIFEST")][0]
    return [(table, MUTANTS_PER_SEED * 3 // 4), (manifest, MUTANTS_PER_SEED // 4)]


@pytest.fixture(scope="module")
def written_seeds(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-seeds")
    write_seeds(root)
    return root


@pytest.fixture(scope="module")
def child():
    driver = FuzzChild()
    yield driver
    driver.close()


def mutant_requests(name: str, path: Path) -> list[dict]:
    """The child's requests for every mutant of seed ``name`` (a file or database
    directory at ``path``), each with its ``label``."""
    reader, kind = reader_for(name)
    if path.is_dir():
        mutants = [(f"{target}: {label}", target, ops) for target, count in db_targets(path)
                   for label, ops in generate_mutants(f"{name}/{target}",
                                                      (path / target).read_bytes(), kind, count)]
    else:
        mutants = [(label, "", ops) for label, ops in
                   generate_mutants(name, path.read_bytes(), kind)]
    return [{"id": index, "label": label, "reader": reader, "seed": str(path), "target": target,
             "ops": ops, "suffix": os.path.splitext(name)[1]}
            for index, (label, target, ops) in enumerate(mutants)]


def seed_path(name: str, written: Path) -> Path:
    """Where seed ``name`` lives (``written``: the folder of the seeds written here)."""
    if name in WRITTEN:
        return written / name
    return HERE / name if name in REPO_SEEDS else CORPUS / name


def replay(name: str, index: int) -> dict:
    """Mutant ``index`` of seed ``name`` read in this process (seeds written afresh)."""
    written = Path(tempfile.mkdtemp(prefix="caffe-compat-fuzz-seeds-"))
    if name in WRITTEN:
        write_seeds(written)
    request = mutant_requests(name, seed_path(name, written))[index]
    return dict(run_mutant(request, tempfile.mkdtemp()), label=request["label"][:200])


def passed(outcome: dict) -> bool:
    """A valid load, or a CaffeCompatError whose message names the file."""
    return outcome["status"] == "ok" or (outcome["status"] == "error" and outcome["caffe"]
                                         and outcome["names_file"])


def fuzz_seed(child: FuzzChild, name: str, path: Path) -> None:
    requests = mutant_requests(name, path)
    failures = []
    for request in requests:
        outcome = child.run(request)
        if not passed(outcome):
            failures.append(f"  #{request['id']} {request['label'][:80]}: {outcome['status']} "
                            f"{outcome.get('type', '')}: {outcome['message']} "
                            f"[{outcome.get('where', '')}]")
    if failures:
        pytest.fail(f"{len(failures)} of {len(requests)} mutants of {name} failed "
                    f"(replay one: python {__file__} --replay {name} ID):\n"
                    + "\n".join(failures[:12]), pytrace=False)


@pytest.mark.parametrize("name", WRITTEN)
def test_fuzz_written_files(child, written_seeds, name):
    fuzz_seed(child, name, seed_path(name, written_seeds))


@pytest.mark.parametrize("name", REPO_SEEDS)
def test_fuzz_repository_files(child, name):
    fuzz_seed(child, name, seed_path(name, Path()))


@pytest.mark.skipif(not CORPUS_SEEDS, reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("name", CORPUS_SEEDS or ["none"])
def test_fuzz_corpus_files(child, name):
    fuzz_seed(child, name, seed_path(name, Path()))


def test_harness_reports_a_crash_a_hang_and_a_foreign_exception(child, tmp_path):
    """The harness itself: a foreign exception, running out of memory, a crash and a
    hang are failures, and the child is restarted after the last two."""
    seed = tmp_path / "seed.bin"
    seed.write_bytes(b"\x00" * 16)
    base = {"seed": str(seed), "target": "", "ops": []}
    empty = dict(base, id=0, reader="weights", ops=[["trunc", 0]])   # an empty NetParameter
    assert passed(child.run(empty))
    foreign = child.run(dict(base, id=1, reader="selftest_keyerror"))
    assert foreign["status"] == "error" and "KeyError" in foreign["type"] and not passed(foreign)
    memory = child.run(dict(base, id=2, reader="selftest_memory"))
    assert memory["type"] == "builtins.MemoryError" and not passed(memory)
    assert child.run(dict(base, id=3, reader="selftest_crash"))["status"] == "crash"
    assert child.run(dict(base, id=4, reader="selftest_hang"), timeout=1.0)["status"] == "hang"
    assert passed(child.run(dict(empty, id=5)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main()
    elif sys.argv[1:2] == ["--replay"]:   # NAME ID: one mutant, in this process
        print(json.dumps(replay(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit(__doc__)
