"""Caffe's Solver loop (solver.cpp, sgd_solver.cpp) on the pycaffe Net.

``step(n)`` does exactly what Caffe's ``Solver::Step`` does each iteration: clear the
parameter diffs, test every ``test_interval`` (and at iteration 0 when
``test_initialization``), ``iter_size`` forward/backward passes, smoothed-loss
display (``average_loss``), callbacks, ``ApplyUpdate`` (learning rate, gradient
clipping, ``iter_size`` normalisation, L2/L1 regularisation with ``decay_mult``, the
solver's update rule with ``lr_mult``, ``data -= diff``), ``iter += 1``, snapshots.

>>> import caffe_compat as caffe
>>> solver = caffe.get_solver("lenet_solver.prototxt")    # doctest: +SKIP
>>> solver.net.copy_from("init.caffemodel")               # doctest: +SKIP
>>> solver.step(100); solver.snapshot()                   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Callable, Optional

import mxnet as mx
import numpy as np

from caffe_compat.errors import SolverError
from caffe_compat.formats.net_filter import filter_net_state, solver_test_state, solver_train_state
from caffe_compat.formats.prototxt import NetDefinition, read_net
from caffe_compat.formats.upgrade import upgrade_net
from caffe_compat.formats.solver_files import read_solver, resolve_path
from caffe_compat.proto import caffe_pb2
from caffe_compat.solvers.lr_policy import PlateauState, learning_rate
from caffe_compat.solvers.update_rules import HISTORY_SETS, RULES
from caffe_compat.solvers.validation import check_solver

log = logging.getLogger("caffe_compat.solver")


class GlogFormatter(logging.Formatter):
    """glog's line format (``I1126 10:03:50.123456  1234 solver.cpp:0] message``), so
    Caffe's own log tools (parse_log.py, plot_training_log.py) read our logs."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        level = record.levelname[0]
        return (f"{level}{time.strftime('%m%d %H:%M:%S', t)}.{micros:06d} {record.process:5d} "
                f"solver.cpp:0] {record.getMessage()}")


