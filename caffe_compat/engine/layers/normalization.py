"""BatchNorm and MVN (batch_norm_layer.cpp, mvn_layer.cpp).

BatchNorm keeps Caffe's three blobs: ``mean (C,)``, ``variance (C,)`` and the moving
average ``scale factor (1,)``. Caffe normalizes with ``mean = blobs[0] * f`` and
``var = blobs[1] * f`` where ``f = 0 if blobs[2][0] == 0 else 1 / blobs[2][0]``:
``top = (x - mean) / sqrt(var + eps)``. It has no scale/shift (that is a Scale layer).

* ``use_global_stats`` defaults to ``phase == TEST``. With global stats the layer runs
  as two oneDNN BatchNorm passes used as exact per-channel affine maps: ``x - mean``
  then ``* 1/sqrt(var + eps)`` (one fused pass ``x*a + b`` would lose digits when
  ``|mean| >> std``); the backward is Caffe's ``top_diff / sqrt(var + eps)``.
* Without global stats (TRAIN): batch mean and biased variance over (N, spatial) per
  channel, and the gradient through them (MXNet autograd of that formula is Caffe's
  Backward). Caffe also updates its blobs during such a forward:
  ``blobs[2] = maf * blobs[2] + 1``, ``blobs[0] = maf * blobs[0] + mean``,
  ``blobs[1] = maf * blobs[1] + m/(m-1) * var`` (m = count / C). Here that update
  happens as a side effect of an imperative forward (``update_stats_on_forward``,
  True by default); the batch statistics are kept in ``batch_mean`` / ``batch_var``.
  A hybridized graph cannot mutate the blobs: call
  :meth:`BatchNorm.update_running_stats` with the layer's bottom after a TRAIN forward.
* The three blobs are never trained (Caffe forces their lr_mult to 0 and refuses a
  ``param`` with another lr_mult): their Gluon Parameters have ``grad_req='null'`` and
  ``lr_mult = 0``, the layer declares ``computes_param_diffs = False``, and the graph
  blocks any gradient into them, so their diffs stay 0 as in Caffe.

MVN: ``(x - mean) / (sqrt(var) + eps)`` per (n, c) (or per n with ``across_channels``),
eps 1e-9 added after the square root; ``normalize_variance: false`` only subtracts the
mean. Its backward is Caffe's closed form ``(dy - mean(dy) - y*mean(dy*y)) / (std+eps)``
(see :class:`MVN`), which stays finite on constant inputs.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "bn" type: "BatchNorm"', caffe_pb2.LayerParameter())
>>> bn = build_layer(p, [(2, 8, 9, 9)])
>>> [b.shape for b in bn.blobs()], bn.use_global_stats
([(8,), (8,), (1,)], True)
"""
from __future__ import annotations

from typing import Optional

import mxnet as mx

from caffe_compat.engine.layer import Layer, count, register_layer

_TEST = 1


