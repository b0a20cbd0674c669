"""LeNet trains from scratch to high accuracy on CPU, as Caffe's MNIST example does.

The data are digits the test renders with OpenCV's Hershey fonts (random font, scale,
thickness, shift and rotation), 28x28 like MNIST, scaled by 1/256 into HDF5 files;
the nets and solver are Caffe's examples/mnist lenet_train_test / lenet_solver
(with HDF5Data instead of the MNIST LMDB). The snapshot then loads in cv2.dnn with the
deploy net and gives the same predictions.
"""
from __future__ import annotations

import textwrap

import cv2
import h5py
import numpy as np

import caffe_compat as caffe

FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL]


def render_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    images = np.zeros((n, 1, 28, 28), np.float32)
    labels = rng.randint(0, 10, n).astype(np.float32)
    for i, d in enumerate(labels.astype(int)):
        canvas = np.zeros((56, 56), np.uint8)
        font = FONTS[rng.randint(len(FONTS))]
        scale = rng.uniform(1.2, 1.8) * (1.6 if font == cv2.FONT_HERSHEY_PLAIN else 1.0)
        thickness = int(rng.randint(2, 5))
        (w, h), _ = cv2.getTextSize(str(d), font, scale, thickness)
        org = (28 - w // 2 + rng.randint(-3, 4), 28 + h // 2 + rng.randint(-3, 4))
        cv2.putText(canvas, str(d), org, font, scale, 255, thickness, cv2.LINE_AA)
        m = cv2.getRotationMatrix2D((28, 28), rng.uniform(-15, 15), 1.0)
        canvas = cv2.warpAffine(canvas, m, (56, 56))
        images[i, 0] = cv2.resize(canvas, (28, 28), interpolation=cv2.INTER_AREA)
    return images * 0.00390625, labels       # Caffe's MNIST scale: 1/256


LENET_BODY = '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
'''


def test_lenet_trains_from_scratch_and_snapshot_runs_in_opencv(tmp_path):
    train_x, train_y = render_digits(3000, seed=1)
    test_x, test_y = render_digits(500, seed=2)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["data"], f["label"] = x, y
        (tmp_path / f"{name}.txt").write_text(str(tmp_path / f"{name}.h5") + "\n")
    (tmp_path / "lenet_train_test.prototxt").write_text('name: "LeNet"\n' + textwrap.dedent(f'''
        layer {{ name: "mnist" type: "HDF5Data" top: "data" top: "label" include {{ phase: TRAIN }}
          hdf5_data_param {{ source: "{tmp_path / 'train.txt'}" batch_size: 64 shuffle: true }} }}
        layer {{ name: "mnist" type: "HDF5Data" top: "data" top: "label" include {{ phase: TEST }}
          hdf5_data_param {{ source: "{tmp_path / 'test.txt'}" batch_size: 100 }} }}
    ''') + LENET_BODY + textwrap.dedent('''
        layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
          include { phase: TEST } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
    '''))
    (tmp_path / "lenet_solver.prototxt").write_text(textwrap.dedent(f'''
        net: "{tmp_path / 'lenet_train_test.prototxt'}"
        test_iter: 5
        test_interval: 200
        base_lr: 0.01
        momentum: 0.9
        weight_decay: 0.0005
        lr_policy: "inv"
        gamma: 0.0001
        power: 0.75
        display: 100
        max_iter: 400
        snapshot: 400
        snapshot_prefix: "{tmp_path / 'lenet'}"
        random_seed: 1
    '''))
    solver = caffe.get_solver(str(tmp_path / "lenet_solver.prototxt"))
    solver.solve()
    scores = solver.test(0)
    assert scores["accuracy"] >= 0.95, scores

    deploy = tmp_path / "lenet.prototxt"
    deploy.write_text('name: "LeNet"\nlayer { name: "data" type: "Input" top: "data" '
                      'input_param { shape { dim: 100 dim: 1 dim: 28 dim: 28 } } }\n' + LENET_BODY +
                      'layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }\n')
    weights = str(tmp_path / "lenet_iter_400.caffemodel")
    ours = caffe.Net(str(deploy), weights, caffe.TEST).forward(data=test_x[:100])["prob"]
    cv = cv2.dnn.readNetFromCaffe(str(deploy), weights)
    cv.setInput(test_x[:100])
    theirs = cv.forward()
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) <= 1e-5
    assert (ours.argmax(1) == test_y[:100]).mean() >= 0.95
