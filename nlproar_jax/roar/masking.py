"""ROAR masking: replace each row's top-k' most important eligible tokens with [MASK].

The original (``nlproar/dataset/roar.py``): scores are -inf where a position is
not eligible ([PAD], [CLS], [EOS]) and +inf where the token already is [MASK]
(so recursive ROAR keeps earlier masks); ``n`` = eligible count ([MASK] and
[UNK] included); ``count``: k' = min(k, n); ``quantile``: k' = floor(k n / 100).
Ties go to the lower position (``jax.lax.top_k``; torch's order is arbitrary).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nlproar_jax.models.layers import attention_mask
from nlproar_jax.data.tokens import MASK
from nlproar_jax.names import STRATEGIES



def tokens_to_mask(tokens: jax.Array, scores: jax.Array, k, strategy: str) -> jax.Array:
    """``<int32>[batch]``: k' per row for ``strategy`` and ``k``."""
    n = attention_mask(tokens).sum(axis=1)
    if strategy == "count":
        return jnp.minimum(k, n)
    if strategy == "quantile":
        return (k * n) // 100
    raise ValueError(f"unknown ROAR strategy {strategy!r}; valid: {STRATEGIES}")


@functools.partial(jax.jit, static_argnames=("strategy",))
def roar_mask(tokens: jax.Array, scores: jax.Array, k, strategy: str) -> jax.Array:
    """Mask the top-k' eligible positions of each row.

    Args:
      tokens: ``<int32>[batch, seq_len]``.
      scores: ``<float32>[batch, seq_len]`` importance (higher = more important).
      k: scalar int (tokens for ``count``, percent for ``quantile``); traced, so
        every k shares one compiled program per batch shape.
      strategy: "count" or "quantile" (static).
    Returns:
      ``<int32>[batch, seq_len]``: ``tokens`` with k' positions per row set to [MASK]; length unchanged.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown ROAR strategy {strategy!r}; valid: {STRATEGIES}")
    eligible = attention_mask(tokens)
    ranked = jnp.where(eligible, scores.astype(jnp.float32), -jnp.inf)
    ranked = jnp.where(tokens == MASK, jnp.inf, ranked)
    k_row = tokens_to_mask(tokens, scores, k, strategy)
    # Per-row k with one static k_max = seq_len: take the full ranking, keep rank < k'.
    _, order = jax.lax.top_k(ranked, tokens.shape[1])
    chosen_sorted = jnp.arange(tokens.shape[1])[None, :] < k_row[:, None]
    chosen = jnp.zeros_like(eligible).at[jnp.arange(tokens.shape[0])[:, None], order].set(chosen_sorted)
    return jnp.where(chosen, MASK, tokens)
