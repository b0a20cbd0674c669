"""Caffe's learning-rate policies (SGDSolver::GetLearningRate, sgd_solver.cpp).

>>> p = caffe_pb2.SolverParameter(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=100)
>>> learning_rate(p, 250)[0]
0.0001...
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from caffe_compat.proto import caffe_pb2  # noqa: F401  (the docstring examples use it)


@dataclass
class PlateauState:
    """What lr_policy "plateau" remembers between iterations (Intel branch / PVANet's
    Caffe: ``minimum_loss_``, ``iter_last_event_``)."""
    minimum_loss: float = 3.4028234663852886e+38     # FLT_MAX
    iter_last_event: int = 0


def learning_rate(param, iteration: int, current_step: int = 0,
                  smoothed_loss: float = 0.0, plateau: PlateauState = None) -> tuple[float, int]:
    """(rate, new current_step) at ``iteration``; ``current_step`` matters for multistep.

    fixed: base_lr; step: base_lr * gamma^floor(iter/stepsize); exp: base_lr * gamma^iter;
    inv: base_lr * (1 + gamma*iter)^-power; multistep: base_lr * gamma^step where step
    advances once per call when iter reaches the next stepvalue (Caffe's ``if``, not
    ``while``); poly: base_lr * (1 - iter/max_iter)^power; sigmoid:
    base_lr / (1 + exp(-gamma * (iter - stepsize))).

    Fork policies (BVLC/caffe intel sgd_solver.cpp, from PVANet's Caffe): multifixed:
    stagelr[i] for the first i with iter <= stageiter[i] (the last stage after that);
    plateau: base_lr * gamma^step, where step advances (at most once per call) when the
    smoothed loss has not set a new minimum for plateau_winsize[step] iterations.

    >>> p = caffe_pb2.SolverParameter(lr_policy="multifixed", stagelr=[0.1, 0.01],
    ...                               stageiter=[100, 200])
    >>> [round(learning_rate(p, i)[0], 6) for i in (0, 100, 101, 500)]
    [0.1, 0.1, 0.01, 0.01]
    """
    policy = param.lr_policy
    base = param.base_lr
    it = iteration
    if policy == "fixed":
        return base, current_step
    if policy == "step":
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
    if policy == "multifixed":
        stage = next((i for i, end in enumerate(param.stageiter) if it <= end),
                     len(param.stageiter) - 1)
        return float(param.stagelr[stage]), current_step
    if policy == "plateau":
        state = plateau if plateau is not None else PlateauState()
        if smoothed_loss < state.minimum_loss:
            state.minimum_loss, state.iter_last_event = smoothed_loss, it
        if current_step < len(param.plateau_winsize):
            if it >= state.iter_last_event + param.plateau_winsize[current_step]:
                current_step += 1
                state.iter_last_event = it
        return base * math.pow(param.gamma, current_step), current_step
    raise ValueError(policy_problem(param))


#: The policies :func:`learning_rate` knows: Caffe's, then the Intel branch's.
POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "multifixed", "plateau")


def policy_problem(param) -> Optional[str]:
    """Why ``param``'s lr_policy cannot run (None when it can), checked when a solver is
    read instead of at the first step.

    Caffe stops on an unknown policy and on ``step`` without a positive ``stepsize``
    (GetLearningRate's LOG(FATAL) and CHECK_GT). It silently runs ``multistep``
    without ``stepvalue`` as ``fixed`` and divides by zero for ``poly`` without
    ``max_iter``: both are refused here rather than trained wrongly.

    >>> policy_problem(caffe_pb2.SolverParameter(lr_policy="setp"))
    'unknown lr_policy "setp" (known: fixed, step, exp, inv, multistep, poly, sigmoid, multifixed, plateau)'
    >>> policy_problem(caffe_pb2.SolverParameter(lr_policy="step", stepsize=0))
    'lr_policy "step" needs a positive stepsize'
    """
    policy = param.lr_policy
    if not policy:
        return f'no lr_policy (known: {", ".join(POLICIES)})'
    if policy not in POLICIES:
        return f'unknown lr_policy "{policy}" (known: {", ".join(POLICIES)})'
    if policy == "step" and param.stepsize <= 0:
        return 'lr_policy "step" needs a positive stepsize'
    if policy == "multistep" and not len(param.stepvalue):
        return 'lr_policy "multistep" needs at least one stepvalue'
    if policy == "poly" and param.max_iter <= 0:
        return 'lr_policy "poly" needs a positive max_iter'
    if policy == "multifixed" and (len(param.stagelr) != len(param.stageiter)
                                   or not len(param.stagelr)):
        return 'lr_policy "multifixed" needs as many stagelr as stageiter values'
    return None
