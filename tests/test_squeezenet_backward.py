"""SqueezeNet v1.1's data gradient through a saturated softmax, against real BVLC Caffe
(tests/golden/squeezenet_v11_backward/README.md). The only difference is a MAX-pooling
near tie: where forward float noise picks another maximum of a window (seed 5: one
window of pool5) the gradient follows it; elsewhere every diff is Caffe's."""
from __future__ import annotations

import os

import numpy as np
import pytest

import caffe_compat as caffe
from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
from test_ssd_fork_golden import generated_blob

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "golden", "squeezenet_v11_backward", "reference.npz")
PROTOTXT = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpus", "DeepScale__SqueezeNet",
                                         "SqueezeNet_v1.1", "deploy.prototxt"))
BWD_TOL = 1e-4


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if not os.path.isfile(PROTOTXT):
        pytest.skip("corpus not present")
    d = tmp_path_factory.mktemp("sq")
    proto = d / "net.prototxt"
    with open(PROTOTXT) as handle:
        proto.write_text("force_backward: true\n" + handle.read())
    built = caffe.Net(str(proto), caffe.TEST)
    weights = d / "w.caffemodel"
    write_caffemodel(str(weights), [LayerWeights(l.name, l.type, [generated_blob(l.name, l.type, i, b.data.shape)
                                                                  for i, b in enumerate(l.blobs)])
                                    for l in built.layers if l.blobs])
    built.copy_from(str(weights))
    built.blobs["data"].reshape(1, 3, 227, 227)
    return built


def run(net, seed: int) -> None:
    x = np.random.RandomState(seed).uniform(0, 255, (1, 3, 227, 227)) - \
        np.array([104, 117, 123]).reshape(1, 3, 1, 1)
    net.blobs["data"].data[...] = x.astype(np.float32)
    net.forward()
    net.blobs["prob"].diff[...] = np.random.RandomState(seed + 2).randn(1, 1000, 1, 1)
    net.backward()


def test_data_gradient_equals_caffes_when_no_max_window_flips(net):
    z = np.load(REF)
    run(net, 0)
    assert rel(net.blobs["pool10"].data, z["seed0/data/pool10"]) <= 1e-5
    assert rel(net.blobs["data"].diff, z["seed0/diff/data"]) <= BWD_TOL


def test_the_seed5_difference_is_one_pool5_near_tie(net):
    z = np.load(REF)
    run(net, 5)
    caffe_in, ours_in = z["seed5/data/fire5/concat"], net.blobs["fire5/concat"].data
    assert rel(ours_in, caffe_in) <= 1e-5                        # forward agrees
    assert rel(net.blobs["pool5"].diff, z["seed5/diff/pool5"]) <= BWD_TOL
    # windows of pool5 (3x3 stride 2, ceil) whose maximum is a different element
    flipped = 0
    for i in range(14):
        for j in range(14):
            a = caffe_in[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(256, -1).argmax(-1)
            b = ours_in[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(256, -1).argmax(-1)
            flipped += int((a != b).sum())
    assert flipped == 1, flipped                                  # the exempted window
    assert rel(net.blobs["data"].diff, z["seed5/diff/data"]) > BWD_TOL
    # given Caffe's own forward values, our pool5 backward is Caffe's, bit for bit
    from caffe_compat.engine.build import build_layer
    import mxnet as mx
    pool5 = build_layer(net.block.graph.layers[net.block.graph.layer_index("pool5")].param,
                        [caffe_in.shape])
    x = mx.nd.array(caffe_in)
    x.attach_grad()
    with mx.autograd.record():
        y = pool5(x)[0]
    y.backward(mx.nd.array(z["seed5/diff/pool5"]))
    assert rel(x.grad.asnumpy(), z["seed5/diff/fire5/concat"]) <= 1e-6
