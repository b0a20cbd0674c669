"""Reading solver prototxts as Caffe's ``ReadSolverParamsFromTextFileOrDie`` does.

Usage::

    from caffe_compat.formats.solver_files import read_solver, resolve_path

    solver = read_solver("examples/mnist/lenet_solver.prototxt")
    solver.type                    # "Nesterov" even if the file says solver_type: NESTEROV
    net_file = resolve_path("examples/mnist/lenet_solver.prototxt", solver.net)

Caffe opens ``net``/``train_net``/``test_net`` relative to the current directory;
``read_solver`` keeps those values as written and :func:`resolve_path` finds the
file the way a user expects (current directory first, then the solver's folder).
Nets given inline (``net_param`` ...) are kept as written: Caffe does not upgrade
them either.
"""
from __future__ import annotations

import os
from typing import Union

from caffe_compat.errors import PrototxtError
from caffe_compat.formats.prototxt import load_text_source, parse_text_detailed
from caffe_compat.formats.upgrade import NetUpgradeError, upgrade_snapshot_prefix, upgrade_solver
from caffe_compat.proto import caffe_pb2

__all__ = ["read_solver", "resolve_path"]


def read_solver(path_or_text: Union[str, "os.PathLike[str]"],
                strict: bool = False, check: bool = True) -> caffe_pb2.SolverParameter:
    """Parses a solver prototxt (file path or text) and upgrades it like Caffe.

    Upgrades: ``solver_type`` enum -> ``type`` string (UpgradeSolverType); for a
    file, a missing ``snapshot_prefix`` becomes the file's path without extension
    and a ``snapshot_prefix`` that is a directory gets the file's stem appended
    (UpgradeSnapshotPrefixProperty). Unknown fields warn (or fail with ``strict``)
    as in :func:`~caffe_compat.formats.prototxt.parse_text`. With ``check`` (the
    default) a solver that cannot run (unknown ``type`` or ``lr_policy``, ``step``
    without ``stepsize`` ...) is a :class:`~caffe_compat.errors.SolverError` naming
    the file and line (:func:`~caffe_compat.solvers.validation.check_solver`);
    ``check=False`` only parses and upgrades (for tools that rewrite files).

    >>> read_solver("base_lr: 0.1 lr_policy: 'fixed' solver_type: ADAGRAD").type
    'AdaGrad'
    >>> read_solver("base_lr: 0.1 lr_policy: 'step'")
    Traceback (most recent call last):
    ...
    caffe_compat.errors.SolverError: <string>:1: lr_policy "step" needs a positive stepsize
    """
    text, path = load_text_source(path_or_text)
    parsed = parse_text_detailed(text, caffe_pb2.SolverParameter(), path, strict,
                                 _stacklevel=3)
    solver = parsed.message
    try:
        upgrade_solver(solver)
    except NetUpgradeError as exc:
        raise PrototxtError(exc.reason, path) from None
    if path is not None:
        upgrade_snapshot_prefix(solver, path)
    if check:
        # solvers/ imports this module: import its checks when first needed
        from caffe_compat.solvers.validation import check_solver
        check_solver(solver, path, dict(parsed.top_level))
    return solver


def resolve_path(solver_path: str, value: str) -> str:
    """Where a path written in a solver (``net``, ``train_net``, ``test_net`` ...) is.

    Caffe opens it relative to the current directory; if nothing is there, the
    solver file's directory is tried. Returns ``value`` unchanged when neither
    exists (so the later error names the path as written).

    >>> resolve_path("/no/such/solver.prototxt", "/abs/net.prototxt")
    '/abs/net.prototxt'
    """
    if os.path.isabs(value) or os.path.exists(value):
        return value
    candidate = os.path.join(os.path.dirname(os.fspath(solver_path)), value)
    return candidate if os.path.exists(candidate) else value
