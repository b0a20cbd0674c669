"""Caffe protobuf schema (``caffe.proto``) and its generated module.

Use it the same way pycaffe users import ``caffe.proto.caffe_pb2``::

    from caffe_compat.proto import caffe_pb2

    net = caffe_pb2.NetParameter()

``caffe.proto`` is wire-compatible with BVLC Caffe master; regenerate
``caffe_pb2.py`` with ``python -m caffe_compat.proto.regenerate``.
"""
