"""A one-layer bidirectional LSTM as a ``lax.scan``, split where attribution needs it.

The LSTM input projection is linear in the embeddings, so it is cut out of the
recurrence: :meth:`BiLSTM.project` maps embeddings ``e`` to ``P = e @ W_ih`` once,
and :meth:`BiLSTM.recur` runs the recurrence on ``P`` (+ bias). Integrated
gradients scales only the LSTM input, so ``proj(alpha * e) = alpha * P``: the
projection is computed once and never back-propagated per interpolation point.

Both directions run in the same scan step (one batched matmul): step ``s`` runs the
forward direction at position ``s`` and the backward one at ``T-1-s``, reading a
time-major projection and writing outputs in place, so no reversed or transposed
copy of the ``[T, B, 8H]`` activations is ever made (the models gather embeddings
with ``tokens.T`` and stay time-major). Padding is never processed: the state is
carried unchanged across [PAD] positions, so the backward direction starts at each
row's last real token, like PyTorch's packed sequences. Gate order is PyTorch's (i, f, g, o).

The recurrence has a hand-written VJP (:func:`_recurrence`): the forward scan keeps
only the gate activations, the previous states and tanh(c) per step, the backward
scan needs no transcendentals and writes the input cotangent in place, and the W_hh
gradient is two matmuls over all steps (dead code, removed by XLA, when only input
gradients are wanted, as in IG). Nothing inside either loop reduces over the batch, so
a batch-sharded run needs no collective per step. It computes the same function and
gradients as autodiff of the plain scan (tests/test_models.py); benchmarks/RESULTS.md
has what the time-major layout and the VJP gained.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from nlproar_jax.models.layers import uniform


def _cell(u, h, c, w_hh):
    """One step of both directions: ``u <f32>[2, B, 4H]``, ``h, c <f32>[2, B, H]``, ``w_hh <f32>[2, H, 4H]``
    -> activations ``i, f, g, o``, the new cell ``c'``, ``tanh(c')`` and the new hidden ``h'``."""
    hidden = h.shape[-1]
    gates = u + jnp.einsum("dbh,dhg->dbg", h, w_hh)
    i = jax.nn.sigmoid(gates[..., :hidden])
    f = jax.nn.sigmoid(gates[..., hidden:2 * hidden])
    g = jnp.tanh(gates[..., 2 * hidden:3 * hidden])
    o = jax.nn.sigmoid(gates[..., 3 * hidden:])
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    return i, f, g, o, c_new, tc, o * tc


def _forward_scan(u, bias, m, w_hh, unroll, keep_residuals):
    steps, batch, gates = u.shape
    hidden = gates // 8
    zeros = jnp.zeros((2, batch, hidden), u.dtype)
    b = bias.reshape(2, 1, 4 * hidden)

    def step(carry, s):
        h, c, ys = carry
        r = steps - 1 - s  # the backward direction's position
        u_t = jnp.stack([jax.lax.dynamic_slice(u, (s, 0, 0), (1, batch, 4 * hidden))[0],
                         jax.lax.dynamic_slice(u, (r, 0, 4 * hidden), (1, batch, 4 * hidden))[0]])
        m_t = jnp.stack([m[s], m[r]])[..., None]  # [2, B, 1]
        i, f, g, o, c_new, tc, h_new = _cell(u_t + b, h, c, w_hh)
        out = h_new * m_t
        # Outputs go straight to their positions: forward half at s, backward half at r.
        ys = jax.lax.dynamic_update_slice(ys, out[0][None], (s, 0, 0))
        ys = jax.lax.dynamic_update_slice(ys, out[1][None], (r, 0, hidden))
        residuals = (jnp.concatenate([i, f, g, o], axis=-1), c, tc, h[0], h[1]) if keep_residuals else None
        # Padding: the state is carried unchanged (packed-sequence semantics).
        return (jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c), ys), residuals

    init = (zeros, zeros, jnp.zeros((steps, batch, 2 * hidden), u.dtype))
    (h_last, _, ys), residuals = jax.lax.scan(step, init, jnp.arange(steps), unroll=unroll)
    return (ys, h_last), residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _recurrence(u, bias, m, w_hh, unroll=1):
    """Both LSTM directions over a time-major projection.

    Args:
      u: ``<f32>[T, B, 8H]`` input projection (forward gates, then backward gates), without bias.
      bias: ``<f32>[8H]``.
      m: ``<bool>[T, B]`` real-token mask.
      w_hh: ``<f32>[2, H, 4H]``.
    Returns:
      ``ys <f32>[T, B, 2H]`` (forward ⊕ backward output at each position, 0 at padding) and the
      final hidden state ``<f32>[2, B, H]``.

    Step ``s`` runs the forward direction at position ``s`` and the backward one at ``T-1-s``,
    reading ``u`` and writing ``ys`` in place: no reversed or transposed copies are made.
    """
    return _forward_scan(u, bias, m, w_hh, unroll, keep_residuals=False)[0]


def _recurrence_fwd(u, bias, m, w_hh, unroll):
    out, residuals = _forward_scan(u, bias, m, w_hh, unroll, keep_residuals=True)
    return out, (residuals, m, w_hh)


