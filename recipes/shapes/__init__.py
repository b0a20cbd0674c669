"""Synthetic shape scenes and the two small models trained on them.

The offline stand-ins of ``caffe-compat demo``'s R-CNN and FCN stages, made with the
recipes' own training code (see :mod:`.make_models`):

* :mod:`.scenes` -- circles, squares and triangles drawn on scikit-image's bundled
  photographs, with boxes and class maps, saved as PASCAL VOC folders;
* :mod:`.models` -- the shipped files (``data/``): the R-CNN (fine-tuned classifier,
  SVMs as ``fc-rcnn``, bounding-box regressors) and the FCN-8s, and the bundled test
  scenes;
* :mod:`.make_models` -- regenerates everything in ``data/`` deterministically.
"""
