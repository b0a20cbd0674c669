"""Selective search object proposals (Uijlings et al., IJCV 2013), as used by R-CNN.

Our own numpy implementation of the paper's algorithm:

1. Felzenszwalb-Huttenlocher initial segmentation (``skimage.segmentation.felzenszwalb``
   with the paper's ``sigma=0.8`` and ``min_size=k``) of the image in one colour space;
2. hierarchical grouping: repeatedly merge the most similar pair of neighbouring regions,
   similarity being a sum of the paper's four measures (colour, texture, size, fill);
   the merged region's statistics are computed incrementally (size-weighted histogram
   averages, bounding-box union) and the neighbour graph is updated on every merge;
3. diversification: several colour spaces x several ``k`` x several similarity sets,
   each giving one hierarchy;
4. the paper's pseudo-random ranking: in each hierarchy the region created at position
   ``i`` (counting from the last merge as 1) gets ``RND * i``; boxes of all hierarchies
   are sorted by that value and duplicates are removed keeping the best-ranked one.

Usage::

    >>> import skimage.data
    >>> from caffe_compat.recipes.rcnn.selective_search import selective_search
    >>> boxes = selective_search(skimage.data.coffee(), mode="fast", seed=0)
    >>> boxes.shape[1], boxes.dtype.kind            # (xmin, ymin, xmax, ymax), max inclusive
    (4, 'i')

Modes (Section 5.3 / Table 5 of the paper):

* ``"single"``: HSV, k=100, C+T+S+F (the paper's best single strategy);
* ``"fast"``: HSV and Lab, k in {50, 100}, similarity sets C+T+S+F and T+S+F (8 hierarchies);
* ``"quality"``: HSV, Lab, rgI, H, I; k in {50, 100, 150, 300}; C+T+S+F, T+S+F, F, S
  (80 hierarchies).

Images whose longer side exceeds ``max_side`` (default 500; R-CNN's
``selective_search_boxes.m`` resized images to a width of 500 px, since the number of
regions grows with resolution) are downscaled with area interpolation for the
segmentation and grouping; the boxes are scaled back to the original image so that
they still cover the same pixels (``xmin``/``ymin`` rounded down, ``xmax``/``ymax`` up).
Pass ``max_side=None`` to always work at full resolution (slower and many more regions).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb
from skimage.util import img_as_ubyte

from caffe_compat.errors import CaffeCompatError

COLOUR_BINS = 25  # per channel (Section 3.2, "colour similarity")
TEXTURE_ORIENTATIONS = 8  # SIFT-like: 8 orientations ...
TEXTURE_BINS = 10  # ... x 10 bins per colour channel
TEXTURE_SIGMA = 1.0  # Gaussian derivatives with sigma = 1
FH_SIGMA = 0.8  # Felzenszwalb-Huttenlocher smoothing used by the paper
SIMILARITY_LETTERS = "CTSF"  # colour, texture, size, fill

COLOUR_SPACES = ("RGB", "HSV", "Lab", "rgI", "rgb", "H", "I")


class SelectiveSearchError(CaffeCompatError):
    """A bad argument to selective search (unknown mode or colour space, bad image shape)."""


@dataclass(frozen=True)
class Strategy:
    """One diversification strategy: a colour space, the FH ``k`` and a similarity set.

    ``similarities`` is a string of letters from ``"CTSF"`` (colour, texture, size, fill);
    the similarity of two regions is the sum of the named measures.
    """

    colour_space: str
    k: int
    similarities: str


def _strategies(spaces: Sequence[str], ks: Sequence[int], sims: Sequence[str]) -> Tuple[Strategy, ...]:
    return tuple(Strategy(c, k, s) for c in spaces for k in ks for s in sims)


MODES: Dict[str, Tuple[Strategy, ...]] = {
    "single": _strategies(["HSV"], [100], ["CTSF"]),
    "fast": _strategies(["HSV", "Lab"], [50, 100], ["CTSF", "TSF"]),
    "quality": _strategies(["HSV", "Lab", "rgI", "H", "I"], [50, 100, 150, 300],
                           ["CTSF", "TSF", "F", "S"]),
}


# --------------------------------------------------------------------------- images


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB copy of ``image`` (HxW grey, HxWx3 RGB, HxWx4 RGBA; any dtype
    ``skimage.util.img_as_ubyte`` accepts, floats in [0, 1])."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise SelectiveSearchError(
            f"selective search needs an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise SelectiveSearchError(f"image too small for selective search: {image.shape[:2]}")
    if image.dtype != np.uint8:
        image = img_as_ubyte(image)
    return np.ascontiguousarray(image)


def convert_colour(rgb: np.ndarray, space: str) -> np.ndarray:
    """``rgb`` (HxWx3 uint8) in colour space ``space`` as float32 HxWxC with values in [0, 1].

    Spaces (Table 1 of the paper): ``RGB``; ``HSV``; ``Lab`` (OpenCV's 8-bit scaling);
    ``rgI`` (normalised r, g plus intensity); ``rgb`` (normalised r, g, b); ``H`` (hue
    only); ``I`` (intensity (R+G+B)/3 only).

    >>> np.round(convert_colour(np.full((1, 1, 3), 255, np.uint8), "rgI").astype(float), 3).tolist()
    [[[0.333, 0.333, 1.0]]]
    """
    if space == "RGB":
        return rgb.astype(np.float32) / 255.0
    if space in ("HSV", "H"):
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32) / 255.0
        return hsv if space == "HSV" else hsv[:, :, :1]
    if space == "Lab":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32) / 255.0
    total = rgb.astype(np.float32).sum(axis=2, keepdims=True)
    if space == "I":
        return total / (3 * 255.0)
    safe = np.where(total > 0, total, 1.0)
    normalised = np.where(total > 0, rgb / safe, np.float32(1.0 / 3.0)).astype(np.float32)
    if space == "rgb":
        return normalised
    if space == "rgI":
        return np.concatenate([normalised[:, :, :2], total / (3 * 255.0)], axis=2)
    raise SelectiveSearchError(f"unknown colour space {space!r}; known: {', '.join(COLOUR_SPACES)}")


# --------------------------------------------------------------------------- regions


@dataclass
class RegionStats:
    """Per-region statistics of a set of regions (row ``r`` is region ``r``).

    ``size``: pixel counts; ``bbox``: (xmin, ymin, xmax, ymax) inclusive;
    ``colour``: L1-normalised ``25 x C`` colour histograms; ``texture``: L1-normalised
    ``8 x 10 x C`` gradient-orientation histograms.
    """

    size: np.ndarray
    bbox: np.ndarray
    colour: np.ndarray
    texture: np.ndarray

    @property
    def n(self) -> int:
        return len(self.size)


def _binned_histograms(labels: np.ndarray, n_regions: int, binned: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-region histograms of an MxHxW stack of bin indices (each in [0, n_bins)),
    concatenated over the M maps and L1-normalised: one ``np.bincount`` with offsets."""
    m = binned.shape[0]
    width = m * n_bins
    offsets = (np.arange(m, dtype=np.int64) * n_bins)[:, None]
    index = labels.reshape(1, -1).astype(np.int64) * width + offsets + binned.reshape(m, -1)
    counts = np.bincount(index.ravel(), minlength=n_regions * width).reshape(n_regions, width)
    # every pixel adds exactly m counts, so a row sums to m * size (> 0 for a used label)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1).astype(np.float64)


def colour_bins(image: np.ndarray) -> np.ndarray:
    """Bin index (CxHxW, values in [0, 25)) of every channel and pixel of ``image`` (HxWxC in [0, 1])."""
    planes = np.moveaxis(image, 2, 0) * np.float32(COLOUR_BINS)
    return np.minimum(planes.astype(np.uint8), COLOUR_BINS - 1)


def colour_histograms(labels: np.ndarray, n_regions: int, image: np.ndarray) -> np.ndarray:
    """``COLOUR_BINS`` bins per channel of ``image`` (HxWxC in [0, 1]) for each region,
    concatenated and L1-normalised (Section 3.2)."""
    return _binned_histograms(labels, n_regions, colour_bins(image), COLOUR_BINS)


def _gaussian_derivative_kernels(sigma: float) -> Tuple[np.ndarray, np.ndarray]:
    """1-D Gaussian and its derivative, flipped for ``cv2.sepFilter2D`` (a correlation)."""
    radius = int(4.0 * sigma + 0.5)  # scipy.ndimage's default truncation
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    dg = -x / sigma ** 2 * g  # d/dx of the Gaussian
    return g.astype(np.float32), np.ascontiguousarray(dg[::-1], dtype=np.float32)


def texture_maps(image: np.ndarray) -> np.ndarray:
    """Bin indices ((8C)xHxW, values in [0, 10)) of the SIFT-like texture measure.

    For each channel: Gaussian derivatives (sigma 1) in x and y; the directional
    derivative in 4 directions (0, 45, 90, 135 degrees) split into its positive and
    negative parts gives 8 orientation responses; the responses are divided by the
    channel's strongest response over the image and quantised into ``TEXTURE_BINS``
    bins. Map ``8c + 2a + s`` is channel ``c``, direction ``a``, sign ``s`` (0 positive,
    1 negative).
    """
    h, w, c = image.shape
    g, dg = _gaussian_derivative_kernels(TEXTURE_SIGMA)
    out = np.empty((c * TEXTURE_ORIENTATIONS, h, w), np.uint8)
    cos_sin = [(np.float32(np.cos(a)), np.float32(np.sin(a)))
               for a in np.deg2rad([0.0, 45.0, 90.0, 135.0])]
    for ch in range(c):
        plane = np.ascontiguousarray(image[:, :, ch], dtype=np.float32)
        gx = cv2.sepFilter2D(plane, cv2.CV_32F, dg, g, borderType=cv2.BORDER_REFLECT)
        gy = cv2.sepFilter2D(plane, cv2.CV_32F, g, dg, borderType=cv2.BORDER_REFLECT)
        directional = [cs * gx + sn * gy for cs, sn in cos_sin]
        # one scale per channel (its strongest response), so that a direction without
        # structure stays in bin 0 instead of having its noise stretched to full range
        peak = max(float(np.abs(d).max()) for d in directional)
        scale = np.float32(TEXTURE_BINS / peak) if peak > 0 else np.float32(0.0)
        for a, d in enumerate(directional):
            for sign, response in enumerate((np.maximum(d, 0.0), np.maximum(-d, 0.0))):
                response *= scale
                out[ch * TEXTURE_ORIENTATIONS + 2 * a + sign] = np.minimum(
                    response.astype(np.uint8), TEXTURE_BINS - 1)
    return out


def texture_histograms(labels: np.ndarray, n_regions: int, image: np.ndarray,
                       maps: Optional[np.ndarray] = None) -> np.ndarray:
    """``8 orientations x 10 bins`` per channel for each region, L1-normalised (Section 3.2).

    ``maps`` (from :func:`texture_maps`) may be passed to reuse them across segmentations.
    """
    if maps is None:
        maps = texture_maps(image)
    return _binned_histograms(labels, n_regions, maps, TEXTURE_BINS)


def bounding_boxes(labels: np.ndarray, n_regions: int) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) inclusive of each label ``0 .. n_regions-1``."""
    boxes = np.zeros((n_regions, 4), dtype=np.int64)
    for r, sl in enumerate(ndimage.find_objects(labels + 1, max_label=n_regions)):
        if sl is not None:
            boxes[r] = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
    return boxes


def feature_bins(image: np.ndarray, maps: Optional[np.ndarray] = None) -> np.ndarray:
    """For every pixel, its column in the combined ``[colour | texture]`` histogram for each of
    its ``C + 8C`` maps: a ``(9C) x (H*W)`` uint16 array, computed once per colour space and
    shared by all segmentations of it (``maps`` from :func:`texture_maps` may be passed)."""
    c = image.shape[2]
    if maps is None:
        maps = texture_maps(image)
    n_colour = COLOUR_BINS * c
    out = np.empty((c + len(maps), image.shape[0] * image.shape[1]), np.uint16)
    np.add(colour_bins(image).reshape(c, -1),
           (np.arange(c, dtype=np.uint16) * COLOUR_BINS)[:, None], out=out[:c])
    np.add(maps.reshape(len(maps), -1),
           (n_colour + np.arange(len(maps), dtype=np.uint16) * TEXTURE_BINS)[:, None], out=out[c:])
    return out


def region_stats(labels: np.ndarray, image: np.ndarray,
                 bins: Optional[np.ndarray] = None) -> RegionStats:
    """Statistics of every region of ``labels`` (HxW ints ``0 .. n-1``, every label used)
    over ``image`` (HxWxC in [0, 1]), all regions at once: one ``np.bincount`` over
    ``label * D + column`` gives every colour and texture histogram (``bins`` from
    :func:`feature_bins` may be passed to reuse it)."""
    c = image.shape[2]
    if bins is None:
        bins = feature_bins(image)
    n = int(labels.max()) + 1
    n_colour, n_texture = COLOUR_BINS * c, TEXTURE_BINS * TEXTURE_ORIENTATIONS * c
    width = n_colour + n_texture
    flat = labels.reshape(1, -1).astype(np.int64)
    size = np.bincount(flat[0], minlength=n).astype(np.float64)
    counts = np.bincount((flat * width + bins).ravel(), minlength=n * width).reshape(n, width)
    # each pixel adds one count per map: C colour maps and 8C texture maps
    return RegionStats(size=size, bbox=bounding_boxes(labels, n),
                       colour=counts[:, :n_colour] / (size[:, None] * c),
                       texture=counts[:, n_colour:] / (size[:, None] * c * TEXTURE_ORIENTATIONS))


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """Unique ``(a, b)`` pairs, ``a < b``, of regions touching horizontally or vertically."""
    n = int(labels.max()) + 1
    lab = labels.astype(np.int64)
    codes = []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
        differ = a != b
        lo = np.minimum(a[differ], b[differ])
        hi = np.maximum(a[differ], b[differ])
        codes.append(lo * n + hi)
    code = np.unique(np.concatenate(codes))
    return np.stack([code // n, code % n], axis=1)


def initial_segmentation(image: np.ndarray, k: int) -> np.ndarray:
    """FH segmentation of ``image`` (HxWxC in [0, 1]) with scale ``k``, ``sigma=0.8`` and
    ``min_size=k`` (the paper's settings); labels relabelled to ``0 .. n-1``."""
    if image.shape[2] == 1:
        labels = felzenszwalb(image[:, :, 0], scale=k, sigma=FH_SIGMA, min_size=k, channel_axis=None)
    else:
        labels = felzenszwalb(image, scale=k, sigma=FH_SIGMA, min_size=k, channel_axis=-1)
    used = np.bincount(labels.ravel())
    if np.any(used == 0):  # make labels consecutive
        remap = np.cumsum(used > 0) - 1
        labels = remap[labels]
    return labels.astype(np.int64)


# --------------------------------------------------------------------------- similarities


def similarity_colour(hist_i: np.ndarray, hist_j: np.ndarray) -> np.ndarray:
    """Histogram intersection ``sum_k min(c_i^k, c_j^k)`` (rows broadcast)."""
    return np.minimum(hist_i, hist_j).sum(axis=-1)


similarity_texture = similarity_colour  # same intersection, on the texture histograms


def similarity_size(size_i, size_j, size_image: float):
    """``1 - (size(r_i) + size(r_j)) / size(im)``: merge small regions early."""
    return 1.0 - (size_i + size_j) / size_image


def similarity_fill(size_i, size_j, bbox_i: np.ndarray, bbox_j: np.ndarray, size_image: float):
    """``1 - (size(BB_ij) - size(r_i) - size(r_j)) / size(im)``, ``BB_ij`` the tight box
    around both regions (boxes inclusive (xmin, ymin, xmax, ymax) arrays, rows broadcast)."""
    extent = np.maximum(bbox_i[..., 2:], bbox_j[..., 2:]) - np.minimum(bbox_i[..., :2], bbox_j[..., :2]) + 1
    return 1.0 - (extent[..., 0] * extent[..., 1] - size_i - size_j) / size_image


# --------------------------------------------------------------------------- grouping


@dataclass
class Hierarchy:
    """The regions of one hierarchical grouping in creation order.

    Rows ``0 .. n-1`` are the initial regions, row ``n + m`` is the region made by merge
    ``m`` (of regions ``merges[m]``); the last row is the whole image (if connected).
    ``size``/``bbox``/``colour``/``texture`` are the incrementally merged statistics.
    """

    n_initial: int
    merges: np.ndarray
    size: np.ndarray
    bbox: np.ndarray
    colour: np.ndarray
    texture: np.ndarray

    @property
    def boxes(self) -> np.ndarray:
        return self.bbox[: self.n_initial + len(self.merges)]


def hierarchical_grouping(stats: RegionStats, pairs: np.ndarray, size_image: float,
                          similarities: str = "CTSF") -> Hierarchy:
    """Greedy grouping (Algorithm 1 of the paper) with similarity = sum of the measures
    named in ``similarities`` (letters of ``"CTSF"``).

    The most similar pair comes from a heap (stale entries of merged regions are skipped);
    the neighbour graph is a set of neighbours per region, updated on every merge of
    ``i`` and ``j`` into ``t`` (their neighbours become ``t``'s), and the similarities of
    ``t`` to all its neighbours are computed in one vectorised call. Ties go to the pair
    with the smaller region ids, so the result is deterministic.
    """
    bad = set(similarities) - set(SIMILARITY_LETTERS)
    if bad or not similarities:
        raise SelectiveSearchError(f"similarity set {similarities!r}: use letters of 'CTSF'")
    use_c, use_t, use_s, use_f = (letter in similarities for letter in SIMILARITY_LETTERS)
    n = stats.n
    total = 2 * n - 1
    n_colour = stats.colour.shape[1]
    size = np.zeros(total, np.float64)
    bbox = np.zeros((total, 4), np.int64)
    features = np.zeros((total, n_colour + stats.texture.shape[1]), np.float64)
    size[:n], bbox[:n] = stats.size, stats.bbox
    features[:n, :n_colour], features[:n, n_colour:] = stats.colour, stats.texture
    colour, texture = features[:, :n_colour], features[:, n_colour:]
    # colour + texture similarity is one intersection over the concatenated histograms
    hist = features if (use_c and use_t) else colour if use_c else texture if use_t else None

    def similarity(a, b: np.ndarray) -> np.ndarray:
        s = np.zeros(len(b), np.float64) if hist is None else np.minimum(hist[a], hist[b]).sum(axis=-1)
        if use_s:
            s += similarity_size(size[a], size[b], size_image)
        if use_f:
            s += similarity_fill(size[a], size[b], bbox[a], bbox[b], size_image)
        return s

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    neighbours: List[Optional[set]] = [set() for _ in range(total)]
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    sims = similarity(pairs[:, 0], pairs[:, 1])
    heap = list(zip((-sims).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist()))
    heapq.heapify(heap)
    alive = [True] * total
    sizes = stats.size.tolist()  # Python copies of size and bbox for the scalar updates
    boxes = [tuple(b) for b in stats.bbox.tolist()]
    merges: List[Tuple[int, int]] = []
    for t in range(n, total):
        while heap:
            _, i, j = heapq.heappop(heap)
            if alive[i] and alive[j]:
                break
        else:  # disconnected regions: nothing left to merge
            break
        merges.append((i, j))
        alive[i] = alive[j] = False
        si, sj = sizes[i], sizes[j]
        sizes.append(si + sj)
        size[t] = si + sj
        (xi0, yi0, xi1, yi1), (xj0, yj0, xj1, yj1) = boxes[i], boxes[j]
        boxes.append((min(xi0, xj0), min(yi0, yj0), max(xi1, xj1), max(yi1, yj1)))
        bbox[t] = boxes[t]
        # size-weighted average of the L1-normalised histograms = histogram of the union
        features[t] = features[i] * (si / (si + sj)) + features[j] * (sj / (si + sj))
        nbrs = neighbours[i] | neighbours[j]
        nbrs.discard(i)
        nbrs.discard(j)
        neighbours[i] = neighbours[j] = None
        neighbours[t] = nbrs
        for x in nbrs:
            others = neighbours[x]
            others.discard(i)
            others.discard(j)
            others.add(t)
        if nbrs:
            nb = np.fromiter(sorted(nbrs), np.int64, len(nbrs))
            for s, x in zip((-similarity(t, nb)).tolist(), nb.tolist()):
                heapq.heappush(heap, (s, x, t))
    merge_array = np.asarray(merges, np.int64).reshape(-1, 2)
    return Hierarchy(n_initial=n, merges=merge_array, size=size, bbox=bbox,
                     colour=colour, texture=texture)


# --------------------------------------------------------------------------- ranking


def rank_hierarchies(hierarchies: Iterable[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The paper's pseudo-random ranking of the boxes of several hierarchies.

    Each entry of ``hierarchies`` holds one hierarchy's boxes in creation order; the
    box created last gets position 1. Its value is ``RND * position`` with ``RND``
    uniform in [0, 1); all boxes are sorted by value (lower first) and duplicates
    are removed afterwards, keeping the best-ranked copy.
    """
    boxes_list: List[np.ndarray] = []
    values_list: List[np.ndarray] = []
    for boxes in hierarchies:
        position = np.arange(len(boxes), 0, -1, dtype=np.float64)
        values_list.append(rng.random(len(boxes)) * position)
        boxes_list.append(np.asarray(boxes, np.int64))
    if not boxes_list:
        return np.zeros((0, 4), np.int64)
    boxes = np.concatenate(boxes_list)
    order = np.argsort(np.concatenate(values_list), kind="stable")
    boxes = boxes[order]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


# --------------------------------------------------------------------------- entry point


def _resize_for_segmentation(rgb: np.ndarray, max_side: Optional[int]) -> Tuple[np.ndarray, float, float]:
    h, w = rgb.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return rgb, 1.0, 1.0
    scale = max_side / max(h, w)
    nw, nh = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, w / nw, h / nh


def _scale_boxes_back(boxes: np.ndarray, sx: float, sy: float, width: int, height: int) -> np.ndarray:
    if sx == 1.0 and sy == 1.0:
        return boxes
    out = np.empty_like(boxes)
    out[:, 0] = np.floor(boxes[:, 0] * sx)
    out[:, 1] = np.floor(boxes[:, 1] * sy)
    out[:, 2] = np.ceil((boxes[:, 2] + 1) * sx) - 1
    out[:, 3] = np.ceil((boxes[:, 3] + 1) * sy) - 1
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width - 1)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height - 1)
    _, first = np.unique(out, axis=0, return_index=True)  # rescaling can create duplicates
    return out[np.sort(first)]


def strategies_for(mode: str) -> Tuple[Strategy, ...]:
    """The diversification strategies of ``mode`` (``"single"``, ``"fast"``, ``"quality"``)."""
    try:
        return MODES[mode]
    except KeyError:
        raise SelectiveSearchError(
            f"unknown selective search mode {mode!r}; use one of {', '.join(MODES)}") from None


def selective_search(image: np.ndarray, mode: str = "fast", *, min_size: int = 0,
                     max_boxes: Optional[int] = None, seed: int = 0,
                     max_side: Optional[int] = 500,
                     strategies: Optional[Sequence[Strategy]] = None) -> np.ndarray:
    """Object proposals for ``image`` (HxWx3 RGB, HxW grey or HxWx4 RGBA; uint8 or floats in [0, 1]).

    Returns an ``(N, 4)`` int64 array of ``(xmin, ymin, xmax, ymax)`` boxes, 0-based pixel
    coordinates of ``image``, max inclusive, best-ranked first, without duplicates.

    * ``mode``: ``"fast"`` (R-CNN's setting), ``"quality"`` or ``"single"`` (see module doc);
      ``strategies`` overrides it with an explicit list of :class:`Strategy`.
    * ``min_size``: drop boxes narrower or lower than this many pixels (the paper's demo and
      R-CNN used 20); 0 keeps all.
    * ``max_boxes``: keep only the best-ranked ``max_boxes``.
    * ``seed``: seeds the random part of the ranking; same seed, same boxes.
    * ``max_side``: longer side above which the image is downscaled for the segmentation.

    >>> import skimage.data
    >>> boxes = selective_search(skimage.data.chelsea(), max_boxes=5)
    >>> boxes.shape
    (5, 4)
    """
    rgb = as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    strategies = tuple(strategies) if strategies is not None else strategies_for(mode)
    if not strategies:
        raise SelectiveSearchError("selective search needs at least one strategy")
    small, sx, sy = _resize_for_segmentation(rgb, max_side)
    size_image = float(small.shape[0] * small.shape[1])

    hierarchies: List[np.ndarray] = []
    spaces = list(dict.fromkeys(s.colour_space for s in strategies))
    for space in spaces:
        converted = convert_colour(small, space)
        bins = feature_bins(converted)
        in_space = [s for s in strategies if s.colour_space == space]
        for k in dict.fromkeys(s.k for s in in_space):
            labels = initial_segmentation(converted, k)
            stats = region_stats(labels, converted, bins)
            pairs = neighbour_pairs(labels)
            for strategy in (s for s in in_space if s.k == k):
                hierarchy = hierarchical_grouping(stats, pairs, size_image, strategy.similarities)
                hierarchies.append(hierarchy.boxes)
    # hierarchies come in a fixed order (colour space, k, similarity set as first listed),
    # so the random values of the ranking depend on the seed alone
    boxes = rank_hierarchies(hierarchies, np.random.default_rng(seed))
    boxes = _scale_boxes_back(boxes, sx, sy, width, height)
    if min_size > 0:
        keep = ((boxes[:, 2] - boxes[:, 0] + 1) >= min_size) & ((boxes[:, 3] - boxes[:, 1] + 1) >= min_size)
        boxes = boxes[keep]
    if max_boxes is not None:
        boxes = boxes[: max(int(max_boxes), 0)]
    return boxes
