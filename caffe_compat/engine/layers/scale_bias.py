"""Scale and Bias (scale_layer.cpp, bias_layer.cpp): broadcast a factor / an offset.

The operand (a learned blob, or ``bottom[1]``) spans bottom[0]'s axes
``[axis, axis + operand.ndim)``: with one bottom its shape is
``bottom.shape[axis : axis + num_axes]`` (``num_axes: -1`` = every remaining axis,
``num_axes: 0`` = a scalar, stored as shape ``(1,)`` since MXNet has no 0-d blobs).
Defaults: ``axis: 1``, ``num_axes: 1``; Scale's filler is constant 1, Bias's (and
Scale's ``bias_filler``) constant 0. Scale with ``bias_term`` has a second blob, the
bias, of the same shape (Caffe's internal Bias layer).

The common per-channel case (an operand of one axis) runs as MXNet's BatchNorm op with
zero mean / unit variance, which is exactly ``x * scale + bias`` in one oneDNN pass;
other shapes use broadcasting. Gradients flow to bottom[0], to the blobs and, in the
two-bottom form, to bottom[1].

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "s" type: "Scale" scale_param { bias_term: true }',
...                       caffe_pb2.LayerParameter())
>>> s = build_layer(p, [(2, 8, 9, 9)])
>>> [b.shape for b in s.blobs()], s.scale.data().asnumpy()[:3]
([(8,), (8,)], array([1., 1., 1.], dtype=float32))
"""
from __future__ import annotations

from typing import Sequence

import mxnet as mx

from caffe_compat.engine.fillers import default_filler
from caffe_compat.engine.layer import Layer, canonical_axis, register_layer


class _Broadcast(Layer):
    """Shared axis/num_axes logic of Scale and Bias."""

    #: "scale" or "bias": the name of the operand blob in the one-bottom form.
    operand_name = ""

    def _axis_params(self):
        raise NotImplementedError

    def _operand_shape_from_params(self, shape: tuple) -> tuple:
        axis_param, num_axes = self._axis_params()
        try:
            axis = canonical_axis(axis_param, len(shape))
        except IndexError as exc:
            raise self.error(str(exc)) from exc
        if num_axes < -1:
            raise self.error("num_axes must be non-negative, or -1 to extend to the end "
                             "of bottom[0]")
        if num_axes >= 0 and len(shape) < axis + num_axes:
            raise self.error(f"{self.operand_name} blob's shape extends past bottom[0]'s "
                             f"shape when applied starting with bottom[0] axis = {axis}")
        return tuple(shape[axis:] if num_axes == -1 else shape[axis:axis + num_axes])

    def _setup_operand(self, bottom_shapes: Sequence[tuple], filler) -> None:
        """Declare the operand blob (one-bottom form) and, for a per-channel operand, the
        constants of the one-pass affine op."""
        self.check_bottoms(bottom_shapes, at_least=1, at_most=2)
        self.two_bottoms = len(bottom_shapes) == 2
        if self.two_bottoms:
            operand = tuple(bottom_shapes[1])
        else:
            operand = self._operand_shape_from_params(tuple(bottom_shapes[0]))
            self.add_blob(self.operand_name, operand or (1,), filler)
        self.affine_channels = None
        if len(operand) == 1 and len(bottom_shapes[0]) >= 2:
            # Fixed zeros/ones fed to MXNet's BatchNorm op as its moving statistics, which
            # makes it the exact map x * gamma + beta (not Caffe blobs; never trained).
            self.affine_channels = operand[0]
            self.affine_zero = self.params.get_constant("affine_zero",
                                                        mx.nd.zeros((operand[0],)))
            self.affine_one = self.params.get_constant("affine_one", mx.nd.ones((operand[0],)))

    def _operand_shape(self, bottom_shapes: Sequence[tuple]) -> tuple:
        if self.two_bottoms:
            return tuple(bottom_shapes[1])
        shape = getattr(self, self.operand_name).shape
        return () if self._operand_is_scalar() else tuple(shape)

    def _operand_is_scalar(self) -> bool:
        _, num_axes = self._axis_params()
        return not self.two_bottoms and num_axes == 0

    def _plan_broadcast(self, bottom_shapes: Sequence[tuple]) -> None:
        """Check the operand against bottom[0] and store how to broadcast it."""
        shape = tuple(bottom_shapes[0])
        operand = self._operand_shape(bottom_shapes)
        axis_param, _ = self._axis_params()
        if len(operand) == 0:
            axis = 0        # Caffe: a scalar operand applies everywhere (axis_ = 0)
        else:
            try:
                axis = canonical_axis(axis_param, len(shape))
            except IndexError as exc:
                raise self.error(str(exc)) from exc
        if len(shape) < axis + len(operand):
            raise self.error(f"{self.operand_name} blob's shape extends past bottom[0]'s "
                             f"shape when applied starting with bottom[0] axis = {axis}")
        for i, d in enumerate(operand):
            if shape[axis + i] != d:
                raise self.error(f"dimension mismatch between bottom[0]->shape({axis + i}) "
                                 f"= {shape[axis + i]} and {self.operand_name}->shape({i}) "
                                 f"= {d}")
        self.axis = axis
        self.operand_ndim = len(operand)
        self.trailing = len(shape) - axis - len(operand)
        # one operand axis over >= 2-D data: MXNet's BatchNorm op along that axis
        self.per_channel = (self.affine_channels is not None and len(operand) == 1
                            and len(shape) >= 2 and operand[0] == self.affine_channels)

    def _expand(self, F, operand):
        """Reshape an operand so it broadcasts against bottom[0]."""
        if self.operand_ndim == 0:
            return operand          # shape (1,): broadcasts everywhere
        for _ in range(self.axis):
            operand = F.expand_dims(operand, axis=0)
        for _ in range(self.trailing):
            operand = F.expand_dims(operand, axis=-1)
        return operand

    def _affine(self, F, x, gamma, beta, zero, one):
        """``x * gamma + beta`` along ``self.axis`` in one pass (MXNet BatchNorm op)."""
        return F.BatchNorm(x, gamma, beta, zero, one, eps=0.0, use_global_stats=True,
                           fix_gamma=False, axis=self.axis)


