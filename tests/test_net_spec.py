"""caffe_compat.net_spec reproduces pycaffe's NetSpec / layers / params.

The generators below are the ones in Caffe's and FCN's own examples; the expected
texts are what pycaffe writes for them (real files under tests/data/net_spec/, see
README.md there, plus literal texts written out from Caffe's schema order).
"""
import os
import re
import tempfile
from collections import Counter

import pytest
from google.protobuf import text_format

from caffe_compat import net_spec
from caffe_compat.coord_map import crop
from caffe_compat.net_spec import NetSpec, layers as L, params as P
from caffe_compat.proto import caffe_pb2

DATA = os.path.join(os.path.dirname(__file__), "data", "net_spec")


def read_fixture(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


def structure(net):
    return [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer]


# ---------------------------------------------------------------------------
# LeNet, examples/01-learning-lenet.ipynb
# ---------------------------------------------------------------------------

def lenet(lmdb, batch_size):
    # The notebook's generator as it was when examples/mnist/lenet_auto_train.prototxt
    # was written with it (layer names ip1/relu1/ip2).
    n = NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=lmdb,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


# What str(lenet(...)) is with this protobuf runtime. Only the float line differs
# from Caffe's checked-in file, which an older protobuf printed as 0.00392156862745
# (the same float32 value; see test_lenet_matches_caffes_generated_file).
LENET_TEXT = '''layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  transform_param {
    scale: 0.00392156886
  }
  data_param {
    source: "examples/mnist/mnist_train_lmdb"
    batch_size: 64
    backend: LMDB
  }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param {
    num_output: 20
    kernel_size: 5
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param {
    pool: MAX
    kernel_size: 2
    stride: 2
  }
}
layer {
  name: "conv2"
  type: "Convolution"
  bottom: "pool1"
  top: "conv2"
  convolution_param {
    num_output: 50
    kernel_size: 5
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "pool2"
  type: "Pooling"
  bottom: "conv2"
  top: "pool2"
  pooling_param {
    pool: MAX
    kernel_size: 2
    stride: 2
  }
}
layer {
  name: "ip1"
  type: "InnerProduct"
  bottom: "pool2"
  top: "ip1"
  inner_product_param {
    num_output: 500
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "ip1"
  top: "ip1"
}
layer {
  name: "ip2"
  type: "InnerProduct"
  bottom: "ip1"
  top: "ip2"
  inner_product_param {
    num_output: 10
    weight_filler {
      type: "xavier"
    }
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "ip2"
  bottom: "label"
  top: "loss"
}
'''


def test_lenet_text_is_exact():
    assert str(lenet('examples/mnist/mnist_train_lmdb', 64)) == LENET_TEXT


def test_lenet_matches_caffes_generated_file():
    real = read_fixture("lenet_auto_train.prototxt")
    ours = lenet('examples/mnist/mnist_train_lmdb', 64)
    assert text_format.Parse(real, caffe_pb2.NetParameter()) == ours
    # Line for line the same text, except the float the old protobuf printed longer.
    diff = [(a, b) for a, b in zip(real.splitlines(), str(ours).splitlines()) if a != b]
    assert diff == [("    scale: 0.00392156862745", "    scale: 0.00392156886")]
    assert len(real.splitlines()) == len(str(ours).splitlines())


def anon_lenet(batch_size):
    # pycaffe's test_net_spec.py: the same net without a NetSpec, so every name is automatic.
    data, label = L.DummyData(shape=[dict(dim=[batch_size, 1, 28, 28]),
                                     dict(dim=[batch_size, 1, 1, 1])],
                              transform_param=dict(scale=1. / 255), ntop=2)
    conv1 = L.Convolution(data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    pool1 = L.Pooling(conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    conv2 = L.Convolution(pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    pool2 = L.Pooling(conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    ip1 = L.InnerProduct(pool2, num_output=500, weight_filler=dict(type='xavier'))
    relu1 = L.ReLU(ip1, in_place=True)
    ip2 = L.InnerProduct(relu1, num_output=10, weight_filler=dict(type='xavier'))
    loss = L.SoftmaxWithLoss(ip2, label)
    return loss.to_proto()


def test_anonymous_lenet_gets_type_count_names():
    net = anon_lenet(50)
    assert structure(net) == [
        ("DummyData1", "DummyData", [], ["DummyData1", "DummyData2"]),
        ("Convolution1", "Convolution", ["DummyData1"], ["Convolution1"]),
        ("Pooling1", "Pooling", ["Convolution1"], ["Pooling1"]),
        ("Convolution2", "Convolution", ["Pooling1"], ["Convolution2"]),
        ("Pooling2", "Pooling", ["Convolution2"], ["Pooling2"]),
        ("InnerProduct1", "InnerProduct", ["Pooling2"], ["InnerProduct1"]),
        ("ReLU1", "ReLU", ["InnerProduct1"], ["InnerProduct1"]),
        ("InnerProduct2", "InnerProduct", ["InnerProduct1"], ["InnerProduct2"]),
        ("SoftmaxWithLoss1", "SoftmaxWithLoss", ["InnerProduct2", "DummyData2"],
         ["SoftmaxWithLoss1"]),
    ]
    assert [list(s.dim) for s in net.layer[0].dummy_data_param.shape] == [[50, 1, 28, 28],
                                                                         [50, 1, 1, 1]]


def test_module_to_proto_and_top_to_proto_agree():
    x = L.Input(shape=dict(dim=[1, 2]))
    a, b = L.ReLU(x), L.Sigmoid(x)
    both = net_spec.to_proto(a, b)
    assert [l.name for l in both.layer] == ["Input1", "ReLU1", "Sigmoid1"]
    assert a.to_proto() == net_spec.to_proto(a)


def test_generated_lenet_loads_in_caffe_compat_net():
    # pycaffe's test_lenet loads the generated text with caffe.Net; same here, with an
    # Input layer (no data source needed).
    import caffe_compat as caffe
    n = NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[2, 1, 28, 28]), dict(dim=[2, 1, 1, 1])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool1, num_output=50, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    proto = n.to_proto()
    assert proto.layer[4].bottom == proto.layer[4].top == ["ip1"]
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(str(proto))
    try:
        net = caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)
    assert [l.type for l in net.layers] == ["Input", "Convolution", "Pooling", "InnerProduct",
                                            "ReLU", "InnerProduct", "SoftmaxWithLoss"]
    assert list(net.blobs) == ["data", "label", "conv1", "pool1", "ip1", "ip2", "loss"]


# ---------------------------------------------------------------------------
# FCN voc-fcn8s/net.py (shelhamer/fcn.berkeleyvision.org)
# ---------------------------------------------------------------------------

def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    return conv, L.ReLU(conv, in_place=True)


def max_pool(bottom, ks=2, stride=2):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def fcn8s(split, pydata_params, module='voc_layers', dropout=True):
    """voc-fcn8s/net.py's fcn(); ``dropout=False`` is the net.py that wrote the
    repository's train.prototxt (the drop6/drop7 lines came later)."""
    n = NetSpec()
    pylayer = 'SBDDSegDataLayer' if split == 'train' else 'VOCSegDataLayer'
    n.data, n.label = L.Python(module=module, layer=pylayer, ntop=2,
                               param_str=str(pydata_params))
    n.conv1_1, n.relu1_1 = conv_relu(n.data, 64, pad=100)
    n.conv1_2, n.relu1_2 = conv_relu(n.relu1_1, 64)
    n.pool1 = max_pool(n.relu1_2)
    n.conv2_1, n.relu2_1 = conv_relu(n.pool1, 128)
    n.conv2_2, n.relu2_2 = conv_relu(n.relu2_1, 128)
    n.pool2 = max_pool(n.relu2_2)
    n.conv3_1, n.relu3_1 = conv_relu(n.pool2, 256)
    n.conv3_2, n.relu3_2 = conv_relu(n.relu3_1, 256)
    n.conv3_3, n.relu3_3 = conv_relu(n.relu3_2, 256)
    n.pool3 = max_pool(n.relu3_3)
    n.conv4_1, n.relu4_1 = conv_relu(n.pool3, 512)
    n.conv4_2, n.relu4_2 = conv_relu(n.relu4_1, 512)
    n.conv4_3, n.relu4_3 = conv_relu(n.relu4_2, 512)
    n.pool4 = max_pool(n.relu4_3)
    n.conv5_1, n.relu5_1 = conv_relu(n.pool4, 512)
    n.conv5_2, n.relu5_2 = conv_relu(n.relu5_1, 512)
    n.conv5_3, n.relu5_3 = conv_relu(n.relu5_2, 512)
    n.pool5 = max_pool(n.relu5_3)
    n.fc6, n.relu6 = conv_relu(n.pool5, 4096, ks=7, pad=0)
    fc7_input = n.relu6
    if dropout:
        n.drop6 = fc7_input = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = conv_relu(fc7_input, 4096, ks=1, pad=0)
    score_input = n.relu7
    if dropout:
        n.drop7 = score_input = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = L.Convolution(score_input, num_output=21, kernel_size=1, pad=0,
                               param=[dict(lr_mult=1, decay_mult=1),
                                      dict(lr_mult=2, decay_mult=0)])
    n.upscore2 = L.Deconvolution(n.score_fr, convolution_param=dict(
        num_output=21, kernel_size=4, stride=2, bias_term=False), param=[dict(lr_mult=0)])
    n.score_pool4 = L.Convolution(n.pool4, num_output=21, kernel_size=1, pad=0,
                                  param=[dict(lr_mult=1, decay_mult=1),
                                         dict(lr_mult=2, decay_mult=0)])
    n.score_pool4c = crop(n.score_pool4, n.upscore2)
    n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
    n.upscore_pool4 = L.Deconvolution(n.fuse_pool4, convolution_param=dict(
        num_output=21, kernel_size=4, stride=2, bias_term=False), param=[dict(lr_mult=0)])
    n.score_pool3 = L.Convolution(n.pool3, num_output=21, kernel_size=1, pad=0,
                                  param=[dict(lr_mult=1, decay_mult=1),
                                         dict(lr_mult=2, decay_mult=0)])
    n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
    n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
    n.upscore8 = L.Deconvolution(n.fuse_pool3, convolution_param=dict(
        num_output=21, kernel_size=16, stride=8, bias_term=False), param=[dict(lr_mult=0)])
    n.score = crop(n.upscore8, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label,
                               loss_param=dict(normalize=False, ignore_label=255))
    return n.to_proto()


def train_params():
    # str(dict) follows Python's dict order; Python 2 printed these keys in this
    # order, so the dict is built in it to get the file's param_str.
    return {'sbdd_dir': '../../data/sbdd/dataset', 'seed': 1337, 'split': 'train',
            'mean': (104.00699, 116.66877, 122.67892)}


def test_fcn8s_train_prototxt_is_byte_identical():
    ours = str(fcn8s('train', train_params(), dropout=False))
    assert ours == read_fixture("voc_fcn8s_train.prototxt")


def test_fcn8s_crop_offsets_and_structure():
    net = fcn8s('train', train_params(), dropout=False)
    crops = {l.name: (l.crop_param.axis, list(l.crop_param.offset), list(l.bottom))
             for l in net.layer if l.type == "Crop"}
    assert crops == {"score_pool4c": (2, [5], ["score_pool4", "upscore2"]),
                     "score_pool3c": (2, [9], ["score_pool3", "upscore_pool4"]),
                     "score": (2, [31], ["upscore8", "data"])}
    by_name = {l.name: l for l in net.layer}
    assert by_name["conv1_1"].convolution_param.pad == [100]
    assert by_name["relu1_1"].bottom == by_name["relu1_1"].top == ["conv1_1"]
    assert by_name["upscore2"].param[0].lr_mult == 0
    assert by_name["upscore2"].convolution_param.bias_term is False
    assert by_name["fuse_pool4"].eltwise_param.operation == caffe_pb2.EltwiseParameter.SUM
    assert by_name["loss"].loss_param.ignore_label == 255
    assert by_name["loss"].loss_param.normalize is False


def test_fcn8s_current_net_py_adds_in_place_dropout():
    net = fcn8s('train', train_params(), module='layers', dropout=True)
    names = [l.name for l in net.layer]
    assert names[names.index("relu6") + 1] == "drop6"
    assert names[names.index("relu7") + 1] == "drop7"
    drop6 = net.layer[names.index("drop6")]
    assert (drop6.type, list(drop6.bottom), list(drop6.top)) == ("Dropout", ["fc6"], ["fc6"])
    assert drop6.dropout_param.dropout_ratio == 0.5
    fc7 = net.layer[names.index("fc7")]
    assert list(fc7.bottom) == ["fc6"]
    score_fr = net.layer[names.index("score_fr")]
    assert list(score_fr.bottom) == ["fc7"]
    offsets = [list(l.crop_param.offset) for l in net.layer if l.type == "Crop"]
    assert offsets == [[5], [9], [31]]
    # Dropout layers aside, the same layers as the repository's prototxt.
    real = text_format.Parse(read_fixture("voc_fcn8s_train.prototxt"), caffe_pb2.NetParameter())
    without_drop = [s for s in structure(net) if s[1] != "Dropout"]
    assert without_drop == structure(real)


def test_fcn8s_val_uses_voc_layer():
    params = dict(split='seg11valid', mean=(104.00699, 116.66877, 122.67892), seed=1337,
                  voc_dir='../../data/pascal/VOC2011')
    data = fcn8s('seg11valid', params).layer[0]
    assert data.python_param.layer == 'VOCSegDataLayer'
    assert eval(data.python_param.param_str) == params


# ---------------------------------------------------------------------------
# Fine-tuning notebook (examples/02-fine-tuning.ipynb): caffenet / style_net
# ---------------------------------------------------------------------------

weight_param = dict(lr_mult=1, decay_mult=1)
bias_param = dict(lr_mult=2, decay_mult=0)
learned_param = [weight_param, bias_param]
frozen_param = [dict(lr_mult=0)] * 2


def ft_conv_relu(bottom, ks, nout, stride=1, pad=0, group=1, param=learned_param,
                 weight_filler=dict(type='gaussian', std=0.01),
                 bias_filler=dict(type='constant', value=0.1)):
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         group=group, param=param, weight_filler=weight_filler,
                         bias_filler=bias_filler)
    return conv, L.ReLU(conv, in_place=True)


def ft_fc_relu(bottom, nout, param=learned_param,
               weight_filler=dict(type='gaussian', std=0.005),
               bias_filler=dict(type='constant', value=0.1)):
    fc = L.InnerProduct(bottom, num_output=nout, param=param, weight_filler=weight_filler,
                        bias_filler=bias_filler)
    return fc, L.ReLU(fc, in_place=True)


def ft_max_pool(bottom, ks, stride=1):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def caffenet(data, label=None, train=True, num_classes=1000, classifier_name='fc8',
             learn_all=False):
    n = NetSpec()
    n.data = data
    param = learned_param if learn_all else frozen_param
    n.conv1, n.relu1 = ft_conv_relu(n.data, 11, 96, stride=4, param=param)
    n.pool1 = ft_max_pool(n.relu1, 3, stride=2)
    n.norm1 = L.LRN(n.pool1, local_size=5, alpha=1e-4, beta=0.75)
    n.conv2, n.relu2 = ft_conv_relu(n.norm1, 5, 256, pad=2, group=2, param=param)
    n.pool2 = ft_max_pool(n.relu2, 3, stride=2)
    n.norm2 = L.LRN(n.pool2, local_size=5, alpha=1e-4, beta=0.75)
    n.conv3, n.relu3 = ft_conv_relu(n.norm2, 3, 384, pad=1, param=param)
    n.conv4, n.relu4 = ft_conv_relu(n.relu3, 3, 384, pad=1, group=2, param=param)
    n.conv5, n.relu5 = ft_conv_relu(n.relu4, 3, 256, pad=1, group=2, param=param)
    n.pool5 = ft_max_pool(n.relu5, 3, stride=2)
    n.fc6, n.relu6 = ft_fc_relu(n.pool5, 4096, param=param)
    if train:
        n.drop6 = fc7input = L.Dropout(n.relu6, in_place=True)
    else:
        fc7input = n.relu6
    n.fc7, n.relu7 = ft_fc_relu(fc7input, 4096, param=param)
    if train:
        n.drop7 = fc8input = L.Dropout(n.relu7, in_place=True)
    else:
        fc8input = n.relu7
    fc8 = L.InnerProduct(fc8input, num_output=num_classes, param=learned_param)
    n.__setattr__(classifier_name, fc8)
    if not train:
        n.probs = L.Softmax(fc8)
    if label is not None:
        n.label = label
        n.loss = L.SoftmaxWithLoss(fc8, n.label)
        n.acc = L.Accuracy(fc8, n.label)
    return str(n.to_proto())


def style_net(train=True, learn_all=False, subset=None, caffe_root='../'):
    if subset is None:
        subset = 'train' if train else 'test'
    source = caffe_root + 'data/flickr_style/%s.txt' % subset
    transform_param = dict(mirror=train, crop_size=227,
                           mean_file=caffe_root + 'data/ilsvrc12/imagenet_mean.binaryproto')
    style_data, style_label = L.ImageData(transform_param=transform_param, source=source,
                                          batch_size=50, new_height=256, new_width=256, ntop=2)
    return caffenet(data=style_data, label=style_label, train=train, num_classes=5,
                    classifier_name='fc8_flickr', learn_all=learn_all)


def layer_blocks(text):
    """The text of each top-level ``layer { ... }`` block, by layer name."""
    blocks = re.findall(r'^layer \{\n.*?^\}\n', text, flags=re.S | re.M)
    assert "".join(blocks) == text
    return {re.search(r'  name: "([^"]*)"', b).group(1): b for b in blocks}


DEPLOY_DATA = '''layer {
  name: "data"
  type: "DummyData"
  top: "data"
  dummy_data_param {
    shape {
      dim: 1
      dim: 3
      dim: 227
      dim: 227
    }
  }
}
'''

FROZEN_CONV1 = '''layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    lr_mult: 0
  }
  param {
    lr_mult: 0
  }
  convolution_param {
    num_output: 96
    pad: 0
    kernel_size: 11
    group: 1
    stride: 4
    weight_filler {
      type: "gaussian"
      std: 0.01
    }
    bias_filler {
      type: "constant"
      value: 0.1
    }
  }
}
'''

RELU1_POOL1_NORM1 = '''layer {
  name: "relu1"
  type: "ReLU"
  bottom: "conv1"
  top: "conv1"
}
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param {
    pool: MAX
    kernel_size: 3
    stride: 2
  }
}
layer {
  name: "norm1"
  type: "LRN"
  bottom: "pool1"
  top: "norm1"
  lrn_param {
    local_size: 5
    alpha: 0.0001
    beta: 0.75
  }
}
'''

STYLE_DATA = '''layer {
  name: "data"
  type: "ImageData"
  top: "data"
  top: "label"
  transform_param {
    mirror: true
    crop_size: 227
    mean_file: "../data/ilsvrc12/imagenet_mean.binaryproto"
  }
  image_data_param {
    source: "../data/flickr_style/train.txt"
    batch_size: 50
    new_height: 256
    new_width: 256
  }
}
'''

STYLE_FC8_TO_END = '''layer {
  name: "fc8_flickr"
  type: "InnerProduct"
  bottom: "fc7"
  top: "fc8_flickr"
  param {
    lr_mult: 1
    decay_mult: 1
  }
  param {
    lr_mult: 2
    decay_mult: 0
  }
  inner_product_param {
    num_output: 5
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "fc8_flickr"
  bottom: "label"
  top: "loss"
}
layer {
  name: "acc"
  type: "Accuracy"
  bottom: "fc8_flickr"
  bottom: "label"
  top: "acc"
}
'''


def test_finetuning_imagenet_deploy_net():
    text = caffenet(data=L.DummyData(shape=dict(dim=[1, 3, 227, 227])), train=False)
    assert text.startswith(DEPLOY_DATA + FROZEN_CONV1 + RELU1_POOL1_NORM1)
    blocks = layer_blocks(text)
    assert list(blocks) == ["data", "conv1", "relu1", "pool1", "norm1", "conv2", "relu2",
                            "pool2", "norm2", "conv3", "relu3", "conv4", "relu4", "conv5",
                            "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8", "probs"]
    assert blocks["probs"] == ('layer {\n  name: "probs"\n  type: "Softmax"\n'
                               '  bottom: "fc8"\n  top: "probs"\n}\n')
    assert '    group: 2\n' in blocks["conv2"] and '    pad: 2\n' in blocks["conv2"]
    assert '      std: 0.005\n' in blocks["fc6"]


def test_finetuning_style_train_net():
    text = style_net(train=True)
    assert text.startswith(STYLE_DATA)
    assert text.endswith(STYLE_FC8_TO_END)
    blocks = layer_blocks(text)
    assert list(blocks) == ["data", "conv1", "relu1", "pool1", "norm1", "conv2", "relu2",
                            "pool2", "norm2", "conv3", "relu3", "conv4", "relu4", "conv5",
                            "relu5", "pool5", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7",
                            "fc8_flickr", "loss", "acc"]
    assert blocks["drop6"] == ('layer {\n  name: "drop6"\n  type: "Dropout"\n'
                               '  bottom: "fc6"\n  top: "fc6"\n}\n')
    # learn_all=True gives every layer the learned lr/decay multipliers.
    learned = layer_blocks(style_net(train=True, learn_all=True))["conv1"]
    assert '  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n' in learned


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------

def test_param_name_dict_follows_layer_parameter_fields():
    d = net_spec.param_name_dict()
    assert d["Convolution"] == "convolution"
    assert d["InnerProduct"] == "inner_product"
    assert d["Pooling"] == "pooling"
    assert d["Data"] == "data"
    assert d["Python"] == "python"
    assert d["Crop"] == "crop"
    assert d["Eltwise"] == "eltwise"
    assert d["Transformation"] == "transform"    # not a layer type, as in pycaffe
    assert d["Loss"] == "loss"
    assert "Deconvolution" not in d and "SoftmaxWithLoss" not in d
    fields = [f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields
              if f.name.endswith("_param")]
    assert sorted(v + "_param" for v in d.values()) == sorted(fields)
    for type_name, prefix in d.items():
        field = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name[prefix + "_param"]
        assert field.message_type.name == type_name + "Parameter"


def test_params_are_caffe_pb2_enums():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX == 0
    assert P.Pooling.AVE == caffe_pb2.PoolingParameter.AVE == 1
    assert P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM
    assert P.Eltwise.PROD == caffe_pb2.EltwiseParameter.PROD
    assert P.Data.LMDB == caffe_pb2.DataParameter.LMDB
    with pytest.raises(AttributeError):
        P.Pooling.MEDIAN
    with pytest.raises(AttributeError):
        P.NoSuchLayer.MAX


def test_enum_given_by_value_or_by_name():
    x = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    by_value = L.Pooling(x, pool=P.Pooling.AVE, kernel_size=2).to_proto()
    by_name = L.Pooling(x, pool='AVE', kernel_size=2).to_proto()
    assert by_value == by_name
    assert "    pool: AVE\n" in str(by_name)


def test_assign_proto_lists_dicts_and_scalars():
    layer = caffe_pb2.LayerParameter()
    net_spec.assign_proto(layer, "param", [dict(lr_mult=1), dict(lr_mult=2, decay_mult=0)])
    net_spec.assign_proto(layer, "param", dict(lr_mult=3))     # one dict -> one more entry
    assert [p.lr_mult for p in layer.param] == [1, 2, 3]
    net_spec.assign_proto(layer.convolution_param, "kernel_size", 3)
    net_spec.assign_proto(layer.convolution_param, "pad", [1, 2])
    net_spec.assign_proto(layer.convolution_param, "stride", (2, 1))
    assert list(layer.convolution_param.kernel_size) == [3]
    assert list(layer.convolution_param.pad) == [1, 2]
    assert list(layer.convolution_param.stride) == [2, 1]
    net_spec.assign_proto(layer, "convolution_param",
                          dict(weight_filler=dict(type="gaussian", std=0.01), num_output=8))
    assert layer.convolution_param.weight_filler.type == "gaussian"
    assert layer.convolution_param.num_output == 8
    net_spec.assign_proto(layer, "include", dict(phase=caffe_pb2.TRAIN))
    assert layer.include[0].phase == caffe_pb2.TRAIN
    with pytest.raises(AttributeError):
        net_spec.assign_proto(layer, "no_such_field", 1)


def test_ntop_returns_tuple_function_or_top():
    x = L.Input(shape=dict(dim=[4, 6]))
    assert isinstance(L.ReLU(x), net_spec.Top)
    parts = L.Slice(x, ntop=3, slice_param=dict(axis=1))
    assert isinstance(parts, tuple) and len(parts) == 3
    assert [t.n for t in parts] == [0, 1, 2]
    silent = L.Silence(x, ntop=0)
    assert isinstance(silent, net_spec.Function)
    assert "ntop" not in parts[0].fn.params and "in_place" not in silent.params


def test_zero_top_layers_are_named_like_pycaffe():
    # pycaffe's silent_net: NetSpec names a Function; an unnamed one counts its type.
    n = NetSpec()
    n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
    n.silence_data = L.Silence(n.data, ntop=0)
    n.silence_data2 = L.Silence(n.data2, ntop=0)
    net = n.to_proto()
    assert structure(net) == [("data", "DummyData", [], ["data", "data2"]),
                              ("silence_data", "Silence", ["data"], []),
                              ("silence_data2", "Silence", ["data2"], [])]
    fn = L.Silence(L.Input(shape=dict(dim=[1])), ntop=0)
    built = {}
    fn._to_proto(built, {}, Counter())
    assert [l.name for l in built.values()] == ["Input1", "Silence1"]


def test_in_place_layer_keeps_bottom_blob_and_own_name():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3]))
    n.ip = L.InnerProduct(n.data, num_output=2)
    n.relu = L.ReLU(n.ip, in_place=True)
    n.drop = L.Dropout(n.relu, in_place=True, dropout_ratio=0.3)
    n.out = L.Softmax(n.drop)
    assert structure(n.to_proto())[2:] == [("relu", "ReLU", ["ip"], ["ip"]),
                                           ("drop", "Dropout", ["ip"], ["ip"]),
                                           ("out", "Softmax", ["ip"], ["out"])]


