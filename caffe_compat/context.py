"""The one place where the MXNet device is chosen (``mx.cpu()`` or ``mx.gpu(i)``).

pycaffe's ``set_mode_cpu()``/``set_mode_gpu()``/``set_device(i)`` write here; every
net built afterwards lives on :func:`current_context`.

>>> import caffe_compat as caffe
>>> caffe.set_mode_cpu(); current_context()
cpu(0)
"""
from __future__ import annotations

from contextlib import contextmanager

import mxnet as mx

from caffe_compat.errors import DeviceError

_state = {"mode": "cpu", "device": 0}


def set_mode_cpu() -> None:
    """Run new nets on the CPU."""
    _state["mode"] = "cpu"


def set_mode_gpu() -> None:
    """Run new nets on GPU ``set_device`` chose (0 by default)."""
    _state["mode"] = "gpu"


def set_device(device_id: int) -> None:
    """Choose which GPU ``set_mode_gpu`` uses."""
    _state["device"] = int(device_id)


def use_context(ctx: mx.Context) -> None:
    """Make ``ctx`` (``mx.cpu()`` or ``mx.gpu(i)``) the device new nets are built on."""
    if ctx.device_type == "gpu":
        set_device(ctx.device_id)
        set_mode_gpu()
    else:
        set_mode_cpu()


@contextmanager
def building_on(ctx: mx.Context):
    """Build nets on ``ctx`` inside the ``with`` block, then restore the previous choice."""
    saved = dict(_state)
    use_context(ctx)
    try:
        yield
    finally:
        _state.update(saved)


def current_context() -> mx.Context:
    """The MXNet context new nets are built on."""
    if _state["mode"] == "gpu":
        return mx.gpu(_state["device"])
    return mx.cpu()


def gpu_count() -> int:
    """How many GPUs MXNet sees (0 on a CPU-only build)."""
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:
        return 0


def context_from_flag(gpu: str | None) -> list[mx.Context]:
    """Contexts for a Caffe-style ``--gpu`` flag: None or "-1" -> [cpu], "0,1" ->
    [gpu(0), gpu(1)], "all" -> every GPU MXNet sees.

    A GPU MXNet does not see (any GPU on a CPU-only build, ``all`` included) is a
    :class:`~caffe_compat.errors.DeviceError`, as Caffe's ``--gpu`` stops on a device it
    cannot use instead of running on the CPU.

    >>> context_from_flag(None), context_from_flag("-1")
    ([cpu(0)], [cpu(0)])
    >>> context_from_flag("zero")
    Traceback (most recent call last):
    ...
    caffe_compat.errors.DeviceError: --gpu zero: give GPU ids (0 or 0,1), all, or -1 for the CPU
    """
    if gpu is None or gpu == "" or gpu == "-1":
        return [mx.cpu()]
    available = gpu_count()
    seen = f"MXNet sees {available} GPU(s)" if available else \
        "this MXNet sees no GPU (a CPU-only build?)"
    if gpu == "all":
        if not available:
            raise DeviceError(f"--gpu all: {seen}; leave out --gpu to run on the CPU")
        return [mx.gpu(i) for i in range(available)]
    try:
        ids = [int(i) for i in str(gpu).split(",")]
    except ValueError:
        raise DeviceError(f"--gpu {gpu}: give GPU ids (0 or 0,1), all, or -1 for the CPU") \
            from None
    missing = [i for i in ids if not 0 <= i < available]
    if missing:
        raise DeviceError(f"--gpu {gpu}: {seen}, not GPU {missing[0]}; leave out --gpu "
                          f"(or give -1) to run on the CPU")
    return [mx.gpu(i) for i in ids]
