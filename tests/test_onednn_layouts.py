"""Layers that cut arrays after a Convolution never crash on oneDNN's blocked layout.

MXNet 1.9.1's oneDNN ``slice`` dies with SIGFPE (or "could not construct a sub-memory")
when asked for a channel range of a Convolution's output that is not a whole block. The
corpus hit it in cifar10_quick, the DenseNets, fzliu's GoogLeNet (AVE pooling with a ceil
overhang) and ShuffleNet (conv -> MAX pool -> AVE pool). Each case runs in a child process
so a regression is a failure naming the case, not the end of the test run; the numbers are
compared with OpenCV's Caffe importer on the same files.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent('''
    import sys, numpy as np, cv2
    import caffe_compat as caffe
    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    path, weights, out_blob, out_layer = sys.argv[1:5]
    net = caffe.Net(path, caffe.TEST)
    rng = np.random.default_rng(0)
    layers = []
    for layer in net.layers:
        if layer.blobs:
            layers.append(LayerWeights(layer.name, layer.type,
                          [rng.standard_normal(b.data.shape).astype(np.float32) * 0.1
                           for b in layer.blobs]))
    write_caffemodel(weights, layers)
    net.copy_from(weights)
    feeds = {n: rng.uniform(-1, 1, net.blobs[n].data.shape).astype(np.float32)
             for n in net.inputs}
    for n, x in feeds.items():
        net.blobs[n].data[...] = x
    ours = net.forward()[out_blob].copy()
    net.blobs[out_blob].diff[...] = 1.0
    grad = net.backward()["data"]
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    cv = cv2.dnn.readNetFromCaffe(path, weights)
    for n, x in feeds.items():
        cv.setInput(x, n)
    ref = cv.forward(out_layer)
    err = np.linalg.norm(ours - ref.reshape(ours.shape)) / np.linalg.norm(ref)
    print(f"rel {err:.3g}")
    assert err <= 1e-5, err
''')

HEAD = ('name: "t" force_backward: true\n'
        'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 '
        'dim: %d dim: %d } } }\n'
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
        'num_output: %d kernel_size: 3 stride: 2 pad: 1 } }\n'
        'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n')

CASES = {
    # cifar10_quick's pool2 / GoogLeNet's pool1: AVE with a ceil overhang after a conv
    "ave_overhang": (HEAD % (32, 32, 64) +
                     'layer { name: "p" type: "Pooling" bottom: "c" top: "p" '
                     'pooling_param { pool: AVE kernel_size: 3 stride: 2 } }\n', "p"),
    # ShuffleNet's stem: conv(24) -> MAX pool -> AVE pool at 224x224
    "shufflenet_stem": (HEAD % (224, 224, 24) +
                        'layer { name: "m" type: "Pooling" bottom: "c" top: "m" '
                        'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n'
                        'layer { name: "p" type: "Pooling" bottom: "m" top: "p" '
                        'pooling_param { pool: AVE kernel_size: 3 stride: 2 } }\n', "p"),
    # a Crop on the channel axis (offset 3, not a block boundary)
    "crop_channels": (HEAD % (20, 20, 24) +
                      'layer { name: "ref" type: "Input" top: "ref" input_param { shape { '
                      'dim: 1 dim: 5 dim: 8 dim: 8 } } }\n'
                      'layer { name: "p" type: "Crop" bottom: "c" bottom: "ref" top: "p" '
                      'crop_param { axis: 1 offset: 3 offset: 1 offset: 2 } }\n', "p"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cut_after_convolution_runs_and_matches_opencv(case, tmp_path):
    text, out = CASES[case]
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "w.caffemodel"),
                           out, out], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (f"{case}: child exited with {proc.returncode}\n"
                                  f"{proc.stdout}\n{proc.stderr[-3000:]}")
