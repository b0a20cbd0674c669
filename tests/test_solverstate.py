"""Solver snapshots: binary SolverState and the SnapshotSolverStateToHDF5 layout."""
import h5py
import numpy as np
import pytest

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.solverstate import SolverState, read_solverstate, write_solverstate
from caffe_compat.formats.wire import WireReader
from caffe_compat.proto import caffe_pb2


def _state():
    rng = np.random.default_rng(0)
    return SolverState(iter=1200, learned_net="snapshots/net_iter_1200.caffemodel",
                       history=[rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                rng.standard_normal(4).astype(np.float32),
                                np.zeros((0,), np.float32)],
                       current_step=3)


def _assert_same(a: SolverState, b: SolverState):
    assert (a.iter, a.learned_net, a.current_step) == (b.iter, b.learned_net, b.current_step)
    assert len(a.history) == len(b.history)
    for x, y in zip(a.history, b.history):
        assert x.shape == y.shape and x.dtype == np.float32 and np.array_equal(x, y)


@pytest.mark.parametrize("name", ["s.solverstate", "s.solverstate.h5"])
def test_round_trip(tmp_path, name):
    state = _state()
    path = tmp_path / name
    write_solverstate(path, state)
    _assert_same(read_solverstate(path), state)


def test_binary_matches_protobuf(tmp_path):
    state = _state()
    path = tmp_path / "s.solverstate"
    write_solverstate(path, state)
    proto = caffe_pb2.SolverState()
    proto.ParseFromString(path.read_bytes())
    assert proto.iter == 1200 and proto.current_step == 3
    assert proto.learned_net == state.learned_net
    assert [list(h.shape.dim) for h in proto.history] == [[4, 3, 3, 3], [4], [0]]
    assert np.array_equal(np.array(proto.history[1].data, np.float32), state.history[1])
    # and the other way: a protobuf-written state with legacy history blobs
    old = caffe_pb2.SolverState(iter=7, learned_net="x.caffemodel")
    old.history.add(num=1, channels=1, height=1, width=2).data.extend([0.5, -0.5])
    path.write_bytes(old.SerializeToString())
    back = read_solverstate(path)
    assert back.iter == 7 and back.current_step == 0
    assert back.history_legacy == [True] and back.history[0].shape == (1, 1, 1, 2)
    write_solverstate(tmp_path / "again.solverstate", back)
    again = caffe_pb2.SolverState()
    again.ParseFromString((tmp_path / "again.solverstate").read_bytes())
    assert again.history[0].width == 2 and not again.history[0].HasField("shape")


def test_hdf5_layout_is_caffes(tmp_path):
    path = tmp_path / "s.solverstate.h5"
    write_solverstate(path, _state())
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"iter", "learned_net", "current_step", "history"}
        assert f["iter"].shape == (1,) and f["iter"].dtype == np.dtype("<i4")
        assert f["iter"][0] == 1200 and f["current_step"][0] == 3
        learned = f["learned_net"]
        assert learned.shape == ()                               # H5LTmake_dataset_string
        string_type = learned.id.get_type()
        assert string_type.get_strpad() == h5py.h5t.STR_NULLTERM
        assert learned[()] == b"snapshots/net_iter_1200.caffemodel"
        assert sorted(f["history"].keys()) == ["0", "1", "2"]
        assert f["history/0"].dtype == np.dtype("<f4")


def test_hdf5_without_current_step_and_format_choice(tmp_path):
    # Caffe's RestoreSolverStateFromHDF5 treats current_step as optional.
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("iter", data=np.array([5], "<i4"))
        f.create_dataset("learned_net", data=np.bytes_(b"a.caffemodel"))
        f.create_group("history").create_dataset("0", data=np.ones(3, "<f4"))
    state = read_solverstate(path)
    assert (state.iter, state.learned_net, state.current_step) == (5, "a.caffemodel", 0)
    # format by suffix, or forced
    write_solverstate(tmp_path / "forced.solverstate", state, format="hdf5")
    assert h5py.is_hdf5(tmp_path / "forced.solverstate")
    _assert_same(read_solverstate(tmp_path / "forced.solverstate"), state)
    with pytest.raises(ValueError, match="unknown solver state format"):
        write_solverstate(tmp_path / "x", state, format="json")


def test_truncated_and_broken_files(tmp_path):
    path = tmp_path / "s.solverstate"
    write_solverstate(path, _state())
    data = path.read_bytes()
    reader = WireReader(data, "<state>")
    boundaries = {reader.pos for _ in reader.fields()}
    cuts = [cut for cut in range(1, len(data)) if cut not in boundaries]
    assert len(cuts) > 400
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsFormatError) as info:
            read_solverstate(path)
        assert 0 <= info.value.offset <= cut
    path.write_bytes(b"")
    with pytest.raises(WeightsFormatError, match="empty"):
        read_solverstate(path)
    h5 = tmp_path / "bad.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("learned_net", data=np.bytes_(b"a"))
    with pytest.raises(WeightsFormatError, match="the 'iter' dataset"):
        read_solverstate(h5)
    with h5py.File(h5, "a") as f:
        f.create_dataset("iter", data=np.bytes_(b"12"))
    with pytest.raises(WeightsFormatError, match=r"an integer in the 'iter' dataset \(got b'12'\)"):
        read_solverstate(h5)
