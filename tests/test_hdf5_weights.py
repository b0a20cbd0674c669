"""HDF5 weights in Caffe's Net::ToHDF5 layout (caffe_compat.formats.hdf5_weights)."""
import os

import h5py
import numpy as np
import pytest

from caffe_compat.errors import WeightsFormatError
from caffe_compat.formats.caffemodel import LayerWeights, read_caffemodel
from caffe_compat.formats.hdf5_weights import is_hdf5, read_hdf5_weights, write_hdf5_weights

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def _layers():
    rng = np.random.default_rng(0)
    return [
        LayerWeights("conv1", "Convolution", [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                              rng.standard_normal(4).astype(np.float32)]),
        LayerWeights("relu1", "ReLU", []),
        LayerWeights("fc", "InnerProduct", [rng.standard_normal((2, 36)).astype(np.float32),
                                            rng.standard_normal(2).astype(np.float32)]),
    ]


def test_round_trip_in_name_order(tmp_path):
    layers = _layers()
    path = tmp_path / "net.caffemodel.h5"
    write_hdf5_weights(path, layers)
    assert is_hdf5(path)
    back = read_hdf5_weights(path)
    assert [l.name for l in back] == ["conv1", "fc", "relu1"]     # HDF5 name order, like Caffe
    by_name = {l.name: l for l in back}
    for layer in layers:
        got = by_name[layer.name]
        assert got.type == "" and got.diffs is None
        assert len(got.blobs) == len(layer.blobs)
        for g, w in zip(got.blobs, layer.blobs):
            assert g.dtype == np.float32 and np.array_equal(g, w)


def test_written_layout_is_caffes(tmp_path):
    layers = _layers()
    layers[0].diffs = [np.ones((4, 3, 3, 3), np.float32), np.full(4, 2, np.float32)]
    path = tmp_path / "net.caffemodel.h5"
    write_hdf5_weights(path, layers, write_diff=True)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"data", "diff"}
        assert set(f["data"].keys()) == {"conv1", "relu1", "fc"}
        assert len(f["data/relu1"]) == 0                       # blob-less layers get a group
        w = f["data/conv1/0"]
        assert w.shape == (4, 3, 3, 3) and w.dtype == np.dtype("<f4")
        assert w.compression is None and w.chunks is None      # plain contiguous like H5LT
        assert np.array_equal(f["diff/conv1/1"][()], np.full(4, 2, np.float32))
        assert len(f["diff/fc"]) == 0
    back = {l.name: l for l in read_hdf5_weights(path, with_diff=True)}
    assert np.array_equal(back["conv1"].diffs[0], np.ones((4, 3, 3, 3)))
    assert back["fc"].diffs == [None, None]


def test_reads_a_caffe_style_file_with_a_shared_blob_missing(tmp_path):
    # Net::ToHDF5 saves only params that own themselves: a layer sharing its weight
    # with another has data/<layer>/1 but no data/<layer>/0.
    path = tmp_path / "shared.caffemodel.h5"
    with h5py.File(path, "w") as f:
        f.create_group("data/ip_a").create_dataset("0", data=np.ones((2, 3), "<f4"))
        f["data/ip_a"].create_dataset("1", data=np.zeros(2, "<f4"))
        f.create_group("data/ip_b").create_dataset("1", data=np.full(2, 5, "<f4"))
        f.create_group("data/int_blob").create_dataset("0", data=np.arange(3, dtype="<i4"))
    layers = {l.name: l for l in read_hdf5_weights(path)}
    assert layers["ip_b"].blobs[0] is None and np.array_equal(layers["ip_b"].blobs[1], [5, 5])
    assert layers["int_blob"].blobs[0].dtype == np.float32     # integer datasets convert
    with pytest.raises(Exception, match="no blob 0"):
        layers["ip_b"].blob_for(0, (2, 3))


def test_layer_names_with_slashes(tmp_path):
    layers = [LayerWeights("inception_3a/1x1", "", [np.ones(2, np.float32)]),
              LayerWeights("inception_3a/relu_1x1", "", []),
              LayerWeights("inception_3a", "", [np.zeros(1, np.float32)])]
    path = tmp_path / "g.caffemodel.h5"
    write_hdf5_weights(path, layers)
    back = [l.name for l in read_hdf5_weights(path)]
    assert back == ["inception_3a", "inception_3a/1x1", "inception_3a/relu_1x1"]


def test_golden_weights_through_hdf5(tmp_path):
    model = read_caffemodel(os.path.join(GOLDEN, "googlenet_tiny", "weights.caffemodel"))
    path = tmp_path / "googlenet.caffemodel.h5"
    write_hdf5_weights(path, model.layers)
    back = {l.name: l for l in read_hdf5_weights(path)}
    with_blobs = [l for l in model.layers if l.blobs]
    assert with_blobs
    for layer in with_blobs:
        assert all(np.array_equal(a, b) for a, b in zip(back[layer.name].blobs, layer.blobs))


def test_is_hdf5_and_errors(tmp_path):
    caffemodel = os.path.join(GOLDEN, "layers_basic", "weights.caffemodel")
    assert not is_hdf5(caffemodel)
    assert not is_hdf5(tmp_path / "missing.h5")
    with pytest.raises(WeightsFormatError, match="no HDF5 signature"):
        read_hdf5_weights(caffemodel)
    # a user block of 512 bytes moves the signature; it is still HDF5
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_group("data/x").create_dataset("0", data=np.ones(1, "<f4"))
    assert is_hdf5(path) and read_hdf5_weights(path)[0].name == "x"
    no_data = tmp_path / "nodata.h5"
    with h5py.File(no_data, "w") as f:
        f.create_group("weights")
    with pytest.raises(WeightsFormatError, match="a 'data' group"):
        read_hdf5_weights(no_data)
    bad_name = tmp_path / "badname.h5"
    with h5py.File(bad_name, "w") as f:
        f.create_group("data/x").create_dataset("weight", data=np.ones(1, "<f4"))
    with pytest.raises(WeightsFormatError, match="named 0, 1"):
        read_hdf5_weights(bad_name)
    truncated = tmp_path / "cut.h5"
    full = (tmp_path / "ub.h5").read_bytes()
    truncated.write_bytes(full[:len(full) // 2])
    with pytest.raises(WeightsFormatError):
        read_hdf5_weights(truncated)


def test_damaged_structure_is_an_error_before_any_allocation(tmp_path):
    """A dataset whose header claims more bytes than the file holds is refused before it
    is read; a group linking back to its parent is refused instead of recursing forever."""
    huge = tmp_path / "huge.h5"
    with h5py.File(huge, "w") as f:     # 4 GB declared, never written: no storage
        f.create_group("data/fc").create_dataset("0", shape=(1 << 30,), dtype="<f4")
    with pytest.raises(WeightsFormatError, match=r"dataset /data/fc/0 of shape \(1073741824,\) "
                                                 r"\(4294967296 bytes\) to fit in its file of"):
        read_hdf5_weights(huge)
    cycle = tmp_path / "cycle.h5"
    with h5py.File(cycle, "w") as f:
        f.create_group("data/conv1").create_dataset("0", data=np.ones(2, "<f4"))
        f["data/conv1/back"] = f["data"]
    with pytest.raises(WeightsFormatError, match="/data/conv1/back links back to a group"):
        read_hdf5_weights(cycle)


def test_read_caffemodel_points_hdf5_files_to_the_hdf5_reader(tmp_path):
    path = tmp_path / "net.caffemodel.h5"
    write_hdf5_weights(path, _layers())
    with pytest.raises(WeightsFormatError, match="this is an HDF5 file"):
        read_caffemodel(path)