@register_layer("BatchNorm", origin="BVLC")
class BatchNorm(Layer):
    """Caffe's BatchNormLayer (no learned scale/shift; pair it with a Scale layer)."""

    #: Apply Caffe's running-average blob update during imperative TRAIN forwards.
    update_stats_on_forward: bool = True
    #: Caffe's Backward leaves the statistics' diffs at 0 (see Layer).
    computes_param_diffs = False

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        bp = self.param.batch_norm_param
        self.use_global_stats = (bool(bp.use_global_stats) if bp.HasField("use_global_stats")
                                 else self.phase == _TEST)
        self.moving_average_fraction = float(bp.moving_average_fraction)
        self.eps = float(bp.eps)
        shape = bottom_shapes[0]
        self.channels = 1 if len(shape) == 1 else int(shape[1])
        for i, spec in enumerate(self.param.param[:3]):
            if spec.lr_mult != 0:
                raise self.error("Cannot configure batch normalization statistics as layer "
                                 f"parameters (param {i} has lr_mult {spec.lr_mult}, must be 0)")
        c = self.channels
        for name, shape in (("mean", (c,)), ("variance", (c,)), ("scale_factor", (1,))):
            p = self.add_blob(name, shape)          # Caffe fills all three with 0
            p.grad_req = "null"
            p.lr_mult = 0.0
        if self.use_global_stats:
            # Not Caffe blobs: fixed zeros/ones fed to MXNet's BatchNorm op as its moving
            # statistics, which makes that op an exact per-channel affine map.
            self.affine_zero = self.params.get_constant("affine_zero", mx.nd.zeros((c,)))
            self.affine_one = self.params.get_constant("affine_one", mx.nd.ones((c,)))
        self.batch_mean: Optional[mx.nd.NDArray] = None
        self.batch_var: Optional[mx.nd.NDArray] = None

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        channels = 1 if len(shape) == 1 else shape[1]
        if channels != self.channels:
            raise self.error(f"bottom has {channels} channels, the layer was set up for "
                             f"{self.channels}")
        self.num_axes = len(shape)
        # reduction axes of the batch statistics: N and every spatial axis
        self.stat_axes = (0,) + tuple(range(2, max(self.num_axes, 2)))
        self.stat_count = count(shape) // self.channels
        return [shape]

    def hybrid_forward(self, F, x, mean, variance, scale_factor, affine_zero=None,
                       affine_one=None):
        if self.num_axes == 1:
            x = F.expand_dims(x, axis=1)
        if self.use_global_stats:
            # never a gradient into the statistics, whatever grad_req a caller sets
            y = self._global_stats(F, x, F.BlockGrad(mean), F.BlockGrad(variance),
                                   F.BlockGrad(scale_factor), affine_zero, affine_one)
        else:   # the blobs are not read, only updated (imperatively)
            y = self._batch_stats(F, x, mean, variance, scale_factor)
        if self.num_axes == 1:
            y = F.reshape(y, shape=(-1,))
        return (y,)

    def _affine(self, F, x, gamma, beta, zero, one):
        """``x * gamma + beta`` per channel in one oneDNN pass (exact for gamma = 1)."""
        return F.BatchNorm(x, gamma, beta, zero, one, eps=0.0, use_global_stats=True,
                           fix_gamma=False, axis=1)

    def _global_stats(self, F, x, mean, variance, scale_factor, zero, one):
        factor = F.where(scale_factor == 0, F.zeros_like(scale_factor), 1.0 / scale_factor)
        mean_eff = F.broadcast_mul(mean, factor)
        inv_std = 1.0 / F.sqrt(F.broadcast_mul(variance, factor) + self.eps)
        centred = self._affine(F, x, one, -mean_eff, zero, one)
        return self._affine(F, centred, inv_std, zero, zero, one)

    def _batch_stats(self, F, x, mean, variance, scale_factor):
        axes = self.stat_axes
        mu = F.mean(x, axis=axes, keepdims=True)
        centred = F.broadcast_sub(x, mu)
        var = F.mean(F.square(centred), axis=axes, keepdims=True)
        y = F.broadcast_div(centred, F.sqrt(var + self.eps))
        if F is mx.nd:
            with mx.autograd.pause():
                self.batch_mean = mu.reshape((-1,)).detach()
                self.batch_var = var.reshape((-1,)).detach()
                if self.update_stats_on_forward:
                    self._apply_update(mean, variance, scale_factor,
                                       self.batch_mean, self.batch_var, self.stat_count)
        return y

    def _apply_update(self, mean, variance, scale_factor, batch_mean, batch_var, m: int):
        """Caffe's moving-average update of the three blobs (in place)."""
        maf = self.moving_average_fraction
        correction = m / (m - 1.0) if m > 1 else 1.0
        scale_factor[:] = scale_factor * maf + 1
        mean[:] = batch_mean + mean * maf
        variance[:] = batch_var * correction + variance * maf

    def update_running_stats(self, bottom: mx.nd.NDArray) -> None:
        """Caffe's TRAIN-forward blob update computed from ``bottom`` (for hybridized nets).

        Imperative TRAIN forwards already apply it (``update_stats_on_forward``).
        """
        if self.use_global_stats:
            return
        with mx.autograd.pause():
            x = bottom.reshape((-1, 1)) if bottom.ndim == 1 else bottom
            axes = (0,) + tuple(range(2, x.ndim))
            mu = x.mean(axis=axes, keepdims=True)
            var = mx.nd.square(mx.nd.broadcast_sub(x, mu)).mean(axis=axes)
            self.batch_mean, self.batch_var = mu.reshape((-1,)), var
            blobs = [p.data(bottom.context) for p in self.blobs()]
            self._apply_update(*blobs, self.batch_mean, self.batch_var,
                               x.size // self.channels)


@register_layer("MVN", origin="BVLC")
class MVN(Layer):
    """Caffe's MVNLayer: mean (and variance) normalization per instance."""

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=1)
        mp = self.param.mvn_param
        self.normalize_variance = bool(mp.normalize_variance)
        self.across_channels = bool(mp.across_channels)
        self.eps = float(mp.eps)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        # Group every normalized instance into the last axis: (num, dim) as Caffe's
        # num = N (across channels) or N * C, dim = count / num.
        if len(shape) == 1:
            self.grouping = (0, 1, -1)
        elif self.across_channels:
            self.grouping = (0, -1)
        else:
            self.grouping = (0, 0, -1)
        return [shape]

    def hybrid_forward(self, F, x):
        g = F.reshape(x, shape=self.grouping)
        centred = F.broadcast_sub(g, F.mean(g, axis=-1, keepdims=True))
        if not self.normalize_variance:
            return (F.reshape_like(centred, x),)
        var = F.mean(F.square(centred), axis=-1, keepdims=True)
        std_eps = F.sqrt(var) + self.eps
        y = F.broadcast_div(centred, F.BlockGrad(std_eps))
        # A term that is exactly 0 forward and whose gradient, added to that of y, gives
        # Caffe's backward -y * mean(dy * y) / (std + eps) (d var/dx = 2 (x - mean) / dim),
        # instead of the autograd path through sqrt, which is NaN on constant inputs.
        inv_sq = F.BlockGrad(1.0 / F.square(std_eps))
        zero = F.broadcast_mul(var - F.BlockGrad(var), inv_sq)
        y = y + F.broadcast_mul(F.BlockGrad(y), zero) * -0.5
        return (F.reshape_like(y, x),)
