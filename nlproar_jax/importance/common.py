"""Shared pieces of the gradient-based measures.

Every measure explains the **gold** label's **logit** ``f_c`` (as the original),
for the main sequence, one score per position. The gradient measures
differentiate with respect to the LSTM input projection ``u = P + b`` with
``P = e @ W_ih``: since ``e_t . (G_t W_ih^T) = P_t . G_t``, input-x-gradient and
integrated gradients never leave the 8H-wide projected space, and the gradient
w.r.t. ``e`` is ``G @ W_ih^T`` when needed.

Like the models' training path, everything here is time-major: ``proj <f32>[T, B, 8H]``
and ``tokens <int32>[T, B]`` (see ``model.logits_time_major``), so no interpolation point
of integrated gradients transposes its scaled projection or its gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def gold_logit_sum(model, proj, tokens, query, labels) -> jax.Array:
    """Sum over the batch of each row's gold logit; rows are independent, so its
    gradient gives every row's own gradient."""
    logits, _ = model.logits_from_projection(proj, tokens, query)
    return jnp.take_along_axis(logits, labels[:, None], axis=1).sum()


def gold_logits(model, proj, tokens, query, labels) -> jax.Array:
    """``<f32>[batch]``: each row's gold logit."""
    logits, _ = model.logits_from_projection(proj, tokens, query)
    return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def projected_gradient(model, proj, tokens, query, labels) -> jax.Array:
    """``<f32>[seq_len, batch, 8H]``: d f_c / d u at ``u = proj (+ bias)``."""
    return jax.grad(gold_logit_sum, argnums=1)(model, proj, tokens, query, labels)
