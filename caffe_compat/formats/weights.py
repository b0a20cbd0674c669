"""One entry point for trained weights, whatever the file: ``read_weights(path)``.

Dispatches on content (HDF5 signature) like Caffe's ``CopyTrainedLayersFrom``, which
treats ``*.h5`` as HDF5 and everything else as a binary NetParameter.

>>> for layer in read_weights("bvlc_alexnet.caffemodel"):    # doctest: +SKIP
...     print(layer.name, [b.shape for b in layer.blobs])
"""
from __future__ import annotations

import os


def read_weights(path: str) -> list:
    """Layer weights (objects with ``name``, ``type``, ``blobs``) from .caffemodel or .h5.

    A model without layers (an empty .caffemodel is an empty NetParameter) gives ``[]``,
    as Caffe's CopyTrainedLayersFrom copies nothing from it.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    from caffe_compat.formats.hdf5_weights import is_hdf5, read_hdf5_weights
    if is_hdf5(path):
        return list(read_hdf5_weights(path))
    from caffe_compat.formats.caffemodel import read_caffemodel
    return list(read_caffemodel(path).layers)
