"""Nets for the ONNX export tests that the repository does not bundle.

MobileNet v1 and DenseNet-121 are built with caffe-compat's NetSpec in the form of their
public Caffe deploy files (shicai/MobileNet-Caffe, shicai/DenseNet-Caffe): Convolution +
BatchNorm + Scale + ReLU, depthwise convolutions as ``group = channels``; DenseNet's
BN-ReLU-conv dense layers, Concat growth and AVE-pooled transitions. The final pooling
is global so a small input fits (at 72x72 DenseNet's ceil-mode MAX pool and its 2x2
transitions overhang, which exercises Caffe's AVE divisor). ``LAYER_CASES`` are small
nets, one per layer setting the golden sets do not cover.
"""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L, params as P


def _conv_bn_relu(n: NetSpec, name: str, bottom, num_output: int, kernel: int, stride: int = 1,
                  pad: int = 0, group: int = 1, relu: bool = True):
    n[name] = L.Convolution(bottom, num_output=num_output, kernel_size=kernel, stride=stride,
                            pad=pad, group=group, bias_term=False)
    n[name + "/bn"] = L.BatchNorm(n[name], use_global_stats=True, in_place=True)
    n[name + "/scale"] = L.Scale(n[name + "/bn"], bias_term=True, in_place=True)
    if relu:
        n[name + "/relu"] = L.ReLU(n[name + "/scale"], in_place=True)
        return n[name + "/relu"]
    return n[name + "/scale"]


def mobilenet_v1(size: int = 64) -> str:
    """MobileNet v1 (1.0, 1000 classes) at ``size`` x ``size``."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    x = _conv_bn_relu(n, "conv1", n.data, 32, 3, stride=2, pad=1)
    channels = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
        (1024, 2), (1024, 1)]
    for i, (out, stride) in enumerate(plan):
        name = f"conv{i + 2}"
        x = _conv_bn_relu(n, f"{name}_dw", x, channels, 3, stride=stride, pad=1, group=channels)
        x = _conv_bn_relu(n, f"{name}_sep", x, out, 1)
        channels = out
    n.pool6 = L.Pooling(x, pool=P.Pooling.AVE, global_pooling=True)
    n.fc7 = L.Convolution(n.pool6, num_output=1000, kernel_size=1)
    n.prob = L.Softmax(n.fc7)
    return str(n.to_proto())


def densenet121(size: int = 72) -> str:
    """DenseNet-121 (growth 32, blocks 6-12-24-16, compression 0.5) at ``size`` x ``size``."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    x = _conv_bn_relu(n, "conv1", n.data, 64, 7, stride=2, pad=3)
    n.pool1 = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1)
    x, channels = n.pool1, 64
    for block, layers in enumerate((6, 12, 24, 16), start=2):
        for i in range(1, layers + 1):
            name = f"conv{block}_{i}"
            n[f"{name}/x1/bn"] = L.BatchNorm(x, use_global_stats=True)
            n[f"{name}/x1/scale"] = L.Scale(n[f"{name}/x1/bn"], bias_term=True, in_place=True)
            n[f"{name}/x1/relu"] = L.ReLU(n[f"{name}/x1/scale"], in_place=True)
            n[f"{name}/x1"] = L.Convolution(n[f"{name}/x1/relu"], num_output=128, kernel_size=1,
                                            bias_term=False)
            y = _conv_bn_relu(n, f"{name}/x2/pre", n[f"{name}/x1"], 128, 1)
            n[f"{name}/x2"] = L.Convolution(y, num_output=32, kernel_size=3, pad=1,
                                            bias_term=False)
            n[f"concat_{block}_{i}"] = L.Concat(x, n[f"{name}/x2"])
            x, channels = n[f"concat_{block}_{i}"], channels + 32
        n[f"conv{block}_blk/bn"] = L.BatchNorm(x, use_global_stats=True)
        n[f"conv{block}_blk/scale"] = L.Scale(n[f"conv{block}_blk/bn"], bias_term=True,
                                              in_place=True)
        n[f"conv{block}_blk/relu"] = L.ReLU(n[f"conv{block}_blk/scale"], in_place=True)
        if block == 5:
            x = n[f"conv{block}_blk/relu"]
            break
        channels //= 2
        n[f"conv{block}_blk"] = L.Convolution(n[f"conv{block}_blk/relu"], num_output=channels,
                                              kernel_size=1, bias_term=False)
        n[f"pool{block}"] = L.Pooling(n[f"conv{block}_blk"], pool=P.Pooling.AVE, kernel_size=2,
                                      stride=2)
        x = n[f"pool{block}"]
    n.pool5 = L.Pooling(x, pool=P.Pooling.AVE, global_pooling=True)
    n.fc6 = L.Convolution(n.pool5, num_output=1000, kernel_size=1)
    n.prob = L.Softmax(n.fc6)
    return str(n.to_proto())


def _net(shapes: dict, body: str) -> str:
    head = "".join(f'layer {{ name: "{b}" type: "Input" top: "{b}" input_param {{ shape '
                   f'{{ {" ".join(f"dim: {d}" for d in s)} }} }} }}\n' for b, s in shapes.items())
    return head + body


def _layer(name: str, kind: str, bottoms, params: str = "", tops=None) -> str:
    bottoms = [bottoms] if isinstance(bottoms, str) else list(bottoms)
    tops = tops or [name]
    return (f'layer {{ name: "{name}" type: "{kind}" '
            + "".join(f'bottom: "{b}" ' for b in bottoms)
            + "".join(f'top: "{t}" ' for t in tops) + f"{params} }}\n")


