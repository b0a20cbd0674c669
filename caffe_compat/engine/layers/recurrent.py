"""Caffe's recurrent layers: RNN and LSTM (recurrent_layer.cpp, rnn_layer.cpp,
lstm_layer.cpp) and LSTMUnit (lstm_unit_layer.cpp).

Caffe builds an unrolled net of per-timestep layers inside RNN/LSTM; here the same
computation is a Python loop over the T timesteps (T is fixed by the input shape, as in
Caffe, which refuses a changed T), so it runs imperatively and hybridized alike.

Bottoms: ``x (T, N, ...)``, ``cont (T, N)`` (0 starts a new sequence in that stream: the
previous hidden state is multiplied by ``cont_t``), optionally ``x_static (N, ...)``, and
with ``recurrent_param { expose_hidden: true }`` the initial states ``h_0 (1, N, num_output)``
(and ``c_0`` for LSTM). Tops: ``h`` (LSTM) or ``o`` (RNN), ``(T, N, num_output)``, then
with ``expose_hidden`` the final states ``h_T`` (and ``c_T``), ``(1, N, num_output)``.

* LSTM blobs (Caffe order and shapes): ``W_xc (4H, K)``, ``b_c (4H,)``,
  ``W_xc_static (4H, K_static)`` (only with a static input), ``W_hc (4H, H)``; gate rows
  in the order i, f, o, g. Per step: ``gates = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c
  [+ W_xc_static x_static]``, then the LSTMUnit below.
* RNN blobs: ``W_xh (H, K)``, ``b_h``, ``W_xh_static``?, ``W_hh (H, H)``, ``W_ho (H, H)``,
  ``b_o``: ``h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])``
  and the output ``o_t = tanh(W_ho h_t + b_o)``.
* LSTMUnit (bottoms ``c_{t-1} (1, N, H)``, gate pre-activations ``(1, N, 4H)``,
  ``cont (1, N)``; tops ``c_t``, ``h_t``): ``i, o = sigmoid``, ``g = tanh``,
  ``f = cont * sigmoid(f')`` (0 where cont is 0), ``c_t = f c_{t-1} + i g``,
  ``h_t = o tanh(c_t)``. Caffe's Backward takes the forget gate's derivative as
  ``f (1 - f)``, which is the calculus only for cont in {0, 1}; this one reproduces it
  for any cont (see :func:`lstm_unit`).

Caffe's state handling, reproduced:

* Without ``expose_hidden`` the layer carries its final ``h_T`` (``c_T``) over to the next
  forward's ``h_0`` (``c_0``) (zeros at first; ``cont`` decides whether they are used), so
  a captioner can feed one word per forward. The carried state lives in non-learned
  Parameters ``h_carry``/``c_carry`` (not Caffe blobs) and advances on every forward,
  imperative or hybridized. :meth:`RecurrentBase.reset_state` zeroes it (Caffe's
  ``RecurrentLayer::Reset``). When the stream count N shrinks the first N streams are
  kept (Caffe's Blob::Reshape keeps its memory); when it grows the state restarts at 0.
* No gradient crosses a batch boundary: nothing flows into the carried state, into exposed
  ``h_0``/``c_0`` bottoms, or from diffs on exposed ``h_T``/``c_T`` tops (Caffe shares
  only their data with the unrolled net, never their diffs). ``cont`` gets no gradient.

>>> from google.protobuf import text_format
>>> from caffe_compat.proto import caffe_pb2
>>> from caffe_compat.engine.build import build_layer
>>> p = text_format.Parse('name: "lstm" type: "LSTM" recurrent_param { num_output: 5 }',
...                       caffe_pb2.LayerParameter())
>>> lstm = build_layer(p, [(7, 2, 3), (7, 2)])
>>> lstm.top_shapes, [b.shape for b in lstm.blobs()]
([(7, 2, 5)], [(20, 3), (20,), (20, 5)])
"""
from __future__ import annotations

import json
from typing import Sequence

import mxnet as mx

from caffe_compat.engine.layer import Layer, count, register_layer


