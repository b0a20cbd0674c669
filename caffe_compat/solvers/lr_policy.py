"""Caffe's learning-rate policies (SGDSolver::GetLearningRate, sgd_solver.cpp).

>>> from caffe_compat.proto import caffe_pb2
>>> p = caffe_pb2.SolverParameter(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=100)
>>> learning_rate(p, 250)[0]
0.0001...
"""
from __future__ import annotations

import math


def learning_rate(param, iteration: int, current_step: int = 0) -> tuple[float, int]:
    """(rate, new current_step) at ``iteration``; ``current_step`` matters for multistep.

    fixed: base_lr; step: base_lr * gamma^floor(iter/stepsize); exp: base_lr * gamma^iter;
    inv: base_lr * (1 + gamma*iter)^-power; multistep: base_lr * gamma^step where step
    advances once per call when iter reaches the next stepvalue (Caffe's ``if``, not
    ``while``); poly: base_lr * (1 - iter/max_iter)^power; sigmoid:
    base_lr / (1 + exp(-gamma * (iter - stepsize))).
    """
    policy = param.lr_policy
    base = param.base_lr
    it = iteration
    if policy == "fixed":
        return base, current_step
    if policy == "step":
        if param.stepsize <= 0:
            raise ValueError("lr_policy step needs a positive stepsize")
        step = it // param.stepsize
        return base * math.pow(param.gamma, step), step
    if policy == "exp":
        return base * math.pow(param.gamma, it), current_step
    if policy == "inv":
        return base * math.pow(1.0 + param.gamma * it, -param.power), current_step
    if policy == "multistep":
        if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
            current_step += 1
        return base * math.pow(param.gamma, current_step), current_step
    if policy == "poly":
        return base * math.pow(1.0 - float(it) / param.max_iter, param.power), current_step
    if policy == "sigmoid":
        return base * (1.0 / (1.0 + math.exp(-param.gamma * (it - float(param.stepsize))))), current_step
    raise ValueError(f"unknown lr_policy {policy!r} (Caffe knows fixed, step, exp, inv, "
                     "multistep, poly, sigmoid)")
