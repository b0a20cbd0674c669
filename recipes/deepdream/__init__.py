"""DeepDream as Google's 2015 notebook ran it, on caffe-compat (``caffe_compat.recipes.deepdream``).

Two paths that make the same picture for the same seed:

* :mod:`.notebook` - the notebook's own functions (``make_step``, ``deepdream``,
  ``objective_L2``, ``objective_guide``) on the pycaffe API, numpy blob views and all;
* :mod:`.fast` - :class:`FastDreamer`, the same algorithm with every step on the MXNet
  device (GPU when ``caffe_compat.context`` chose one): truncated hybridized engine
  block, autograd, ``mx.nd`` jitter/normalisation/clipping.

    from caffe_compat.recipes import deepdream as dd
    img = dd.load_image(dd.sample_image())
    net = dd.load_dream_net(*dd.embedded_model())              # pycaffe Classifier
    out = dd.deepdream(net, img, end="inception_3b/output")     # the notebook
    fast = dd.FastDreamer.from_files(*dd.embedded_model(), end="inception_3b/output")
    out = fast.deepdream(img)                                   # same, on the device
    dd.save_image(out, "dream.jpg")

:mod:`.zoom` makes the notebook's zoom sequences; :mod:`.models` loads nets with the
notebook's ``force_backward`` patch and ships the embedded offline model;
``caffe-compat dream`` is the command line.
"""
from caffe_compat.recipes.deepdream.fast import FastDreamer, GuideObjective, l2_objective
from caffe_compat.recipes.deepdream.images import (guide_image, load_image, sample_image,
                                                   save_image)
from caffe_compat.recipes.deepdream.models import (EMBEDDED_END, GOOGLENET_END, NOTEBOOK_MEAN,
                                                   dream_prototxt, embedded_model,
                                                   load_dream_net, load_zoo_dream_net)
from caffe_compat.recipes.deepdream.notebook import (deepdream, deprocess, guide_features,
                                                     guide_objective, make_step,
                                                     objective_guide, objective_L2,
                                                     preprocess)
from caffe_compat.recipes.deepdream.targets import DreamTargetError, resolve_targets
from caffe_compat.recipes.deepdream.zoom import zoom_frame, zoom_sequence

__all__ = ["DreamTargetError", "EMBEDDED_END", "FastDreamer", "GOOGLENET_END", "GuideObjective",
           "NOTEBOOK_MEAN", "deepdream", "deprocess", "dream_prototxt", "embedded_model",
           "guide_features", "guide_image", "guide_objective", "l2_objective", "load_dream_net",
           "load_image", "load_zoo_dream_net", "make_step", "objective_L2", "objective_guide",
           "preprocess", "resolve_targets", "sample_image", "save_image", "zoom_frame",
           "zoom_sequence"]
