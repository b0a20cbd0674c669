"""Small NetSpec helpers shared by the builders (the idioms of the upstream net.py files)."""
from __future__ import annotations

from caffe_compat.net_spec import NetSpec, layers as L, params as P

#: Caffe's usual learning-rate multipliers: weights 1 (decayed), biases 2 (not decayed).
LR_PARAMS = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]


def input_layer(n: NetSpec, top: str, dims, name: str | None = None) -> None:
    """``n[top] = Input(shape=dims)``; ``name`` renames the layer (FCN calls it "input")."""
    kwargs = {"name": name} if name else {}
    n[top] = L.Input(shape=dict(dim=list(dims)), **kwargs)


def max_pool(bottom, ks: int, stride: int, pad: int = 0):
    kwargs = {"pad": pad} if pad else {}
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride, **kwargs)


def lrn(bottom):
    """The AlexNet LRN: 5 channels, alpha 1e-4, beta 0.75."""
    return L.LRN(bottom, local_size=5, alpha=0.0001, beta=0.75)


def finish(n: NetSpec, name: str):
    """The NetParameter of ``n`` named ``name``."""
    proto = n.to_proto()
    proto.name = name
    return proto
