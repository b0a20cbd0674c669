"""Caffe's data layers on fixtures built in tmp dirs: LMDB/LevelDB Datums, image lists,
HDF5 files, an R-CNN window file, MemoryData arrays, DummyData fillers, background
prefetching and its errors, and a TRAIN net (Data + Convolution + SoftmaxWithLoss)
run forward and backward end to end through ``caffe_compat.Net``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import cv2
import h5py
import lmdb
import mxnet as mx
import numpy as np
import pytest
from google.protobuf import text_format

import caffe_compat as caffe
from caffe_compat.engine.build import build_layer
from caffe_compat.engine.data_transformer import DataTransformer
from caffe_compat.engine.layers.data import window_geometry
from caffe_compat.engine.prefetch import Prefetcher
from caffe_compat.errors import LayerError
from caffe_compat.formats.binaryproto import write_binaryproto
from caffe_compat.io import array_to_datum
from caffe_compat.proto import caffe_pb2

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def rel_err(ours, ref) -> float:
    """Relative L2 error, the project's tolerance measure."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30))


def layer_param(text: str) -> caffe_pb2.LayerParameter:
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def build(text: str, phase=TEST, bottoms=()):
    return build_layer(layer_param(text), list(bottoms), phase=phase)


def images(n=10, c=3, h=8, w=8, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, c, h, w)).astype(np.uint8)


def write_lmdb(path, datums):
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, d in enumerate(datums):
            txn.put(b"%08d" % i, d if isinstance(d, bytes) else d.SerializeToString())
    env.close()
    return str(path)


def png_datum(chw, label):
    ok, buf = cv2.imencode(".png", chw.transpose(1, 2, 0))
    assert ok
    return caffe_pb2.Datum(data=buf.tobytes(), encoded=True, label=label)


def data_layer(source, batch, tops=("data", "label"), transform="", extra="", phase=TEST):
    top_lines = " ".join(f'top: "{t}"' for t in tops)
    return build(f'name: "data" type: "Data" {top_lines} '
                 f'data_param {{ source: "{source}" backend: LMDB batch_size: {batch} {extra} }} '
                 f'{transform}', phase=phase)


# ---- Data (LMDB / LevelDB) -----------------------------------------------------------------
def test_lmdb_batches_in_key_order_loop_and_labels(tmp_path):
    x = images(5)
    src = write_lmdb(tmp_path / "db", [array_to_datum(x[i], label=10 + i) for i in range(5)])
    layer = data_layer(src, 2, transform='transform_param { scale: 0.5 }')
    assert layer.top_shapes == [(2, 3, 8, 8), (2,)]
    order = [0, 1, 2, 3, 4, 0, 1, 2]
    for b in range(4):
        data, label = layer.next_batch()
        idx = order[2 * b:2 * b + 2]
        np.testing.assert_array_equal(data, x[idx].astype(np.float32) * 0.5)
        np.testing.assert_array_equal(label, np.float32(idx) + 10)
        assert data.dtype == label.dtype == np.float32
    # layer(*fed) passes the batch through, as Input does.
    out = layer(mx.nd.array(data), mx.nd.array(label))
    np.testing.assert_array_equal(out[0].asnumpy(), data)
    layer.close()


def test_lmdb_one_top_float_datums_and_test_centre_crop_with_mean_file(tmp_path):
    x = np.random.RandomState(1).randn(3, 2, 6, 7).astype(np.float32)
    src = write_lmdb(tmp_path / "db", [array_to_datum(v) for v in x])
    mean = np.random.RandomState(2).randn(1, 2, 6, 7).astype(np.float32)
    write_binaryproto(tmp_path / "mean.binaryproto", mean)
    layer = data_layer(src, 3, tops=("data",), transform=(
        f'transform_param {{ crop_size: 4 mean_file: "{tmp_path}/mean.binaryproto" }}'))
    assert layer.top_shapes == [(3, 2, 4, 4)]
    (data,) = layer.next_batch()
    # Centre offsets (6-4)//2 = 1, (7-4)//2 = 1; the mean taken at the same offset.
    np.testing.assert_array_equal(data, x[:, :, 1:5, 1:5] - mean[:, :, 1:5, 1:5])


def test_lmdb_encoded_datums_and_train_randomness_is_seeded(tmp_path):
    x = images(6, h=9, w=9, seed=3)
    src = write_lmdb(tmp_path / "db", [png_datum(v, i) for i, v in enumerate(x)])
    transform = 'transform_param { crop_size: 5 mirror: true }'
    runs = []
    for _ in range(2):
        caffe.set_random_seed(7)
        layer = data_layer(src, 3, transform=transform, phase=TRAIN)
        runs.append([layer.next_batch()[0] for _ in range(3)])
        layer.close()
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    # Every item is some 5x5 crop of its image, possibly mirrored.
    data = runs[0][0]
    for i in range(3):
        crops = [x[i, :, hh:hh + 5, ww:ww + 5] for hh in range(5) for ww in range(5)]
        assert any(np.array_equal(data[i], c) or np.array_equal(data[i], c[:, :, ::-1])
                   for c in crops)


