"""Fully convolutional networks (Long, Shelhamer, Darrell, CVPR 2015 / PAMI 2016) as
fcn.berkeleyvision.org runs them: infer, surgery, solve, score.

Modules (each mirrors one file of the original repository):

* :mod:`.infer` -- ``infer.py``: any image size, mean subtraction, BGR, argmax;
  :class:`~.infer.Segmenter` runs many images through one loaded net and writes
  indexed PNGs with the VOC palette (:mod:`.palette`) and overlays;
* :mod:`.surgery` -- ``surgery.py``: ``transplant``, ``interp``, ``upsample_filt``,
  ``expand_score``;
* :mod:`.score` -- ``score.py``: ``fast_hist``, ``compute_hist``, ``seg_tests`` and the
  metrics (overall/mean accuracy, mean IU, frequency-weighted IU);
* :mod:`.solve` -- the ``solve.py`` flow: initialise from VGG-16 by transplant,
  bilinear ``up*`` layers, train with FCN's SGD settings, score periodically;
* :mod:`.layers` -- the Python data layers of ``voc_layers.py``, ``siftflow_layers.py``,
  ``nyud_layers.py``, ``pascalcontext_layers.py`` (same class names and param_str);
* :mod:`.nets` -- NetSpec builders regenerating every model's train/val prototxts.

The original prototxts say ``python_param { module: "voc_layers" ... }``. Either
write ``module: "caffe_compat.recipes.fcn.layers"`` (what :mod:`.nets` does with
``module=nets.LAYERS_MODULE``), or call :func:`install_layer_modules` once before
building the net, which makes ``voc_layers``, ``siftflow_layers``, ``nyud_layers``,
``pascalcontext_layers`` (and ``layers``, voc-fcn-alexnet's name, on request)
importable as caffe-compat's implementation::

    import caffe_compat as caffe
    from caffe_compat.recipes import fcn
    fcn.install_layer_modules()
    solver = caffe.SGDSolver("voc-fcn8s/solver.prototxt")   # the original files
"""
from __future__ import annotations

import sys
from typing import Iterable

#: The module names the original FCN prototxts give in ``python_param.module``.
ORIGINAL_LAYER_MODULES = ("voc_layers", "siftflow_layers", "nyud_layers", "pascalcontext_layers")


def install_layer_modules(names: Iterable[str] = ORIGINAL_LAYER_MODULES,
                          replace: bool = False) -> list[str]:
    """Register caffe-compat's FCN data layers under the original module names in
    ``sys.modules`` so that ``module: "voc_layers"`` (etc.) resolves to them.

    A name already imported (say the user's own ``voc_layers.py``) is left alone
    unless ``replace=True``. Pass ``names=("layers",)`` for voc-fcn-alexnet's
    ``module: "layers"``. Returns the names now pointing at caffe-compat's layers.
    """
    from caffe_compat.recipes.fcn import layers
    installed = []
    for name in names:
        if name in sys.modules and sys.modules[name] is not layers and not replace:
            continue
        sys.modules[name] = layers
        installed.append(name)
    return installed


__all__ = ["ORIGINAL_LAYER_MODULES", "install_layer_modules"]
