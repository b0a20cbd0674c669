"""pycaffe's ``caffe.Classifier``: a ``Net`` that classifies H x W x K images.

Same constructor, defaults and steps as BVLC Caffe master's ``python/caffe/classifier.py``::

    import caffe_compat as caffe
    clf = caffe.Classifier("deploy.prototxt", "bvlc_reference_caffenet.caffemodel",
                           image_dims=(256, 256), mean=np.array([104., 117., 123.]),
                           raw_scale=255, channel_swap=(2, 1, 0))
    probs = clf.predict([caffe.io.load_image("cat.jpg")])        # (1, 1000), 10-crop average
    probs = clf.predict([image], oversample=False)               # centre crop only
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from caffe_compat import io as caffe_io
from caffe_compat.proto import caffe_pb2
from caffe_compat.pycaffe.net import Net


def input_transformer(net: Net, mean=None, input_scale=None, raw_scale=None,
                      channel_swap=None) -> "caffe_io.Transformer":
    """The Transformer pycaffe's Classifier and Detector configure for a net's first
    input: HWC -> CHW, then the optional mean, input scale, raw scale, channel swap."""
    in_ = net.inputs[0]
    transformer = caffe_io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    """Net for image class prediction by scaling, centre cropping or oversampling.

    ``image_dims`` is the (H, W) every input is resized to before cropping (default: the
    net input's size, i.e. a whole-image crop); ``mean``, ``input_scale``, ``raw_scale`` and
    ``channel_swap`` configure ``self.transformer`` (a :class:`caffe_compat.io.Transformer`
    with transpose ``(2, 0, 1)``) for the first net input. ``self.crop_dims`` is that
    input's (H, W).
    """

    def __init__(self, model_file: str, pretrained_file: Optional[str], image_dims=None,
                 mean: Optional[np.ndarray] = None, input_scale: Optional[float] = None,
                 raw_scale: Optional[float] = None, channel_swap: Optional[Sequence[int]] = None):
        Net.__init__(self, model_file, caffe_pb2.TEST, weights=pretrained_file)

        in_ = self.inputs[0]
        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)

        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        # pycaffe's ``if not image_dims``, also accepting a numpy array
        if image_dims is None or len(image_dims) == 0:
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs: Sequence[np.ndarray], oversample: bool = True) -> np.ndarray:
        """Class scores (N x C) for N (H x W x K) images.

        Each image is resized to ``image_dims``; with ``oversample`` the net sees the ten
        crops of :func:`caffe_compat.io.oversample` and their outputs are averaged, else
        only the centre crop (starting at ``int(image_dims / 2 - crop_dims / 2)``).
        """
        # Scale to standardize input dimensions.
        input_ = np.zeros((len(inputs), self.image_dims[0], self.image_dims[1],
                           inputs[0].shape[2]), dtype=np.float32)
        for ix, in_ in enumerate(inputs):
            input_[ix] = caffe_io.resize_image(in_, self.image_dims)

        if oversample:
            input_ = caffe_io.oversample(input_, self.crop_dims)
        else:
            center = np.array(self.image_dims) / 2.0
            crop = np.tile(center, (1, 2))[0] + np.concatenate([-self.crop_dims / 2.0,
                                                                 self.crop_dims / 2.0])
            crop = crop.astype(int)
            input_ = input_[:, crop[0]:crop[2], crop[1]:crop[3], :]

        # Classify
        in_name = self.inputs[0]
        caffe_in = np.zeros(np.array(input_.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, in_ in enumerate(input_):
            caffe_in[ix] = self.transformer.preprocess(in_name, in_)
        out = self.forward_all(**{in_name: caffe_in})
        predictions = out[self.outputs[0]]

        # For oversampling, average predictions across crops.
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1))
            predictions = predictions.mean(1)
        return predictions
