"""Gradient averaging across devices and machines through MXNet's own kvstore.

Caffe's multi-GPU training (P2PSync/NCCL) sums every solver's gradients and scales
them by 1/solver_count before the update; :class:`KVStoreGradientSync` does the same
with an MXNet kvstore: ``device``/``local`` for several devices of one machine,
``dist_sync`` for several machines, launched with MXNet's own conventions
(``DMLC_ROLE`` = scheduler | server | worker, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``).

>>> sync = KVStoreGradientSync("dist_sync")          # doctest: +SKIP
>>> solver = caffe.get_solver("solver.prototxt")      # doctest: +SKIP
>>> solver.gradient_sync = sync; sync.broadcast_params(solver)   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence, Union

import mxnet as mx


class KVStoreGradientSync:
    """Average gradients over every worker (and device) sharing a kvstore."""

    def __init__(self, kvstore: Union[str, "mx.kv.KVStore"] = "dist_sync"):
        self.kv = mx.kv.create(kvstore) if isinstance(kvstore, str) else kvstore
        self._ready = False

    @property
    def num_workers(self) -> int:
        return self.kv.num_workers

    @property
    def rank(self) -> int:
        return self.kv.rank

    def broadcast_params(self, solver) -> None:
        """Start every worker from worker 0's weights (kvstore init comes from rank 0)."""
        for i, (param, _, _) in enumerate(solver._learnable):
            key = f"w{i}"
            data = param.data()
            self.kv.init(key, data)
            self.kv.pull(key, out=data)
        for blob in solver.net._param_blobs:
            blob._data.device_changed()

    def reduce(self, grads: Sequence[mx.nd.NDArray]) -> None:
        """In place: each gradient becomes the mean of that gradient over all workers."""
        if not self._ready:
            for i, g in enumerate(grads):
                self.kv.init(f"g{i}", mx.nd.zeros(g.shape, ctx=g.context))
            self._ready = True
        for i, g in enumerate(grads):
            self.kv.push(f"g{i}", g)
        for i, g in enumerate(grads):
            self.kv.pull(f"g{i}", out=g)
        scale = 1.0 / self.kv.num_workers
        if scale != 1.0:
            for g in grads:
                g[:] = g * scale


class DeviceReplicas:
    """Data parallelism over several devices of one machine (``--gpu 0,1``).

    One solver per device, each with its own net replica (and data layer). Every
    iteration each replica runs forward/backward, the gradients are averaged through an
    MXNet ``device`` kvstore (Caffe's P2PSync: sum, then scale by 1/solver_count), and
    every replica applies the same update, so the replicas stay equal. Only the first
    replica tests, displays and snapshots, as Caffe's root solver does.
    """

    def __init__(self, solver_factory, contexts: Sequence[mx.Context]):
        from caffe_compat.context import building_on
        self.solvers = []
        for ctx in contexts:
            with building_on(ctx):
                self.solvers.append(solver_factory())
        for s in self.solvers[1:]:
            s.param.display = 0
            s.param.test_interval = 0
            s.param.snapshot = 0
            s.param.snapshot_after_train = False
            s.test_nets = []
            for (p, _, _), (q, _, _) in zip(self.solvers[0]._learnable, s._learnable):
                q.set_data(p.data().as_in_context(q.list_ctx()[0]))
            for blob in s.net._param_blobs:
                blob._data.device_changed()
        self.kv = mx.kv.create("device")
        self._ready = False

    @property
    def lead(self):
        return self.solvers[0]

    def _reduce(self) -> None:
        n = len(self.solvers)
        for i, (p, _, _) in enumerate(self.lead._learnable):
            if p.grad_req == "null":
                continue
            grads = [s._learnable[i][0].grad() for s in self.solvers]
            key = f"r{i}"
            if not self._ready:
                self.kv.init(key, mx.nd.zeros(p.shape, ctx=grads[0].context))
            self.kv.push(key, grads)
            self.kv.pull(key, out=grads)
            for g in grads:
                g[:] = g * (1.0 / n)
        self._ready = True

    def step(self, iters: int) -> None:
        """``iters`` iterations on every replica in lock step."""
        for s in self.solvers:
            s._start_steps()
        for _ in range(iters):
            if not all(s.begin_iteration() for s in self.solvers):
                break
            losses = [s.compute_gradients() for s in self.solvers]
            self._reduce()
            mean_loss = sum(losses) / len(losses)
            if not all([s.end_iteration(mean_loss) for s in self.solvers]):
                break

    def solve(self) -> None:
        """Step to max_iter, then the lead's final snapshot (Solver::Solve's tail)."""
        lead = self.lead
        self.step(lead.param.max_iter - lead.iter)
        p = lead.param
        if p.snapshot_after_train and (not p.snapshot or lead.iter % p.snapshot != 0):
            lead.snapshot()
