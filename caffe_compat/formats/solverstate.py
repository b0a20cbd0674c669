"""Read and write Caffe solver snapshots (``.solverstate`` and ``.solverstate.h5``).

``SolverState`` (caffe.proto): ``iter`` (1), ``learned_net`` (2, the .caffemodel the
snapshot goes with), ``history`` (3, one ``BlobProto`` per learnable param: the
momentum of SGD/Nesterov/AdaGrad/RMSProp; Adam and AdaDelta append a second set),
``current_step`` (4, the step-policy position). Binary snapshots are that protobuf
(``SGDSolver::SnapshotSolverStateToBinaryProto``); HDF5 snapshots
(``SnapshotSolverStateToHDF5``, sgd_solver.cpp) hold::

    iter          int32 dataset of shape (1,)
    learned_net   scalar fixed-length, NUL-terminated string dataset
    current_step  int32 dataset of shape (1,)
    history/<i>   float32 dataset of history blob i's shape

Usage::

    state = read_solverstate("snap_iter_1000.solverstate")      # or .solverstate.h5
    state.iter, state.learned_net, [h.shape for h in state.history]
    write_solverstate("snap.solverstate", state)                # format from the suffix
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.binaryproto import blob_field_chunks, decode_blob, write_chunks
from caffe_compat.formats.hdf5_weights import (dataset_to_array, hdf5_errors, is_hdf5,
                                                read_dataset)
from caffe_compat.formats.wire import (LEN, VARINT, WireReader, atomic_write, expect_wire_type,
                                       len_field, open_buffer, to_int32, varint_field)

PathLike = Union[str, os.PathLike]

_ITER, _LEARNED_NET, _HISTORY, _CURRENT_STEP = 1, 2, 3, 4


@dataclass
class SolverState:
    """A solver snapshot. ``history_legacy[i]``: blob i was stored with legacy 4-d dims."""
    iter: int
    learned_net: str
    history: List[np.ndarray] = field(default_factory=list)
    current_step: int = 0
    history_legacy: List[bool] = field(default_factory=list)

    def __post_init__(self):
        self.history = list(self.history)
        self.history_legacy = (list(self.history_legacy)
                               + [False] * (len(self.history) - len(self.history_legacy)))


def read_solverstate(path: PathLike) -> SolverState:
    """Read a binary or HDF5 solver snapshot (HDF5 recognised by its signature)."""
    path = os.fspath(path)
    if is_hdf5(path):
        return _read_hdf5(path)
    with open_buffer(path) as (buf, raw):
        if not len(buf):
            raise WeightsFormatError(path, 0, "a SolverState message (the file is empty)")
        reader = WireReader(buf, path)
        state = SolverState(iter=0, learned_net="")
        for fld in reader.fields():
            if fld.number == _ITER:
                expect_wire_type(reader, fld, VARINT, "SolverState.iter")
                state.iter = to_int32(fld.value)
            elif fld.number == _LEARNED_NET:
                expect_wire_type(reader, fld, LEN, "SolverState.learned_net")
                state.learned_net = bytes(buf[fld.start:fld.end]).decode("utf-8",
                                                                         "surrogateescape")
            elif fld.number == _HISTORY:
                expect_wire_type(reader, fld, LEN, "SolverState.history")
                blob = decode_blob(buf, path, fld.start, fld.end, raw=raw)
                state.history.append(blob.data)
                state.history_legacy.append(blob.legacy)
            elif fld.number == _CURRENT_STEP:
                expect_wire_type(reader, fld, VARINT, "SolverState.current_step")
                state.current_step = to_int32(fld.value)
        return state


def _first_value(f, key: str, path: str):
    """The first element of a small dataset (``iter``, ``learned_net``, ``current_step``)."""
    values = np.asarray(read_dataset(f[key], path)).reshape(-1)
    if not values.size:
        raise WeightsFormatError(path, None, f"a value in the '{key}' dataset (it is empty)")
    return values[0]


def _int_value(f, key: str, path: str) -> int:
    value = _first_value(f, key, path)
    if not isinstance(value, (np.integer, np.floating)) or not np.isfinite(value):
        raise WeightsFormatError(path, None, f"an integer in the '{key}' dataset (got {value!r})")
    return int(value)


def _read_hdf5(path: str) -> SolverState:
    import h5py
    with hdf5_errors(path, "a readable HDF5 solver state"), h5py.File(path, "r") as f:
        for key in ("iter", "learned_net"):
            if key not in f:
                raise WeightsFormatError(path, None, f"the '{key}' dataset (Caffe's "
                                                     f"SnapshotSolverStateToHDF5 layout)")
        learned = _first_value(f, "learned_net", path)
        if isinstance(learned, bytes):
            learned = learned.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        history = []
        if "history" in f:
            group = f["history"]
            if not isinstance(group, h5py.Group):
                raise WeightsFormatError(path, None, "a 'history' group (found a dataset)")
            count = len(group)
            for index in range(count):
                if str(index) not in group:
                    raise WeightsFormatError(path, None, f"history datasets 0..{count - 1} "
                                                         f"(missing {index})")
                history.append(dataset_to_array(group[str(index)], path))
        current_step = _int_value(f, "current_step", path) if "current_step" in f else 0
        return SolverState(iter=_int_value(f, "iter", path), learned_net=str(learned),
                           history=history, current_step=current_step)


def write_solverstate(path: PathLike, state: SolverState, *, format: Optional[str] = None) -> None:
    """Write a snapshot as Caffe does; ``format`` is ``"binaryproto"`` or ``"hdf5"``.

    By default a path ending in ``.h5`` gets HDF5 (Caffe restores by the same rule).
    """
    path = os.fspath(path)
    if format is None:
        format = "hdf5" if path.endswith(".h5") else "binaryproto"
    if format == "hdf5":
        _write_hdf5(path, state)
    elif format == "binaryproto":
        def write(out):
            # Caffe sets iter, learned_net and current_step always; fields in number order.
            out.write(varint_field(_ITER, state.iter))
            out.write(len_field(_LEARNED_NET, state.learned_net.encode("utf-8", "surrogateescape")))
            missing = len(state.history) - len(state.history_legacy)
            legacy = state.history_legacy + [False] * missing
            for array, is_legacy in zip(state.history, legacy):
                write_chunks(out, blob_field_chunks(_HISTORY, array, legacy=is_legacy))
            out.write(varint_field(_CURRENT_STEP, state.current_step))
        atomic_write(path, write)
    else:
        raise ValueError(f"unknown solver state format {format!r} (binaryproto or hdf5)")


def _write_string_dataset(h5py, parent, name: str, text: str) -> None:
    """A scalar NUL-terminated fixed-length string, as HDF5's H5LTmake_dataset_string makes."""
    data = text.encode("utf-8", "surrogateescape") + b"\0"
    string_type = h5py.h5t.C_S1.copy()
    string_type.set_size(len(data))
    string_type.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    dataset = h5py.h5d.create(parent.id, name.encode(), string_type, space)
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(data, dtype=f"S{len(data)}"),
                  mtype=string_type)


def _write_hdf5(path: str, state: SolverState) -> None:
    import h5py
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("iter", data=np.array([state.iter], dtype="<i4"))
            _write_string_dataset(h5py, f, "learned_net", state.learned_net)
            f.create_dataset("current_step", data=np.array([state.current_step], dtype="<i4"))
            group = f.create_group("history")
            for index, array in enumerate(state.history):
                group.create_dataset(str(index), data=np.asarray(array, "<f4", order="C"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
