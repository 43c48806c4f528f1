"""ROAR masking: replace each row's top-k' most important maskable tokens with the mask token, or
(keep-and-retrain) keep them and replace every other maskable token.

The original (``nlproar/dataset/roar.py``): scores are -inf where a position may not be masked
([PAD], [CLS], [EOS]) and +inf where the token already is [MASK] (so recursive ROAR keeps earlier
masks); ``n`` = the row's maskable count ([MASK] and [UNK] included); ``count``: k' = min(k, n);
``quantile``: k' = floor(k n / 100). Ties go to the lower position (``jax.lax.top_k``; torch's
order is arbitrary).

Keep-and-retrain (``mode="keep"``; KAR, as in FRESH and UNIREX) computes the same k' and the same
ranking but keeps the top-k' and masks every other maskable position: over the maskable positions its
masks are the complement of removal's at the same k (for rows without earlier masks: keep is classic
only, so it starts from the unmasked data). It ranks by score alone (no +inf for earlier masks: keeping
a [MASK] is not worth a slot). ``quantile`` k = 100 and ``count`` k >= n keep every token, so change nothing.
Non-maskable positions never change in either mode.

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
from nlproar_jax.names import ROAR_MODES, STRATEGIES


def masked_count(maskable: jax.Array, k, strategy: str) -> jax.Array:
    """``<int32>[batch]``: k', how many positions of each row ``strategy`` masks (keeps, in keep mode) at
    ``k``, given the ``<bool>[batch, seq_len]`` maskable positions."""
    n = maskable.sum(axis=1)
    if strategy == "count":
        return jnp.minimum(k, n)
    if strategy == "quantile":
        return (k * n) // 100
    raise ValueError(f"unknown ROAR strategy {strategy!r}; valid: {STRATEGIES}")


@functools.partial(jax.jit, static_argnames=("strategy", "mode"))
def roar_mask(tokens: jax.Array, scores: jax.Array, k, strategy: str, *, maskable: Optional[jax.Array] = None,
              mask_token=MASK, mode: str = "remove") -> jax.Array:
    """Mask the top-k' maskable positions of each row (``mode="remove"``), or every maskable position
    but the top-k' (``mode="keep"``).

    Args:
      tokens: ``<int32>[batch, seq_len]``.
      scores: ``<float32>[batch, seq_len]`` importance (higher = more important).
      k: scalar int (tokens for ``count``, percent for ``quantile``); traced, so every k shares one
        compiled program per batch shape.
      strategy: "count" or "quantile" (static).
      maskable: ``<bool>[batch, seq_len]``, the positions that may be masked (``model.maskable(tokens)``);
        default ``tokens >= [MASK]``, the BiLSTM vocabulary's rule.
      mask_token: the id written at masked positions (``model.mask_token``; default [MASK]).
      mode: "remove" (ROAR) or "keep" (keep-and-retrain) (static).
    Returns:
      ``<int32>[batch, seq_len]``: ``tokens`` with k' positions per row set to ``mask_token`` (remove),
      or all maskable positions but k' (keep); length unchanged.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown ROAR strategy {strategy!r}; valid: {STRATEGIES}")
    if mode not in ROAR_MODES:
        raise ValueError(f"unknown ROAR mode {mode!r}; valid: {ROAR_MODES}")
    if maskable is None:
        maskable = tokens >= FIRST_ELIGIBLE
    ranked = jnp.where(maskable, scores.astype(jnp.float32), -jnp.inf)
    if mode == "remove":
        ranked = jnp.where(maskable & (tokens == mask_token), jnp.inf, ranked)  # earlier masks stay masked
    chosen = top_positions(ranked, masked_count(maskable, k, strategy))
    masked = (maskable & ~chosen) if mode == "keep" else chosen
    return jnp.where(masked, jnp.asarray(mask_token, tokens.dtype), tokens)


def top_positions(ranked: jax.Array, k_row: jax.Array) -> jax.Array:
    """``<bool>[batch, seq_len]``: each row's ``k_row`` (``<int32>[batch]``) highest positions of
    ``ranked`` (``<float32>[batch, seq_len]``), ties to the lower position."""
    # Per-row k with one static k_max = seq_len: take the full ranking, keep rank < k'.
    batch, seq_len = ranked.shape
    _, order = jax.lax.top_k(ranked, seq_len)
    chosen_sorted = jnp.arange(seq_len)[None, :] < k_row[:, None]
    return jnp.zeros(ranked.shape, bool).at[jnp.arange(batch)[:, None], order].set(chosen_sorted)
