"""Caffe-era training/inference recipes (installed as ``caffe_compat.recipes``)."""
