"""py-faster-rcnn's ``rpn/proposal_layer.py``: ``ProposalLayer``, the RPN's Python layer.

Bottoms ``rpn_cls_prob_reshape (1, 2A, H, W)``, ``rpn_bbox_pred (1, 4A, H, W)``,
``im_info (1, 3)``; tops ``rois (R, 5)`` and optionally ``scores (R, 1)``.
``param_str`` is the original's YAML, e.g. ``"'feat_stride': 16"`` (``scales`` and
``ratios`` are also read, as several forks do); the NMS/top-N/min-size settings come
from ``fast_rcnn.config.cfg.TRAIN`` or ``.TEST`` by the layer's phase.
"""
from __future__ import annotations

import ast

import numpy as np

import caffe_compat as caffe
from caffe_compat.engine.layers.rcnn import rpn_proposals
from caffe_compat.recipes.py_faster_rcnn.fast_rcnn.config import cfg
from caffe_compat.recipes.py_faster_rcnn.rpn.generate_anchors import generate_anchors


def parse_param_str(text: str) -> dict:
    """``param_str`` as py-faster-rcnn reads it (YAML), or as a Python dict literal
    when PyYAML is not installed.

    >>> parse_param_str("'feat_stride': 16")
    {'feat_stride': 16}
    >>> parse_param_str("'scales': !!python/tuple [4, 8, 16, 32]")
    {'scales': (4, 8, 16, 32)}
    """
    try:
        import yaml
    except ImportError:
        body = text.strip()
        return ast.literal_eval(body if body.startswith("{") else "{" + body + "}")
    return yaml.load(text, Loader=_param_str_loader(yaml)) or {}


def _param_str_loader(yaml):
    """PyYAML's safe loader plus ``!!python/tuple``: py-faster-rcnn's COCO nets write
    ``'scales': !!python/tuple [4, 8, 16, 32]``, which its ``yaml.load`` (PyYAML < 5.1,
    full loader) read as a tuple. Only that tag is added; nothing else becomes code."""
    class ParamStrLoader(yaml.SafeLoader):
        pass

    ParamStrLoader.add_constructor(
        "tag:yaml.org,2002:python/tuple",
        lambda loader, node: tuple(loader.construct_sequence(node)))
    return ParamStrLoader


def phase_key(phase) -> str:
    """'TRAIN' or 'TEST' for caffe.TRAIN/caffe.TEST (or the strings themselves)."""
    if phase in (0, "TRAIN", "0"):
        return "TRAIN"
    return "TEST"


class ProposalLayer(caffe.Layer):
    """Outputs object proposals: anchors shifted over the score map, moved by the
    predicted deltas, clipped, size-filtered, top-N, NMS, top-N (py-faster-rcnn)."""

    def setup(self, bottom, top):
        text = getattr(self, "param_str", "") or getattr(self, "param_str_", "")
        params = parse_param_str(text)
        self._feat_stride = params["feat_stride"]
        self._anchors = generate_anchors(scales=np.array(params.get("scales", (8, 16, 32))),
                                         ratios=params.get("ratios", (0.5, 1, 2)))
        self._num_anchors = self._anchors.shape[0]
        top[0].reshape(1, 5)
        if len(top) > 1:
            top[1].reshape(1, 1, 1, 1)

    def forward(self, bottom, top):
        if bottom[0].data.shape[0] != 1:
            raise ValueError("Only single item batches are supported")
        settings = cfg[phase_key(self.phase)]
        boxes, scores = rpn_proposals(
            bottom[0].data[0, self._num_anchors:], bottom[1].data[0], bottom[2].data[0, :],
            self._anchors, self._feat_stride, settings.RPN_PRE_NMS_TOP_N,
            settings.RPN_POST_NMS_TOP_N, settings.RPN_NMS_THRESH, settings.RPN_MIN_SIZE)
        blob = np.hstack([np.zeros((boxes.shape[0], 1), np.float32), boxes])
        top[0].reshape(*blob.shape)
        top[0].data[...] = blob
        if len(top) > 1:
            top[1].reshape(scores.shape[0], 1)
            top[1].data[...] = scores[:, None]

    def backward(self, top, propagate_down, bottom):
        """This layer does not propagate gradients."""

    def reshape(self, bottom, top):
        """Reshaping happens during the call to forward."""


__all__ = ["ProposalLayer", "parse_param_str", "phase_key"]
