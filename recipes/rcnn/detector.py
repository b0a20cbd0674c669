"""R-CNN detection as Caffe shipped it: proposals, warped context crops, CNN scores, NMS.

The pipeline of ``bvlc_reference_rcnn_ilsvrc13`` (Caffe's ``examples/detection.ipynb``
and R-CNN's ``rcnn_detect.m``):

1. selective search proposals ("fast" mode, boxes narrower or lower than 20 px dropped, as
   R-CNN's ``selective_search_boxes.m``), about 2000 per image;
2. each box cut with 16 px of context and warped to the 227 x 227 input exactly as
   pycaffe's ``caffe.Detector.crop`` does, preprocessed as BVLC's ``python/detect.py``
   (RGB in [0, 1] x 255, swapped to BGR, the ILSVRC 2012 mean pixel subtracted);
3. all crops through the net in batches on the MXNet device (the engine block,
   hybridized), giving the ``fc-rcnn`` scores (one linear SVM per class);
4. per class: scores above the threshold, optional bounding-box regression on pool5
   features (:mod:`.bbox_regression`), greedy NMS at IoU 0.3 (:mod:`.nms`); then the
   best ``top_k`` over all classes.

Boxes are ``(xmin, ymin, xmax, ymax)`` 0-based pixels, max inclusive (what
``caffe-compat proposals`` writes); pycaffe's windows are ``(ymin, xmin, ymax, xmax)``.

>>> det = RCNNDetector.from_zoo("bvlc_reference_rcnn_ilsvrc13")          # doctest: +SKIP
>>> found = det.detect(caffe_compat.io.load_image("cat.jpg"), top_k=5)   # doctest: +SKIP
>>> found.to_json()["detections"][0]["label"]                            # doctest: +SKIP
'domestic cat'

The crops are computed by :func:`context_crop`, a vectorised equivalent of
``caffe.Detector.crop`` (same geometry, same resize arithmetic as ``caffe.io.resize_image``
to float32 rounding, about 5x faster); ``exact_crops=True`` calls ``Detector.crop`` itself.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from caffe_compat.recipes.rcnn.crops import (CropGeometry, context_crop_geometry, _linear_taps,
                                             resize_like_pycaffe, context_crop)  # noqa: F401
from caffe_compat.recipes.rcnn.labels import (read_labels, display_name)  # noqa: F401
from caffe_compat.recipes.rcnn.proposals import (boxes_to_windows, windows_to_boxes,
                                                 proposals_for_image, selective_search_windows,
                                                 read_proposals)  # noqa: F401
from caffe_compat.recipes.rcnn.results import (ImageDetections, draw_detections)  # noqa: F401
from caffe_compat.recipes.rcnn.constants import (DEFAULT_MODEL, ILSVRC_MEAN_BGR, CONTEXT_PAD,
                                                 NMS_OVERLAP, MIN_PROPOSAL_SIZE, SCORE_BLOB,
                                                 FEATURE_BLOB, DetectionError)  # noqa: F401


# --------------------------------------------------------------------------- detector


def _as_float_image(image: np.ndarray) -> np.ndarray:
    """float32 RGB in [0, 1] as ``caffe.io.load_image`` gives (uint8 images are divided by 255)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    return image.astype(np.float32, copy=False)


def _last_writer(block, blobs: Sequence[str]) -> str:
    """Name of the last layer (in net order) writing any of ``blobs``."""
    last = None
    for node in block.graph.layers:
        if any(b in node.tops for b in blobs):
            last = node
    if last is None:
        raise DetectionError(f"the net has no blob(s) {', '.join(blobs)}")
    return last.name


