"""Caffe's solvers: ``SGDSolver``, ``NesterovSolver``, ``AdaGradSolver``,
``RMSPropSolver``, ``AdaDeltaSolver``, ``AdamSolver`` and ``get_solver``."""
from caffe_compat.solvers.solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver,  # noqa: F401
                                         NesterovSolver, RMSPropSolver, SGDSolver, Solver,
                                         get_solver)