def test_rand_skip_starts_at_a_seeded_record(tmp_path):
    x = images(7)
    src = write_lmdb(tmp_path / "db", [array_to_datum(x[i], label=i) for i in range(7)])
    firsts = []
    for seed in (0, 0, 1, 2, 3):
        caffe.set_random_seed(seed)
        layer = data_layer(src, 1, extra="rand_skip: 5")
        firsts.append(int(layer.next_batch()[1][0]))
        layer.close()
    assert firsts[0] == firsts[1]
    assert all(0 <= f < 5 for f in firsts)


def test_corrupt_record_is_an_error_naming_the_record_after_the_good_batches(tmp_path):
    x = images(4)
    datums = [array_to_datum(x[0], 0), array_to_datum(x[1], 1), b"\xff\xff\xff garbage",
              array_to_datum(x[3], 3)]
    src = write_lmdb(tmp_path / "db", datums)
    layer = data_layer(src, 2)
    data, label = layer.next_batch()
    np.testing.assert_array_equal(label, [0, 1])
    with pytest.raises(LayerError, match=r'layer "data".*record \'00000002\' is not a Datum'):
        layer.next_batch()
    with pytest.raises(LayerError, match="00000002"):  # and it stays failed
        layer.next_batch()


@pytest.mark.parametrize("datum, message", [
    (caffe_pb2.Datum(channels=-1, height=-1, width=192, data=bytes(192)),   # -1 x -1 x 192 = 192
     r"negative dimensions: channels x height x width = -1 x -1 x 192"),
    (caffe_pb2.Datum(encoded=True, data=b""), r"the encoded image is empty"),
])
def test_impossible_datum_is_an_error_naming_the_record(tmp_path, datum, message):
    src = write_lmdb(tmp_path / "db", [datum])
    with pytest.raises(LayerError, match=rf"record '00000000': .*{message}"):
        data_layer(src, 1)


def test_mixed_sizes_in_one_batch_is_an_error(tmp_path):
    src = write_lmdb(tmp_path / "db", [array_to_datum(images(1, h=8)[0]),
                                       array_to_datum(images(1, h=6)[0])])
    layer = data_layer(src, 2)
    with pytest.raises(LayerError, match=r"record '00000001' gives shape \(3, 6, 8\).*\(3, 8, 8\)"):
        layer.next_batch()


def test_database_errors(tmp_path):
    with pytest.raises(LayerError, match="does not exist"):
        data_layer(tmp_path / "missing", 1)
    src = write_lmdb(tmp_path / "db", [array_to_datum(images(1)[0])])
    # backend left at Caffe's default (LEVELDB) on an LMDB directory
    with pytest.raises(LayerError, match="is an LMDB database but data_param.backend is LEVELDB"):
        build(f'name: "d" type: "Data" top: "data" data_param {{ source: "{src}" batch_size: 1 }}')
    write_lmdb(tmp_path / "empty", [])
    with pytest.raises(LayerError, match="holds no records"):
        data_layer(tmp_path / "empty", 1)
    with pytest.raises(LayerError, match="at most 2 top"):
        data_layer(src, 1, tops=("a", "b", "c"))


@pytest.mark.parametrize("backend", ["LEVELDB", "LMDB"])
def test_missing_source_names_layer_line_and_path_and_creates_nothing(tmp_path, backend):
    """LevelDB itself creates the directory (LOCK, LOG) before it finds no database."""
    proto = tmp_path / "train.prototxt"
    missing, empty = tmp_path / "no_such_db", tmp_path / "empty_dir"
    empty.mkdir()
    for source, reason in ((missing, "does not exist"), (empty, "is not a .* database")):
        proto.write_text(f'name: "n"\nlayer {{ name: "data" type: "Data" top: "data"\n'
                         f'  data_param {{ source: "{source}" backend: {backend} batch_size: 1 }} }}\n')
        with pytest.raises(LayerError, match=reason) as info:
            caffe.Net(str(proto), caffe.TRAIN)
        assert f'{proto}:2: layer "data" (type Data)' in str(info.value)
        assert repr(str(source)) in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["empty_dir", "train.prototxt"]
    assert os.listdir(empty) == []


def test_truncated_lmdb_is_an_error_not_a_crash(tmp_path):
    """LMDB maps data.mdb and would fault (SIGBUS) reading pages a truncated copy lacks."""
    src = write_lmdb(tmp_path / "db", [array_to_datum(x) for x in images(40, h=32, w=32)])
    data_file = os.path.join(src, "data.mdb")
    with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    with pytest.raises(LayerError, match=r"is truncated or corrupt: data.mdb holds \d+ bytes"):
        data_layer(src, 1)


