"""pycaffe's Python surface (``Net``, ``Blob``, ``io``, ``Classifier``, ``Detector``,
``NetSpec``) on the Gluon engine. Users reach it as ``import caffe_compat as caffe``."""
