"""caffe-compat: Caffe's nets, weights and pycaffe API on MXNet Gluon.

``import caffe_compat as caffe`` and run pycaffe code unchanged.
"""
from caffe_compat.context import set_device, set_mode_cpu, set_mode_gpu  # noqa: F401
from caffe_compat.engine.fillers import set_random_seed  # noqa: F401
from caffe_compat.engine.layer import register_layer  # noqa: F401
from caffe_compat.errors import CaffeCompatError, LayerError, PrototxtError, WeightsFormatError  # noqa: F401

__version__ = "0.1.0"

TRAIN = 0
TEST = 1
