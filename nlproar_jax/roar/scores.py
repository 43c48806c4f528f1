"""Importance over a whole split, and ROAR masking of a whole split (length-bucketed batches).

Scores are ragged like the split: one float per main-sequence position, aligned with
``split.main.values``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from nlproar_jax.data.batching import eval_batches
from nlproar_jax.data.dataset import Ragged, Split
from nlproar_jax.importance import ImportanceOptions, compute_importance
from nlproar_jax.roar.masking import roar_mask

# Bytes of autodiff residuals one IG interpolation point keeps per (row, position, hidden unit).
_IG_BYTES_PER_ROW_POS_UNIT = 4 * 32


def ig_chunk_size(batch: int, seq_len: int, hidden: int, steps: int, budget_bytes: Optional[int] = None) -> int:
    """Interpolation points to vmap at once so one chunk stays under ``budget_bytes``
    (default: a quarter of the device's memory limit when known, else 1 GiB)."""
    if budget_bytes is None:
        budget_bytes = 1 << 30
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            budget_bytes = stats["bytes_limit"] // 4
    per_point = batch * seq_len * hidden * _IG_BYTES_PER_ROW_POS_UNIT
    return int(max(1, min(steps, budget_bytes // max(per_point, 1))))


def importance_over_split(graphdef, params, split: Split, measure: str, *, key, options: ImportanceOptions,
                          batch_size: int, hidden_size: int, table=None) -> np.ndarray:
    """``<float32>[total tokens]``: a score per main-sequence position, aligned with ``split.main.values``."""
    scores = Ragged(np.zeros(len(split.main.values), np.float32), split.main.offsets)
    for batch in eval_batches(split, batch_size):
        opts = options
        if measure == "integrated_gradient" and options.ig_chunk_size == 0:
            chunk = ig_chunk_size(batch.tokens.shape[0], batch.tokens.shape[1], hidden_size, options.ig_steps)
            opts = dataclasses.replace(options, ig_chunk_size=chunk)
        s = np.asarray(compute_importance(measure, graphdef, params, batch, key, opts, table))
        real = batch.weight > 0
        scores.set_rows(batch.index[real].astype(np.int64), s[real])
    return scores.values


def mask_split(split: Split, scores: np.ndarray, k: int, strategy: str, batch_size: int) -> Split:
    """``split`` with each row's top-k' tokens by ``scores`` (aligned with ``main.values``) set to [MASK]."""
    score_rows = Ragged(scores, split.main.offsets)
    main = split.main.copy()
    for batch in eval_batches(split, batch_size):
        s = score_rows.pad(batch.index.astype(np.int64), batch.tokens.shape[1])
        masked = np.asarray(roar_mask(batch.tokens, s, jnp.int32(k), strategy))
        real = batch.weight > 0
        main.set_rows(batch.index[real].astype(np.int64), masked[real])
    return split.replace_main(main)