def test_leveldb_source(tmp_path):
    plyvel = pytest.importorskip("plyvel")
    x = images(3)
    db = plyvel.DB(str(tmp_path / "ldb"), create_if_missing=True)
    for i in (2, 0, 1):  # written out of order: read in key order
        db.put(b"%08d" % i, array_to_datum(x[i], label=i).SerializeToString())
    db.close()
    p = f'data_param {{ source: "{tmp_path}/ldb" backend: LEVELDB batch_size: 2 }}'
    layer = build(f'name: "d" type: "Data" top: "data" top: "label" {p}')
    # The same LevelDB opened by a second net in the same process (TRAIN and TEST nets).
    other = build(f'name: "d" type: "Data" top: "data" top: "label" {p}')
    for labels in ([0, 1], [2, 0]):
        data, label = layer.next_batch()
        np.testing.assert_array_equal(label, labels)
        np.testing.assert_array_equal(data, x[labels].astype(np.float32))
    np.testing.assert_array_equal(other.next_batch()[1], [0, 1])


def test_missing_database_is_reported_and_nothing_is_created(tmp_path, monkeypatch):
    """Building a net never creates files: LevelDB would make the missing directory."""
    pytest.importorskip("plyvel")
    monkeypatch.chdir(tmp_path)
    for backend in ("LEVELDB", "LMDB"):
        with pytest.raises(LayerError, match="does not exist"):
            build(f'name: "d" type: "Data" top: "data" data_param {{ source: "no_db" '
                  f'backend: {backend} batch_size: 1 }}')
    (tmp_path / "not_a_db").mkdir()
    with pytest.raises(LayerError, match="not a LevelDB database"):
        build('name: "d" type: "Data" top: "data" data_param { source: "not_a_db" '
              'backend: LEVELDB batch_size: 1 }')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_db"]
    assert not any((tmp_path / "not_a_db").iterdir())


LEVELDB_LAYERS_COLLECTED = '''
import gc, sys
from google.protobuf import text_format
from caffe_compat.engine.build import build_layer
from caffe_compat.proto import caffe_pb2
p = text_format.Parse('name: "d" type: "Data" top: "data" '
                      'data_param {{ source: "{source}" backend: LEVELDB batch_size: 2 }}',
                      caffe_pb2.LayerParameter())
for _ in range(5):
    layer = build_layer(p, [], phase=caffe_pb2.TEST)
    layer.next_batch()
    layer.close()
    del layer
    gc.collect()   # layer, cursor and database freed in one collection
'''


def test_leveldb_layers_collected_with_their_database_do_not_crash(tmp_path):
    """plyvel frees an iterator after its database if one collection frees both (a
    segfault); the database closes its iterators first. In a child: a crash is visible."""
    plyvel = pytest.importorskip("plyvel")
    db = plyvel.DB(str(tmp_path / "ldb"), create_if_missing=True)
    for i in range(3):
        db.put(b"%08d" % i, array_to_datum(images(1)[0], label=i).SerializeToString())
    db.close()
    run = subprocess.run([sys.executable, "-c", LEVELDB_LAYERS_COLLECTED.format(
        source=tmp_path / "ldb")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


# ---- prefetching ------------------------------------------------------------------------------
def test_prefetcher_keeps_order_bounds_queue_and_stops():
    made = []

    class Loader:
        def load_batch(self):
            made.append(len(made))
            return made[-1]

    p = Prefetcher(Loader(), depth=3)
    assert [p.next() for _ in range(5)] == [0, 1, 2, 3, 4]
    for _ in range(50):
        if len(made) >= 5 + 3:
            break
        threading.Event().wait(0.02)
    assert len(made) <= 5 + 3 + 1  # at most depth batches ahead (+1 being made)
    p.stop()
    assert not p.running
    with pytest.raises(RuntimeError, match="stopped"):
        p.next()


def test_prefetcher_hands_worker_errors_to_the_caller():
    class Loader:
        n = 0

        def load_batch(self):
            self.n += 1
            if self.n == 3:
                raise LayerError("d", "ImageData", "list.txt:3: could not load image 'x.png'")
            return self.n

    p = Prefetcher(Loader(), depth=2)
    assert (p.next(), p.next()) == (1, 2)
    with pytest.raises(LayerError, match="list.txt:3"):
        p.next()
    assert not p.running


def test_prefetcher_whose_thread_cannot_start_reports_that_and_stops(monkeypatch):
    """Out of address space for a thread stack: the start error, and stop() still works."""
    def no_thread(self):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    p = Prefetcher(type("Loader", (), {"load_batch": lambda self: 1})(), depth=1)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        p.next()
    p.stop()


# ---- ImageData -------------------------------------------------------------------------------
def write_images(folder, n, sizes=None, seed=0):
    os.makedirs(folder, exist_ok=True)
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        h, w = sizes[i] if sizes else (6, 7)
        img = rs.randint(0, 256, (h, w, 3)).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"im {i}.png"), img)  # a space in the name
        out.append(img)
    return out


def image_data(list_path, batch, extra="", transform="", phase=TEST):
    return build(f'name: "img" type: "ImageData" top: "data" top: "label" '
                 f'image_data_param {{ source: "{list_path}" batch_size: {batch} {extra} }} '
                 f'{transform}', phase=phase)


