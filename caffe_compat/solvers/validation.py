"""Checks a solver's settings when it is read, so a typo stops before any net is built.

Caffe finds these only when it gets there (an unknown ``type`` when the solver is
created, an unknown ``lr_policy`` or ``regularization_type`` at the first update);
caffe-compat refuses the file up front, naming the file and the line.

>>> from caffe_compat.proto import caffe_pb2
>>> check_solver(caffe_pb2.SolverParameter(type="Adamm", lr_policy="fixed"), "s.prototxt",
...              {"type": 3})
Traceback (most recent call last):
...
caffe_compat.errors.SolverError: s.prototxt:3: unknown solver type "Adamm" (known: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)
"""
from __future__ import annotations

from typing import Mapping, Optional

from caffe_compat.errors import SolverError
from caffe_compat.solvers.lr_policy import policy_problem
from caffe_compat.solvers.update_rules import RULES

#: SGDSolver::Regularize's two kinds.
REGULARIZATION_TYPES = ("L2", "L1")


def check_solver(param, path: Optional[str] = None,
                 field_lines: Optional[Mapping[str, int]] = None) -> None:
    """Raises :class:`~caffe_compat.errors.SolverError` naming ``path`` and the line of
    the offending field (``field_lines``: top-level field name -> line) if ``param``
    cannot run: unknown solver type, unusable lr_policy, unknown regularization_type.
    """
    lines = field_lines or {}

    def fail(message: str, *fields: str):
        line = next((lines[f] for f in fields if f in lines), None)
        raise SolverError(message, path=path, line=line)

    if param.type not in RULES:
        fail(f'unknown solver type "{param.type}" (known: {", ".join(RULES)})',
             "type", "solver_type")
    problem = policy_problem(param)
    if problem:
        fail(problem, "lr_policy")
    if param.regularization_type not in REGULARIZATION_TYPES:
        fail(f'unknown regularization_type "{param.regularization_type}" '
             f'(known: {", ".join(REGULARIZATION_TYPES)})', "regularization_type")
