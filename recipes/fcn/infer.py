"""FCN inference as fcn.berkeleyvision.org's ``infer.py`` runs it, for many images.

Each image is read with PIL, cast to float32, switched RGB -> BGR, the mean
``(104.00698793, 116.66876762, 122.67891434)`` subtracted and transposed to
C x H x W; the net is reshaped to the image (any size: FCNs crop their output back
onto the input) and the prediction is the argmax over the score blob's classes.

:class:`Segmenter` keeps one loaded net (the engine's hybridized block, all on the
MXNet device) for any number of images::

    from caffe_compat.recipes.fcn.infer import Segmenter, load_image
    seg = Segmenter.from_zoo("voc-fcn8s")                  # or Segmenter.from_files(p, w)
    label = seg.segment(load_image("cat.jpg"))              # (H, W) class indices
    seg.save("cat.jpg", "cat.png", overlay_path="cat_overlay.png")
"""
from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence

import mxnet as mx
import numpy as np
from PIL import Image

from caffe_compat.images import read_rgb
from caffe_compat.recipes.fcn.palette import label_image, overlay

#: infer.py's mean (BGR), the PASCAL VOC training mean of the FCN models.
FCN_MEAN = (104.00698793, 116.66876762, 122.67891434)


def load_image(path: str) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array (grey/palette/RGBA converted)."""
    return read_rgb(path)


def preprocess(image: np.ndarray, mean: Sequence[float] = FCN_MEAN) -> np.ndarray:
    """infer.py's input: float32, RGB -> BGR, minus the BGR ``mean``, C x H x W."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    in_ = np.array(image, dtype=np.float32)
    in_ = in_[:, :, ::-1]
    in_ -= np.array(mean)
    return np.ascontiguousarray(in_.transpose((2, 0, 1)))


def first_output(net) -> str:
    """The net output produced first in layer order (SIFT Flow: ``score_sem``)."""
    outputs = set(net.output_names)
    for node in net.graph.layers:
        for top in node.tops:
            if top in outputs:
                return top
    raise ValueError("the net has no output blob")


class Segmenter:
    """One FCN (a :class:`~caffe_compat.engine.network.CaffeNet` deploy net) that
    segments images of any size.

    ``output`` is the score blob (default ``score``, else the output the net computes
    first, e.g. SIFT Flow's ``score_sem``); ``mean`` the BGR mean subtracted from each image.
    The block is hybridized unless the net has Python layers.
    """

    def __init__(self, net, mean: Sequence[float] = FCN_MEAN, output: Optional[str] = None,
                 hybridize: bool = True):
        if len(net.input_names) != 1:
            raise ValueError(f"a Segmenter needs a net with one image input; this one has "
                             f"{net.input_names}")
        self.net = net
        self.input = net.input_names[0]
        if output is None:
            output = "score" if "score" in net.blob_shapes else first_output(net)
        producer = [n.name for n in net.graph.layers if output in n.tops]
        if not producer:
            raise ValueError(f"the net has no blob {output!r}")
        net.set_outputs([output], end=producer[-1])   # layers after it need not run
        self.output = output
        self.mean = tuple(float(m) for m in mean)
        self.ctx = self._context()
        if hybridize and not any(l.type == "Python" for l in net.caffe_layers):
            net.hybridize(static_alloc=True)

    def _context(self) -> mx.Context:
        params = list(self.net.collect_params().values())
        if params:
            return params[0].list_ctx()[0]
        from caffe_compat.context import current_context
        return current_context()

    @classmethod
    def from_files(cls, prototxt: str, weights: Optional[str], ctx: Optional[mx.Context] = None,
                   **kwargs) -> "Segmenter":
        """A deploy prototxt and its .caffemodel (or .caffemodel.h5)."""
        from caffe_compat.engine.network import CaffeNet
        for path in (prototxt, weights):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(2, "No such file or directory", path)
        return cls(CaffeNet.from_prototxt(prototxt, weights=weights, ctx=ctx), **kwargs)

    @classmethod
    def from_zoo(cls, name: str, ctx: Optional[mx.Context] = None, **kwargs) -> "Segmenter":
        """A zoo model (downloaded and cached on first use); its registry mean is used."""
        from caffe_compat import zoo
        entry = zoo.get(name)
        if entry.mean_values is not None and "mean" not in kwargs:
            kwargs["mean"] = entry.mean_values
        return cls(zoo.load(name, ctx=ctx), **kwargs)

    # ---- running -----------------------------------------------------------------
    def scores_nd(self, image: np.ndarray) -> mx.nd.NDArray:
        """The score blob for one RGB image, (1, classes, H, W) on the device."""
        x = mx.nd.array(preprocess(image, self.mean)[np.newaxis], ctx=self.ctx, dtype="float32")
        with warnings.catch_warnings():
            # another head's weights (SIFT Flow's score_geo for score_sem) are unused
            warnings.filterwarnings("ignore", message=r"Parameter .* is not used by any computation")
            out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out

    def scores(self, image: np.ndarray) -> np.ndarray:
        """The score blob for one RGB image as numpy, (classes, H, W)."""
        return self.scores_nd(image)[0].asnumpy()

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class index per pixel, (H, W) uint8 (argmax over the classes on the device)."""
        scores = self.scores_nd(image)
        if scores.shape[1] > 256:
            raise ValueError(f"{scores.shape[1]} classes do not fit a palette PNG")
        return mx.nd.argmax(scores[0], axis=0).asnumpy().astype(np.uint8)

    def save(self, image_path: str, out_path: str,
             overlay_path: Optional[str] = None) -> np.ndarray:
        """Segment one image file; write the indexed PNG (VOC palette) and optionally
        the overlay. Returns the segmentation."""
        image = load_image(image_path)
        label = self.segment(image)
        for path in (out_path, overlay_path):
            folder = os.path.dirname(path) if path else ""
            if folder:
                os.makedirs(folder, exist_ok=True)
        label_image(label).save(out_path)
        if overlay_path:
            Image.fromarray(overlay(image, label)).save(overlay_path)
        return label