@register_layer("Scale", origin="BVLC")
class Scale(_Broadcast):
    """Caffe's ScaleLayer: ``top = bottom[0] * scale (+ bias)``.

    ``scale`` is a learned blob (one bottom) or ``bottom[1]`` (two bottoms).
    """

    operand_name = "scale"

    def _axis_params(self):
        sp = self.param.scale_param
        return sp.axis, sp.num_axes

    def setup(self, bottom_shapes):
        sp = self.param.scale_param
        filler = sp.filler if sp.HasField("filler") else default_filler(1.0)
        self._setup_operand(bottom_shapes, filler)
        self.bias_term = bool(sp.bias_term)
        if self.bias_term:
            # Caffe's internal Bias layer: same axis; num_axes = bottom[1]'s in the
            # two-bottom form; its filler is bias_filler (default constant 0).
            if self.two_bottoms:
                shape = tuple(bottom_shapes[1])
            else:
                shape = self.scale.shape
            self.add_blob("bias", shape or (1,),
                          sp.bias_filler if sp.HasField("bias_filler") else default_filler())

    def reshape(self, bottom_shapes):
        self._plan_broadcast(bottom_shapes)
        return [tuple(bottom_shapes[0])]

    def hybrid_forward(self, F, x, *operand, scale=None, bias=None, affine_zero=None,
                       affine_one=None):
        s = operand[0] if self.two_bottoms else scale
        if self.per_channel:
            beta = bias if bias is not None else F.zeros_like(s)
            return (self._affine(F, x, s, beta, affine_zero, affine_one),)
        y = F.broadcast_mul(x, self._expand(F, s))
        if bias is not None:
            y = F.broadcast_add(y, self._expand(F, bias))
        return (y,)


@register_layer("Bias", origin="BVLC")
class Bias(_Broadcast):
    """Caffe's BiasLayer: ``top = bottom[0] + bias`` (a learned blob or ``bottom[1]``)."""

    operand_name = "bias"

    def _axis_params(self):
        bp = self.param.bias_param
        return bp.axis, bp.num_axes

    def setup(self, bottom_shapes):
        bp = self.param.bias_param
        self._setup_operand(bottom_shapes,
                            bp.filler if bp.HasField("filler") else default_filler())

    def reshape(self, bottom_shapes):
        self._plan_broadcast(bottom_shapes)
        return [tuple(bottom_shapes[0])]

    def hybrid_forward(self, F, x, *operand, bias=None, affine_zero=None, affine_one=None):
        b = operand[0] if self.two_bottoms else bias
        if self.per_channel:
            return (self._affine(F, x, affine_one, b, affine_zero, affine_one),)
        return (F.broadcast_add(x, self._expand(F, b)),)
