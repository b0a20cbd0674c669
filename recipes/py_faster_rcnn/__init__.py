"""py-faster-rcnn's Python layers (Ren, He, Girshick, Sun, NIPS 2015;
github.com/rbgirshick/py-faster-rcnn) under their original module paths.

py-faster-rcnn puts its ``lib/`` directory on ``sys.path``, so its test prototxts say::

    layer { name: 'proposal' type: 'Python'
            bottom: 'rpn_cls_prob_reshape' bottom: 'rpn_bbox_pred' bottom: 'im_info'
            top: 'rois'
            python_param { module: 'rpn.proposal_layer' layer: 'ProposalLayer'
                           param_str: "'feat_stride': 16" } }

This package is caffe-compat's own implementation of those modules: ``rpn.proposal_layer``
(``ProposalLayer``), ``rpn.generate_anchors``, ``fast_rcnn.config`` (``cfg``, with the
RPN settings the layer reads per phase), ``fast_rcnn.bbox_transform`` and
``fast_rcnn.nms_wrapper``. Make ``module: 'rpn.proposal_layer'`` resolve to it either way:

* call :func:`install_modules` once (registers ``rpn``, ``fast_rcnn`` and their modules
  in ``sys.modules``)::

      import caffe_compat as caffe
      from caffe_compat.recipes import py_faster_rcnn
      py_faster_rcnn.install_modules()
      net = caffe.Net("faster_rcnn_test.pt", "VGG16_faster_rcnn_final.caffemodel", caffe.TEST)

* or put :data:`LIB_DIR` (this directory) on ``sys.path`` as py-faster-rcnn's
  ``_init_paths.py`` does with ``lib/``; importing ``rpn`` or ``fast_rcnn`` from there
  installs the same modules, so ``from fast_rcnn.config import cfg`` and the layer share
  one ``cfg``.

The numbers come from :mod:`caffe_compat.engine.layers.rcnn` (anchors, box decoding,
clipping, NMS), which the C++ ``Proposal`` layer uses as well.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

#: The directory to put on ``sys.path`` in place of py-faster-rcnn's ``lib/``.
LIB_DIR = os.path.dirname(os.path.abspath(__file__))

_CANONICAL = __name__
#: Original module name -> this package's module.
ORIGINAL_MODULES = {
    "rpn": "rpn",
    "rpn.proposal_layer": "rpn.proposal_layer",
    "rpn.generate_anchors": "rpn.generate_anchors",
    "fast_rcnn": "fast_rcnn",
    "fast_rcnn.config": "fast_rcnn.config",
    "fast_rcnn.bbox_transform": "fast_rcnn.bbox_transform",
    "fast_rcnn.nms_wrapper": "fast_rcnn.nms_wrapper",
}


def _ours(module) -> bool:
    path = getattr(module, "__file__", None) or ""
    return os.path.abspath(path).startswith(LIB_DIR + os.sep)


def install_modules(names: Iterable[str] = tuple(ORIGINAL_MODULES),
                    replace: bool = False) -> list[str]:
    """Register this package's modules under py-faster-rcnn's names in ``sys.modules``.

    A name already bound to another module (the user's own ``rpn`` package, say) is
    left alone unless ``replace=True``. Returns the names now pointing here.
    """
    installed = []
    for name in names:
        module = importlib.import_module(f"{_CANONICAL}.{ORIGINAL_MODULES[name]}")
        current = sys.modules.get(name)
        if current is not None and current is not module and not replace and not _ours(current):
            continue
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent and sys.modules.get(parent) is not None:
            setattr(sys.modules[parent], child, module)
        installed.append(name)
    return installed


__all__ = ["LIB_DIR", "ORIGINAL_MODULES", "install_modules"]