def test_image_data_reads_list_resizes_and_loops(tmp_path):
    imgs = write_images(tmp_path / "imgs", 3, sizes=[(6, 7), (9, 5), (4, 4)])
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"im {i}.png {i * 2}\n" for i in range(3)))
    layer = image_data(lst, 2, extra=f'new_height: 5 new_width: 6 root_folder: "{tmp_path}/imgs/"')
    assert layer.top_shapes == [(2, 3, 5, 6), (2,)]
    expect = [cv2.resize(im, (6, 5), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
              for im in imgs]
    seq = [0, 1, 2, 0]
    for b in range(2):
        data, label = layer.next_batch()
        idx = seq[2 * b:2 * b + 2]
        np.testing.assert_array_equal(data, np.float32([expect[i] for i in idx]))
        np.testing.assert_array_equal(label, [2 * i for i in idx])


def test_image_data_gray_and_crop(tmp_path):
    imgs = write_images(tmp_path, 2)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path}/im 0.png 1\n{tmp_path}/im 1.png 0\n")
    layer = image_data(lst, 2, extra="is_color: false",
                       transform="transform_param { crop_size: 4 }")
    assert layer.top_shapes == [(2, 1, 4, 4), (2,)]
    data, _ = layer.next_batch()
    gray = cv2.imread(f"{tmp_path}/im 0.png", cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(data[0, 0], gray[1:5, 1:5])


def test_image_data_shuffle_is_seeded_and_reshuffles_each_epoch(tmp_path):
    write_images(tmp_path, 6)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{tmp_path}/im {i}.png {i}\n" for i in range(6)))

    def epochs(seed):
        caffe.set_random_seed(seed)
        layer = image_data(lst, 3, extra="shuffle: true")
        labels = [layer.next_batch()[1] for _ in range(8)]
        layer.close()
        return np.concatenate(labels).astype(int).reshape(4, 6)

    a, b = epochs(5), epochs(5)
    np.testing.assert_array_equal(a, b)
    for epoch in a:
        assert sorted(epoch) == list(range(6))
    assert len({tuple(e) for e in a}) > 1  # a new order at each pass
    assert not np.array_equal(epochs(6), a)


def test_image_data_missing_image_names_list_file_and_line(tmp_path):
    write_images(tmp_path, 2)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path}/im 0.png 0\n{tmp_path}/im 1.png 1\n{tmp_path}/gone.png 2\n")
    layer = image_data(lst, 2)
    layer.next_batch()
    with pytest.raises(LayerError, match=rf'{lst}:3: could not load image .*gone.png'):
        layer.next_batch()


def test_image_data_list_errors(tmp_path):
    write_images(tmp_path, 1)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path}/im 0.png 0\n{tmp_path}/im 0.png one\n")
    with pytest.raises(LayerError, match=rf"{lst}:2: label 'one' is not an integer"):
        image_data(lst, 1)
    lst.write_text(f"{tmp_path}/im 0.png 0\n\n{tmp_path}/im 0.png 0\n")
    with pytest.raises(LayerError, match=rf"{lst}:2: blank line"):
        image_data(lst, 1)
    with pytest.raises(LayerError, match="cannot open image list"):
        image_data(tmp_path / "nope.txt", 1)
    lst.write_text(f"{tmp_path}/missing.png 0\n")
    with pytest.raises(LayerError, match=rf"{lst}:1: could not load image"):
        image_data(lst, 1)
    lst.write_text(f"{tmp_path}/im 0.png 0\n")
    with pytest.raises(LayerError, match="new_height and new_width must be set together"):
        image_data(lst, 1, extra="new_height: 4")


# ---- HDF5Data / HDF5Output --------------------------------------------------------------------
def write_h5(path, data, label):
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = label


def test_hdf5_data_reads_files_in_order_and_loops(tmp_path):
    rs = np.random.RandomState(0)
    d1, d2 = rs.randn(3, 2, 4).astype(np.float32), rs.randn(2, 2, 4)  # 2nd file float64
    write_h5(tmp_path / "a.h5", d1, np.arange(3, dtype=np.float32))
    write_h5(tmp_path / "b.h5", d2, np.arange(3, 5))
    (tmp_path / "list.txt").write_text(f"{tmp_path}/a.h5\n{tmp_path}/b.h5\n")
    layer = build(f'name: "h" type: "HDF5Data" top: "data" top: "label" '
                  f'hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 4 }}')
    assert layer.top_shapes == [(4, 2, 4), (4,)]
    rows = np.concatenate([d1, d2]).astype(np.float32)
    seq = [0, 1, 2, 3, 4, 0, 1, 2]
    for b in range(2):
        data, label = layer.next_batch()
        np.testing.assert_array_equal(data, rows[seq[4 * b:4 * b + 4]])
        np.testing.assert_array_equal(label, seq[4 * b:4 * b + 4])


