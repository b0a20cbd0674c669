"""Caffe file formats: text prototxt nets and solvers (this package's text side).

Usage::

    from caffe_compat.formats import read_net, filter_net, read_solver

    net = read_net("train_val.prototxt")           # parsed + upgraded to V2
    test_net = filter_net(net, phase=caffe_pb2.TEST)
    solver = read_solver("solver.prototxt")
"""
from caffe_compat.formats.net_filter import filter_net, filter_net_state, state_meets_rule  # noqa: F401
from caffe_compat.formats.prototxt import (  # noqa: F401
    NetDefinition, UnknownFieldWarning, format_text, parse_net, parse_text, read_net,
    write_net, write_text)
from caffe_compat.formats.solver_files import read_solver, resolve_path  # noqa: F401
from caffe_compat.formats.upgrade import (  # noqa: F401
    NetUpgradeError, upgrade_net, upgrade_solver)
