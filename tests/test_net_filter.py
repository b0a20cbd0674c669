"""Choosing layers by NetState exactly like Caffe's Net::FilterNet / StateMeetsRule."""
import os

import pytest

from caffe_compat.errors import LayerError
from caffe_compat.formats.net_filter import (filter_net, filter_net_state, net_state_for,
                                             solver_test_state, solver_train_state,
                                             state_meets_rule)
from caffe_compat.formats.prototxt import parse_text, read_net
from caffe_compat.proto import caffe_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "prototxt", "filter_stages.prototxt")
LINES = {"data_train": 6, "data_test": 12, "always": 18, "level_1_up": 24,
         "not_level_2_up": 31, "deploy_only": 38, "not_deploy": 45, "a_and_b": 52,
         "a_or_b": 59, "base_stage": 67, "test_level_0_to_1": 74, "drop_in_test_deploy": 81}
TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


@pytest.fixture(scope="module")
def net():
    return read_net(FIXTURE)


# The file's own `state { stage: "base" }` is always part of the state.
@pytest.mark.parametrize("phase, level, stages, kept", [
    (TRAIN, 0, [], ["data_train", "always", "not_level_2_up", "not_deploy", "base_stage",
                    "drop_in_test_deploy"]),
    (TEST, 0, ["deploy"], ["data_test", "always", "not_level_2_up", "deploy_only",
                           "base_stage", "test_level_0_to_1"]),
    (TEST, 1, ["a"], ["data_test", "always", "level_1_up", "not_level_2_up", "not_deploy",
                      "a_or_b", "base_stage", "test_level_0_to_1", "drop_in_test_deploy"]),
    (TEST, 2, ["a", "b"], ["data_test", "always", "level_1_up", "not_deploy", "a_and_b",
                           "a_or_b", "base_stage", "drop_in_test_deploy"]),
    (TRAIN, -1, ["b"], ["data_train", "always", "not_level_2_up", "not_deploy", "a_or_b",
                        "base_stage", "drop_in_test_deploy"]),
])
def test_filter_by_phase_level_and_stages(net, phase, level, stages, kept):
    out = filter_net(net, phase, level=level, stages=stages)
    assert [l.name for l in out.param.layer] == kept
    assert out.layer_lines == [LINES[name] for name in kept]
    assert out.param.state.phase == phase and out.param.state.level == level
    assert list(out.param.state.stage) == ["base"] + stages
    assert len(net.param.layer) == 12                   # input untouched


def test_phase_may_be_a_string(net):
    assert filter_net(net, "test").param == filter_net(net, TEST).param
    with pytest.raises(ValueError, match="TRAIN or TEST"):
        filter_net(net, "deploy")


def test_layers_without_rules_always_stay():
    net = read_net('layer { name: "a" type: "ReLU" }\nlayer { name: "b" type: "ReLU" }')
    for phase in (TRAIN, TEST):
        assert [l.name for l in filter_net(net, phase, level=7, stages=["x"]).param.layer] == \
            ["a", "b"]


def test_include_and_exclude_together_is_an_error_naming_the_layer():
    text = ('name: "n"\nlayer {\n  name: "bad"\n  type: "ReLU"\n  include { phase: TRAIN }\n'
            '  exclude { phase: TEST }\n}\n')
    with pytest.raises(LayerError) as info:
        filter_net(read_net(text), TRAIN)
    err = info.value
    assert (err.layer_name, err.layer_type, err.line) == ("bad", "ReLU", 2)
    assert "Specify either include rules or exclude rules; not both." in str(err)


@pytest.mark.parametrize("rule, meets", [
    ("phase: TEST", True), ("phase: TRAIN", False),
    ("min_level: 2", True), ("min_level: 3", False), ("max_level: 2", True),
    ("max_level: 1", False), ("stage: 'x'", True), ("stage: 'x' stage: 'y'", True),
    ("stage: 'z'", False), ("not_stage: 'z'", True), ("not_stage: 'y'", False),
    ("phase: TEST min_level: 0 max_level: 5 stage: 'y' not_stage: 'q'", True),
    ("", True),
])
def test_state_meets_rule(rule, meets):
    state = caffe_pb2.NetState(phase=TEST, level=2, stage=["x", "y"])
    assert state_meets_rule(state, parse_text(rule, caffe_pb2.NetStateRule)) is meets


def test_net_state_for_replaces_phase_and_level_and_appends_stages():
    param = parse_text('state { phase: TRAIN level: 4 stage: "s" }', caffe_pb2.NetParameter)
    state = net_state_for(param, TEST, level=1, stages=["t"])
    assert (state.phase, state.level, list(state.stage)) == (TEST, 1, ["s", "t"])


def test_filter_with_an_explicit_state_keeps_it(net):
    state = caffe_pb2.NetState(phase=TEST, level=0, stage=["deploy"])
    out = filter_net_state(net, state)
    assert out.param.state == state and "base_stage" not in [l.name for l in out.param.layer]


def test_solver_states_merge_as_caffe_solver_does():
    net = parse_text('state { phase: TEST stage: "base" }', caffe_pb2.NetParameter)
    solver = parse_text('train_state { level: 2 stage: "x" }\n'
                        'test_state { stage: "t0" }\ntest_state { level: 3 }',
                        caffe_pb2.SolverParameter)
    train = solver_train_state(solver, net)
    # The net's explicit phase overrides the solver's TRAIN default, as in Caffe.
    assert (train.phase, train.level, list(train.stage)) == (TEST, 2, ["base", "x"])
    test1 = solver_test_state(solver, net, 1)
    assert (test1.phase, test1.level, list(test1.stage)) == (TEST, 3, ["base"])
    plain = caffe_pb2.NetParameter()
    assert solver_train_state(caffe_pb2.SolverParameter(), plain).phase == TRAIN
    assert solver_test_state(caffe_pb2.SolverParameter(), plain, 0).phase == TEST


def test_golden_nets_keep_every_layer_in_test_phase():
    for name in ("caffenet_tiny", "resnet_tiny", "googlenet_tiny"):
        net = read_net(os.path.join(HERE, "golden", name, "net.prototxt"))
        out = filter_net(net, TEST)
        assert out.param.layer == net.param.layer and out.layer_lines == net.layer_lines