def test_hdf5_data_shuffle_is_a_seeded_permutation(tmp_path):
    write_h5(tmp_path / "a.h5", np.arange(6, dtype=np.float32)[:, None], np.arange(6.0))
    (tmp_path / "list.txt").write_text(f"{tmp_path}/a.h5")
    text = (f'name: "h" type: "HDF5Data" top: "label" '
            f'hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 6 shuffle: true }}')
    caffe.set_random_seed(2)
    a = [build(text).next_batch()[0] for _ in range(1)][0]
    caffe.set_random_seed(2)
    layer = build(text)
    b, c = layer.next_batch()[0], layer.next_batch()[0]
    np.testing.assert_array_equal(a, b)
    assert sorted(b) == sorted(c) == list(range(6))


def test_hdf5_data_errors(tmp_path):
    write_h5(tmp_path / "a.h5", np.zeros((2, 3), np.float32), np.zeros(3, np.float32))
    (tmp_path / "list.txt").write_text(f"\n{tmp_path}/a.h5\n")
    src = f'hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 1 }}'
    with pytest.raises(LayerError, match=rf"list.txt:2: .*a.h5.*: dataset 'label' has 3 rows"):
        build(f'name: "h" type: "HDF5Data" top: "data" top: "label" {src}')
    with pytest.raises(LayerError, match=r"no dataset named 'feat'"):
        build(f'name: "h" type: "HDF5Data" top: "feat" {src}')
    with pytest.raises(LayerError, match="does not transform data"):
        build(f'name: "h" type: "HDF5Data" top: "data" {src} transform_param {{ scale: 2 }}')
    (tmp_path / "list.txt").write_text(f"{tmp_path}/missing.h5\n")
    with pytest.raises(LayerError, match=r"list.txt:1: .*missing.h5.*failed opening"):
        build(f'name: "h" type: "HDF5Data" top: "data" {src}')


def test_hdf5_round_trip_through_a_net(tmp_path):
    rs = np.random.RandomState(1)
    data, label = rs.randn(4, 3, 2, 2).astype(np.float32), np.arange(4, dtype=np.float32)
    write_h5(tmp_path / "in.h5", data, label)
    (tmp_path / "list.txt").write_text(f"{tmp_path}/in.h5\n")
    out = tmp_path / "out.h5"
    proto = tmp_path / "net.prototxt"
    proto.write_text(f'''
layer {{ name: "in" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 2 }} }}
layer {{ name: "out" type: "HDF5Output" bottom: "data" bottom: "label"
  hdf5_output_param {{ file_name: "{out}" }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 1 }} }}
''')
    net = caffe.Net(str(proto), caffe.TEST)
    with h5py.File(out, "r") as f:  # created (empty) at setup, as Caffe's H5Fcreate
        assert list(f.keys()) == []
    net.forward()
    net.forward()
    with h5py.File(out, "r") as f:
        assert f["data"].dtype == np.float32
        np.testing.assert_array_equal(f["data"][...], data)
        # Caffe's layout: label as num x channels x height x width
        np.testing.assert_array_equal(f["label"][...], label.reshape(4, 1, 1, 1))


def test_hdf5_output_checks(tmp_path):
    with pytest.raises(LayerError, match="same num"):
        build(f'name: "o" type: "HDF5Output" bottom: "a" bottom: "b" '
              f'hdf5_output_param {{ file_name: "{tmp_path}/o.h5" }}', bottoms=[(2, 3), (3,)])
    with pytest.raises(LayerError, match="file_name is required"):
        build('name: "o" type: "HDF5Output" bottom: "a" bottom: "b"', bottoms=[(2, 3), (2,)])
    layer = build(f'name: "o" type: "HDF5Output" bottom: "a" bottom: "b" '
                  f'hdf5_output_param {{ file_name: "{tmp_path}/o.h5" }}', bottoms=[(2, 3), (2,)])
    with pytest.raises(LayerError, match="hybridized"):
        layer(mx.sym.var("a"), mx.sym.var("b"))


# ---- WindowData ------------------------------------------------------------------------------
def test_window_geometry_by_hand():
    # crop 20, context_pad 2: context_scale = 20 / 16 = 1.25.
    # Window (10, 20)-(49, 59) in a 100 x 80 image: half 20, centre (30, 40) ->
    # expanded (5, 15)-(55, 65), inside the image: warped whole, no padding.
    g = window_geometry(10, 20, 49, 59, 100, 80, 20, 2, False, False)
    assert g == dict(x1=5, y1=15, x2=55, y2=65, warp_w=20, warp_h=20, pad_w=0, pad_h=0)
    # Window (0, 0)-(39, 39): centre (20, 20) -> (-5, -5)-(45, 45), unclipped 51 wide,
    # clipped to (0, 0)-(45, 45), 46 wide; scale 20/51: warp round(46 * 20/51) = 18,
    # left/top padding round(5 * 20/51) = 2; mirrored, the padding moves right (pad_x2 = 0).
    g = window_geometry(0, 0, 39, 39, 100, 80, 20, 2, False, False)
    assert g == dict(x1=0, y1=0, x2=45, y2=45, warp_w=18, warp_h=18, pad_w=2, pad_h=2)
    assert window_geometry(0, 0, 39, 39, 100, 80, 20, 2, False, True)["pad_w"] == 0
    # square mode: a 40 x 20 window becomes 40 x 40 around its centre (context_pad 0).
    g = window_geometry(10, 30, 49, 49, 100, 80, 20, 0, True, False)
    assert (g["x1"], g["y1"], g["x2"], g["y2"]) == (10, 20, 50, 60)
    # warp mode without context: the window as given, warped to the crop.
    g = window_geometry(3, 4, 13, 9, 100, 80, 20, 0, False, False)
    assert g == dict(x1=3, y1=4, x2=13, y2=9, warp_w=20, warp_h=20, pad_w=0, pad_h=0)


