"""Localisation and dense evaluation with a Caffe classifier
(``caffe_compat.recipes.localize``), for any zoo model or prototxt + caffemodel.

* :mod:`.surgery` - Caffe's net_surgery example, automated: InnerProduct layers become
  convolutions (``fc6`` -> ``fc6-conv``, kernel = its input's spatial size) so the net
  runs over a larger image and returns a class-score map (OverFeat);
* :mod:`.heatmap` - that map for one class, upsampled to the image and overlaid;
* :mod:`.head`, :mod:`.data`, :mod:`.train` - a box-regression head (L2 loss,
  class-agnostic or one box per class) fine-tuned with Caffe's SGD solver on a VOC
  folder (:mod:`.voc`), evaluated by IoU (:mod:`.boxes`).

::

    from caffe_compat.recipes import localize as loc
    from caffe_compat.recipes.visualize import NetSource, save_png
    src = NetSource.from_zoo("bvlc_reference_caffenet")
    hm = loc.class_heatmap(src, "cat.jpg", class_index=281)
    save_png("heat.png", hm.picture())
    model = loc.train_localizer(src, "VOC2007", "runs/loc", split="trainval", iters=2000)
    print(model.evaluate("VOC2007", split="test").summary())

Command lines: ``caffe-compat heatmap IMG --model M --class K -o OUT.png`` and
``caffe-compat localize train|eval|predict``.
"""
from caffe_compat.recipes.localize.boxes import decode, encode, iou
from caffe_compat.recipes.localize.head import HEAD, localization_params, score_layer
from caffe_compat.recipes.localize.heatmap import (Heatmap, class_heatmap, heatmap_target,
                                                   upsample_map)
from caffe_compat.recipes.localize.surgery import (FullyConvolutional, deploy_param,
                                                   fully_convolutional,
                                                   fully_convolutional_param, transplant_fc)
from caffe_compat.recipes.localize.train import (LocalizationScore, Localizer, TrainLog,
                                                 train_localizer)
from caffe_compat.recipes.localize.voc import (Annotation, VOCObject, class_names, load_dataset,
                                               main_object, read_annotation)

__all__ = ["Annotation", "FullyConvolutional", "HEAD", "Heatmap", "LocalizationScore",
           "Localizer", "TrainLog", "VOCObject", "class_heatmap", "class_names", "decode",
           "deploy_param", "encode", "fully_convolutional", "fully_convolutional_param",
           "heatmap_target", "iou", "load_dataset", "localization_params", "main_object",
           "read_annotation", "score_layer", "train_localizer", "transplant_fc",
           "upsample_map"]