def test_keyword_placement_type_param_then_layer():
    n = NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[1, 4]), dict(dim=[1])], ntop=2)
    n.ip = L.InnerProduct(n.data, num_output=3, bias_term=False, loss_weight=0.5,
                          include=dict(phase=caffe_pb2.TEST), propagate_down=[True])
    n.loss = L.SoftmaxWithLoss(n.ip, n.label, loss_weight=2,
                               loss_param=dict(ignore_label=-1))
    ip, loss = n.to_proto().layer[1:]
    assert ip.inner_product_param.num_output == 3
    assert ip.inner_product_param.bias_term is False
    assert list(ip.loss_weight) == [0.5]
    assert ip.include[0].phase == caffe_pb2.TEST
    assert list(ip.propagate_down) == [True]
    assert list(loss.loss_weight) == [2.0]
    assert loss.loss_param.ignore_label == -1
    assert str(loss).startswith('name: "loss"\ntype: "SoftmaxWithLoss"\nbottom: "ip"\n'
                                'bottom: "label"\ntop: "loss"\nloss_weight: 2\n')


def test_name_keyword_overrides_layer_name_only():
    # pycaffe sets the layer fields after naming, so name= renames the layer, not its top.
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.act = L.TanH(n.data, name="tanh_layer")
    layer = n.to_proto().layer[1]
    assert (layer.name, list(layer.top)) == ("tanh_layer", ["act"])