# ---- one LSTM step (Caffe's LSTMUnit) ------------------------------------------------------
def lstm_unit(F, c_prev, gates, cont, cont_gap):
    """Caffe's LSTMUnit forward on ``(..., 4H)`` gate pre-activations; returns (c, h).

    ``cont`` broadcasts against ``c_prev`` (shape ``(..., 1)``) and ``cont_gap`` is
    ``cont * (1 - cont)``. The forget gate is ``f = cont * sigmoid(f')``, and its gradient
    w.r.t. ``f'`` is Caffe's ``f (1 - f)``: a term ``cont_gap * (softplus(f') -
    sigmoid(f'))``, whose derivative is the difference ``cont_gap * sigmoid(f')^2``, is
    added and its value subtracted again (it is exactly 0 for binary cont, so there the
    forward is unchanged to the bit).
    """
    pre_i, pre_f, pre_o, pre_g = F.split(gates, num_outputs=4, axis=-1)
    i, sig_f, o = F.sigmoid(pre_i), F.sigmoid(pre_f), F.sigmoid(pre_o)
    g = F.tanh(pre_g)
    f = F.broadcast_mul(sig_f, cont)
    caffe_term = F.broadcast_mul(F.Activation(pre_f, act_type="softrelu") - sig_f, cont_gap)
    f = f + caffe_term - F.BlockGrad(caffe_term)
    c = f * c_prev + i * g
    h = o * F.tanh(c)
    return c, h


