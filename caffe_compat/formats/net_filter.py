"""Choosing the layers of a net for a phase/level/stages, as Caffe's ``Net::FilterNet``.

A layer with no ``include``/``exclude`` rule is always kept; with ``include`` rules
it is kept if the net state meets at least one; with ``exclude`` rules it is
dropped if the state meets any; giving both is an error (Caffe's CHECK). A rule
is met when every condition it sets holds (``StateMeetsRule``): same ``phase``,
``min_level <= level <= max_level``, every ``stage`` present and no
``not_stage`` present in the state.

Usage::

    from caffe_compat.formats import read_net, filter_net
    from caffe_compat.proto import caffe_pb2

    net = read_net("train_val.prototxt")
    deploy = filter_net(net, caffe_pb2.TEST, level=0, stages=["deploy"])
    deploy.param.layer, deploy.layer_lines     # kept layers and their source lines

The state is combined with the file's ``state { }`` as ``Net(file, phase, level,
stages)`` does: phase and level are replaced, stages are appended. The solver's
rules (``train_state``/``test_state`` merged over the net's state) are in
:func:`solver_train_state` and :func:`solver_test_state`.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

from caffe_compat.errors import LayerError
from caffe_compat.formats.prototxt import NetDefinition
from caffe_compat.proto import caffe_pb2

__all__ = ["state_meets_rule", "net_state_for", "filter_net_state", "filter_net",
           "solver_train_state", "solver_test_state"]

PhaseLike = Union[int, str]


def _phase_value(phase: PhaseLike) -> int:
    if isinstance(phase, str):
        try:
            return caffe_pb2.Phase.Value(phase.upper())
        except ValueError:
            raise ValueError(f'phase must be TRAIN or TEST, got "{phase}"') from None
    if phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise ValueError(f"phase must be caffe_pb2.TRAIN (0) or TEST (1), got {phase!r}")
    return int(phase)


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's ``Net::StateMeetsRule``: does ``state`` satisfy every condition of ``rule``?

    >>> s = caffe_pb2.NetState(phase=caffe_pb2.TEST, level=2, stage=["deploy"])
    >>> state_meets_rule(s, caffe_pb2.NetStateRule(phase=caffe_pb2.TEST, max_level=3))
    True
    >>> state_meets_rule(s, caffe_pb2.NetStateRule(not_stage=["deploy"]))
    False
    """
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(stage not in stages for stage in rule.stage):
        return False
    if any(stage in stages for stage in rule.not_stage):
        return False
    return True


def net_state_for(net_param: caffe_pb2.NetParameter, phase: PhaseLike, level: int = 0,
                  stages: Sequence[str] = ()) -> caffe_pb2.NetState:
    """The state ``Net(file, phase, level, stages)`` runs with: the file's ``state``
    with phase and level replaced and ``stages`` appended to its stages."""
    state = caffe_pb2.NetState()
    state.CopyFrom(net_param.state)
    state.phase = _phase_value(phase)
    state.stage.extend(stages)
    state.level = level
    return state


def filter_net_state(defn: NetDefinition, state: caffe_pb2.NetState) -> NetDefinition:
    """Keeps the layers whose rules ``state`` meets; the result's ``param.state`` is ``state``.

    Raises :class:`LayerError` (naming the layer and its line) for a layer that
    has both ``include`` and ``exclude`` rules.
    """
    kept_layers, kept_lines = [], []
    for i, layer in enumerate(defn.param.layer):
        line = defn.layer_lines[i] if i < len(defn.layer_lines) else None
        if layer.include and layer.exclude:
            raise LayerError(layer.name, layer.type or "?",
                             "Specify either include rules or exclude rules; not both.",
                             path=defn.path or ("<string>" if line else None), line=line)
        if layer.include:
            included = any(state_meets_rule(state, rule) for rule in layer.include)
        else:
            included = not any(state_meets_rule(state, rule) for rule in layer.exclude)
        if included:
            kept_layers.append(layer)
            kept_lines.append(line)
    param = caffe_pb2.NetParameter()
    param.CopyFrom(defn.param)
    param.state.CopyFrom(state)
    param.ClearField("layer")
    param.layer.extend(kept_layers)
    lines = kept_lines if defn.layer_lines else []
    return dataclasses.replace(defn, param=param, layer_lines=lines,
                               warnings=list(defn.warnings), upgrades=list(defn.upgrades))


def filter_net(defn: NetDefinition, phase: PhaseLike, level: int = 0,
               stages: Sequence[str] = ()) -> NetDefinition:
    """The layers ``caffe.Net(file, phase, level=level, stages=stages)`` would build.

    ``phase`` is ``caffe_pb2.TRAIN``/``TEST`` (or "train"/"test"); ``layer_lines``
    of the result stay parallel to its layers.

    >>> from caffe_compat.formats.prototxt import read_net
    >>> net = read_net('layer { name: "d" type: "Dropout" bottom: "x" top: "x" '
    ...                'include { phase: TRAIN } }')
    >>> len(filter_net(net, caffe_pb2.TRAIN).param.layer), len(filter_net(net, "test").param.layer)
    (1, 0)
    """
    return filter_net_state(defn, net_state_for(defn.param, phase, level, stages))


def solver_train_state(solver_param: caffe_pb2.SolverParameter,
                       net_param: caffe_pb2.NetParameter) -> caffe_pb2.NetState:
    """Solver::InitTrainNet's state: TRAIN, then the net's ``state``, then the
    solver's ``train_state`` merged over it (later wins; stages accumulate)."""
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
    state.MergeFrom(net_param.state)
    state.MergeFrom(solver_param.train_state)
    return state


def solver_test_state(solver_param: caffe_pb2.SolverParameter,
                      net_param: caffe_pb2.NetParameter, index: int) -> caffe_pb2.NetState:
    """Solver::InitTestNets' state for test net ``index``: TEST, the net's ``state``,
    then ``test_state[index]`` if the solver gives any test_state."""
    state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
    state.MergeFrom(net_param.state)
    if len(solver_param.test_state):
        state.MergeFrom(solver_param.test_state[index])
    return state

