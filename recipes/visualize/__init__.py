"""Seeing what a Caffe net looks at (``caffe_compat.recipes.visualize``), for any zoo
model or any prototxt + caffemodel.

* :mod:`.saliency` - class saliency maps (Simonyan et al. 2014): max over channels of
  |d class score / d image|; :func:`explain_image` is the ``saliency`` command's core;
* :mod:`.backprop` - gradients of any neuron w.r.t. the image through the engine's
  backward, with the ReLU rule of plain backprop, the deconvnet (Zeiler & Fergus 2013)
  or guided backpropagation (Springenberg et al. 2015), chosen per call;
* :mod:`.patches` - top-activating image patches of a neuron over a folder, cut at the
  unit's receptive field (:mod:`.receptive_field`);
* :mod:`.class_model` - class-model visualisation by L2-regularised gradient ascent;
* :mod:`.render` - pictures: side-by-side, maps, gradients, overlays, PNG files.

::

    from caffe_compat.recipes import visualize as vis
    src = vis.NetSource.from_zoo("bvlc_reference_caffenet")
    ex = vis.explain_image(src, "cat.jpg", method="guided")              # predicted class
    vis.save_png("cat_guided.png", vis.explanation_picture(ex))
    patches = vis.top_patches(src, "photos/", "conv5", unit=12)
    model = vis.class_model(src.load(), 281, iters=200)

``caffe-compat saliency IMG --model M [--class K | --layer L --unit U]
[--method saliency|deconvnet|guided] -o OUT.png`` is the command line.
"""
from caffe_compat.recipes.visualize.backprop import (METHODS, GradientResult, Target,
                                                     activation, class_gradient, class_head,
                                                     class_score_target, gradient, layer_target,
                                                     relu_backward, resolve_target,
                                                     unit_gradient, unit_head)
from caffe_compat.recipes.visualize.class_model import ClassModelResult, class_model
from caffe_compat.recipes.visualize.patches import Patch, list_images, patch_picture, top_patches
from caffe_compat.recipes.visualize.receptive_field import ReceptiveField, receptive_field
from caffe_compat.recipes.visualize.render import (gradient_picture, jet, map_picture, overlay,
                                                   save_png, side_by_side, to_uint8)
from caffe_compat.recipes.visualize.saliency import (PICTURE_METHODS, Explanation,
                                                     class_saliency, explain_image,
                                                     explanation_picture, saliency_map)
from caffe_compat.recipes.visualize.source import NetSource, Preprocessing, load_image


__all__ = ["ClassModelResult", "Explanation", "GradientResult", "METHODS", "NetSource",
           "PICTURE_METHODS", "Patch", "Preprocessing", "ReceptiveField", "Target",
           "activation", "class_gradient", "class_head", "class_model", "class_saliency",
           "class_score_target", "explain_image", "explanation_picture", "gradient",
           "gradient_picture", "jet", "layer_target", "list_images", "load_image",
           "map_picture", "overlay", "patch_picture", "receptive_field", "relu_backward",
           "resolve_target", "saliency_map", "save_png", "side_by_side", "to_uint8",
           "top_patches", "unit_gradient", "unit_head"]
