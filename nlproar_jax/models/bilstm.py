"""A one-layer bidirectional LSTM as a ``lax.scan``, split where attribution needs it.

The LSTM input projection is linear in the embeddings, so it is cut out of the
recurrence: :meth:`BiLSTM.project` maps embeddings ``e`` to ``P = e @ W_ih`` once,
and :meth:`BiLSTM.recur` runs the recurrence on ``P`` (+ bias). Integrated
gradients scales only the LSTM input, so ``proj(alpha * e) = alpha * P``: the
projection is computed once and never back-propagated per interpolation point.

Both directions run in the same scan step (one batched matmul), and padding is
never processed: the state is carried unchanged across [PAD] positions, so the
backward direction starts at each row's last real token, like PyTorch's packed
sequences. Gate order is PyTorch's (i, f, g, o).

The recurrence has a hand-written VJP (:func:`_recurrence`): the forward scan keeps
only the gate activations, the previous states and tanh(c) per step, the backward
scan needs no transcendentals, and the W_hh gradient is one batched matmul over all
steps (dead code, removed by XLA, when only input gradients are wanted, as in IG).
It computes the same function and gradients as autodiff of the plain scan (to float
rounding, ~5e-7) and makes a training step about 5-15% faster on CPU (benchmarks/RESULTS.md).
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


def _scan(u_f, u_b, m, w_hh, unroll, keep_residuals):
    _, batch, gates = u_f.shape
    zeros = jnp.zeros((2, batch, gates // 4), u_f.dtype)

    def step(carry, x):
        h, c = carry
        u_ft, u_bt, m_t = x
        i, f, g, o, c_new, tc, h_new = _cell(jnp.stack([u_ft, u_bt]), h, c, w_hh)
        out = h_new * m_t
        if keep_residuals:
            out = (out, (jnp.concatenate([i, f, g, o], axis=-1), c, tc, h))
        # Padding: the state is carried unchanged (packed-sequence semantics).
        return (jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c)), out

    (h_last, _), out = jax.lax.scan(step, (zeros, zeros), (u_f, u_b, m), unroll=unroll)
    return out, h_last


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _recurrence(u_f, u_b, m, w_hh, unroll=1):
    """Both LSTM directions over time-major inputs.

    Args:
      u_f, u_b: ``<f32>[T, B, 4H]`` projected inputs plus bias of each direction, ``u_b`` time-reversed.
      m: ``<bool>[T, 2, B, 1]`` real-token mask, direction 1 time-reversed like ``u_b``.
      w_hh: ``<f32>[2, H, 4H]``.
    Returns:
      ``ys <f32>[T, 2, B, H]`` (0 at padding) and the final hidden state ``<f32>[2, B, H]``.
    """
    return _scan(u_f, u_b, m, w_hh, unroll, keep_residuals=False)


def _recurrence_fwd(u_f, u_b, m, w_hh, unroll):
    (ys, residuals), h_last = _scan(u_f, u_b, m, w_hh, unroll, keep_residuals=True)
    return (ys, h_last), (residuals, m, w_hh)


def _recurrence_bwd(unroll, saved, cotangents):
    (acts, c_prev, tc, h_prev), m, w_hh = saved
    d_ys, d_h_last = cotangents
    hidden = w_hh.shape[1]
    w_t = jnp.swapaxes(w_hh, 1, 2)  # [2, 4H, H]

    def step(carry, x):
        dh, dc = carry  # cotangents of the carried state after this step
        dy, a, cp, t, k = x
        i, f, g, o = a[..., :hidden], a[..., hidden:2 * hidden], a[..., 2 * hidden:3 * hidden], a[..., 3 * hidden:]
        k = k.astype(dh.dtype)
        dh_new = k * (dh + dy)  # the output is h' * k; the carry takes h' where k
        dc_new = k * dc + dh_new * o * (1 - t * t)
        da = jnp.concatenate([dc_new * g * i * (1 - i), dc_new * cp * f * (1 - f),
                              dc_new * i * (1 - g * g), dh_new * t * o * (1 - o)], axis=-1)
        dh_prev = jnp.einsum("dbg,dgh->dbh", da, w_t) + (1 - k) * dh
        dc_prev = dc_new * f + (1 - k) * dc
        return (dh_prev, dc_prev), (da[0], da[1])

    _, (du_f, du_b) = jax.lax.scan(step, (d_h_last, jnp.zeros_like(d_h_last)), (d_ys, acts, c_prev, tc, m),
                                   reverse=True, unroll=unroll)
    steps, batch, _ = du_f.shape
    # Contiguous [2, T*B, .] operands make this one efficient batched matmul (strided: ~2x slower).
    hp = jnp.swapaxes(h_prev, 0, 1).reshape(2, steps * batch, hidden)
    du = jnp.stack([du_f, du_b]).reshape(2, steps * batch, 4 * hidden)
    d_w_hh = jnp.einsum("dkh,dkg->dhg", hp, du)
    return du_f, du_b, None, d_w_hh


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
        """``<f32>[batch, seq_len, input]`` -> ``<f32>[batch, seq_len, 8H]``, without bias."""
        return emb @ self.w_ih[...]

    def recur(self, proj: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Run both directions over projected inputs.

        Args:
          proj: ``<f32>[batch, seq_len, 8H]`` from :meth:`project` (any linear rescaling of it).
          mask: ``<bool>[batch, seq_len]``, True at real tokens (a prefix of each row).
        Returns:
          outputs ``<f32>[batch, seq_len, 2H]`` (zero at padding) and the final state
          ``<f32>[batch, 2H]``: forward after the last real token ⊕ backward after the first.
        """
        hidden = self.hidden_size
        u = jnp.swapaxes(proj + self.bias[...], 0, 1)  # [T, B, 8H]
        m = jnp.swapaxes(mask, 0, 1)[:, None, :, None]  # [T, 1, B, 1]
        m = jnp.concatenate([m, m[::-1]], axis=1)  # [T, 2, B, 1]
        hs, h_last = _recurrence(u[:, :, : 4 * hidden], u[::-1, :, 4 * hidden :], m, self.w_hh[...], self.unroll)
        outputs = jnp.concatenate([hs[:, 0], hs[::-1, 1]], axis=-1)  # [T, B, 2H]
        final = jnp.concatenate([h_last[0], h_last[1]], axis=-1)  # [B, 2H]
        return jnp.swapaxes(outputs, 0, 1), final

    def __call__(self, emb: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.recur(self.project(emb), mask)