def window_fixture(tmp_path, windows):
    img = np.random.RandomState(0).randint(0, 256, (80, 100, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "img.png"), img)
    lines = ["# 0", "img.png", "3", "80", "100", str(len(windows))]
    lines += [" ".join(str(v) for v in w) for w in windows]
    (tmp_path / "windows.txt").write_text("\n".join(lines) + "\n")
    return img


def window_layer(tmp_path, batch, fg_fraction, extra="", transform="crop_size: 20", phase=TRAIN):
    return build(f'name: "w" type: "WindowData" top: "data" top: "label" '
                 f'window_data_param {{ source: "{tmp_path}/windows.txt" batch_size: {batch} '
                 f'fg_fraction: {fg_fraction} root_folder: "{tmp_path}/" {extra} }} '
                 f'transform_param {{ {transform} }}', phase=phase)


def test_window_data_fg_fraction_and_labels(tmp_path):
    window_fixture(tmp_path, [(3, 0.9, 10, 20, 49, 59), (5, 0.6, 0, 0, 39, 39),
                              (2, 0.1, 50, 10, 90, 70), (7, 0.3, 20, 20, 60, 60),
                              (4, 0.45, 5, 5, 30, 30)])  # 0.45: neither fg nor bg: dropped
    layer = window_layer(tmp_path, 8, 0.25, extra="bg_threshold: 0.4")
    assert layer.top_shapes == [(8, 3, 20, 20), (8,)]
    for _ in range(3):
        _, label = layer.next_batch()
        # int(8 * 0.25) = 2 foreground windows, sampled after the 6 background ones.
        assert all(label[:6] == 0)
        assert set(label[6:]) <= {3, 5}


def test_window_data_context_pad_pixels_by_hand(tmp_path):
    img = window_fixture(tmp_path, [(1, 1.0, 0, 0, 39, 39)])
    layer = window_layer(tmp_path, 2, 1.0, extra="context_pad: 2 scale: 0.5",
                         transform="crop_size: 20 mean_value: 10 mean_value: 20 mean_value: 30")
    data, label = layer.next_batch()
    np.testing.assert_array_equal(label, [1, 1])
    # See test_window_geometry_by_hand: source (0, 0)-(45, 45) warped to 18 x 18 at (2, 2).
    patch = cv2.resize(img[0:46, 0:46], (18, 18), interpolation=cv2.INTER_LINEAR)
    expected = np.zeros((3, 20, 20), np.float32)
    expected[:, 2:, 2:] = (patch.transpose(2, 0, 1).astype(np.float32)
                           - np.float32([10, 20, 30])[:, None, None]) * np.float32(0.5)
    np.testing.assert_array_equal(data[0], expected)
    np.testing.assert_array_equal(data[1], expected)


def test_window_data_mirror_moves_padding_and_mean_file(tmp_path):
    img = window_fixture(tmp_path, [(1, 1.0, 0, 0, 39, 39)])
    mean = np.random.RandomState(3).uniform(0, 255, (1, 3, 24, 24)).astype(np.float32)
    write_binaryproto(tmp_path / "mean.binaryproto", mean)
    caffe.set_random_seed(0)
    layer = window_layer(tmp_path, 16, 1.0, extra="context_pad: 2 cache_images: true",
                         transform=f'crop_size: 20 mirror: true '
                                   f'mean_file: "{tmp_path}/mean.binaryproto"')
    data, _ = layer.next_batch()
    patch = cv2.resize(img[0:46, 0:46], (18, 18), interpolation=cv2.INTER_LINEAR)
    m = mean[0, :, 2:22, 2:22]  # mean_off = (24 - 20) / 2 = 2
    plain = np.zeros((3, 20, 20), np.float32)
    plain[:, 2:, 2:] = patch.transpose(2, 0, 1) - m[:, 2:, 2:]
    flipped = np.zeros((3, 20, 20), np.float32)
    flipped[:, 2:, :18] = patch[:, ::-1].transpose(2, 0, 1) - m[:, 2:, :18]
    kinds = set()
    for item in data:
        if np.array_equal(item, plain):
            kinds.add("plain")
        else:
            np.testing.assert_array_equal(item, flipped)
            kinds.add("mirrored")
    assert kinds == {"plain", "mirrored"}