def test_misplaced_keyword_names_the_layer():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.up = L.Deconvolution(n.data, num_output=3)    # belongs in convolution_param
    with pytest.raises(AttributeError, match=r"layer 'up' \(type Deconvolution\).*num_output"):
        n.to_proto()
    n.up = L.Convolution(n.data, weight_filler=dict(typo="xavier"))
    with pytest.raises(AttributeError, match=r"convolution_param: no field 'typo'"):
        n.to_proto()


def test_type_error_for_non_top_input():
    data = L.DummyData(ntop=2)
    with pytest.raises(TypeError,
                       match=r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"):
        L.Silence(data, ntop=0)
    L.Silence(*data, ntop=0)


def test_netspec_mapping_interface():
    n = NetSpec()
    n["data"] = L.Input(shape=dict(dim=[1]))
    n.relu = L.ReLU(n["data"])
    assert n.keys() == ["data", "relu"]
    assert n.vals() == [n.data, n.relu]
    assert n["relu"] is n.relu
    del n["relu"]
    assert n.keys() == ["data"]
    with pytest.raises(KeyError):
        n["relu"]
    with pytest.raises(AttributeError):
        n.relu
    assert not hasattr(n, "relu")


def test_tuple_assigned_to_one_name_is_reported():
    n = NetSpec()
    n.data = L.Data(source="x", batch_size=1, ntop=2)
    with pytest.raises(TypeError, match=r"NetSpec.data holds a tuple"):
        n.to_proto()


def test_shared_top_named_once_and_layers_not_duplicated():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    shared = L.ReLU(n.data)
    n.a = L.Sigmoid(shared)
    n.b = L.TanH(shared)
    net = n.to_proto()
    assert structure(net) == [("data", "Input", [], ["data"]),
                              ("ReLU1", "ReLU", ["data"], ["ReLU1"]),
                              ("a", "Sigmoid", ["ReLU1"], ["a"]),
                              ("b", "TanH", ["ReLU1"], ["b"])]
