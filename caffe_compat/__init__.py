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
from caffe_compat.engine.layers.python_layer import PyLayer as Layer  # noqa: F401
from caffe_compat import io  # noqa: F401
from caffe_compat.pycaffe.classifier import Classifier  # noqa: F401
from caffe_compat.pycaffe.detector import Detector  # noqa: F401
from caffe_compat import proto  # noqa: F401
from caffe_compat.solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver,  # noqa: F401
                                  NesterovSolver, RMSPropSolver, SGDSolver, get_solver)
from caffe_compat.net_spec import NetSpec, layers, params, to_proto  # noqa: F401
from caffe_compat import coord_map, draw  # noqa: F401

__version__ = "0.1.0"

#: pycaffe's phase constants (caffe_pb2.TRAIN / caffe_pb2.TEST).
TRAIN = 0
TEST = 1


def install_as_caffe() -> None:
    """Make ``import caffe`` (and ``caffe.proto``, ``caffe.io``, ``caffe.coord_map``,
    ``caffe.draw``, ``caffe.net_spec``) resolve to caffe-compat, for scripts whose
    ``from caffe import layers as L`` lines should run unchanged::

        import caffe_compat; caffe_compat.install_as_caffe()
        import caffe
        from caffe import layers as L, params as P
    """
    import sys
    from caffe_compat import net_spec
    from caffe_compat.proto import caffe_pb2
    this = sys.modules[__name__]
    sys.modules["caffe"] = this
    sys.modules["caffe.proto"] = proto
    sys.modules["caffe.proto.caffe_pb2"] = caffe_pb2
    sys.modules["caffe.io"] = io
    sys.modules["caffe.coord_map"] = coord_map
    sys.modules["caffe.draw"] = draw
    sys.modules["caffe.net_spec"] = net_spec