def _recurrence_bwd(unroll, saved, cotangents):
    (acts, c_prev, tc, h_prev_f, h_prev_b), m, w_hh = saved
    d_ys, d_h_last = cotangents
    steps, batch, hidden = h_prev_f.shape
    w_t = jnp.swapaxes(w_hh, 1, 2)  # [2, 4H, H]

    def step(carry, x):
        dh, dc, du, d_bias = carry  # dh, dc: cotangents of the carried state after this step; d_bias per row
        s, a, cp, t = x
        r = steps - 1 - s
        i, f, g, o = a[..., :hidden], a[..., hidden:2 * hidden], a[..., 2 * hidden:3 * hidden], a[..., 3 * hidden:]
        k = jnp.stack([m[s], m[r]])[..., None].astype(dh.dtype)
        dy = jnp.stack([jax.lax.dynamic_slice(d_ys, (s, 0, 0), (1, batch, hidden))[0],
                        jax.lax.dynamic_slice(d_ys, (r, 0, hidden), (1, batch, hidden))[0]])
        dh_new = k * (dh + dy)  # the output is h' * k; the carry takes h' where k
        dc_new = k * dc + dh_new * o * (1 - t * t)
        da = jnp.concatenate([dc_new * g * i * (1 - i), dc_new * cp * f * (1 - f),
                              dc_new * i * (1 - g * g), dh_new * t * o * (1 - o)], axis=-1)
        dh_prev = jnp.einsum("dbg,dgh->dbh", da, w_t) + (1 - k) * dh
        dc_prev = dc_new * f + (1 - k) * dc
        du = jax.lax.dynamic_update_slice(du, da[0][None], (s, 0, 0))
        du = jax.lax.dynamic_update_slice(du, da[1][None], (r, 0, 4 * hidden))
        return (dh_prev, dc_prev, du, d_bias + da), (da[0], da[1])

    init = (d_h_last, jnp.zeros_like(d_h_last), jnp.zeros((steps, batch, 8 * hidden), d_ys.dtype),
            jnp.zeros((2, batch, 4 * hidden), d_ys.dtype))
    (_, _, du, d_bias), (da_f, da_b) = jax.lax.scan(step, init, (jnp.arange(steps), acts, c_prev, tc),
                                                    reverse=True, unroll=unroll)
    # Contiguous operands in step order make W_hh's gradient two efficient matmuls. Nothing in
    # the loop reduces over the batch (the bias gradient is summed per row), and the matmuls
    # contract (T, B) without a reshape, so a batch-sharded run needs no collective per step.
    d_w_hh = jnp.stack([jnp.einsum("tbh,tbg->hg", h_prev_f, da_f), jnp.einsum("tbh,tbg->hg", h_prev_b, da_b)])
    return du, jnp.sum(d_bias, axis=1).reshape(-1), None, d_w_hh


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


class BiLSTM(nnx.Module):
    """Parameters: ``w_ih <f32>[input, 8H]`` (forward gates then backward gates),
    ``w_hh <f32>[2, H, 4H]``, ``bias <f32>[8H]`` (the sum of PyTorch's two biases)."""

    def __init__(self, input_size: int, hidden_size: int, *, rngs: nnx.Rngs, unroll: int = 1):
        bound = 1.0 / math.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.unroll = unroll
        self.w_ih = nnx.Param(uniform(rngs.params(), (input_size, 8 * hidden_size), bound))
        self.w_hh = nnx.Param(uniform(rngs.params(), (2, hidden_size, 4 * hidden_size), bound))
        # PyTorch has b_ih + b_hh, each U(-k, k); one bias with the sum's distribution.
        self.bias = nnx.Param(uniform(rngs.params(), (8 * hidden_size,), bound)
                              + uniform(rngs.params(), (8 * hidden_size,), bound))

    def project(self, emb: jax.Array) -> jax.Array:
        """``<f32>[..., input]`` -> ``<f32>[..., 8H]`` (batch- or time-major alike), without bias."""
        return emb @ self.w_ih[...]

    def recur_time_major(self, proj: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Run both directions over a time-major projection (the training path: no layout copies).

        Args:
          proj: ``<f32>[seq_len, batch, 8H]`` from :meth:`project` (any linear rescaling of it).
          mask: ``<bool>[seq_len, batch]``, True at real tokens (a prefix of each column).
        Returns:
          outputs ``<f32>[seq_len, batch, 2H]`` (zero at padding) and the final state
          ``<f32>[batch, 2H]``: forward after the last real token ⊕ backward after the first.
        """
        hs, h_last = _recurrence(proj, self.bias[...], mask, self.w_hh[...], self.unroll)
        return hs, jnp.concatenate([h_last[0], h_last[1]], axis=-1)

    def recur(self, proj: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """:meth:`recur_time_major` for batch-major ``proj <f32>[batch, seq_len, 8H]`` and
        ``mask <bool>[batch, seq_len]``; outputs ``<f32>[batch, seq_len, 2H]``, final ``<f32>[batch, 2H]``."""
        hs, final = self.recur_time_major(jnp.swapaxes(proj, 0, 1), jnp.swapaxes(mask, 0, 1))
        return jnp.swapaxes(hs, 0, 1), final

    def __call__(self, emb: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Batch-major ``emb <f32>[batch, seq_len, input]``, ``mask <bool>[batch, seq_len]``; see :meth:`recur`."""
        return self.recur(self.project(emb), mask)