# ---- Caffe's carried recurrent state -----------------------------------------------------
def _state_copy_symbol(name: str) -> mx.sym.Symbol:
    """A one-op graph that overwrites its ``<name>_mom`` input with ``<name>_grad``.

    MXNet's ``sgd_mom_update`` mutates its ``mom`` input in place: with lr -1,
    momentum 0 and wd 0 it sets ``mom = grad`` exactly (and outputs ``weight + mom``).
    Its Python symbol wrapper cannot compose the op (it passes inputs by keyword and the
    op does not name them), so the graph is loaded from JSON and composed by the names
    of its variables.
    """
    nodes = [{"op": "null", "name": f"{name}_{arg}", "inputs": []}
             for arg in ("weight", "grad", "mom")]
    nodes.append({"op": "sgd_mom_update", "name": name,
                  "attrs": {"lr": "-1", "momentum": "0", "wd": "0"},
                  "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]})
    return mx.sym.load_json(json.dumps({
        "nodes": nodes, "arg_nodes": [0, 1, 2], "node_row_ptr": [0, 1, 2, 3, 4],
        "heads": [[3, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}))


def store_state(F, value, state, name: str):
    """Copy ``value (N, H)`` into the state Parameter ``state (1, N, H)``.

    Imperatively the copy happens at once and None is returned. In a graph it is an
    in-place op; the returned zeros (shaped like ``state``) depend on it and must be
    added to a top, so the graph keeps the copy.
    """
    if F is mx.nd:
        with mx.autograd.pause():
            state[:] = value.reshape(state.shape)
        return None
    value = F.expand_dims(F.BlockGrad(value), axis=0)
    written = _state_copy_symbol(name)(**{f"{name}_weight": F.zeros_like(value),
                                          f"{name}_grad": value, f"{name}_mom": state})
    return F.zeros_like(written)


def _time_steps(F, x, steps: int) -> list:
    """The ``steps`` slices of ``x`` along axis 0, that axis removed."""
    parts = F.split(x, num_outputs=steps, axis=0, squeeze_axis=True)
    return [parts] if steps == 1 else list(parts)


# ---- RNN and LSTM ------------------------------------------------------------------------
class RecurrentBase(Layer):
    """Caffe's RecurrentLayer: bottoms, shapes and carried state shared by RNN and LSTM."""

    #: Recurrent state names, in Caffe's order of the exposed bottoms/tops.
    state_names: tuple = ()
    #: Gate rows per hidden unit in the input transforms (LSTM 4, RNN 1).
    gates: int = 1

    def setup(self, bottom_shapes):
        rp = self.param.recurrent_param
        if rp.num_output <= 0:
            raise self.error("num_output must be positive")
        self.num_output = int(rp.num_output)
        self.expose_hidden = bool(rp.expose_hidden)
        num_states = len(self.state_names) if self.expose_hidden else 0
        self.check_bottoms(bottom_shapes, at_least=2 + num_states, at_most=3 + num_states)
        if len(self.param.top) and len(self.param.top) != 1 + num_states:
            raise self.error(f"takes exactly {1 + num_states} top blob(s), got "
                             f"{len(self.param.top)}")
        self.static_input = len(bottom_shapes) > 2 + num_states
        x_shape = tuple(bottom_shapes[0])
        if len(x_shape) < 3:
            raise self.error(f"bottom[0] must have at least 3 axes -- (#timesteps, #streams, "
                             f"input...), got shape {x_shape}")
        self.steps = x_shape[0]
        self.input_dim = count(x_shape, 2)
        self.static_dim = 0
        if self.static_input:
            static_shape = tuple(bottom_shapes[2])
            if len(static_shape) < 2:
                raise self.error(f"bottom[2] (the static input) must have at least 2 axes -- "
                                 f"(#streams, input...), got shape {static_shape}")
            self.static_dim = count(static_shape, 1)
        self.declare_blobs(rp)
        if not self.expose_hidden:
            n = x_shape[1]
            for state in self.state_names:
                p = self.params.get(f"{state}_carry", shape=(1, n, self.num_output),
                                    dtype="float32", init=mx.init.Zero(), grad_req="null",
                                    lr_mult=0.0, wd_mult=0.0, allow_deferred_init=False)
                setattr(self, f"{state}_carry", p)

    def declare_blobs(self, rp) -> None:
        """Add the learnable blobs in Caffe's order."""
        raise NotImplementedError

    def allow_backward(self, bottom_index: int) -> bool:
        # Caffe: "Can't propagate to sequence continuation indicators."
        return bottom_index != 1

    def reshape(self, bottom_shapes):
        x_shape, cont_shape = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        if len(x_shape) < 3:
            raise self.error(f"bottom[0] must have at least 3 axes -- (#timesteps, #streams, "
                             f"input...), got shape {x_shape}")
        if x_shape[0] != self.steps:
            raise self.error(f"input number of timesteps changed: {x_shape[0]}, the layer "
                             f"was set up for {self.steps}")
        n = x_shape[1]
        if cont_shape != (self.steps, n):
            raise self.error(f"bottom[1] (cont) must have shape (#timesteps, #streams) = "
                             f"{(self.steps, n)}, got {cont_shape}")
        if count(x_shape, 2) != self.input_dim:
            raise self.error(f"bottom[0] has {count(x_shape, 2)} inputs per step, the "
                             f"weights expect {self.input_dim}")
        if self.static_input:
            static_shape = tuple(bottom_shapes[2])
            if len(static_shape) < 2 or static_shape[0] != n:
                raise self.error(f"bottom[2] (the static input) must have shape (#streams, "
                                 f"...) with #streams = {n}, got {static_shape}")
            if count(static_shape, 1) != self.static_dim:
                raise self.error(f"bottom[2] has {count(static_shape, 1)} inputs per stream, "
                                 f"the weights expect {self.static_dim}")
        state_shape = (1, n, self.num_output)
        if self.expose_hidden:
            first = 2 + self.static_input
            for j, shape in enumerate(bottom_shapes[first:]):
                if tuple(shape) != state_shape:
                    raise self.error(f"bottom[{first + j}] shape must match hidden state "
                                     f"input shape: {state_shape}, got {tuple(shape)}")
        else:
            self._resize_carried_state(n)
        finals = [state_shape] * len(self.state_names) if self.expose_hidden else []
        return [(self.steps, n, self.num_output)] + finals

    # ---- carried state -------------------------------------------------------------
    def carried_state(self) -> list[mx.gluon.Parameter]:
        """The Parameters holding the state carried to the next forward (none with
        ``expose_hidden``)."""
        if self.expose_hidden:
            return []
        return [getattr(self, f"{s}_carry") for s in self.state_names]

    def reset_state(self) -> None:
        """Zero the carried state (Caffe's ``RecurrentLayer::Reset``)."""
        for p in self.carried_state():
            try:
                arrays = p.list_data()
            except RuntimeError:          # not initialized yet: it starts at zeros
                continue
            for arr in arrays:
                arr[:] = 0

    def _resize_carried_state(self, n: int) -> None:
        shape = (1, n, self.num_output)
        for p in self.carried_state():
            if p.shape == shape:
                continue
            if p._data is None:           # declared, not initialized yet
                p._shape = shape
                continue
            # Gluon cannot change an initialized Parameter's shape: install new data.
            contexts = p.list_ctx()
            old = p.data(contexts[0])
            new = mx.nd.zeros(shape, ctx=contexts[0])
            if n < old.shape[1]:
                new[:] = old[:, :n]
            p._shape = shape
            p._init_impl(new, contexts)

    # ---- forward helpers -------------------------------------------------------------
    def split_bottoms(self, F, bottoms, params) -> tuple:
        """(x as (T, N, K), cont as (T, N, 1), x_static or None, initial states (N, H))."""
        x = F.reshape(bottoms[0], shape=(0, 0, -1))
        cont = F.expand_dims(F.BlockGrad(bottoms[1]), axis=2)
        x_static = bottoms[2] if self.static_input else None
        if self.expose_hidden:
            given = bottoms[2 + self.static_input:]
        else:
            given = [params[f"{s}_carry"] for s in self.state_names]
        # No gradient into the initial state: Caffe never backpropagates across batches.
        states = [F.reshape(F.BlockGrad(s), shape=(-3, -2)) for s in given]
        return x, cont, x_static, states

    def input_transforms(self, F, x, x_static, weight, bias, static_weight):
        """Caffe's x_transform (all timesteps at once) and the static transform."""
        hidden = self.gates * self.num_output
        gx = F.FullyConnected(x, weight, bias, num_hidden=hidden, flatten=False)
        gs = None
        if x_static is not None:
            gs = F.FullyConnected(x_static, static_weight, None, num_hidden=hidden,
                                  no_bias=True, flatten=True)
        return _time_steps(F, gx, self.steps), gs

    def finish(self, F, main_top, finals: Sequence, params) -> tuple:
        """Tops: the sequence output, then (expose_hidden) the final states, or else
        carry the final states to the next forward."""
        if self.expose_hidden:
            # Caffe shares only the data of these tops: diffs arriving there are dropped.
            return (main_top,) + tuple(F.expand_dims(F.BlockGrad(s), axis=0) for s in finals)
        for state, value in zip(self.state_names, finals):
            dependency = store_state(F, value, params[f"{state}_carry"],
                                     f"{self.prefix}{state}_carry_copy")
            if dependency is not None:
                main_top = F.broadcast_add(main_top, dependency)
        return (main_top,)


@register_layer("LSTM", origin="BVLC")
class LSTM(RecurrentBase):
    """Caffe's LSTMLayer (lstm_layer.cpp): an unrolled LSTM over T timesteps."""

    state_names = ("h", "c")
    gates = 4

    def declare_blobs(self, rp) -> None:
        rows = 4 * self.num_output
        self.add_blob("W_xc", (rows, self.input_dim), rp.weight_filler)
        self.add_blob("b_c", (rows,), rp.bias_filler)
        if self.static_input:
            self.add_blob("W_xc_static", (rows, self.static_dim), rp.weight_filler)
        self.add_blob("W_hc", (rows, self.num_output), rp.weight_filler)

    def hybrid_forward(self, F, *bottoms, **params):
        x, cont, x_static, (h, c) = self.split_bottoms(F, bottoms, params)
        gx, gs = self.input_transforms(F, x, x_static, params["W_xc"], params["b_c"],
                                       params.get("W_xc_static"))
        rows = 4 * self.num_output
        conts = _time_steps(F, cont, self.steps)
        gaps = _time_steps(F, cont * (1 - cont), self.steps)
        hs = []
        for gx_t, cont_t, gap_t in zip(gx, conts, gaps):
            # h_conted_{t-1} = cont_t * h_{t-1}; gate_input_t = W_hc h_conted + W_xc x_t + b_c
            h_conted = F.broadcast_mul(h, cont_t)
            gates = F.FullyConnected(h_conted, params["W_hc"], None, num_hidden=rows,
                                     no_bias=True) + gx_t
            if gs is not None:
                gates = gates + gs
            c, h = lstm_unit(F, c, gates, cont_t, gap_t)
            hs.append(h)
        return self.finish(F, F.stack(*hs, axis=0), (h, c), params)


@register_layer("RNN", origin="BVLC")
class RNN(RecurrentBase):
    """Caffe's RNNLayer (rnn_layer.cpp): a tanh RNN with a tanh output layer."""

    state_names = ("h",)
    gates = 1

    def declare_blobs(self, rp) -> None:
        h = self.num_output
        self.add_blob("W_xh", (h, self.input_dim), rp.weight_filler)
        self.add_blob("b_h", (h,), rp.bias_filler)
        if self.static_input:
            self.add_blob("W_xh_static", (h, self.static_dim), rp.weight_filler)
        self.add_blob("W_hh", (h, h), rp.weight_filler)
        self.add_blob("W_ho", (h, h), rp.weight_filler)
        self.add_blob("b_o", (h,), rp.bias_filler)

    def hybrid_forward(self, F, *bottoms, **params):
        x, cont, x_static, (h,) = self.split_bottoms(F, bottoms, params)
        gx, gs = self.input_transforms(F, x, x_static, params["W_xh"], params["b_h"],
                                       params.get("W_xh_static"))
        hs = []
        for gx_t, cont_t in zip(gx, _time_steps(F, cont, self.steps)):
            h_conted = F.broadcast_mul(h, cont_t)
            pre = F.FullyConnected(h_conted, params["W_hh"], None, num_hidden=self.num_output,
                                   no_bias=True) + gx_t
            if gs is not None:
                pre = pre + gs
            h = F.tanh(pre)
            hs.append(h)
        o = F.tanh(F.FullyConnected(F.stack(*hs, axis=0), params["W_ho"], params["b_o"],
                                    num_hidden=self.num_output, flatten=False))
        return self.finish(F, o, (h,), params)


@register_layer("LSTMUnit", origin="BVLC")
class LSTMUnit(Layer):
    """Caffe's LSTMUnitLayer (lstm_unit_layer.cpp): one LSTM step, no blobs.

    Bottoms ``c_{t-1} (1, N, H)``, gate pre-activations ``(1, N, 4H)`` (i, f, o, g),
    ``cont (1, N)``; tops ``c_t (1, N, H)``, ``h_t (1, N, H)``.
    """

    def setup(self, bottom_shapes):
        self.check_bottoms(bottom_shapes, exactly=3)
        if len(self.param.top) and len(self.param.top) != 2:
            raise self.error(f"takes exactly 2 top blob(s), got {len(self.param.top)}")

    def allow_backward(self, bottom_index: int) -> bool:
        # Caffe: "Cannot backpropagate to sequence indicators."
        return bottom_index != 2

    def reshape(self, bottom_shapes):
        shapes = [tuple(s) for s in bottom_shapes]
        n = shapes[0][1] if len(shapes[0]) >= 2 else None
        for i, shape in enumerate(shapes):
            axes = 2 if i == 2 else 3
            if len(shape) != axes or shape[0] != 1 or shape[1] != n:
                raise self.error(f"bottom[{i}] must have shape (1, #streams"
                                 f"{', ...' if axes == 3 else ''}) with {axes} axes and "
                                 f"#streams = {n}, got {shape}")
        self.hidden = shapes[0][2]
        if shapes[1][2] != 4 * self.hidden:
            raise self.error(f"bottom[1] (gate input) must have 4 * {self.hidden} = "
                             f"{4 * self.hidden} channels, got {shapes[1][2]}")
        return [shapes[0], shapes[0]]

    def hybrid_forward(self, F, c_prev, gates, cont):
        cont = F.expand_dims(F.BlockGrad(cont), axis=-1)
        return lstm_unit(F, c_prev, gates, cont, cont * (1 - cont))


def recurrent_layers(net) -> list:
    """The RNN/LSTM layers of a CaffeNet (e.g. to :meth:`RecurrentBase.reset_state`)."""
    return [layer for layer in getattr(net, "caffe_layers", [])
            if isinstance(layer, RecurrentBase)]


__all__ = ["LSTM", "RNN", "LSTMUnit", "RecurrentBase", "lstm_unit",
           "store_state", "recurrent_layers"]
