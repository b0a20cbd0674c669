"""R-CNN recipe (Girshick et al. 2014): region proposals by selective search, then per-region CNN features.

Modules (import them directly; importing this package loads nothing heavy):

* ``selective_search``: the proposals (Uijlings et al. 2013);
* ``detector``: :class:`~caffe_compat.recipes.rcnn.detector.RCNNDetector` -- batched
  scoring, per-class NMS, top-k (its helpers' names stay importable from it);
* ``proposals``: selective search windows per image, proposal files;
  ``selective_search_windows`` is the proposal callable for pycaffe's
  ``Detector.detect_selective_search``;
* ``crops``: warped context crops as ``caffe.Detector.crop``;
* ``results``: one image's detections, their JSON and drawing; ``labels``: class names;
* ``constants``: R-CNN's settings and ``DetectionError``;
* ``nms``: +1-pixel IoU and R-CNN's greedy NMS;
* ``bbox_regression``: class-specific ridge regressors on pool5;
* ``svm``: per-class linear SVMs with hard negative mining;
* ``features``: per-image feature caches (HDF5);
* ``train``: window files for WindowData fine-tuning, the fine-tuning net and solver,
  SVM and regressor training from caches, the ``fc-rcnn`` deploy net + caffemodel, VOC AP;
* ``voc_eval``: PASCAL VOC AP through GluonCV's metrics;
* ``demo``: the ``caffe-compat demo`` stage.

``from caffe_compat.recipes.rcnn import selective_search`` gives the selective search
module (its function is ``selective_search.selective_search``).
"""