X = {"x": (2, 6, 11, 13)}
#: (id, prototxt, input value range): one small net per exported setting beyond the
#: golden sets; the engine is the reference (its layers are checked against Caffe).
LAYER_CASES = [
    ("lrn_k2", _net(X, _layer("n", "LRN", "x", "lrn_param { local_size: 3 alpha: 0.5 "
                                               "beta: 0.75 k: 2 }")), 3.0),
    ("pool_stochastic_test", _net(X, _layer("p", "Pooling", "x", "pooling_param { pool: "
                                            "STOCHASTIC kernel_size: 3 stride: 2 }")), None),
    ("pool_floor_mode", _net(X, _layer("p", "Pooling", "x", "pooling_param { pool: AVE "
                                       "kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR }")),
     1.0),
    ("pool_mask_global", _net(X, _layer("p", "Pooling", "x", "pooling_param { pool: MAX "
                                        "global_pooling: true }", ["p", "mask"])), "ties"),
    ("pool_mask_ceil_pad", _net(X, _layer("p", "Pooling", "x", "pooling_param { pool: MAX "
                                          "kernel_size: 3 stride: 2 pad: 1 }", ["p", "mask"])),
     "ties"),
    ("spp", _net(X, _layer("s", "SPP", "x", "spp_param { pyramid_height: 3 pool: AVE }")), 1.0),
    ("mvn", _net(X, _layer("m", "MVN", "x") + _layer("a", "MVN", "x", "mvn_param { "
                 "across_channels: true }") + _layer("c", "MVN", "x", "mvn_param { "
                 "normalize_variance: false }")), 1.0),
    ("batchnorm_batch_stats", _net(X, _layer("b", "BatchNorm", "x",
                                             "batch_norm_param { use_global_stats: false }")), 1.0),
    ("argmax_ties", _net({"x": (3, 8)}, _layer("a", "ArgMax", "x", "argmax_param { top_k: 4 "
                                              "out_max_val: true }")
                         + _layer("b", "ArgMax", "x", "argmax_param { top_k: 3 axis: 1 }")),
     "ties"),
    ("reduction_axis0_power_const", _net(X, _layer("r", "Reduction", "x", "reduction_param { "
                                                   "operation: SUMSQ axis: 0 coeff: 0.5 }")
                                          + _layer("p", "Power", "x", "power_param { power: 2 "
                                                   "scale: 0 shift: 3 }")), 1.0),
    ("scale_bias_axes", _net(X, _layer("s", "Scale", "x", "scale_param { axis: 1 num_axes: -1 "
                                       "bias_term: true filler { type: 'gaussian' } "
                                       "bias_filler { type: 'gaussian' } }")
                             + _layer("t", "Scale", "x", "scale_param { num_axes: 0 "
                                      "filler { value: 3 } }")
                             + _layer("b", "Bias", "x", "bias_param { axis: 2 num_axes: 2 "
                                      "filler { type: 'gaussian' } }")), 1.0),
    ("inner_product_transpose_axis", _net(X, _layer("f", "InnerProduct", "x",
                                                    "inner_product_param { num_output: 5 axis: 2 "
                                                    "transpose: true weight_filler { type: "
                                                    "'gaussian' } bias_filler { type: "
                                                    "'gaussian' } }")), 1.0),
    ("conv_axis_nd", _net({"x": (2, 3, 4, 9, 10)}, _layer("c", "Convolution", "x",
                                                          "convolution_param { num_output: 4 "
                                                          "kernel_size: 3 pad: 1 stride: 2 "
                                                          "axis: 2 weight_filler { type: "
                                                          "'gaussian' } }")), 1.0),
    ("deconv_dilated", _net(X, _layer("d", "Deconvolution", "x", "convolution_param { "
                                      "num_output: 4 kernel_size: 3 stride: 2 pad: 1 "
                                      "dilation: 2 weight_filler { type: 'gaussian' } }")),
     1.0),
    ("interp_nearest_crop", _net(X, _layer("i", "Interp", "x", "interp_param { zoom_factor: 3 "
                                           "pad_beg: -1 pad_end: -2 interp_type: "
                                           "'nearest_neighbor' }")), 1.0),
    ("interp_shrink", _net(X, _layer("i", "Interp", "x", "interp_param { shrink_factor: 2 }")),
     1.0),
    ("upsample_nearest", _net(X, _layer("u", "Upsample", "x", "upsample_param { scale: 2 }")),
     1.0),
    ("neurons", _net(X, _layer("a", "BNLL", "x") + _layer("b", "Exp", "x", "exp_param { base: "
                     "3 scale: 0.7 shift: -0.2 }") + _layer("c", "ReLU6", "x")
                     + _layer("d", "Threshold", "x", "threshold_param { threshold: 0.1 }")
                     + _layer("e", "PReLU", "x", "prelu_param { channel_shared: true }")), 30.0),
    ("embed_batch_reindex", _net({"i": (4, 3), "x": (5, 6)},
                                 _layer("e", "Embed", "i", "embed_param { num_output: 7 "
                                        "input_dim: 9 weight_filler { type: 'gaussian' } "
                                        "bias_filler { type: 'gaussian' } }")
                                 + _layer("s", "Slice", "i", "slice_param { axis: 1 }",
                                          ["i0", "i1", "i2"])
                                 + _layer("f", "Reshape", "i1", "reshape_param { shape { "
                                          "dim: -1 } }")
                                 + _layer("r", "BatchReindex", ["x", "f"])), "indices"),
    ("in_place_input_and_parameter", _net(X, _layer("relu", "ReLU", "x", tops=["x"])
                                           + _layer("w", "Parameter", [], "parameter_param { "
                                                    "shape { dim: 2 dim: 3 } }")), 1.0),
]
