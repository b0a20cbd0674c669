"""pycaffe's ``caffe.Detector``: classify many windows of images at once (R-CNN style).

Same constructor, defaults and crop geometry as BVLC Caffe master's
``python/caffe/detector.py`` (Girshick et al., "Rich feature hierarchies for accurate object
detection and semantic segmentation", 2014)::

    import caffe_compat as caffe
    det = caffe.Detector("rcnn_deploy.prototxt", "rcnn.caffemodel",
                         mean=np.array([104., 117., 123.]), raw_scale=255,
                         channel_swap=(2, 1, 0), context_pad=16)
    dets = det.detect_windows([("cat.jpg", np.array([[10, 20, 120, 200]]))])
    dets[0]["prediction"]            # the net's first output for window (ymin, xmin, ymax, xmax)

Windows are ``(ymin, xmin, ymax, xmax)`` in pixels; without ``context_pad`` a window is the
slice ``im[ymin:ymax, xmin:xmax]``, warped to the net input by the transformer.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np

from caffe_compat import io as caffe_io
from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2
from caffe_compat.pycaffe.classifier import input_transformer
from caffe_compat.pycaffe.net import Net

#: ``proposals`` for :meth:`Detector.detect_selective_search`: a callable taking an image's
#: absolute filename, or a mapping from filename, to an (N, 4) array of windows.
Proposals = Union[Callable[[str], np.ndarray], Mapping]


def round_half_away(x: float) -> int:
    """Python 2's ``round``: halves go away from zero (Python 3 rounds them to even).

    pycaffe's context crop only ran where numpy still accepted float slice indices
    (numpy < 1.12, the Python 2 era), so its ``round`` calls had these semantics.
    """
    ax = abs(float(x))
    r = math.floor(ax)
    if ax - r >= 0.5:
        r += 1
    return int(r) if x >= 0 else -int(r)


class Detector(Net):
    """Net for windowed detection over given windows or region proposals.

    ``mean``, ``input_scale``, ``raw_scale`` and ``channel_swap`` configure
    ``self.transformer`` (transpose ``(2, 0, 1)``) for the first net input. ``context_pad``
    is the width in pixels of the border of the net input that shows context around the
    window, as in R-CNN feature extraction (see :meth:`crop`).
    """

    def __init__(self, model_file: str, pretrained_file: Optional[str],
                 mean: Optional[np.ndarray] = None, input_scale: Optional[float] = None,
                 raw_scale: Optional[float] = None, channel_swap: Optional[Sequence[int]] = None,
                 context_pad: Optional[int] = None):
        Net.__init__(self, model_file, caffe_pb2.TEST, weights=pretrained_file)

        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)

        self.configure_crop(context_pad)

    def detect_windows(self, images_windows: Iterable) -> list:
        """Classify windows of images.

        ``images_windows``: (image filename, windows) pairs, each window (ymin, xmin, ymax,
        xmax). Each image is read with :func:`caffe_compat.io.load_image`, every window
        cropped with :meth:`crop`, preprocessed (warped to the input size) and run through the
        net in batches. Returns one ``{'window', 'prediction', 'filename'}`` dict per window,
        in input order; ``prediction`` is that window's row of the net's first output.
        """
        # Materialise once: pycaffe walks the pairs twice (a zip is empty the second time).
        images_windows = [(fname, list(windows)) for fname, windows in images_windows]
        window_inputs = []
        for image_fname, windows in images_windows:
            image = caffe_io.load_image(image_fname).astype(np.float32)
            for window in windows:
                window_inputs.append(self.crop(image, window))
        if not window_inputs:
            raise CaffeCompatError("detect_windows: no windows given")

        # Run through the net (warping windows to input dimensions).
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(window_inputs), window_inputs[0].shape[2])
                            + tuple(self.blobs[in_].data.shape[2:]), dtype=np.float32)
        for ix, window_in in enumerate(window_inputs):
            caffe_in[ix] = self.transformer.preprocess(in_, window_in)
        out = self.forward_all(**{in_: caffe_in})
        predictions = out[self.outputs[0]]

        detections = []
        ix = 0
        for image_fname, windows in images_windows:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[ix],
                                   "filename": image_fname})
                ix += 1
        return detections

    def detect_selective_search(self, image_fnames: Sequence[str],
                                proposals: Optional[Proposals] = None) -> list:
        """Classify region proposals of each image (:meth:`detect_windows` on them).

        pycaffe always called the external MATLAB-based ``selective_search_ijcv_with_python``.
        Here ``proposals`` gives the windows: a callable ``f(abs_filename) -> (N, 4) array``
        or a mapping from filename (as passed, or absolute) to windows, each window
        (ymin, xmin, ymax, xmax). Without it, ``caffe_compat.recipes.rcnn.selective_search``
        (same callable contract) is used when importable, else
        ``selective_search_ijcv_with_python`` as in pycaffe; failing both this raises
        :class:`~caffe_compat.errors.CaffeCompatError`. Detections name images by absolute path::

            dets = det.detect_selective_search(["cat.jpg"], proposals={"cat.jpg": windows})
        """
        names = list(image_fnames)
        abs_names = [os.path.abspath(f) for f in names]
        if proposals is None:
            windows_list = _default_proposals(abs_names)
        elif isinstance(proposals, Mapping):
            windows_list = []
            for name, abs_name in zip(names, abs_names):
                if name in proposals:
                    windows_list.append(proposals[name])
                elif abs_name in proposals:
                    windows_list.append(proposals[abs_name])
                else:
                    raise CaffeCompatError(f"detect_selective_search: no proposals for {name!r}")
        elif callable(proposals):
            windows_list = [proposals(f) for f in abs_names]
        else:
            raise CaffeCompatError("detect_selective_search: proposals must be a callable "
                                   "filename -> windows or a mapping filename -> windows, "
                                   f"not {type(proposals).__name__}")
        return self.detect_windows(zip(abs_names, windows_list))

    def crop(self, im: np.ndarray, window) -> np.ndarray:
        """Cut ``window`` (ymin, xmin, ymax, xmax) out of the (H x W x K) image ``im``.

        Without ``context_pad`` this is ``im[ymin:ymax, xmin:xmax]`` (a view). With it,
        pycaffe's R-CNN context crop: the box (taken as inclusive, height ymax - ymin + 1) is
        scaled about its centre by ``crop_size / (crop_size - 2 * context_pad)`` (``crop_size``
        = net input width) and rounded; the part outside the image becomes ``pad_y = round(
        max(0, -y0) * crop_size / full_h)`` rows (likewise columns) of ``self.crop_mean``;
        the box is clipped to [0, H] x [0, W], the slice ``im[y0:y1, x0:x1]`` is resized to
        ``round(clip_h * crop_size / full_h)`` rows (cut to fit) and placed at
        (pad_y, pad_x) in a ``self.crop_dims`` array filled with ``self.crop_mean``.
        """
        crop = im[int(window[0]):int(window[2]), int(window[1]):int(window[3])]
        if not self.context_pad:
            return crop

        box = np.array(window, dtype=np.float64)
        crop_size = self.blobs[self.inputs[0]].width  # assumes a square input
        scale = crop_size / (1. * crop_size - self.context_pad * 2)
        # Crop the box plus surrounding context.
        half_h = (box[2] - box[0] + 1) / 2.
        half_w = (box[3] - box[1] + 1) / 2.
        center = (box[0] + half_h, box[1] + half_w)
        scaled_dims = scale * np.array((-half_h, -half_w, half_h, half_w))
        box = np.round(np.tile(center, 2) + scaled_dims)
        full_h = box[2] - box[0] + 1
        full_w = box[3] - box[1] + 1
        scale_h = crop_size / full_h
        scale_w = crop_size / full_w
        pad_y = round_half_away(max(0, -box[0]) * scale_h)  # rows out of bounds
        pad_x = round_half_away(max(0, -box[1]) * scale_w)

        # Clip the box to the image.
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0., [im_h, im_w, im_h, im_w])
        clip_h = box[2] - box[0] + 1
        clip_w = box[3] - box[1] + 1
        if not (clip_h > 0 and clip_w > 0):
            raise CaffeCompatError(f"Detector.crop: window {tuple(window)} with context lies "
                                   f"outside the {im_h}x{im_w} image")
        crop_h = round_half_away(clip_h * scale_h)
        crop_w = round_half_away(clip_w * scale_w)
        if pad_y + crop_h > crop_size:
            crop_h = crop_size - pad_y
        if pad_x + crop_w > crop_size:
            crop_w = crop_size - pad_x

        # Resize the context crop and place it in a mean-filled input.
        context_crop = im[int(box[0]):int(box[2]), int(box[1]):int(box[3])]
        context_crop = caffe_io.resize_image(context_crop, (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:(pad_y + crop_h), pad_x:(pad_x + crop_w)] = context_crop
        return crop

    def configure_crop(self, context_pad: Optional[int]) -> None:
        """Set ``self.crop_dims`` (the input's (H, W, K)) and ``self.context_pad``; with
        context, ``self.crop_mean`` is the transformer's mean taken back to raw image space
        (untransposed, channel swap undone, divided by raw_scale), or zeros without a mean,
        so that context padding preprocesses to zero."""
        in_ = self.inputs[0]
        inv_tpose = np.argsort(self.transformer.transpose[in_])
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv_tpose]
        self.context_pad = context_pad
        if self.context_pad:
            channel_order = self.transformer.channel_swap.get(in_)
            raw_scale = self.transformer.raw_scale.get(in_)
            # Padding context crops needs the mean in unprocessed input space.
            mean = self.transformer.mean.get(in_)
            if mean is not None:
                crop_mean = mean.copy().transpose(inv_tpose)
                if channel_order is not None:
                    order = list(channel_order)
                    channel_order_inverse = [order.index(i) for i in range(crop_mean.shape[2])]
                    crop_mean = crop_mean[:, :, channel_order_inverse]
                if raw_scale is not None:
                    crop_mean /= raw_scale
                self.crop_mean = crop_mean
            else:
                self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)


def _default_proposals(abs_names: list) -> list:
    """Windows per image from the bundled R-CNN recipe, else pycaffe's external package."""
    try:
        from caffe_compat.recipes.rcnn.detector import selective_search_windows
    except ImportError:
        selective_search_windows = None
    if selective_search_windows is not None:
        return [selective_search_windows(f) for f in abs_names]
    try:
        import selective_search_ijcv_with_python as ss_ijcv
    except ImportError:
        raise CaffeCompatError(
            "detect_selective_search needs region proposals: pass proposals= (a callable "
            "filename -> (N, 4) windows or a dict filename -> windows); neither "
            "caffe_compat.recipes.rcnn.selective_search nor selective_search_ijcv_with_python "
            "is available") from None
    return list(ss_ijcv.get_windows(abs_names, cmd="selective_search_rcnn"))
