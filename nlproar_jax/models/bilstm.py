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
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from nlproar_jax.models.layers import uniform


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
        batch, _, _ = proj.shape
        hidden = self.hidden_size
        u = jnp.swapaxes(proj + self.bias[...], 0, 1)  # [T, B, 8H]
        m = jnp.swapaxes(mask, 0, 1)[..., None]  # [T, B, 1]
        xs = (u[:, :, : 4 * hidden], u[::-1, :, 4 * hidden :], m, m[::-1])
        w_hh = self.w_hh[...]

        def step(carry, x):
            h, c = carry  # [2, B, H] each; index 0 forward, 1 backward
            u_f, u_b, m_f, m_b = x
            gates = jnp.stack([u_f, u_b]) + jnp.einsum("dbh,dhg->dbg", h, w_hh)
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
            keep = jnp.stack([m_f, m_b])  # [2, B, 1]
            h = jnp.where(keep, h_new, h)
            c = jnp.where(keep, c_new, c)
            return (h, c), h * keep

        zeros = jnp.zeros((2, batch, hidden), proj.dtype)
        (h_last, _), hs = jax.lax.scan(step, (zeros, zeros), xs, unroll=self.unroll)
        outputs = jnp.concatenate([hs[:, 0], hs[::-1, 1]], axis=-1)  # [T, B, 2H]
        final = jnp.concatenate([h_last[0], h_last[1]], axis=-1)  # [B, 2H]
        return jnp.swapaxes(outputs, 0, 1), final

    def __call__(self, emb: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.recur(self.project(emb), mask)
