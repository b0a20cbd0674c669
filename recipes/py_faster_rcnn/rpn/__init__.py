"""py-faster-rcnn's ``rpn`` package: ``proposal_layer`` and ``generate_anchors``.

Imported as the top-level ``rpn`` (``LIB_DIR`` on ``sys.path``), it hands over to
``caffe_compat.recipes.py_faster_rcnn.rpn`` so there is one copy of each module.
"""
if __name__ == "rpn":
    from caffe_compat.recipes.py_faster_rcnn import install_modules as _install
    _install()
