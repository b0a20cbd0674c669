"""pycaffe's ``caffe.draw``: draw a ``NetParameter`` as a Graphviz graph.

Same graph as pycaffe's ``draw.py``: one record node per layer (label: name, type,
kernel/stride/pad for Convolution/Deconvolution/Pooling, optional lr multipliers),
coloured by type (Convolution/Deconvolution ``#FF5050``, Pooling ``#FF9900``,
InnerProduct ``#CC33FF``, other ``#6495ED``, in-place layers ``#90EE90``), one
node per blob (a grey octagon where it is read as a bottom), edges labelled with
the batch size or the number of outputs::

    from caffe_compat import draw
    from caffe_compat.formats.prototxt import read_net

    net = read_net("train_val.prototxt").param
    draw.draw_net_to_file(net, "net.png", rankdir="LR", phase=caffe_pb2.TRAIN)
    print(draw.get_pydot_graph(net, "TB").source)     # the DOT text

The graph is built with the ``graphviz`` Python package (installed with mxnet)
instead of pydot; the object returned by :func:`get_pydot_graph` also has pydot's
``to_string()``, ``create(format=...)`` and ``write(path, format=...)``. Rendering
runs Graphviz's ``dot`` program; when it is missing a :class:`GraphvizNotFound`
error says so. The ``raw`` extension writes the DOT text itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, Optional, Tuple

from caffe_compat.errors import CaffeCompatError
from caffe_compat.proto import caffe_pb2

__all__ = ["LAYER_STYLE_DEFAULT", "NEURON_LAYER_STYLE", "BLOB_STYLE", "GraphvizNotFound",
           "get_pooling_types_dict", "get_edge_label", "get_layer_lr_mult", "get_layer_label",
           "choose_color_by_layertype", "get_pydot_graph", "draw_net", "draw_net_to_file"]

# Node styles of pycaffe's draw.py.
LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}

_LEARNING_TYPES = ("Convolution", "Deconvolution", "InnerProduct")


class GraphvizNotFound(CaffeCompatError):
    """Graphviz's ``dot`` program is not installed (or not on ``PATH``)."""


def get_pooling_types_dict() -> Dict[int, str]:
    """Pooling method number -> name (``{0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC'}``)."""
    return {v.number: name for name, v in
            caffe_pb2.PoolingParameter.PoolMethod.DESCRIPTOR.values_by_name.items()}


def get_edge_label(layer: caffe_pb2.LayerParameter) -> str:
    """Label of a layer's output edges: ``Batch N`` for Data, ``num_output`` for
    Convolution/Deconvolution/InnerProduct, else ``'""'`` (pycaffe's empty label)."""
    if layer.type == "Data":
        return "Batch " + str(layer.data_param.batch_size)
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return '""'


def get_layer_lr_mult(layer: caffe_pb2.LayerParameter) -> Tuple[float, float]:
    """The weight and bias ``lr_mult`` of a Convolution/Deconvolution/InnerProduct
    layer (1.0 when not given); other types and more than two ``param`` entries
    raise ``ValueError``."""
    if layer.type not in _LEARNING_TYPES:
        raise ValueError("%s layers do not have a learning rate multiplier" % layer.type)
    params = layer.param
    if len(params) == 0:
        return 1.0, 1.0
    if len(params) == 1:
        return params[0].lr_mult, 1.0
    if len(params) == 2:
        return params[0].lr_mult, params[1].lr_mult
    raise ValueError("Could not parse the learning rate multiplier")


def get_layer_label(layer: caffe_pb2.LayerParameter, rankdir: str,
                    display_lrm: bool = False) -> str:
    r"""pycaffe's node label, wrapped in DOT double quotes.

    Parts are joined by DOT's ``\n`` escape for horizontal layouts (LR/RL) and by
    spaces for vertical ones (TB/BT):

    >>> layer = caffe_pb2.LayerParameter(name="pool1", type="Pooling",
    ...                                  pooling_param=dict(kernel_size=2, stride=2))
    >>> print(get_layer_label(layer, "TB"))
    "pool1 (Pooling MAX) kernel size: 2 stride: 2 pad: 0"
    >>> print(get_layer_label(layer, "LR"))
    "pool1\n(Pooling MAX)\nkernel size: 2\nstride: 2\npad: 0"
    """
    separator = " " if rankdir in ("TB", "BT") else r"\n"
    parts = [layer.name]
    if layer.type == "Pooling":
        method = get_pooling_types_dict()[layer.pooling_param.pool]
        parts.append("(%s %s)" % (layer.type, method))
    else:
        parts.append("(%s)" % layer.type)
    if layer.type in ("Convolution", "Deconvolution", "Pooling"):
        if layer.type == "Pooling":
            pp = layer.pooling_param
            kernel, stride, pad = pp.kernel_size, pp.stride, pp.pad
        else:
            cp = layer.convolution_param
            kernel = cp.kernel_size[0] if len(cp.kernel_size) else 1
            stride = cp.stride[0] if len(cp.stride) else 1
            pad = cp.pad[0] if len(cp.pad) else 0
        parts.append(separator.join(["kernel size: %d" % kernel, "stride: %d" % stride,
                                     "pad: %d" % pad]))
    if display_lrm and layer.type in _LEARNING_TYPES:
        lrm0, lrm1 = get_layer_lr_mult(layer)
        if lrm0 or lrm1:
            parts.append("lr mult: %.1f, %.1f" % (lrm0, lrm1))
    return '"%s"' % separator.join(parts)


