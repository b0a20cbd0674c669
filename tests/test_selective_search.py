"""Selective search (recipes/rcnn/selective_search.py) on scikit-image's sample images.

Covers: the paper's similarity values on hand-built regions, the texture measure's
orientations, incremental merge statistics against recomputation, the ranking rule,
box validity, determinism, box counts, recall of hand-annotated objects (the benchmark's
annotations) and the ``caffe-compat proposals`` command.
"""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import skimage.data

from caffe_compat.cli.main import main as cli_main
from caffe_compat.recipes.rcnn import selective_search as ss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _benchmark_module():
    spec = importlib.util.spec_from_file_location(
        "selective_search_benchmark", os.path.join(ROOT, "benchmarks", "selective_search.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _benchmark_module()


@pytest.fixture(scope="module")
def coffee():
    """coffee resized to 500x375 (a VOC-sized image), its annotations scaled with it."""
    image, gt = BENCH.resize_with_boxes(skimage.data.coffee(), BENCH.ANNOTATIONS["coffee"])
    return image, gt, ss.selective_search(image, mode="fast", seed=0)


@pytest.fixture(scope="module")
def chelsea():
    """chelsea at its own 451x300."""
    image = skimage.data.chelsea()
    return image, np.asarray(BENCH.ANNOTATIONS["chelsea"]), ss.selective_search(image, mode="fast", seed=0)


# ------------------------------------------------------------------ similarities by hand


def test_colour_histogram_and_intersection_by_hand():
    # region 0: three pixels in bin 0, one in bin 12; region 1: one in bin 0, one in bin 12,
    # two in bin 24 -> intersection min(.75,.25) + min(.25,.25) = 0.5
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    values = np.array([[0.02, 0.02, 0.02, 0.50], [0.02, 0.50, 0.99, 0.99]], np.float32)
    hist = ss.colour_histograms(labels, 2, values[:, :, None])
    assert hist.shape == (2, 25)
    expected = np.zeros((2, 25))
    expected[0, [0, 12]] = [0.75, 0.25]
    expected[1, [0, 12, 24]] = [0.25, 0.25, 0.5]
    np.testing.assert_allclose(hist, expected)
    assert ss.similarity_colour(hist[0], hist[1]) == pytest.approx(0.5)
    assert ss.similarity_colour(hist[0], hist[0]) == pytest.approx(1.0)


def test_colour_histograms_concatenate_channels_and_normalise_to_one():
    labels = np.zeros((2, 2), np.int64)
    image = np.zeros((2, 2, 3), np.float32)
    image[..., 1] = 1.0  # top bin of channel 1
    hist = ss.colour_histograms(labels, 1, image)
    assert hist.shape == (1, 75)
    assert hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(hist[0, [0, 25 + 24, 50]], [1 / 3, 1 / 3, 1 / 3])


def test_texture_intersection_by_hand():
    a = np.zeros(80)
    b = np.zeros(80)
    a[[0, 10, 79]] = [0.5, 0.3, 0.2]
    b[[0, 10, 20]] = [0.1, 0.6, 0.3]
    assert ss.similarity_texture(a, b) == pytest.approx(0.1 + 0.3)


def test_texture_maps_orientation_and_sign():
    x = np.linspace(0.0, 1.0, 32, dtype=np.float32)
    rising = np.tile(x, (32, 1))[:, :, None]  # intensity grows to the right: d/dx > 0
    maps = ss.texture_maps(rising)
    assert maps.shape == (8, 32, 32) and maps.max() < ss.TEXTURE_BINS
    inner = (slice(6, -6), slice(6, -6))
    assert (maps[0][inner] == 9).all()       # 0 degrees, positive: the strongest response
    assert (maps[1][inner] == 0).all()       # 0 degrees, negative: nothing
    assert (maps[4][inner] == 0).all()       # 90 degrees (d/dy): nothing
    assert (maps[5][inner] == 0).all()
    falling = ss.texture_maps(rising[:, ::-1].copy())
    assert (falling[1][inner] == 9).all() and (falling[0][inner] == 0).all()
    hist = ss.texture_histograms(np.zeros((32, 32), np.int64), 1, rising)
    assert hist.shape == (1, 80) and hist.sum() == pytest.approx(1.0)


def test_size_similarity_by_hand():
    assert ss.similarity_size(3, 5, 16) == pytest.approx(1 - 8 / 16)
    np.testing.assert_allclose(ss.similarity_size(np.array([1, 8]), np.array([1, 8]), 16), [0.875, 0.0])


def test_fill_similarity_by_hand():
    # region i: 3 pixels in box (0,0)-(1,1); region j: 4 pixels in box (2,2)-(3,3);
    # joint box 4x4 = 16 pixels -> 1 - (16 - 3 - 4) / 16
    assert ss.similarity_fill(3, 4, np.array([0, 0, 1, 1]), np.array([2, 2, 3, 3]), 16) == pytest.approx(1 - 9 / 16)
    # adjacent boxes that tile their joint box fill it exactly
    assert ss.similarity_fill(4, 4, np.array([0, 0, 1, 1]), np.array([2, 0, 3, 1]), 16) == pytest.approx(1.0)


def test_region_stats_and_neighbours_on_tiny_labels():
    labels = np.array([[0, 0, 1, 1],
                       [0, 0, 1, 1],
                       [2, 2, 2, 3]])
    image = np.full((3, 4, 1), 0.3, np.float32)
    stats = ss.region_stats(labels, image)
    np.testing.assert_array_equal(stats.size, [4, 4, 3, 1])
    np.testing.assert_array_equal(stats.bbox, [[0, 0, 1, 1], [2, 0, 3, 1], [0, 2, 2, 2], [3, 2, 3, 2]])
    np.testing.assert_allclose(stats.colour.sum(axis=1), 1.0)
    np.testing.assert_allclose(stats.texture.sum(axis=1), 1.0)
    assert ss.neighbour_pairs(labels).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]


def test_grouping_merges_most_similar_pair_first():
    # three columns: dark | dark | bright; colour-only similarity joins the dark ones first
    labels = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    image = np.where(labels < 2, 0.1, 0.9).astype(np.float32)[:, :, None]
    stats = ss.region_stats(labels, image)
    h = ss.hierarchical_grouping(stats, ss.neighbour_pairs(labels), labels.size, "C")
    assert h.merges.tolist() == [[0, 1], [2, 3]]
    assert h.boxes.tolist() == [[0, 0, 1, 3], [2, 0, 3, 3], [4, 0, 5, 3], [0, 0, 3, 3], [0, 0, 5, 3]]


# ------------------------------------------------------------------ incremental statistics


def test_incremental_merge_statistics_equal_recomputation():
    image = ss.as_rgb_uint8(skimage.data.chelsea())[::2, ::2]
    converted = ss.convert_colour(image, "HSV")
    labels = ss.initial_segmentation(converted, 100)
    stats = ss.region_stats(labels, converted)
    h = ss.hierarchical_grouping(stats, ss.neighbour_pairs(labels), labels.size, "CTSF")
    n = h.n_initial
    assert len(h.merges) == n - 1  # the image is connected: one region at the end
    members = [[r] for r in range(n)]
    for i, j in h.merges.tolist():
        members.append(members[i] + members[j])
    maps = ss.texture_maps(converted)
    for t in list(range(n, 2 * n - 1, 7)) + [2 * n - 2]:
        mask = np.isin(labels, members[t]).astype(np.int64)
        ys, xs = np.nonzero(mask)
        assert h.size[t] == mask.sum()
        assert h.bbox[t].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        np.testing.assert_allclose(h.colour[t], ss.colour_histograms(mask, 2, converted)[1], atol=1e-12)
        np.testing.assert_allclose(h.texture[t], ss.texture_histograms(mask, 2, converted, maps)[1],
                                   atol=1e-12)


# ------------------------------------------------------------------ ranking


def test_ranking_is_rnd_times_position_from_last_merge_and_dedups():
    boxes = np.array([[i, i, i + 5, i + 5] for i in range(10)])
    ranked = ss.rank_hierarchies([boxes], np.random.default_rng(5))
    values = np.random.default_rng(5).random(10) * np.arange(10, 0, -1)  # last created: 1
    np.testing.assert_array_equal(ranked, boxes[np.argsort(values, kind="stable")])
    # a box found by two hierarchies appears once, where its better copy ranks
    twice = ss.rank_hierarchies([boxes, boxes[::-1]], np.random.default_rng(0))
    assert len(twice) == 10 and len(np.unique(twice, axis=0)) == 10


def test_modes_follow_the_paper():
    fast = ss.strategies_for("fast")
    assert len(fast) == 8
    assert {s.colour_space for s in fast} == {"HSV", "Lab"} and {s.k for s in fast} == {50, 100}
    assert {s.similarities for s in fast} == {"CTSF", "TSF"}
    quality = ss.strategies_for("quality")
    assert len(quality) == 80
    assert {s.colour_space for s in quality} == {"HSV", "Lab", "rgI", "H", "I"}
    assert {s.similarities for s in quality} == {"CTSF", "TSF", "F", "S"}
    assert ss.strategies_for("single") == (ss.Strategy("HSV", 100, "CTSF"),)
    with pytest.raises(ss.SelectiveSearchError, match="unknown selective search mode"):
        ss.selective_search(np.zeros((8, 8, 3), np.uint8), mode="slow")


# ------------------------------------------------------------------ real images


@pytest.mark.parametrize("which", ["coffee", "chelsea"])
def test_boxes_are_valid_and_unique(which, request):
    image, _, boxes = request.getfixturevalue(which)
    h, w = image.shape[:2]
    assert boxes.dtype.kind == "i" and boxes.ndim == 2 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] < w).all() and (boxes[:, 3] < h).all()
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert [0, 0, w - 1, h - 1] in boxes.tolist()  # the last merge covers the image


