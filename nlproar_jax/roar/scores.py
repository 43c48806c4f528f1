"""Importance over a whole split, and ROAR masking of a whole split (length-bucketed batches).

Scores are ragged like the split: one float per main-sequence position, aligned with
``split.main.values``. Both work for any classifier (:mod:`nlproar_jax.models.protocol`) and any
measure of :mod:`nlproar_jax.importance`; the measure explains each row's gold label, as the
original's measures do.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlproar_jax.data.batching import eval_batches
from nlproar_jax.data.dataset import Ragged, Split
from nlproar_jax.data.tokens import MASK
from nlproar_jax.importance import GradientShap, IntegratedGradients, SmoothGrad, SmoothGradTimesInput
from nlproar_jax.roar.masking import roar_mask
from nlproar_jax.runtime.progress import Progress

# Bytes of autodiff residuals one IG interpolation point keeps per (row, position, hidden unit).
_IG_BYTES_PER_ROW_POS_UNIT = 4 * 32


def autodiff_bytes_per_position(model, seq_len: int, hidden_size: int) -> int:
    """Bytes of autodiff residuals one differentiated point keeps per (row, position): the model's own
    estimate when it has ``autodiff_bytes_per_position(seq_len)`` (the transformers: every layer's
    activations and attention rows), else the BiLSTM's, ``hidden_size`` units per direction."""
    if model is not None and hasattr(model, "autodiff_bytes_per_position"):
        return int(model.autodiff_bytes_per_position(seq_len))
    return hidden_size * _IG_BYTES_PER_ROW_POS_UNIT


def ig_chunk_size(batch: int, seq_len: int, hidden: int, steps: int, budget_bytes: Optional[int] = None,
                  *, bytes_per_position: Optional[int] = None) -> int:
    """Interpolation points to vmap at once so one chunk stays under ``budget_bytes``
    (default: a quarter of the device's memory limit when known, else 1 GiB). The estimate per point
    is ``batch * seq_len * bytes_per_position`` (default: the BiLSTM's, ``hidden`` units per direction;
    :func:`autodiff_bytes_per_position` gives a model's own)."""
    if budget_bytes is None:
        budget_bytes = 1 << 30
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            budget_bytes = stats["bytes_limit"] // 4
    if bytes_per_position is None:
        bytes_per_position = hidden * _IG_BYTES_PER_ROW_POS_UNIT
    per_point = batch * seq_len * bytes_per_position
    return int(max(1, min(steps, budget_bytes // max(per_point, 1))))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def score_batch(measure, graphdef, params, tokens, target, aux_tokens, key, index) -> jax.Array:
    """``<f32>[B, T]``: ``measure`` on one batch. ``graphdef``/``params``: the model from ``nnx.split``
    (None for model-free measures); row ``i`` draws random numbers from ``fold_in(key, index[i])``, so
    random scores depend on the example, never on its batch. Compiled once per measure options,
    model structure and batch shape."""
    model = None if graphdef is None else nnx.merge(graphdef, params)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
    return measure(model, tokens, target=target, aux_tokens=aux_tokens, key=keys)


def importance_over_split(model, split: Split, measure, *, key, batch_size: int,
                          hidden_size: Optional[int] = None, desc: str = "importance") -> np.ndarray:
    """``<float32>[total tokens]``: ``measure``'s score per main-sequence position of ``split``
    (explaining each row's gold label), aligned with ``split.main.values``.

    ``model``: a classifier, or None for model-free measures. ``hidden_size``: with a measure that
    differentiates the model at many points (integrated gradients' steps; SmoothGrad's and gradient
    SHAP's samples) whose ``chunk_size`` is 0, pick the chunk from the device's memory
    (:func:`ig_chunk_size`) for a BiLSTM of this width, or by the model's own estimate when it has one
    (:func:`autodiff_bytes_per_position`); None evaluates every point at once. (The
    perturbation measures choose their chunk themselves: ``chunk_size=None``.)
    """
    graphdef, params = (None, None) if model is None else nnx.split(model)
    scores = Ragged(np.zeros(len(split.main.values), np.float32), split.main.offsets)
    points = _gradient_points(measure)
    bar = Progress(len(split), desc)  # a bar on a terminal, a log line every 30 s elsewhere
    for batch in eval_batches(split, batch_size):
        fn = measure
        if points and measure.chunk_size == 0 and hidden_size:
            seq_len = batch.tokens.shape[1]
            chunk = ig_chunk_size(batch.tokens.shape[0], seq_len, hidden_size, points,
                                  bytes_per_position=autodiff_bytes_per_position(model, seq_len, hidden_size))
            fn = dataclasses.replace(measure, chunk_size=chunk)
        s = np.asarray(score_batch(fn, graphdef, params, batch.tokens, batch.labels, batch.aux_tokens, key,
                                   batch.index))
        real = batch.weight > 0
        scores.set_rows(batch.index[real].astype(np.int64), s[real])
        bar.update(int(real.sum()))
    bar.close()
    return scores.values


def _gradient_points(measure) -> int:
    """The number of gradients a measure takes per row (0: not a many-point gradient measure)."""
    if isinstance(measure, IntegratedGradients):
        return int(measure.steps)
    if isinstance(measure, (SmoothGrad, SmoothGradTimesInput, GradientShap)):
        return int(measure.samples)
    return 0


def mask_split(split: Split, scores: np.ndarray, k: int, strategy: str, batch_size: int, *,
               maskable: Optional[Callable] = None, mask_token: int = MASK, mode: str = "remove") -> Split:
    """``split`` with each row's top-k' maskable tokens by ``scores`` (aligned with ``main.values``)
    replaced by ``mask_token`` (``mode="remove"``), or every maskable token but those k' replaced
    (``mode="keep"``: keep-and-retrain). ``maskable``: ``tokens <int32>[B, T] -> <bool>[B, T]``, the
    model's rule (``model.maskable``); None = the BiLSTM vocabulary's."""
    score_rows = Ragged(scores, split.main.offsets)
    main = split.main.copy()
    for batch in eval_batches(split, batch_size):
        s = score_rows.pad(batch.index.astype(np.int64), batch.tokens.shape[1])
        allowed = None if maskable is None else jnp.asarray(maskable(jnp.asarray(batch.tokens)))
        masked = np.asarray(roar_mask(batch.tokens, s, jnp.int32(k), strategy, maskable=allowed,
                                      mask_token=mask_token, mode=mode))
        real = batch.weight > 0
        main.set_rows(batch.index[real].astype(np.int64), masked[real])
    return split.replace_main(main)
