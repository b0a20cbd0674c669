"""Caffe's data layers: Data (LMDB/LevelDB), ImageData, HDF5Data, HDF5Output,
WindowData, MemoryData and DummyData, one module per job:

==================  ==============================================================
``base``            HostDataLayer / PrefetchingDataLayer, error factory, seeded rng
``databases``       LMDB and LevelDB opened read-only, looping key-order cursor
``datum``           Datum records decoded and batched (DataLayer::load_batch)
``data_layer``      the Data layer
``image_data``      ImageData, its list-file parser and image reader
``hdf5``            HDF5Data and HDF5Output
``window_data``     WindowData, its window-file parser and crop geometry
``memory_data``     MemoryData
``dummy_data``      DummyData
==================  ==============================================================

A data layer is a *source layer*: it has no bottoms and the net feeds its tops from
the host. Each layer follows Caffe's ``DataLayerSetUp`` in ``setup`` (open the
source, read the first record, declare the top shapes) and produces batches with
``next_batch() -> [numpy float32 array per top]``, which pycaffe's ``Net.forward``
calls before running the layers above. Called on its own, ``layer(*fed)`` passes the
fed arrays through (like ``Input``), so a hybridized net takes the batches as inputs.

Data, ImageData and WindowData load in a background thread
(:class:`caffe_compat.engine.prefetch.Prefetcher`, ``data_param.prefetch`` batches
ahead, default 4) like Caffe's BasePrefetchingDataLayer; HDF5Data, MemoryData and
DummyData run in the caller as in Caffe. Randomness (shuffles, crops, mirrors, window
sampling, ``rand_skip``) is seeded from ``caffe.set_random_seed``.

>>> import caffe_compat as caffe                                      # doctest: +SKIP
>>> net = caffe.Net("train_val.prototxt", caffe.TRAIN)               # doctest: +SKIP
>>> net.forward()            # reads the next batch from the LMDB     # doctest: +SKIP

Every error names the layer and, for data problems, the file and line (list files,
window files, HDF5 source lists) or the database and record key.
"""
from caffe_compat.engine.layers.data.base import HostDataLayer, PrefetchingDataLayer  # noqa: F401
from caffe_compat.engine.layers.data.data_layer import DataLayer  # noqa: F401
from caffe_compat.engine.layers.data.dummy_data import DummyDataLayer  # noqa: F401
from caffe_compat.engine.layers.data.hdf5 import HDF5DataLayer, HDF5OutputLayer  # noqa: F401
from caffe_compat.engine.layers.data.image_data import (  # noqa: F401
    ImageDataLayer, parse_image_list, read_image)
from caffe_compat.engine.layers.data.memory_data import MemoryDataLayer  # noqa: F401
from caffe_compat.engine.layers.data.window_data import (  # noqa: F401
    WindowDataLayer, parse_window_file, window_geometry)