@pytest.mark.parametrize("which", ["coffee", "chelsea"])
def test_fast_mode_box_count_is_plausible(which, request):
    _, _, boxes = request.getfixturevalue(which)
    assert 1000 <= len(boxes) <= 3000


@pytest.mark.parametrize("which", ["coffee", "chelsea"])
def test_hand_annotated_objects_are_recalled(which, request):
    _, gt, boxes = request.getfixturevalue(which)
    best = BENCH.best_overlaps(gt, boxes)
    assert (best >= 0.5).all(), best
    assert best.mean() >= 0.8


def test_large_image_is_downscaled_and_boxes_mapped_back():
    image = skimage.data.retina()  # 1411x1411: searched at 500x500
    boxes = ss.selective_search(image, mode="single")
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 1410 and boxes[:, 3].max() <= 1410
    assert [0, 0, 1410, 1410] in boxes.tolist()
    small = ss.selective_search(ss._resize_for_segmentation(ss.as_rgb_uint8(image), 500)[0], mode="single")
    assert len(small) >= len(boxes)  # same search; mapping back can only merge duplicates
    scale = 1411 / 500
    np.testing.assert_array_equal(boxes[:5, :2], np.floor(small[:5, :2] * scale))


def test_same_seed_same_boxes_other_seed_same_set():
    image = skimage.data.chelsea()
    a = ss.selective_search(image, mode="fast", seed=3, max_side=200)
    b = ss.selective_search(image, mode="fast", seed=3, max_side=200)
    c = ss.selective_search(image, mode="fast", seed=4, max_side=200)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, c.tolist()))


