"""Net surgery (Caffe's ``examples/net_surgery.ipynb``): a classifier made fully
convolutional, so it runs over a larger image and gives a class-score map (OverFeat,
Sermanet et al. 2014: "apply ConvNets over all positions").

Any classification deploy prototxt is rewritten automatically:

* every ``InnerProduct`` becomes a ``Convolution`` named ``<name>-conv`` (as in the
  example: ``fc6`` -> ``fc6-conv``) with the same tops; its kernel is the spatial size of
  its input at the original input size (CaffeNet's ``fc6``: 6 x 6 on ``pool5``; VGG's:
  7 x 7), and 1 x 1 for one that follows another fully connected layer;
* a ``Flatten`` in front of an InnerProduct is dropped (the convolution reads its
  bottom), and a ``global_pooling`` layer becomes a fixed window of its original input
  size with stride 1, so the map keeps its spatial extent;
* the weights move over unchanged: an ``O x (C*H*W)`` InnerProduct matrix is the
  ``O x C x H x W`` convolution kernel, byte for byte (row-major flattening).

At the original size the converted net gives the classifier's scores; on an image of
``H x W`` the score map has one cell per stride of the net (32 pixels for CaffeNet)::

    from caffe_compat.recipes.localize import fully_convolutional
    fcn = fully_convolutional(NetSource.from_zoo("bvlc_reference_caffenet"))
    fcn.block.reshape({"data": (1, 3, 451, 451)})   # 8 x 8 map of 1000 classes
    fcn.save("fcn.prototxt", "fcn.caffemodel")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

TEST = 1  # caffe_pb2.TEST
#: The suffix net_surgery.ipynb gives converted layers.
CONV_SUFFIX = "-conv"


def _consumers(net_param, blob: str, after: int) -> list:
    return [lp for lp in list(net_param.layer)[after + 1:] if blob in lp.bottom]


def _fc_to_conv(lp, bottom_shape: tuple, suffix: str):
    """The Convolution replacing InnerProduct ``lp`` whose input has ``bottom_shape``."""
    ip = lp.inner_product_param
    where = f"layer {lp.name!r} (InnerProduct)"
    if ip.transpose:
        raise CaffeCompatError(f"{where}: transpose: true weights cannot become a convolution")
    axis = ip.axis % len(bottom_shape) if ip.axis < 0 else ip.axis
    if axis != 1:
        raise CaffeCompatError(f"{where}: axis {ip.axis}; only axis 1 (N x C x H x W inputs) "
                               "converts to a convolution")
    if len(bottom_shape) == 4:
        kernel = (int(bottom_shape[2]), int(bottom_shape[3]))
    elif len(bottom_shape) == 2:
        kernel = (1, 1)
    else:
        raise CaffeCompatError(f"{where}: input shape {bottom_shape} is neither N x C x H x W "
                               "nor N x C")
    conv = caffe_pb2.LayerParameter()
    conv.name = lp.name + suffix
    conv.type = "Convolution"
    conv.bottom.extend(lp.bottom)
    conv.top.extend(lp.top)
    conv.param.extend(lp.param)
    conv.loss_weight.extend(lp.loss_weight)
    conv.propagate_down.extend(lp.propagate_down)
    cp = conv.convolution_param
    cp.num_output = ip.num_output
    cp.bias_term = ip.bias_term
    if kernel[0] == kernel[1]:
        cp.kernel_size.append(kernel[0])
    else:
        cp.kernel_h, cp.kernel_w = kernel
    if ip.HasField("weight_filler"):
        cp.weight_filler.CopyFrom(ip.weight_filler)
    if ip.HasField("bias_filler"):
        cp.bias_filler.CopyFrom(ip.bias_filler)
    return conv


def _input_shape(blob_shapes: dict, lp) -> tuple:
    shape = blob_shapes.get(lp.bottom[0])
    if shape is None:
        raise CaffeCompatError(f"layer {lp.name!r}: no shape known for its input "
                               f"{lp.bottom[0]!r}")
    return tuple(shape)


def fully_convolutional_param(net_param, blob_shapes: dict,
                              suffix: str = CONV_SUFFIX) -> tuple:
    """(converted NetParameter, {old layer name: new name}) for a TEST-phase deploy
    ``net_param`` whose blobs have ``blob_shapes`` at the original input size."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    out.ClearField("layer")
    if net_param.name:
        out.name = net_param.name + "_full_conv"
    renames: dict = {}
    alias: dict = {}           # a dropped Flatten's top -> its bottom
    windows = 0                # global poolings made fixed windows
    layers = list(net_param.layer)
    for i, lp in enumerate(layers):
        if lp.type == "Flatten":
            users = _consumers(net_param, lp.top[0], i)
            if users and all(u.type == "InnerProduct" for u in users):
                alias[lp.top[0]] = alias.get(lp.bottom[0], lp.bottom[0])
                continue
        new = caffe_pb2.LayerParameter()
        new.CopyFrom(lp)
        for j, b in enumerate(new.bottom):
            new.bottom[j] = alias.get(b, b)
        if lp.type == "InnerProduct":
            new = _fc_to_conv(new, _input_shape(blob_shapes, new), suffix)
            renames[lp.name] = new.name
        elif lp.type == "Pooling" and lp.pooling_param.global_pooling:
            shape = _input_shape(blob_shapes, new)
            pp = new.pooling_param
            pp.global_pooling = False
            pp.kernel_h, pp.kernel_w = int(shape[2]), int(shape[3])
            pp.stride = 1
            windows += 1
        elif lp.type in ("Reshape",) and any(u.type == "InnerProduct"
                                             for u in _consumers(net_param, lp.top[0], i)):
            raise CaffeCompatError(f"layer {lp.name!r} (Reshape) feeds a fully connected layer; "
                                   "only Flatten can be removed automatically")
        out.layer.append(new)
    if not renames and not windows:
        raise CaffeCompatError(f"net {net_param.name or '(unnamed)'!r} has no InnerProduct or "
                               "global pooling layer to convert")
    return out, renames


