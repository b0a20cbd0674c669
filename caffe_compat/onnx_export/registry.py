"""Which Caffe layer types the ONNX exporter writes, and why the others are refused.

Each layer family's module in ``caffe_compat.onnx_export.layers`` registers one emitter
per Caffe type with :func:`emits`; types ONNX cannot express exactly are registered
with :func:`refuses` and the reason, which the export error repeats::

    from caffe_compat.onnx_export.registry import emits

    @emits("ReLU")
    def relu(ctx):                      # ctx: converter.LayerContext
        return [ctx.op("Relu", ctx.inputs[0])]

An emitter returns the ONNX value of each top, in top order: a value it made, or one of
its inputs unchanged (Split, Dropout at TEST), or ``None`` for a top it does not write.
"""
from __future__ import annotations

from typing import Callable, Optional

from caffe_compat.errors import CaffeCompatError, LayerError

#: Caffe type -> emitter(ctx) -> list of ONNX value names (one per top).
EMITTERS: dict[str, Callable] = {}
#: Caffe type -> why it is not exported.
REFUSALS: dict[str, str] = {}


class OnnxExportError(CaffeCompatError):
    """The net cannot be exported as asked (an unknown output blob, nothing to export)."""


class OnnxLayerError(LayerError, OnnxExportError):
    """A layer that cannot be written as ONNX exactly; the message names the layer, its
    type, its prototxt line and the reason."""


def emits(*type_names: str) -> Callable[[Callable], Callable]:
    """Decorator registering an emitter for one or more Caffe layer types."""
    def decorate(fn: Callable) -> Callable:
        for name in type_names:
            EMITTERS[name] = fn
        return fn
    return decorate


def refuses(reason: str, *type_names: str) -> None:
    """Record that these Caffe types are not exported, and why."""
    for name in type_names:
        REFUSALS[name] = reason


def _load() -> None:
    from caffe_compat.onnx_export import layers  # noqa: F401  (registers every family)


def emitter_for(type_name: str) -> Optional[Callable]:
    _load()
    return EMITTERS.get(type_name)


def refusal_for(type_name: str) -> Optional[str]:
    _load()
    return REFUSALS.get(type_name)


def exported_types() -> list[str]:
    """Sorted Caffe layer types the exporter writes (some refuse particular settings,
    e.g. Dropout in TRAIN phase; the error then says so)."""
    _load()
    return sorted(EMITTERS)


def refused_types() -> dict[str, str]:
    """Caffe layer types that are never exported, with the reason."""
    _load()
    return dict(sorted(REFUSALS.items()))