def test_options_min_size_max_boxes_and_grey_input():
    image = skimage.data.coins()  # greyscale
    boxes = ss.selective_search(image, mode="single", min_size=20, max_boxes=40)
    assert len(boxes) == 40
    assert ((boxes[:, 2] - boxes[:, 0] + 1) >= 20).all() and ((boxes[:, 3] - boxes[:, 1] + 1) >= 20).all()
    everything = ss.selective_search(image, mode="single")
    kept = everything[((everything[:, 2] - everything[:, 0]) >= 19) & ((everything[:, 3] - everything[:, 1]) >= 19)]
    np.testing.assert_array_equal(boxes, kept[:40])


# ------------------------------------------------------------------ CLI


@pytest.fixture()
def small_png(tmp_path):
    import cv2
    path = tmp_path / "cat.png"
    cv2.imwrite(str(path), skimage.data.chelsea()[::3, ::3, ::-1])
    return path


def test_cli_writes_json_file(small_png, tmp_path):
    out = tmp_path / "boxes.json"
    assert cli_main(["proposals", str(small_png), "--mode", "single", "--max-boxes", "25",
                     "-o", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert list(payload) == ["boxes"]
    boxes = np.asarray(payload["boxes"])
    assert boxes.shape == (25, 4) and boxes.dtype.kind == "i"
    expected = ss.selective_search(skimage.data.chelsea()[::3, ::3], mode="single", max_boxes=25)
    np.testing.assert_array_equal(boxes, expected)


def test_cli_writes_json_to_stdout(small_png, capsys):
    assert cli_main(["proposals", str(small_png), "--mode", "single", "--max-boxes", "5"]) == 0
    assert len(json.loads(capsys.readouterr().out)["boxes"]) == 5


def test_cli_missing_or_unreadable_image_is_one_line(tmp_path, capsys):
    assert cli_main(["proposals", str(tmp_path / "missing.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jpg: No such file or directory" in err
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    assert cli_main(["proposals", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.jpg: cannot read the image" in err