def choose_color_by_layertype(layertype: str) -> str:
    """Fill colour of a (not in-place) layer node."""
    if layertype in ("Convolution", "Deconvolution"):
        return "#FF5050"
    if layertype == "Pooling":
        return "#FF9900"
    if layertype == "InnerProduct":
        return "#CC33FF"
    return "#6495ED"


def _in_phase(layer: caffe_pb2.LayerParameter, phase: Optional[int]) -> bool:
    # pycaffe's draw.py phase test: only the rules' phase is looked at.
    if phase is None:
        return True
    if len(layer.include) > 0 and len(layer.exclude) > 0:
        raise ValueError("layer " + layer.name + " has both include and exclude specified.")
    included = len(layer.include) == 0
    for rule in layer.include:
        included = included or rule.phase == phase
    for rule in layer.exclude:
        included = included and not rule.phase == phase
    return included


def _unquote(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def _dot_program() -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizNotFound("Graphviz's 'dot' program was not found on PATH; install "
                               "Graphviz (e.g. apt-get install graphviz) to render images")
    return dot


def _render(source: str, fmt: str, prog: str = "dot") -> bytes:
    if fmt == "raw":
        return source.encode("utf-8")
    program = _dot_program() if prog == "dot" else shutil.which(prog)
    if program is None:
        raise GraphvizNotFound(f"Graphviz's {prog!r} program was not found on PATH")
    done = subprocess.run([program, "-T" + fmt], input=source.encode("utf-8"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CaffeCompatError(f"Graphviz could not draw format {fmt!r}: "
                               f"{lines[0] if lines else 'exit status %d' % done.returncode}")
    return done.stdout


def _graph_class():
    import graphviz

    class NetGraph(graphviz.Digraph):
        """A ``graphviz.Digraph`` with the pydot methods pycaffe scripts call."""

        def to_string(self) -> str:
            """The DOT text (pydot's ``Dot.to_string``)."""
            return self.source

        def create(self, format: str = "ps", prog: str = "dot") -> bytes:  # noqa: A002
            """The graph rendered by Graphviz as bytes (pydot's ``Dot.create``)."""
            return _render(self.source, format, prog)

        def write(self, path: str, format: str = "raw", prog: str = "dot") -> None:  # noqa: A002
            """Writes the rendered graph, or the DOT text for ``raw`` (pydot's ``write``)."""
            data = _render(self.source, format, prog)
            with open(path, "wb") as fh:
                fh.write(data)

    return NetGraph


def get_pydot_graph(caffe_net: caffe_pb2.NetParameter, rankdir: str, label_edges: bool = True,
                    phase: Optional[int] = None, display_lrm: bool = False):
    """The graph of ``caffe_net``'s layers (``phase`` None: all phases).

    Returns a ``graphviz.Digraph`` (``.source`` is the DOT text) that also offers
    pydot's ``to_string()``/``create()``/``write()``. Node ids are pycaffe's keys
    (``<layer>_<type>``, ``<blob>_blob``); as in pycaffe a blob keeps the style of
    its last use (octagon where last read as a bottom, plain where last written).
    """
    from graphviz import nohtml

    nodes: Dict[str, dict] = {}       # insertion order = first use, value = last use
    edges = []
    for layer in caffe_net.layer:
        if not _in_phase(layer, phase):
            continue
        node_name = "%s_%s" % (layer.name, layer.type)
        label = _unquote(get_layer_label(layer, rankdir, display_lrm=display_lrm))
        in_place = (len(layer.bottom) == 1 and len(layer.top) == 1
                    and layer.bottom[0] == layer.top[0])
        if in_place:
            style = dict(NEURON_LAYER_STYLE)
        else:
            style = dict(LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type))
        nodes[node_name] = dict(label=label, **style)
        for bottom in layer.bottom:
            nodes[bottom + "_blob"] = dict(label=bottom, **BLOB_STYLE)
            edges.append((bottom + "_blob", node_name, ""))
        for top in layer.top:
            nodes[top + "_blob"] = dict(label=top)
            edge_label = get_edge_label(layer) if label_edges else '""'
            edges.append((node_name, top + "_blob", _unquote(edge_label)))

    graph = _graph_class()(name=caffe_net.name or "Net", graph_attr={"rankdir": rankdir})
    for node_id, attrs in nodes.items():
        attrs = dict(attrs, label=nohtml(attrs["label"]))
        graph.node(nohtml(node_id), **attrs)
    for src, dst, label in edges:
        graph.edge(nohtml(src), nohtml(dst), label=nohtml(label))
    return graph


def draw_net(caffe_net: caffe_pb2.NetParameter, rankdir: str, ext: str = "png",
             phase: Optional[int] = None, display_lrm: bool = False) -> bytes:
    """The net drawn in image format ``ext`` (any Graphviz ``-T`` format; ``raw``
    gives the DOT text) as bytes."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    return graph.create(format=ext)


def draw_net_to_file(caffe_net: caffe_pb2.NetParameter, filename: str, rankdir: str = "LR",
                     phase: Optional[int] = None, display_lrm: bool = False) -> None:
    """Draws the net into ``filename`` in the format its extension names
    (``.png``, ``.svg``, ``.pdf``, ... ; ``.raw`` writes the DOT text)."""
    base = os.path.basename(filename)
    if "." not in base:
        raise CaffeCompatError(f"{filename}: cannot tell the image format; give the file an "
                               f"extension such as .png, .svg or .pdf")
    ext = base[base.rfind(".") + 1:]
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, "wb") as fid:
        fid.write(data)
