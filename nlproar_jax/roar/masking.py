"""ROAR masking: replace each row's top-k' most important maskable tokens with the mask token.

The original (``nlproar/dataset/roar.py``): scores are -inf where a position may not be masked
([PAD], [CLS], [EOS]) and +inf where the token already is [MASK] (so recursive ROAR keeps earlier
masks); ``n`` = the row's maskable count ([MASK] and [UNK] included); ``count``: k' = min(k, n);
``quantile``: k' = floor(k n / 100). Ties go to the lower position (``jax.lax.top_k``; torch's
order is arbitrary).

Which positions are maskable and which id masks them belong to the model's vocabulary
(``model.maskable(tokens)`` and ``model.mask_token``, :mod:`nlproar_jax.models.protocol`); the
defaults are the BiLSTM vocabulary's (``id >= [MASK]``, [MASK]).
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from nlproar_jax.data.tokens import FIRST_ELIGIBLE, MASK
from nlproar_jax.names import STRATEGIES


def masked_count(maskable: jax.Array, k, strategy: str) -> jax.Array:
    """``<int32>[batch]``: k', how many positions of each row ``strategy`` masks at ``k``, given the
    ``<bool>[batch, seq_len]`` maskable positions."""
    n = maskable.sum(axis=1)
    if strategy == "count":
        return jnp.minimum(k, n)
    if strategy == "quantile":
        return (k * n) // 100
    raise ValueError(f"unknown ROAR strategy {strategy!r}; valid: {STRATEGIES}")


@functools.partial(jax.jit, static_argnames=("strategy",))
def roar_mask(tokens: jax.Array, scores: jax.Array, k, strategy: str, *, maskable: Optional[jax.Array] = None,
              mask_token=MASK) -> jax.Array:
    """Mask the top-k' maskable positions of each row.

    Args:
      tokens: ``<int32>[batch, seq_len]``.
      scores: ``<float32>[batch, seq_len]`` importance (higher = more important).
      k: scalar int (tokens for ``count``, percent for ``quantile``); traced, so every k shares one
        compiled program per batch shape.
      strategy: "count" or "quantile" (static).
      maskable: ``<bool>[batch, seq_len]``, the positions that may be masked (``model.maskable(tokens)``);
        default ``tokens >= [MASK]``, the BiLSTM vocabulary's rule.
      mask_token: the id written at masked positions (``model.mask_token``; default [MASK]).
    Returns:
      ``<int32>[batch, seq_len]``: ``tokens`` with k' positions per row set to ``mask_token``; length unchanged.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown ROAR strategy {strategy!r}; valid: {STRATEGIES}")
    if maskable is None:
        maskable = tokens >= FIRST_ELIGIBLE
    ranked = jnp.where(maskable, scores.astype(jnp.float32), -jnp.inf)
    ranked = jnp.where(maskable & (tokens == mask_token), jnp.inf, ranked)  # earlier masks stay masked
    k_row = masked_count(maskable, k, strategy)
    # Per-row k with one static k_max = seq_len: take the full ranking, keep rank < k'.
    _, order = jax.lax.top_k(ranked, tokens.shape[1])
    chosen_sorted = jnp.arange(tokens.shape[1])[None, :] < k_row[:, None]
    chosen = jnp.zeros_like(maskable).at[jnp.arange(tokens.shape[0])[:, None], order].set(chosen_sorted)
    return jnp.where(chosen, jnp.asarray(mask_token, tokens.dtype), tokens)