def log_like_caffe(stream=None) -> logging.Handler:
    """Send solver log lines to ``stream`` (default stderr, like glog) in glog format."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(GlogFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def _inline_definition(net_param) -> NetDefinition:
    """A net given inline in the solver (net_param, test_net_param ...), upgraded."""
    param = caffe_pb2.NetParameter()
    param.CopyFrom(net_param)
    upgrade_net(param)
    return NetDefinition(param, None, [None] * len(param.layer))


class Solver:
    """A Caffe solver of any type; ``type`` comes from the solver prototxt.

    Attributes as in pycaffe: ``net`` (train net), ``test_nets``, ``iter``, ``param``.
    """

    solver_type: Optional[str] = None  # fixed by the typed subclasses (SGDSolver, ...)

    def __init__(self, solver_file, *, param: Optional[caffe_pb2.SolverParameter] = None,
                 gradient_sync=None):
        self.path = str(solver_file) if solver_file is not None else None
        self.param = param if param is not None else read_solver(self.path)
        if self.solver_type is not None and self.param.type != self.solver_type:
            self.param.type = self.solver_type
        check_solver(self.param, self.path)
        if self.param.random_seed >= 0:
            from caffe_compat.engine.fillers import set_random_seed
            set_random_seed(self.param.random_seed)
        self.iter = 0
        self.current_step = 0
        self.smoothed_loss = 0.0
        self._losses: list[float] = []
        self._callbacks: list[tuple[Callable, Callable]] = []
        self.requested_stop = False
        self.gradient_sync = gradient_sync
        self.net = self._train_net()
        self.test_nets = self._test_nets()
        self._learnable = self._learnable_params()
        sets = HISTORY_SETS[self.param.type]
        self.history = [[mx.nd.zeros(p.shape, ctx=p.list_ctx()[0]) for p, _, _ in self._learnable]
                        for _ in range(sets)]
        self.log_lines: list[str] = []

    # ---- nets ------------------------------------------------------------------------
    def _definition(self, field_file: str, field_param: str):
        p = self.param
        value = getattr(p, field_file)
        if value:
            return read_net(resolve_path(self.path, value) if self.path else value)
        if p.HasField(field_param):
            return _inline_definition(getattr(p, field_param))
        return None

    def _net_from(self, definition, state) -> "object":
        from caffe_compat.engine.graph import build_graph
        from caffe_compat.engine.network import CaffeNet
        from caffe_compat.pycaffe.net import Net
        filtered = filter_net_state(definition, state)
        graph = build_graph(filtered.param, filtered.path, filtered.layer_lines)
        net = Net.from_block(CaffeNet(graph, state.phase))
        # The update rewrites the weights in place between calls: every blob and diff is
        # computed in its call, none left for first read.
        net.lazy_blobs = False
        return net

    def _train_net(self):
        p = self.param
        definition = (self._definition("train_net", "train_net_param")
                      or self._definition("net", "net_param"))
        if definition is None:
            raise SolverError("the solver names no train net (net, net_param, train_net or "
                              "train_net_param)", path=self.path)
        net = self._net_from(definition, solver_train_state(p, definition.param))
        for w in p.weights:
            net.copy_from(resolve_path(self.path, w) if self.path else w)
        return net

    def _test_nets(self) -> list:
        p = self.param
        defs = []
        for i, f in enumerate(p.test_net):
            defs.append(read_net(resolve_path(self.path, f) if self.path else f))
        for tp in p.test_net_param:
            defs.append(_inline_definition(tp))
        general = None
        if not defs and len(p.test_iter):
            general = self._definition("net", "net_param")
        nets = []
        count = len(defs) + (len(p.test_iter) - len(defs) if general is not None else 0)
        if count != len(p.test_iter) and (defs or general is not None):
            raise SolverError(f"test_iter must be given once per test net ({count} test nets, "
                              f"{len(p.test_iter)} test_iter)", path=self.path)
        for i in range(count):
            definition = defs[i] if i < len(defs) else general
            net = self._net_from(definition, solver_test_state(p, definition.param, i))
            net.share_with(self.net)
            nets.append(net)
        return nets

    def _learnable_params(self) -> list[tuple]:
        """Caffe's learnable_params_: owners only, in layer/blob order, with their
        lr_mult and decay_mult (BatchNorm statistics have lr_mult 0)."""
        seen, out = set(), []
        for layer in self.net.block.caffe_layers:
            for i, p in enumerate(layer.blobs()):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                spec = layer.param.param[i] if i < len(layer.param.param) else None
                lr = spec.lr_mult if spec is not None else 1.0
                decay = spec.decay_mult if spec is not None else 1.0
                if not layer.computes_param_diffs:
                    lr = 0.0
                out.append((p, lr, decay))
        return out

    # ---- callbacks / control ----------------------------------------------------------
    def add_callback(self, on_start: Callable, on_gradients_ready: Callable) -> None:
        """pycaffe's ``solver.add_callback(on_start, on_gradients_ready)``."""
        self._callbacks.append((on_start, on_gradients_ready))

    def request_stop(self) -> None:
        self.requested_stop = True

    def _log(self, message: str) -> None:
        """Record a Caffe log line; emitted through the ``caffe_compat.solver`` logger in
        glog's format when :func:`log_like_caffe` is on (the CLI turns it on)."""
        self.log_lines.append(message)
        log.info(message)

    # ---- the loop ---------------------------------------------------------------------
    def _update_smoothed_loss(self, loss: float, start_iter: int) -> None:
        average = max(self.param.average_loss, 1)
        if len(self._losses) < average:
            self._losses.append(loss)
            n = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (n - 1) + loss) / n
        else:
            idx = (self.iter - start_iter) % average
            self.smoothed_loss += (loss - self._losses[idx]) / average
            self._losses[idx] = loss

    def forward_backward(self) -> float:
        """One Net::ForwardBackward on the train net; returns its loss."""
        net = self.net
        net._begin_call()
        try:
            loss = net._forward(0, len(net.layers) - 1)
            net._backward(len(net.layers) - 1, 0)
        finally:
            net._end_call()
        return loss

    def step(self, iters: int, progress=None) -> None:
        """Run ``iters`` iterations (Solver::Step)."""
        self._start_steps()
        stop_iter = self.iter + iters
        while self.iter < stop_iter:
            if not self.begin_iteration():
                break
            loss = self.compute_gradients()
            if not self.end_iteration(loss):
                break
            if progress is not None:
                progress(self)

    # Step's body in three parts, so data-parallel replicas can interleave them.
    def _start_steps(self) -> None:
        self._start_iter = self.iter
        self._losses, self.smoothed_loss = [], 0.0
        self._timer, self._iters_last = time.time(), self.iter

    def begin_iteration(self) -> bool:
        """Clear diffs, test when due, run on_start callbacks; False if asked to stop."""
        p = self.param
        self.net.clear_param_diffs()
        if (p.test_interval and self.iter % p.test_interval == 0
                and (self.iter > 0 or p.test_initialization)):
            self.test_all()
            if self.requested_stop:
                return False
        for on_start, _ in self._callbacks:
            on_start()
        return True

    def compute_gradients(self) -> float:
        """iter_size forward/backward passes; returns their mean loss."""
        n = max(self.param.iter_size, 1)
        return sum(self.forward_backward() for _ in range(n)) / n

    def end_iteration(self, loss: float) -> bool:
        """Smoothed loss, display, callbacks, update, iter += 1, snapshot; False to stop."""
        p = self.param
        self._update_smoothed_loss(loss, self._start_iter)
        if p.display and self.iter % p.display == 0:
            lapse = time.time() - self._timer
            per_s = (self.iter - self._iters_last) / (lapse or 1)
            self._log(f"Iteration {self.iter} ({per_s:.4g} iter/s, {lapse:.4g}s/{p.display} "
                      f"iters), loss = {self.smoothed_loss:.6g}")
            self._timer, self._iters_last = time.time(), self.iter
            self._log_outputs(self.net, "Train")
        for _, on_ready in self._callbacks:
            on_ready()
        self.apply_update()
        self.iter += 1
        if p.snapshot and self.iter % p.snapshot == 0:
            self.snapshot()
        if self.requested_stop:
            if getattr(self, "_snapshot_on_stop", False):
                self.snapshot()
            return False
        return True

    def solve_with_progress(self, progress: Callable) -> None:
        """:meth:`solve` calling ``progress(solver)`` after every iteration."""
        self._progress = progress
        try:
            self.solve()
        finally:
            self._progress = None

    def solve(self, resume_file: Optional[str] = None) -> None:
        """Solver::Solve: restore if asked, step to max_iter, final snapshot/test."""
        p = self.param
        self._log(f"Solving {self.net._graph.name}")
        self._log(f"Learning Rate Policy: {p.lr_policy}")
        self.requested_stop = False
        if resume_file:
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter, progress=getattr(self, "_progress", None))
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_stop:
            self._log("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            net = self.net
            net._begin_call()
            try:
                loss = net._forward(0, len(net.layers) - 1)
            finally:
                net._end_call()
            self._update_smoothed_loss(loss, start_iter)
            self._log(f"Iteration {self.iter}, loss = {self.smoothed_loss:.6g}")
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        self._log("Optimization Done.")

    def _log_outputs(self, net, kind: str, scores=None, iters: int = 1) -> None:
        index = 0
        weights = net.blob_loss_weights
        for j, name in enumerate(net.outputs):
            values = (net.blobs[name].data.ravel() if scores is None else scores[j] / iters)
            for v in np.ravel(values):
                w = weights.get(name, 0.0)
                extra = f" (* {w:g} = {w * v:.6g} loss)" if w else ""
                self._log(f"    {kind} net output #{index}: {name} = {v:.6g}{extra}")
                index += 1

    def test_all(self) -> list[dict]:
        """Run every test net for its test_iter and log the mean of each output."""
        return [self.test(i) for i in range(len(self.test_nets))]

    def test(self, test_net_id: int = 0) -> dict:
        p = self.param
        net = self.test_nets[test_net_id]
        self._log(f"Iteration {self.iter}, Testing net (#{test_net_id})")
        n_iter = p.test_iter[test_net_id]
        scores = None
        loss = 0.0
        for _ in range(n_iter):
            outs = net.forward()
            if p.test_compute_loss:
                loss += sum(w * float(np.sum(net.blobs[b].data))
                            for b, w in net.blob_loss_weights.items() if w)
            vals = [np.array(outs[o], dtype=np.float64).ravel() for o in net.outputs]
            scores = vals if scores is None else [s + v for s, v in zip(scores, vals)]
        if p.test_compute_loss:
            self._log(f"Test loss: {loss / n_iter:.6g}")
        self._log_outputs(net, "Test", scores=scores, iters=n_iter)
        return {o: (s / n_iter) for o, s in zip(net.outputs, scores or [])}

    # ---- the update -------------------------------------------------------------------
    def learning_rate(self) -> float:
        if not hasattr(self, "_plateau"):
            self._plateau = PlateauState()
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step,
                                                self.smoothed_loss, self._plateau)
        return rate

    def apply_update(self) -> None:
        """SGDSolver::ApplyUpdate: rate, clip, normalise, regularise, rule, Net::Update."""
        p = self.param
        rate = self.learning_rate()
        if p.display and self.iter % p.display == 0:
            self._log(f"Iteration {self.iter}, lr = {rate:.6g}")
        net = self.net
        net._begin_call()
        grads = []
        for param, _, _ in self._learnable:
            grads.append(param.grad() if param.grad_req != "null" else None)
        if self.gradient_sync is not None:
            self.gradient_sync.reduce([g for g in grads if g is not None])
        self._clip_gradients(grads)
        rule = RULES[p.type]
        for i, ((param, lr_mult, decay_mult), grad) in enumerate(zip(self._learnable, grads)):
            data = param.data()
            diff = grad if grad is not None else mx.nd.zeros(param.shape, ctx=data.context)
            if p.iter_size > 1:
                diff = diff * (1.0 / p.iter_size)
            local_decay = p.weight_decay * decay_mult
            if local_decay:
                if p.regularization_type == "L2":
                    diff = diff + local_decay * data
                else:     # "L1" (check_solver refused any other kind)
                    diff = diff + local_decay * mx.nd.sign(data)
            update = rule(diff, [h[i] for h in self.history], rate * lr_mult, p, self.iter)
            data[:] = data - update
        for blob in net._param_blobs:
            blob._data.device_changed()
            blob._diff.device_changed()
        net._end_call()

    def _clip_gradients(self, grads) -> None:
        clip = self.param.clip_gradients
        if clip < 0:
            return
        live = [g for g in grads if g is not None]
        sumsq = sum(float(mx.nd.sum(mx.nd.square(g)).asscalar()) for g in live)
        l2norm = float(np.sqrt(sumsq))
        if l2norm > clip:
            scale = clip / l2norm
            self._log(f"Gradient clipping: scaling down gradients (L2 norm {l2norm:.6g} > "
                      f"{clip:g}) by scale factor {scale:.6g}")
            for g in live:
                g[:] = g * scale

    # ---- snapshots --------------------------------------------------------------------
    def _snapshot_name(self, extension: str) -> str:
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def snapshot(self) -> str:
        """Write PREFIX_iter_N.caffemodel and .solverstate (or the .h5 pair)."""
        from caffe_compat.formats.solverstate import SolverState, write_solverstate
        hdf5 = self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        model = self._snapshot_name(".caffemodel.h5" if hdf5 else ".caffemodel")
        folder = os.path.dirname(model)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self._log(f"Snapshotting to {'HDF5' if hdf5 else 'binary proto'} file {model}")
        if hdf5:
            self.net.save_hdf5(model)
        else:
            self.net.save(model)
        state_path = self._snapshot_name(".solverstate.h5" if hdf5 else ".solverstate")
        history = [h.asnumpy() for hs in self.history for h in hs]
        write_solverstate(state_path, SolverState(self.iter, model, history, self.current_step))
        self._log(f"Snapshotting solver state to {'HDF5' if hdf5 else 'binary proto'} file "
                  f"{state_path}")
        return state_path

    def restore(self, state_file: str) -> None:
        """Resume from a .solverstate(.h5): weights from its learned_net, history, iter."""
        from caffe_compat.formats.solverstate import read_solverstate
        state = read_solverstate(state_file)
        n = len(self._learnable)
        if len(state.history) != n * len(self.history):
            raise ValueError(f"{state_file}: {len(state.history)} history blobs, the solver "
                             f"has {n * len(self.history)} ({self.param.type})")
        if state.learned_net:
            learned = state.learned_net
            if not os.path.exists(learned):
                learned = os.path.join(os.path.dirname(state_file), os.path.basename(learned))
            self.net.copy_from(learned)
        for k, hs in enumerate(self.history):
            for i, h in enumerate(hs):
                arr = state.history[k * n + i]
                h[:] = mx.nd.array(arr.reshape(h.shape), ctx=h.context)
        self.iter = state.iter
        self.current_step = state.current_step

    def install_sigint_snapshot(self) -> None:
        """Caffe's SIGINT behaviour for the command line: snapshot, then stop."""
        def handler(signum, frame):
            self._snapshot_on_stop = True
            self.request_stop()
        signal.signal(signal.SIGINT, handler)


class SGDSolver(Solver):
    solver_type = "SGD"


class NesterovSolver(Solver):
    solver_type = "Nesterov"


class AdaGradSolver(Solver):
    solver_type = "AdaGrad"


class RMSPropSolver(Solver):
    solver_type = "RMSProp"


class AdaDeltaSolver(Solver):
    solver_type = "AdaDelta"


class AdamSolver(Solver):
    solver_type = "Adam"


def get_solver(solver_file: str) -> Solver:
    """pycaffe's ``caffe.get_solver``: the solver type the prototxt names."""
    return Solver(solver_file)
