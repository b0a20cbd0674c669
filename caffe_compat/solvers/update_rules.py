"""Caffe's per-parameter update rules, to the letter, on MXNet NDArrays.

Each rule reproduces ``ComputeUpdateValue`` of its solver (sgd_solver.cpp,
nesterov_solver.cpp, adagrad_solver.cpp, rmsprop_solver.cpp, adadelta_solver.cpp,
adam_solver.cpp): it turns the (already normalised and regularised) ``diff`` into the
step that ``Net::Update`` subtracts from the data, updating ``history`` in place. As in
Caffe, the learning rate lives inside SGD's momentum history.
"""
from __future__ import annotations

import math
from typing import Callable

import mxnet as mx

NDArray = mx.nd.NDArray

#: How many history blobs per parameter each solver keeps (Adam/AdaDelta keep two sets).
HISTORY_SETS = {"SGD": 1, "Nesterov": 1, "AdaGrad": 1, "RMSProp": 1, "AdaDelta": 2, "Adam": 2}


def sgd(diff: NDArray, history: list, local_rate: float, param, iteration: int) -> NDArray:
    # history = local_rate * diff + momentum * history; update = history
    h = history[0]
    h[:] = local_rate * diff + param.momentum * h
    return h.copy()


def nesterov(diff, history, local_rate, param, iteration):
    # update = (1 + momentum) * history_new - momentum * history_old
    h = history[0]
    old = h.copy()
    h[:] = local_rate * diff + param.momentum * h
    return (1.0 + param.momentum) * h - param.momentum * old


def adagrad(diff, history, local_rate, param, iteration):
    h = history[0]
    h[:] = h + mx.nd.square(diff)
    return local_rate * (diff / (mx.nd.sqrt(h) + param.delta))


def rmsprop(diff, history, local_rate, param, iteration):
    h = history[0]
    h[:] = (1.0 - param.rms_decay) * mx.nd.square(diff) + param.rms_decay * h
    return local_rate * (diff / (mx.nd.sqrt(h) + param.delta))


def adadelta(diff, history, local_rate, param, iteration):
    grad_hist, update_hist = history
    m = param.momentum
    grad_hist[:] = (1.0 - m) * mx.nd.square(diff) + m * grad_hist
    ratio = mx.nd.sqrt((update_hist + param.delta) / (grad_hist + param.delta))
    step = diff * ratio
    update_hist[:] = (1.0 - m) * mx.nd.square(step) + m * update_hist
    return local_rate * step


def adam(diff, history, local_rate, param, iteration):
    m, v = history
    beta1, beta2 = param.momentum, param.momentum2
    t = iteration + 1
    correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    m[:] = (1.0 - beta1) * diff + beta1 * m
    v[:] = (1.0 - beta2) * mx.nd.square(diff) + beta2 * v
    return (local_rate * correction) * (m / (mx.nd.sqrt(v) + param.delta))


RULES: dict[str, Callable] = {"SGD": sgd, "Nesterov": nesterov, "AdaGrad": adagrad,
                              "RMSProp": rmsprop, "AdaDelta": adadelta, "Adam": adam}
