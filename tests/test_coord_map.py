"""caffe_compat.coord_map: pycaffe's test_coord_map.py cases plus FCN's crops."""
import random

import numpy as np
import pytest

from caffe_compat.coord_map import (AxisMismatchException, UndefinedMapException, compose,
                                    conv_params, coord_map, coord_map_from_to, crop,
                                    crop_params, inverse)
from caffe_compat.net_spec import NetSpec, layers as L, params as P


def coord_net_spec(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0):
    """The conv-pool-deconv net every pycaffe coordinate-mapping test uses."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    n.aux = L.Input(shape=dict(dim=[2, 1, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=ks, stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool, pad=0)
    # for upsampling the kernel size is 2x the stride
    try:
        deconv_ks = [s * 2 for s in dstride]
    except TypeError:
        deconv_ks = dstride * 2
    n.deconv = L.Deconvolution(n.pool, num_output=10, kernel_size=deconv_ks, stride=dstride,
                               pad=dpad)
    return n


def test_conv_pool_deconv():
    n = coord_net_spec()
    ax, a, b = coord_map_from_to(n.deconv, n.data)   # identity for 2x pool, 2x deconv
    assert (ax, a, b) == (1, 1, 0)
    n = coord_net_spec(pool=4, dstride=4)            # shift by one for 4x pool, 4x deconv
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert (ax, a, b) == (1, 1, -1)


def test_pass():
    n = coord_net_spec()
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    n.relu = L.ReLU(n.deconv)
    n.conv1x1 = L.Convolution(n.relu, num_output=10, kernel_size=1, stride=1, pad=0)
    for top in [n.relu, n.conv1x1]:
        ax_pass, a_pass, b_pass = coord_map_from_to(top, n.data)
        assert (ax, a, b) == (ax_pass, a_pass, b_pass)


@pytest.mark.parametrize("pad", [1, 3, random.randint(0, 10)])
def test_padding(pad):
    n = coord_net_spec()
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    n = coord_net_spec(pad=pad)                          # conv padding adds offset
    _, a_pad, b_pad = coord_map_from_to(n.deconv, n.data)
    assert a == a_pad and b - pad == b_pad
    n = coord_net_spec(dpad=pad)                         # deconv padding subtracts it
    _, a_pad, b_pad = coord_map_from_to(n.deconv, n.data)
    assert a == a_pad and b + pad == b_pad
    n = coord_net_spec(pad=pad, dpad=pad)                # both cancel out
    _, a_pad, b_pad = coord_map_from_to(n.deconv, n.data)
    assert a == a_pad and b == b_pad


def test_multi_conv():
    n = coord_net_spec()
    n.conv_data, n.conv_aux = L.Convolution(n.data, n.aux, ntop=2, num_output=10,
                                            kernel_size=5, stride=2, pad=0)
    ax1, a1, b1 = coord_map_from_to(n.conv_data, n.data)
    ax2, a2, b2 = coord_map_from_to(n.conv_aux, n.aux)
    assert (ax1, a1, b1) == (ax2, a2, b2)


def test_rect():
    n3x3 = coord_net_spec(ks=3, stride=1, pad=0)
    n5x5 = coord_net_spec(ks=5, stride=2, pad=10)
    n3x5 = coord_net_spec(ks=[3, 5], stride=[1, 2], pad=[0, 10])
    ax_3x3, a_3x3, b_3x3 = coord_map_from_to(n3x3.deconv, n3x3.data)
    ax_5x5, a_5x5, b_5x5 = coord_map_from_to(n5x5.deconv, n5x5.data)
    ax_3x5, a_3x5, b_3x5 = coord_map_from_to(n3x5.deconv, n3x5.data)
    assert ax_3x3 == ax_5x5 == ax_3x5
    assert a_3x3 == a_3x5[0] and b_3x3 == b_3x5[0]
    assert a_5x5 == a_3x5[1] and b_5x5 == b_3x5[1]


def test_nd_conv():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 100, 100, 100]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=[3, 3, 3], stride=[1, 1, 1],
                           pad=[0, 1, 2])
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2, pad=0)
    n.deconv = L.Deconvolution(n.pool, num_output=10, kernel_size=4, stride=2, pad=0)
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert ax == 1
    assert len(a) == len(b) == 3
    assert np.all(a == 1)
    assert b[0] - 1 == b[1] and b[1] - 1 == b[2]


@pytest.mark.parametrize("offset", [0, 4, random.randint(0, 10)])
def test_crop_of_crop(offset):
    n = coord_net_spec()
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    n.crop = L.Crop(n.deconv, n.data, axis=2, offset=offset)
    ax_crop, a_crop, b_crop = coord_map_from_to(n.crop, n.data)
    assert ax == ax_crop and a == a_crop and b + offset == b_crop


def test_crop_helper():
    n = coord_net_spec()
    n.crop = crop(n.deconv, n.data)
    assert n.crop.fn.type_name == "Crop"
    assert n.crop.fn.inputs == (n.deconv, n.data)
    assert n.crop.fn.params == {"crop_param": {"axis": 2, "offset": [0]}}
    n = coord_net_spec(ks=5)         # unpadded 5x5 conv: output starts 2 pixels in
    assert crop(n.data, n.conv).fn.params == {"crop_param": {"axis": 2, "offset": [2]}}


def test_crop_helper_anisotropic_offsets():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=[3, 7])
    n.crop = crop(n.data, n.conv)
    assert n.crop.fn.params == {"crop_param": {"axis": 2, "offset": [1, 3]}}
    layer = n.to_proto().layer[-1]
    assert (layer.name, list(layer.bottom)) == ("crop", ["data", "conv"])
    assert (layer.crop_param.axis, list(layer.crop_param.offset)) == (2, [1, 3])


def test_catch_unconnected():
    n = coord_net_spec()
    n.ip = L.InnerProduct(n.deconv, num_output=10)
    with pytest.raises(RuntimeError, match="Could not compute map between tops"):
        coord_map_from_to(n.ip, n.data)


def test_catch_scale_mismatch():
    n = coord_net_spec(pool=3, dstride=2)  # pool 3x but deconv 2x
    with pytest.raises(AssertionError, match="scale mismatch on crop"):
        crop(n.deconv, n.data)


def test_catch_negative_crop():
    n = coord_net_spec(dpad=10)  # output smaller than input
    with pytest.raises(AssertionError, match="cannot crop negative offset"):
        crop(n.deconv, n.data)


def test_catch_noninteger_offset():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=2)   # center at +0.5
    assert coord_map_from_to(n.data, n.conv) == (1, 1, -0.5)
    with pytest.raises(AssertionError, match=r"cannot crop noninteger offset \(b = \[-0.5\]\)"):
        crop(n.data, n.conv)


def test_pass_through_only_crop_is_identity():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.relu = L.ReLU(n.data)
    assert coord_map_from_to(n.relu, n.data) == (None, 1, 0)
    assert crop(n.relu, n.data).fn.params == {"crop_param": {"axis": 2, "offset": [0]}}


def test_fcn8s_crop_offsets():
    # The skip crops of voc-fcn8s with conv1_1's 100-pixel pad: 5, 9 and 31.
    def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
        conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad)
        return L.ReLU(conv, in_place=True)

    def max_pool(bottom):
        return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)

    def upscore(bottom, ks, stride):
        return L.Deconvolution(bottom, convolution_param=dict(
            num_output=21, kernel_size=ks, stride=stride, bias_term=False))

    data = L.Input(shape=dict(dim=[1, 3, 500, 500]))
    x = conv_relu(conv_relu(data, 64, pad=100), 64)
    pool3 = pool4 = None
    for block, convs in enumerate([2, 3, 3, 3], start=2):
        x = max_pool(x)
        pool3 = x if block == 4 else pool3
        pool4 = x if block == 5 else pool4
        for _ in range(convs):
            x = conv_relu(x, 512)
    x = max_pool(x)
    x = conv_relu(conv_relu(x, 4096, ks=7, pad=0), 4096, ks=1, pad=0)
    score_fr = L.Convolution(x, num_output=21, kernel_size=1, pad=0)
    upscore2 = upscore(score_fr, 4, 2)
    score_pool4c = crop(L.Convolution(pool4, num_output=21, kernel_size=1, pad=0), upscore2)
    upscore_pool4 = upscore(L.Eltwise(upscore2, score_pool4c, operation=P.Eltwise.SUM), 4, 2)
    score_pool3c = crop(L.Convolution(pool3, num_output=21, kernel_size=1, pad=0),
                        upscore_pool4)
    upscore8 = upscore(L.Eltwise(upscore_pool4, score_pool3c, operation=P.Eltwise.SUM), 16, 8)
    score = crop(upscore8, data)
    assert score_pool4c.fn.params["crop_param"] == {"axis": 2, "offset": [5]}
    assert score_pool3c.fn.params["crop_param"] == {"axis": 2, "offset": [9]}
    assert score.fn.params["crop_param"] == {"axis": 2, "offset": [31]}


def test_layer_maps_and_algebra():
    x = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    conv = L.Convolution(x, kernel_size=3, stride=2, pad=1, dilation=2).fn
    assert [np.asarray(v).tolist() for v in conv_params(conv)] == [1, [2], [5], [1]]
    ax, a, b = coord_map(conv)
    assert (ax, a.tolist(), b.tolist()) == (1, [0.5], [-0.5])
    deconv = L.Deconvolution(x, convolution_param=dict(kernel_size=4, stride=2, pad=1)).fn
    ax, a, b = coord_map(deconv)
    assert (ax, a.tolist(), b.tolist()) == (1, [2], [0.5])
    crop_fn = L.Crop(x, x, crop_param=dict(axis=2, offset=[3, 4])).fn
    assert crop_params(crop_fn)[0] == 2
    ax, a, b = coord_map(crop_fn)
    assert (ax, a, b.tolist()) == (1, 1, [-3, -4])
    assert coord_map(L.ReLU(x).fn) == (None, 1, 0)
    with pytest.raises(UndefinedMapException):
        coord_map(L.InnerProduct(x, num_output=2).fn)
    with pytest.raises(AssertionError, match="legacy _h/_w"):
        conv_params(L.Convolution(x, kernel_h=3, kernel_w=3, kernel_size=3).fn)
    assert compose((None, 1, 0), (2, 0.5, 1)) == (2, 0.5, 1)
    assert compose((1, 2, 1), (1, 0.5, 3)) == (1, 1.0, 7)
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))
    assert inverse((1, 4.0, -2.0)) == (1, 0.25, 0.5)
