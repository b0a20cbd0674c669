"""Work-arounds for MXNet 1.9.1's oneDNN (MKLDNN) backward kernels, in one place.

Two oneDNN backward kernels misread a head gradient that arrives in oneDNN's blocked
memory layout, which is what a following Convolution's backward (or a hybridized
graph) hands them: ``_backward_LRN`` is then off by ~10-40%, and
``MKLDNNConcatBackward`` crashes the process (SIGFPE) or corrupts memory. A layer-by-
layer backward (pycaffe) never feeds them such gradients; a whole-graph backward does.

:func:`plain_layout_grad` puts a full-range ``slice_axis`` after the op: the value is
unchanged, and its backward hands the op a plain-layout gradient. Found by the whole-
graph golden tests (tests/test_golden_nets.py::test_whole_graph_backward_from_outputs_only).
"""
from __future__ import annotations

from contextlib import contextmanager

_guards = {"on": True}


def plain_layout_grad(F, y, axis: int = 1):
    """``y`` itself, routed so that the gradient reaching ``y``'s op is plain layout.

    The routing costs a copy, so a block traced for inference only (not recording
    gradients, see :func:`gradient_guards`) gets ``y`` untouched."""
    if not _guards["on"]:
        return y
    return F.slice_axis(y, axis=axis, begin=0, end=None)


@contextmanager
def gradient_guards(on: bool):
    """Trace layers with (``on``) or without the plain-layout gradient routing."""
    saved = _guards["on"]
    _guards["on"] = on
    try:
        yield
    finally:
        _guards["on"] = saved