def transplant_fc(classifier, fcn, renames: dict) -> list:
    """Copy every blob of ``classifier`` into ``fcn`` (both engine CaffeNets) by layer
    name, following ``renames``; fully connected weights are reshaped to kernels.
    Returns ``(source layer, target layer)`` pairs copied."""
    targets = fcn.layers_by_name()
    copied = []
    for layer in classifier.caffe_layers:
        src_blobs = layer.blobs()
        if not src_blobs:
            continue
        name = renames.get(layer.name, layer.name)
        dst = targets.get(name)
        if dst is None:
            raise CaffeCompatError(f"the converted net has no layer {name!r}")
        dst_blobs = dst.blobs()
        if len(dst_blobs) != len(src_blobs):
            raise CaffeCompatError(f"layer {layer.name!r} has {len(src_blobs)} blobs but "
                                   f"{name!r} has {len(dst_blobs)}")
        for s, d in zip(src_blobs, dst_blobs):
            if s.data().size != d.data().size:
                raise CaffeCompatError(f"layer {layer.name!r}: blob of shape {s.shape} cannot "
                                       f"fill {name!r}'s {d.shape}")
            d.set_data(s.data().reshape(d.shape))
        copied.append((layer.name, name))
    return copied


@dataclass
class FullyConvolutional:
    """The converted net: ``block`` (engine CaffeNet with the weights), its ``param``,
    the layer ``renames`` and the classifier's ``input_shape``."""
    block: object
    param: object
    renames: dict = field(default_factory=dict)
    input_shape: tuple = ()

    def save(self, prototxt: str, weights: Optional[str] = None) -> None:
        """Write the converted prototxt (and its .caffemodel)."""
        from caffe_compat.formats.prototxt import write_net
        write_net(self.param, prototxt)
        if weights:
            self.block.save_caffemodel(weights)


def deploy_param(prototxt) -> object:
    """The TEST-phase, upgraded NetParameter of a deploy prototxt (path or text)."""
    from caffe_compat.formats.net_filter import filter_net
    from caffe_compat.formats.prototxt import read_net
    return filter_net(read_net(str(prototxt)), TEST).param


def fully_convolutional(source, ctx=None, classifier=None) -> FullyConvolutional:
    """Convert ``source`` (a :class:`~caffe_compat.recipes.visualize.source.NetSource`)
    into its fully convolutional twin with the same weights. ``classifier``: the
    already loaded engine block of ``source``, if the caller has one."""
    from caffe_compat.engine.graph import build_graph
    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.recipes.visualize.source import block_context, image_input
    classifier = classifier if classifier is not None else source.load(ctx=ctx)
    name, shape = image_input(classifier)
    param, renames = fully_convolutional_param(deploy_param(source.prototxt),
                                               classifier.blob_shapes)
    ctx = ctx or block_context(classifier)
    block = CaffeNet(build_graph(param), TEST, input_shapes={name: shape}, ctx=ctx)
    transplant_fc(classifier, block, renames)
    return FullyConvolutional(block, param, renames, tuple(shape))
