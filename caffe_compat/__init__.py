"""caffe-compat: Caffe's nets, weights and pycaffe API on MXNet Gluon.

``import caffe_compat as caffe`` and pycaffe code runs unchanged::

    import caffe_compat as caffe
    caffe.set_mode_cpu()
    net = caffe.Net("deploy.prototxt", "weights.caffemodel", caffe.TEST)
    net.blobs["data"].data[...] = image
    prob = net.forward()["prob"]
"""
from caffe_compat.context import set_device, set_mode_cpu, set_mode_gpu  # noqa: F401
from caffe_compat.engine.fillers import set_random_seed  # noqa: F401
from caffe_compat.engine.layer import register_layer  # noqa: F401
from caffe_compat.errors import (CaffeCompatError, LayerError, PrototxtError,  # noqa: F401
                                 WeightsFormatError)
from caffe_compat.pycaffe.net import Blob, Net  # noqa: F401
from caffe_compat import io  # noqa: F401
from caffe_compat.pycaffe.classifier import Classifier  # noqa: F401
from caffe_compat.pycaffe.detector import Detector  # noqa: F401
from caffe_compat import proto  # noqa: F401

__version__ = "0.1.0"

#: pycaffe's phase constants (caffe_pb2.TRAIN / caffe_pb2.TEST).
TRAIN = 0
TEST = 1
