"""The importance measures as pure functions of a model and a batch.

Each takes the merged model (an ``nnx`` module; call inside ``jax.jit`` or not),
a :class:`~nlproar_jax.data.batching.Batch`, a PRNG key and
:class:`ImportanceOptions`, and returns ``<float32>[batch, seq_len]``. Scores at
ineligible positions ([PAD], [CLS], [EOS]) are whatever falls out (0 at [PAD]);
ROAR masking ignores them. A score never depends on padding or batch mates.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from nlproar_jax.importance.common import gold_logits, projected_gradient
from nlproar_jax.models.layers import lstm_mask

from nlproar_jax.names import IG_VARIANTS


@dataclasses.dataclass(frozen=True)
class ImportanceOptions:
    """Static options. ``ig_variant``: "alpha_weighted" (the original, default) or "textbook".
    ``ig_chunk_size``: interpolation points vmapped at once (0 = all ``ig_steps``)."""

    ig_steps: int = 50
    ig_variant: str = "alpha_weighted"
    ig_chunk_size: int = 0

    def __post_init__(self):
        if self.ig_steps < 1:
            raise ValueError(f"ig_steps must be >= 1, got {self.ig_steps}")
        if self.ig_variant not in IG_VARIANTS:
            raise ValueError(f"unknown ig_variant {self.ig_variant!r}; valid: {IG_VARIANTS}")
        if self.ig_chunk_size < 0:
            raise ValueError(f"ig_chunk_size must be >= 0 (0 = all points at once), got {self.ig_chunk_size}")


def random_importance(model, batch, key, options=None, table=None) -> jax.Array:
    """U[0, 1) per (example, position), keyed on the example's row id and the position,
    so scores do not depend on batching or padding."""
    del model, options, table
    tokens = jnp.asarray(batch.tokens)
    positions = jnp.arange(tokens.shape[1])

    def one(index, t):
        return jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, index), t))

    return jax.vmap(lambda i: jax.vmap(lambda t: one(i, t))(positions))(jnp.asarray(batch.index))


def attention_importance(model, batch, key=None, options=None, table=None) -> jax.Array:
    """The attention weights alpha_t (0 at non-attended positions)."""
    del key, options, table
    _, alpha = model(batch.tokens, batch.aux_tokens)
    return alpha


def mutual_information_importance(model, batch, key=None, options=None, table=None) -> jax.Array:
    """``table[token]``: the dataset-level MI table (see :mod:`nlproar_jax.importance.mutual_information`)."""
    del model, key, options
    if table is None:
        raise ValueError("mutual_information needs its table: build it with mutual_information_table(...)")
    return jnp.take(jnp.asarray(table), batch.tokens, axis=0)


def _projection(model, batch):
    """Time-major ``tokens <int32>[T, B]`` and ``P <f32>[T, B, 8H]`` (embeddings gathered with
    ``tokens.T``), the query and the labels."""
    tokens = jnp.swapaxes(jnp.asarray(batch.tokens), 0, 1)
    proj = model.embed(tokens) @ model.input_weights()
    return tokens, proj, model.aux_context(batch.aux_tokens), jnp.asarray(batch.labels)


def gradient_importance(model, batch, key=None, options=None, table=None) -> jax.Array:
    """``||E g_t||_2``: the L2 norm over the vocabulary of d f_c / d onehot(x_t) = E g_t,
    with g_t = d f_c / d e_t. Computed as ``sqrt(g^T (E^T E) g)``, never as B x T x V."""
    del key, options, table
    tokens, proj, query, labels = _projection(model, batch)
    g = projected_gradient(model, proj, tokens, query, labels) @ model.encoder.w_ih[...].T  # [T, B, D]
    table_ = model.embedding[...]
    gram = table_.T @ table_  # [D, D]
    sq = jnp.einsum("tbd,de,tbe->bt", g, gram, g)
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def input_times_gradient_importance(model, batch, key=None, options=None, table=None) -> jax.Array:
    """``|e_t . d f_c / d e_t|``, computed as ``|P_t . G_t|`` in the projected space."""
    del key, options, table
    tokens, proj, query, labels = _projection(model, batch)
    return jnp.abs(jnp.sum(proj * projected_gradient(model, proj, tokens, query, labels), axis=-1)).T


def integrated_gradient_terms(model, batch, options: ImportanceOptions) -> jax.Array:
    """``<f32>[ig_steps, batch, seq_len]``: ``e_t . grad_x f_c(alpha_i e)`` for alpha_i = i/N, i = 1..N.

    Only the LSTM input is scaled (zero-embedding baseline on the main sequence,
    [CLS]/[EOS]/[MASK] included; the auxiliary sequence is untouched), so each
    point is ``alpha_i * P``: the projection is computed once. Points are
    evaluated ``ig_chunk_size`` at a time (vmapped), all of them exactly once.
    """
    tokens, proj, query, labels = _projection(model, batch)
    alphas = jnp.arange(1, options.ig_steps + 1, dtype=proj.dtype) / options.ig_steps

    def point(alpha):
        return jnp.sum(proj * projected_gradient(model, alpha * proj, tokens, query, labels), axis=-1)

    chunk = options.ig_chunk_size or options.ig_steps
    return jnp.swapaxes(jax.lax.map(point, alphas, batch_size=min(chunk, options.ig_steps)), 1, 2)


def ig_weights(options: ImportanceOptions) -> jax.Array:
    """Per-point weights: alpha_i for the original's form, 1 for textbook IG."""
    alphas = jnp.arange(1, options.ig_steps + 1, dtype=jnp.float32) / options.ig_steps
    return alphas if options.ig_variant == "alpha_weighted" else jnp.ones_like(alphas)


def integrated_gradient_importance(model, batch, key=None, options=None, table=None) -> jax.Array:
    """Integrated gradients, right Riemann sum with ``ig_steps`` points, zero baseline.

    * ``alpha_weighted`` (default; the original, deliberately): the LSTM sees
      ``alpha_i e`` but the gradient is taken w.r.t. the unscaled ``e``, so each
      term carries an extra ``alpha_i``: ``|mean_i alpha_i e_t . grad f_c(alpha_i e)|``.
      This does **not** satisfy completeness.
    * ``textbook``: ``|mean_i e_t . grad f_c(alpha_i e)|``, whose signed sum over
      positions approaches ``f_c(e) - f_c(0)`` (see :func:`integrated_gradient_completeness`).
    """
    del key, table
    options = options or ImportanceOptions()
    terms = integrated_gradient_terms(model, batch, options)
    return jnp.abs(jnp.einsum("n,nbt->bt", ig_weights(options), terms) / options.ig_steps)


def integrated_gradient_completeness(model, batch, options: Optional[ImportanceOptions] = None):
    """``(attribution_sum, delta) <f32>[batch]`` for *textbook* IG: the signed sum of the
    attributions over positions and ``f_c(e) - f_c(0)``. Their gap is the Riemann error."""
    options = dataclasses.replace(options or ImportanceOptions(), ig_variant="textbook")
    terms = integrated_gradient_terms(model, batch, options)
    attribution_sum = terms.mean(axis=0).sum(axis=1)
    tokens, proj, query, labels = _projection(model, batch)
    delta = gold_logits(model, proj, tokens, query, labels) - gold_logits(model, 0.0 * proj, tokens, query, labels)
    return attribution_sum, delta


def real_token_mask(batch) -> jax.Array:
    return lstm_mask(jnp.asarray(batch.tokens))
