"""Net::Init decisions reproduced by engine/graph.py that real files depend on."""
from __future__ import annotations

import numpy as np

import caffe_compat as caffe

TOPLESS_LOSS = '''name: "t"
layer { name: "in" type: "Input" top: "x" top: "label"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }
layer { name: "loss2" type: "EuclideanLoss" bottom: "x" bottom: "x" }
'''


def test_loss_layer_without_top_gets_caffes_automatic_top(tmp_path):
    """AutoTopBlobs: DepthwiseConvolution's test nets end in a SoftmaxWithLoss with no top."""
    path = tmp_path / "net.prototxt"
    path.write_text(TOPLESS_LOSS)
    net = caffe.Net(str(path), caffe.TRAIN)
    # Caffe names every such top "(automatic)"; the second one here is told apart
    assert "(automatic)" in net.blobs and "(automatic)[loss2]" in net.blobs
    # anonymous tops are not net outputs (Caffe keeps them out of available_blobs)
    assert net.outputs == []
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    label = np.array([0, 1, 4, 2], np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = label
    net.forward()
    logits = net.blobs["ip"].data.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -np.log(p[np.arange(4), label.astype(int)]).mean()
    assert abs(float(net.blobs["(automatic)"].data.ravel()[0]) - expected) < 1e-5
    # the loss weight 1 of a loss layer applies to its anonymous top: gradients flow
    net.backward()
    assert np.abs(net.params["ip"][0].diff).sum() > 0
