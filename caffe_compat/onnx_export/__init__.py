"""Caffe nets to ONNX with Caffe's exact semantics (``caffe-compat convert --to onnx``).

::

    from caffe_compat.engine.network import CaffeNet
    from caffe_compat.onnx_export import export_onnx, check_with_onnxruntime

    net = CaffeNet.from_prototxt("deploy.prototxt", weights="net.caffemodel",
                                 input_shapes={"data": (1, 3, 224, 224)})
    export_onnx(net, "net.onnx")                      # inputs/outputs named after the blobs
    check_with_onnxruntime(net, "net.onnx")           # {"prob": rel. L2 error vs the engine}

The graph walks caffe-compat's own net (``converter``); one emitter per layer family in
``layers/`` writes each Caffe layer as ONNX nodes (``registry`` lists what is exported
and why the rest is refused). Needs the ``onnx`` extra: ``pip install caffe-compat[onnx]``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from caffe_compat.errors import CaffeCompatError


class MissingOnnxError(CaffeCompatError):
    """The ``onnx`` (or ``onnxruntime``) package is not installed."""


def require(package: str):
    """Import ``onnx`` or ``onnxruntime``, or say how to install it."""
    import importlib
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingOnnxError(f"ONNX export needs the {package} package: "
                               "pip install 'caffe-compat[onnx]'") from None


def export_onnx(net, path: str, outputs: Optional[Sequence[str]] = None) -> str:
    """Write ``net`` (a built :class:`~caffe_compat.engine.network.CaffeNet` with its
    weights and input shapes) as an ONNX file; returns ``path``.

    ``outputs``: blob names (default: the net's outputs). Models over 2 GB keep their
    weights in ``path + ".data"`` beside it (ONNX external data).
    """
    onnx = require("onnx")
    from caffe_compat.onnx_export.converter import onnx_model
    model = onnx_model(net, outputs)
    if sum(len(t.raw_data) for t in model.graph.initializer) > 2 ** 31 - 2 ** 26:
        import os
        onnx.save_model(model, path, save_as_external_data=True,
                        location=os.path.basename(path) + ".data")
    else:
        onnx.save_model(model, path)
    return path


def check_with_onnxruntime(net, path: str, inputs: Optional[Mapping] = None,
                           seed: int = 0) -> dict:
    """Run the exported file in onnxruntime and the net in the engine on the same inputs
    (uniform in [-1, 1) unless given); returns ``{output: rel. L2 error}``."""
    import mxnet as mx
    import numpy as np
    ort = require("onnxruntime")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in session.get_inputs():
        value = None if inputs is None else inputs.get(i.name)
        if value is None:
            value = rng.uniform(-1, 1, net.blob_shapes[i.name])
        feeds[i.name] = np.ascontiguousarray(value, dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    theirs = session.run(names, feeds)
    saved = list(net.output_names)
    net.set_outputs([n.split("@")[0] for n in names])
    try:
        ours = net(*[mx.nd.array(feeds.get(n, np.zeros(net.blob_shapes[n], np.float32)))
                     for n in net.input_names])
    finally:
        net.set_outputs(saved)
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    errors = {}
    for name, a, b in zip(names, ours, theirs):
        a = a.asnumpy().astype(np.float64)
        b = np.asarray(b, np.float64).reshape(a.shape)
        den = np.linalg.norm(a)
        errors[name] = float(np.linalg.norm(a - b) / den) if den else float(np.linalg.norm(b))
    return errors