def test_window_file_errors(tmp_path):
    window_fixture(tmp_path, [(0, 0.9, 1, 1, 5, 5)])
    with pytest.raises(LayerError, match=r"windows.txt:7: foreground window .* class index > 0"):
        window_layer(tmp_path, 2, 0.5)
    (tmp_path / "windows.txt").write_text("# 0\nimg.png\n3\n80\n100\n1\n1 0.9 1 1 x 5\n")
    with pytest.raises(LayerError, match=r"windows.txt:7: expected x2, got 'x'"):
        window_layer(tmp_path, 2, 0.5)
    (tmp_path / "windows.txt").write_text("# 1\nimg.png\n3\n80\n100\n1\n1 0.9 1 1 5 5\n")
    with pytest.raises(LayerError, match=r"windows.txt:7: image index 1 does not name"):
        window_layer(tmp_path, 2, 0.5)
    (tmp_path / "windows.txt").write_text("# 0\ngone.png\n3\n80\n100\n1\n1 0.9 1 1 5 5\n")
    layer = window_layer(tmp_path, 2, 1.0)
    with pytest.raises(LayerError, match=r"windows.txt:2: could not open or find image .*gone.png"):
        layer.next_batch()
    with pytest.raises(LayerError, match=r"windows.txt:2: could not open or find file"):
        window_layer(tmp_path, 2, 1.0, extra="cache_images: true")
    (tmp_path / "windows.txt").write_text("# 0\nempty.png\n3\n80\n100\n1\n1 0.9 1 1 5 5\n")
    (tmp_path / "empty.png").write_bytes(b"")
    for extra in ("", "cache_images: true"):   # cached bytes are decoded as a read file is
        layer = window_layer(tmp_path, 2, 1.0, extra=extra)
        with pytest.raises(LayerError, match=r"windows.txt:2: could not open or find image .*empty"):
            layer.next_batch()
    window_fixture(tmp_path, [(1, 0.9, 1, 1, 5, 5)])
    layer = window_layer(tmp_path, 4, 0.25)  # 3 background windows wanted, none listed
    with pytest.raises(LayerError, match="no background windows"):
        layer.next_batch()
    with pytest.raises(LayerError, match="crop_size must be positive"):
        window_layer(tmp_path, 2, 1.0, transform="")


# ---- MemoryData ------------------------------------------------------------------------------
def test_memory_data_feeds_batches_in_order(tmp_path):
    layer = build('name: "m" type: "MemoryData" top: "data" top: "label" '
                  'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 }')
    assert layer.top_shapes == [(2, 1, 2, 3), (2,)]
    with pytest.raises(LayerError, match="set_input_arrays"):
        layer.next_batch()
    data = np.random.RandomState(0).randn(6, 1, 2, 3).astype(np.float32)
    labels = np.arange(6, dtype=np.float32)
    layer.set_input_arrays(data, labels)
    for start in (0, 2, 4, 0):
        d, l = layer.next_batch()
        np.testing.assert_array_equal(d, data[start:start + 2])
        np.testing.assert_array_equal(l, labels[start:start + 2])
    bad = [(data[:5], labels[:5], "multiple of batch size"),
           (data.astype(np.float64), labels, "float32"),
           (np.asfortranarray(data[:, 0])[:, None], labels, "C contiguous|wrong dimensions"),
           (data[:, :, :, :2].copy(), labels, "wrong dimensions"),
           (data, labels[:4], "same first dimension")]
    for d, l, msg in bad:
        with pytest.raises(LayerError, match=msg):
            layer.set_input_arrays(d, l)


def test_memory_data_in_a_net(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text('''
layer { name: "m" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 3 height: 1 width: 1 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
''')
    net = caffe.Net(str(proto), caffe.TEST)
    data = np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1)
    net.block.caffe_layers[0].set_input_arrays(data, np.zeros(4, np.float32))
    np.testing.assert_array_equal(net.forward()["ip"], [[3, 3], [12, 12]])
    np.testing.assert_array_equal(net.forward()["ip"], [[21, 21], [30, 30]])


# ---- DummyData -------------------------------------------------------------------------------
def test_dummy_data_constant_once_random_every_forward():
    caffe.set_random_seed(4)
    layer = build('name: "d" type: "DummyData" top: "a" top: "b" top: "c" '
                  'dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } '
                  'shape { dim: 1 dim: 2 } '
                  'data_filler { type: "constant" value: 7 } '
                  'data_filler { type: "gaussian" std: 1 } '
                  'data_filler { type: "uniform" min: 2 max: 3 } }')
    assert layer.top_shapes == [(2, 3), (4,), (1, 2)]
    a1, b1, c1 = layer.next_batch()
    a2, b2, c2 = layer.next_batch()
    np.testing.assert_array_equal(a1, np.full((2, 3), 7, np.float32))
    assert a2 is None  # filled once; later forwards leave the top (and user writes) alone
    assert not np.array_equal(b1, b2) and not np.array_equal(c1, c2)
    assert ((c1 >= 2) & (c1 <= 3)).all()
    caffe.set_random_seed(4)
    again = build('name: "d" type: "DummyData" top: "b" '
                  'dummy_data_param { shape { dim: 4 } data_filler { type: "gaussian" std: 1 } }')
    assert again.next_batch()[0].dtype == np.float32