class RCNNDetector:
    """R-CNN detection with a Caffe net (see the module docstring).

    ``block``: the engine's CaffeNet (e.g. ``zoo.load``) with one image input; ``class_names``
    name the columns of ``score_blob`` (default ``fc-rcnn``, else the net's only output).
    ``mean`` (per channel in the net's channel order, or a C x H x W image), ``raw_scale``,
    ``channel_swap``, ``input_scale`` and ``context_pad`` configure preprocessing and crops
    exactly as ``caffe.Detector``'s arguments (defaults: BVLC detect.py's). Crops are
    scored ``batch_size`` at a time; ``bbox_regressor`` enables bounding-box regression on
    its ``blob`` (pool5).
    """

    def __init__(self, block, class_names: Sequence[str], *,
                 mean: Optional[np.ndarray] = np.array(ILSVRC_MEAN_BGR),
                 raw_scale: Optional[float] = 255.0,
                 channel_swap: Optional[Sequence[int]] = (2, 1, 0),
                 input_scale: Optional[float] = None, context_pad: int = CONTEXT_PAD,
                 score_blob: Optional[str] = None, batch_size: int = 128,
                 bbox_regressor=None, exact_crops: bool = False, hybridize: bool = True):
        import mxnet as mx

        from caffe_compat import io as caffe_io
        from caffe_compat.context import current_context
        from caffe_compat.pycaffe.detector import Detector
        if len(block.input_names) != 1:
            raise DetectionError(f"R-CNN detection needs a net with one image input, this one "
                                 f"has {block.input_names}")
        self.block = block
        self.input = block.input_names[0]
        shape = block.blob_shapes[self.input]
        if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
            raise DetectionError(f"input {self.input!r} must be N x 3 x S x S (square colour "
                                 f"crops), got {shape}")
        self.crop_size = int(shape[3])
        if score_blob is None:
            score_blob = SCORE_BLOB if SCORE_BLOB in block.blob_shapes else None
            if score_blob is None:
                outputs = block.graph.outputs
                if len(outputs) != 1:
                    raise DetectionError(f"the net has no {SCORE_BLOB!r} blob and several "
                                         f"outputs {outputs}; name the score blob")
                score_blob = outputs[0]
        if score_blob not in block.blob_shapes:
            raise DetectionError(f"the net has no blob {score_blob!r}")
        self.score_blob = score_blob
        self.num_classes = int(np.prod(block.blob_shapes[score_blob][1:]))
        self.class_names = list(class_names)
        if len(self.class_names) != self.num_classes:
            raise DetectionError(f"{len(self.class_names)} class names for the "
                                 f"{self.num_classes} scores of {score_blob!r}")
        self.batch_size = int(batch_size)
        self.bbox_regressor = bbox_regressor
        self.exact_crops = exact_crops
        params = list(block.collect_params().values())
        self.ctx = params[0].list_ctx()[0] if params else current_context()

        # pycaffe's Detector over the same block: its transformer and crop settings are
        # the reference for everything below.
        det = Detector.from_block(block)
        det.transformer = caffe_io.Transformer({self.input: shape})
        det.transformer.set_transpose(self.input, (2, 0, 1))
        if mean is not None:
            det.transformer.set_mean(self.input, np.asarray(mean, dtype=np.float64))
        if input_scale is not None:
            det.transformer.set_input_scale(self.input, input_scale)
        if raw_scale is not None:
            det.transformer.set_raw_scale(self.input, raw_scale)
        if channel_swap is not None:
            det.transformer.set_channel_swap(self.input, channel_swap)
        det.configure_crop(context_pad)
        self.pycaffe = det
        self.context_pad = int(context_pad or 0)
        t = det.transformer
        self._swap = list(channel_swap) if channel_swap is not None else None
        self._raw_scale = raw_scale
        self._input_scale = input_scale
        m = t.mean.get(self.input)
        self._mean = None if m is None else mx.nd.array(np.asarray(m, np.float32)[None], ctx=self.ctx)
        self._outputs: Tuple[str, ...] = ()
        self._hybridize = hybridize
        self._batch_shape = None

    # ---- construction --------------------------------------------------------------
    @classmethod
    def from_zoo(cls, name: str = DEFAULT_MODEL, ctx=None, **kwargs) -> "RCNNDetector":
        """The zoo model (downloaded once) with its labels and BVLC detect.py's preprocessing
        (the zoo's per-channel mean of the ILSVRC 2012 mean image)."""
        from caffe_compat import zoo
        entry = zoo.get(name)
        block = zoo.load(name, ctx=ctx)
        kwargs.setdefault("mean", zoo.mean(name, per_channel=True))
        if entry.channel_order.upper() == "RGB":
            kwargs.setdefault("channel_swap", None)
        kwargs.setdefault("raw_scale", entry.raw_scale)
        return cls(block, zoo.labels(name), **kwargs)

    @classmethod
    def from_files(cls, prototxt: str, weights: Optional[str], labels: Sequence[str] | str,
                   ctx=None, **kwargs) -> "RCNNDetector":
        """A deploy prototxt + caffemodel; ``labels`` a list or a labels file."""
        from caffe_compat.engine.network import CaffeNet
        for path in (prototxt, weights, labels if isinstance(labels, str) else None):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(2, "No such file or directory", path)
        names = read_labels(labels) if isinstance(labels, str) else list(labels)
        block = CaffeNet.from_prototxt(prototxt, 1, weights=weights, ctx=ctx)
        return cls(block, names, **kwargs)

    # ---- crops and preprocessing ---------------------------------------------------
    def crop(self, image: np.ndarray, window, out: Optional[np.ndarray] = None) -> np.ndarray:
        """``caffe.Detector.crop(image, window)`` warped to the input size (S, S, 3)."""
        if self.exact_crops or not self.context_pad:
            from caffe_compat import io as caffe_io
            piece = self.pycaffe.crop(image, window)
            if piece.shape[:2] != (self.crop_size, self.crop_size):
                if piece.size == 0:
                    raise DetectionError(f"window {tuple(np.asarray(window).tolist())} is empty")
                piece = caffe_io.resize_image(piece, (self.crop_size, self.crop_size))
            if out is None:
                return np.asarray(piece, dtype=np.float32)
            out[...] = piece
            return out
        return context_crop(image, window, self.crop_size, self.context_pad,
                            self.pycaffe.crop_mean, out)

    def preprocess(self, crops: np.ndarray):
        """(N, S, S, 3) raw crops -> the net input on the device, as
        ``Transformer.preprocess`` per crop: transpose, channel swap, x raw_scale, - mean,
        x input_scale."""
        import mxnet as mx
        x = mx.nd.array(crops, ctx=self.ctx, dtype="float32").transpose((0, 3, 1, 2))
        if self._swap is not None:
            x = mx.nd.take(x, mx.nd.array(self._swap, ctx=self.ctx), axis=1)
        if self._raw_scale is not None:
            x = x * float(self._raw_scale)
        if self._mean is not None:
            x = mx.nd.broadcast_sub(x, self._mean)
        if self._input_scale is not None:
            x = x * float(self._input_scale)
        return x

    def _prepare(self, blobs: Tuple[str, ...], batch: int) -> None:
        if blobs != self._outputs:
            for b in blobs:
                if b not in self.block.blob_shapes:
                    raise DetectionError(f"the net has no blob {b!r}")
            self.block.set_outputs(list(blobs), end=_last_writer(self.block, blobs))
            self._outputs = blobs
        shape = (batch, 3, self.crop_size, self.crop_size)
        if shape != self._batch_shape:
            self.block.reshape({self.input: shape})
            self._batch_shape = shape
            if self._hybridize:
                self.block.hybridize(static_alloc=True, static_shape=True)

    def forward_windows(self, image: np.ndarray, windows, blobs: Sequence[str],
                        progress: Optional[Callable[[int], None]] = None) -> Dict[str, np.ndarray]:
        """Run every window (ymin, xmin, ymax, xmax) of ``image`` (H x W x 3 RGB float in
        [0, 1], as ``caffe.io.load_image``) through the net; returns each blob in ``blobs``
        as an (N, D) float32 array. ``progress(n)`` is called as batches finish."""
        windows = np.asarray(windows).reshape(-1, 4)
        blobs = tuple(blobs)
        n = len(windows)
        if n == 0:
            return {b: np.zeros((0, int(np.prod(self.block.blob_shapes[b][1:]))), np.float32)
                    for b in blobs}
        image = _as_float_image(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise DetectionError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
        batch = min(self.batch_size, n)
        self._prepare(blobs, batch)
        results: Dict[str, list] = {b: [] for b in blobs}
        pending = None
        crops = np.zeros((batch, self.crop_size, self.crop_size, 3), dtype=np.float32)
        for start in range(0, n, batch):
            chunk = windows[start:start + batch]
            for k, window in enumerate(chunk):
                self.crop(image, window, out=crops[k])
            with warnings.catch_warnings():   # blobs past `end` (fc-rcnn when caching fc7)
                warnings.filterwarnings("ignore", message=r"Parameter .* is not used")
                out = self.block(self.preprocess(crops))   # runs asynchronously on the device
            out = out if isinstance(out, (list, tuple)) else (out,)
            for b, value in zip(blobs, out):
                results[b].append(value.reshape((batch, -1))[:len(chunk)])
            if pending is not None and progress is not None:
                pending[0].wait_to_read()   # the previous batch, while this one runs
                progress(pending[1])
            pending = (out[0], len(chunk))
        if progress is not None:
            pending[0].wait_to_read()
            progress(pending[1])
        import mxnet as mx
        return {b: mx.nd.concat(*parts, dim=0).asnumpy() for b, parts in results.items()}

    def score_boxes(self, image: np.ndarray, boxes, progress=None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(N, K) scores of the boxes (xmin, ymin, xmax, ymax) and, with a bounding-box
        regressor, their (N, D) regression features (else None)."""
        blobs = [self.score_blob]
        if self.bbox_regressor is not None:
            blobs.append(self.bbox_regressor.blob)
        out = self.forward_windows(image, boxes_to_windows(boxes), blobs, progress)
        feats = out[self.bbox_regressor.blob] if self.bbox_regressor is not None else None
        return out[self.score_blob].astype(np.float64), feats

    def detect(self, image: np.ndarray, boxes=None, *, threshold: float = 0.0,
               nms_overlap: float = NMS_OVERLAP, top_k: Optional[int] = None,
               proposals: str = "fast", image_name: str = "",
               progress: Optional[Callable[[int], None]] = None) -> ImageDetections:
        """Detect objects in ``image`` (H x W x 3 RGB float in [0, 1]).

        ``boxes``: proposals (xmin, ymin, xmax, ymax); default: selective search in mode
        ``proposals``. Keeps per class the boxes scoring above ``threshold``, regresses
        them (with a bbox regressor; clipped to the image), applies NMS at
        ``nms_overlap``, then the ``top_k`` best over all classes.
        """
        from caffe_compat.recipes.rcnn.bbox_regression import clip_boxes
        from caffe_compat.recipes.rcnn.nms import nms
        image = np.asarray(image)
        h, w = image.shape[:2]
        if boxes is None:
            boxes = proposals_for_image(image, proposals)
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DetectionError(f"proposals must be N x 4 (xmin, ymin, xmax, ymax), got "
                                 f"shape {boxes.shape}")
        scores, feats = self.score_boxes(image, boxes, progress)
        out_boxes, out_scores, out_labels = [], [], []
        for j in range(self.num_classes):
            cand = np.flatnonzero(scores[:, j] > threshold)
            if not len(cand):
                continue
            cls_boxes = boxes[cand]
            if self.bbox_regressor is not None:
                cls_boxes = clip_boxes(self.bbox_regressor.predict(j, feats[cand], cls_boxes), h, w)
            keep = nms(cls_boxes, scores[cand, j], nms_overlap)
            out_boxes.append(cls_boxes[keep])
            out_scores.append(scores[cand[keep], j])
            out_labels.append(np.full(len(keep), j, np.int64))
        if out_scores:
            all_boxes = np.concatenate(out_boxes)
            all_scores = np.concatenate(out_scores)
            all_labels = np.concatenate(out_labels)
            order = np.argsort(-all_scores, kind="stable")
            if top_k is not None:
                order = order[:max(int(top_k), 0)]
            all_boxes, all_scores, all_labels = all_boxes[order], all_scores[order], all_labels[order]
        else:
            all_boxes, all_scores, all_labels = np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        return ImageDetections(all_boxes, all_scores, all_labels, self.class_names, image_name,
                               (h, w), len(boxes))


__all__ = ["CropGeometry", "DEFAULT_MODEL", "DetectionError", "ILSVRC_MEAN_BGR",
           "ImageDetections", "RCNNDetector", "boxes_to_windows", "context_crop",
           "context_crop_geometry", "display_name", "draw_detections", "proposals_for_image",
           "read_labels", "read_proposals", "resize_like_pycaffe", "selective_search_windows",
           "windows_to_boxes"]
