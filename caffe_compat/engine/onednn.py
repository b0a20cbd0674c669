"""Work-arounds for MXNet 1.9.1's oneDNN (MKLDNN) backward kernels, in one place.

oneDNN's ``slice`` cannot cut the channel axis of an array in its blocked layout (the
layout a Convolution's output has): a channel range that is not a whole block raises
"could not construct a sub-memory" or kills the process with SIGFPE (found on the corpus:
cifar10_quick's AVE pooling, DenseNet, ShuffleNet). :func:`slice_axes` cuts the batch and
channel axes with ``slice_axis`` (not a oneDNN op) and only the spatial axes with
``slice``, which oneDNN handles.

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


def slice_axes(F, x, begin, end, step=None):
    """``F.slice(x, begin, end, step)`` that never asks oneDNN for a channel sub-memory.

    Axes 0 and 1 are cut with ``slice_axis`` (step 1 only there), the others with
    ``slice``; ``None`` leaves an axis whole, as in ``F.slice``.
    """
    begin, end = tuple(begin), tuple(end)
    step = tuple(step) if step is not None else (None,) * len(begin)
    for axis in range(min(2, len(begin))):
        if step[axis] not in (None, 1):
            raise ValueError("slice_axes steps only the spatial axes")
        if begin[axis] or end[axis] is not None:
            x = F.slice_axis(x, axis=axis, begin=begin[axis] or 0, end=end[axis])
    rest = range(2, len(begin))
    if any(begin[a] or end[a] is not None or step[a] not in (None, 1) for a in rest):
        x = F.slice(x, begin=(None, None) + begin[2:], end=(None, None) + end[2:],
                    step=(None, None) + step[2:])
    return x


@contextmanager
def gradient_guards(on: bool):
    """Trace layers with (``on``) or without the plain-layout gradient routing."""
    saved = _guards["on"]
    _guards["on"] = on
    try:
        yield
    finally:
        _guards["on"] = saved