def test_dummy_data_constant_top_keeps_user_writes_in_a_net(tmp_path):
    proto = tmp_path / "d.prototxt"
    proto.write_text('layer { name: "d" type: "DummyData" top: "a" dummy_data_param { '
                     'shape { dim: 2 dim: 3 } data_filler { type: "constant" value: 7 } } }\n'
                     'layer { name: "r" type: "ReLU" bottom: "a" top: "r" }\n')
    net = caffe.Net(str(proto), caffe.TEST)
    assert np.all(net.forward()["r"] == 7)
    net.blobs["a"].data[...] = -1          # Caffe's constant DummyData never refills
    net.blobs["a"].data[0, 0] = 5
    out = net.forward()["r"]
    assert out[0, 0] == 5 and out[1].sum() == 0


def test_dummy_data_legacy_dims_default_filler_and_errors():
    layer = build('name: "d" type: "DummyData" top: "a" top: "b" '
                  'dummy_data_param { num: 2 channels: 3 channels: 1 height: 4 width: 5 }')
    assert layer.top_shapes == [(2, 3, 4, 5), (2, 1, 4, 5)]
    assert all((t == 0).all() for t in layer.next_batch())
    with pytest.raises(LayerError, match="number of data fillers must be 0, 1 or equal"):
        build('name: "d" type: "DummyData" top: "a" top: "b" top: "c" dummy_data_param { '
              'shape { dim: 1 } data_filler { value: 1 } data_filler { value: 2 } }')
    with pytest.raises(LayerError, match="both shape and legacy"):
        build('name: "d" type: "DummyData" top: "a" dummy_data_param { num: 1 channels: 1 '
              'height: 1 width: 1 shape { dim: 1 } }')
    with pytest.raises(LayerError, match="unknown data_filler type 'nope'"):
        build('name: "d" type: "DummyData" top: "a" dummy_data_param { shape { dim: 1 } '
              'data_filler { type: "nope" } }')


# ---- a TRAIN net end to end ------------------------------------------------------------------
def test_train_net_with_data_layer_forward_backward(tmp_path):
    x = images(6, c=3, h=7, w=7, seed=5)
    labels = [0, 2, 1, 1, 0, 2]
    src = write_lmdb(tmp_path / "db", [array_to_datum(x[i], labels[i]) for i in range(6)])
    proto = tmp_path / "train.prototxt"
    proto.write_text(f'''
name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  data_param {{ source: "{src}" backend: LMDB batch_size: 4 }}
  transform_param {{ scale: 0.00390625 crop_size: 5 mirror: true mean_value: 128 }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 3 kernel_size: 5 weight_filler {{ type: "gaussian" std: 0.5 }}
    bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "conv" bottom: "label" top: "loss" }}
''')
    caffe.set_random_seed(9)
    net = caffe.Net(str(proto), caffe.TRAIN)
    assert net.blobs["data"].shape == (4, 3, 5, 5)
    seen = []
    for step in range(2):
        loss = float(net.forward()["loss"])
        net.backward()
        data = net.blobs["data"].data.astype(np.float64)
        label = net.blobs["label"].data.astype(int)
        seen.extend(label)
        w = net.params["conv"][0].data.astype(np.float64).reshape(3, -1)
        b = net.params["conv"][1].data.astype(np.float64)
        logits = data.reshape(4, -1) @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        ref_loss = -np.mean(np.log(p[np.arange(4), label]))
        assert rel_err(loss, ref_loss) <= 1e-5
        g = (p - np.eye(3)[label]) / 4
        ref_dw = g.T @ data.reshape(4, -1)
        dw = net.params["conv"][0].diff.reshape(3, -1).astype(np.float64)
        if step == 0:
            expected_dw, expected_db = ref_dw, g.sum(0)
        else:  # parameter diffs accumulate until cleared, as in Caffe
            expected_dw, expected_db = first_dw + ref_dw, first_db + g.sum(0)
        assert rel_err(dw, expected_dw) <= 1e-4
        assert rel_err(net.params["conv"][1].diff, expected_db) <= 1e-4
        first_dw, first_db = dw.copy(), net.params["conv"][1].diff.astype(np.float64).copy()
        # each item is a mirrored-or-not 5x5 crop of its record, (x - 128) / 256
        for i in range(4):
            rec = x[(4 * step + i) % 6].astype(np.float32)
            cands = [(rec[:, hh:hh + 5, ww:ww + 5] - 128) * np.float32(0.00390625)
                     for hh in range(3) for ww in range(3)]
            cands += [c[:, :, ::-1] for c in cands]
            assert any(np.array_equal(net.blobs["data"].data[i], c) for c in cands)
    assert seen == [labels[i % 6] for i in range(8)]
