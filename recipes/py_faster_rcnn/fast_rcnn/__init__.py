"""py-faster-rcnn's ``fast_rcnn`` package: ``config``, ``bbox_transform``, ``nms_wrapper``.

Imported as the top-level ``fast_rcnn`` (``LIB_DIR`` on ``sys.path``), it hands over to
``caffe_compat.recipes.py_faster_rcnn.fast_rcnn`` so there is one ``cfg``.
"""
if __name__ == "fast_rcnn":
    from caffe_compat.recipes.py_faster_rcnn import install_modules as _install
    _install()
