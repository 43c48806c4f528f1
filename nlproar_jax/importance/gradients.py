"""Gradient, input x gradient and integrated gradients, for any classifier.

Each explains one class's logit ``f_c`` (see :func:`~nlproar_jax.importance.base.resolve_target`)
with respect to the token embeddings ``e = model.embed(tokens)`` of the main sequence.

Two paths compute the same scores:

* the **generic** path, the definition: autodiff through ``model.logits_from_embeddings``;
* the **linear-input fast path** (``fast_path=True``, used when the model offers it, see
  :mod:`nlproar_jax.models.protocol`): when the model's first operation is ``P = e @ W``, then
  ``e_t . g_t = P_t . G_t`` with ``G = d f_c / d P`` and ``g = G W^T``, so input x gradient and
  integrated gradients never leave the projected space, and integrated gradients, which scales
  only the input, computes ``P`` once: the point ``alpha e`` is ``alpha P``. Everything there is
  time-major (``[T, B, K]``), as the BiLSTM runs, so no interpolation point transposes anything.

``tests/test_importance.py`` checks that both paths agree on the BiLSTM models.
"""
from __future__ import annotations

from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from nlproar_jax.importance.base import (
    DEFAULT_PRECISION,
    measure_dataclass,
    precision_scope,
    require_model,
    resolve_target,
    target_logit_sum,
)
from nlproar_jax.models.protocol import has_fast_path
from nlproar_jax.names import IG_VARIANTS


# -- the two paths ---------------------------------------------------------------------------
def embedding_gradient(model, emb, tokens, aux_tokens, target) -> jax.Array:
    """``<f32>[B, T, D]``: ``d f_c / d e`` at ``emb``, through ``logits_from_embeddings`` (generic)."""
    def f(e):
        return target_logit_sum(model.logits_from_embeddings(e, tokens, aux_tokens)[0], target)
    return jax.grad(f)(emb)


def projection(model, tokens, aux_tokens):
    """Fast path: time-major ``tokens <int32>[T, B]``, ``P = e @ W <f32>[T, B, K]`` (embeddings
    gathered with ``tokens.T``) and the model's auxiliary context."""
    tokens_tm = jnp.swapaxes(tokens, 0, 1)
    return tokens_tm, model.embed(tokens_tm) @ model.input_weights(), model.aux_context(aux_tokens)


def projected_gradient(model, proj, tokens_tm, context, target) -> jax.Array:
    """Fast path: ``<f32>[T, B, K]``, ``d f_c / d P`` at ``proj``."""
    def f(p):
        return target_logit_sum(model.logits_from_projection(p, tokens_tm, context)[0], target)
    return jax.grad(f)(proj)


def _use_fast_path(measure, model) -> bool:
    return measure.fast_path and has_fast_path(model)


class _ExplainsModel:
    """The calling convention of the gradient measures: checks the model, resolves ``target``, runs
    :meth:`scores` under the measure's matmul precision."""

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]`` (see :mod:`nlproar_jax.importance.base`); ``key`` is not used."""
        del key
        require_model(model, self.name)
        with precision_scope(self.precision):
            tokens = jnp.asarray(tokens)
            return self.scores(model, tokens, resolve_target(model, tokens, target, aux_tokens), aux_tokens)


# -- the measures ----------------------------------------------------------------------------
@measure_dataclass
class Gradient(_ExplainsModel):
    """``||E g_t||_2``: the L2 norm over the vocabulary of ``d f_c / d onehot(x_t) = E g_t`` with
    ``g_t = d f_c / d e_t`` and ``E = model.embedding_table()`` (the original's definition),
    computed as ``sqrt(g^T (E^T E) g)``, never as ``B x T x V``."""

    name: ClassVar[str] = "gradient"
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def scores(self, model, tokens, target, aux_tokens=None) -> jax.Array:
        """``<f32>[B, T]``, non-negative; ``target <int32>[B]``."""
        if not hasattr(model, "embedding_table"):
            raise ValueError(f"the gradient measure ||E g|| needs {type(model).__name__}.embedding_table() "
                             "(the matrix embed() looks up); see nlproar_jax.models.protocol")
        table = model.embedding_table()
        gram = table.T @ table  # [D, D]
        if _use_fast_path(self, model):
            tokens_tm, proj, context = projection(model, tokens, aux_tokens)
            g = projected_gradient(model, proj, tokens_tm, context, target) @ model.input_weights().T
            sq = jnp.einsum("tbd,de,tbe->bt", g, gram, g)
        else:
            g = embedding_gradient(model, model.embed(tokens), tokens, aux_tokens, target)
            sq = jnp.einsum("btd,de,bte->bt", g, gram, g)
        return jnp.sqrt(jnp.maximum(sq, 0.0))


@measure_dataclass
class InputTimesGradient(_ExplainsModel):
    """``|e_t . d f_c / d e_t|`` (``signed=True``: without the absolute value)."""

    name: ClassVar[str] = "input_times_gradient"
    signed: bool = False
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def scores(self, model, tokens, target, aux_tokens=None) -> jax.Array:
        """``<f32>[B, T]``; ``target <int32>[B]``."""
        if _use_fast_path(self, model):
            tokens_tm, proj, context = projection(model, tokens, aux_tokens)
            s = jnp.sum(proj * projected_gradient(model, proj, tokens_tm, context, target), axis=-1).T
        else:
            emb = model.embed(tokens)
            s = jnp.sum(emb * embedding_gradient(model, emb, tokens, aux_tokens, target), axis=-1)
        return s if self.signed else jnp.abs(s)


@measure_dataclass
class IntegratedGradients(_ExplainsModel):
    """Integrated gradients: right Riemann sum over ``steps`` points ``alpha_i = i / steps``,
    zero-embedding baseline on the main sequence (specials and [MASK] included; the auxiliary
    sequence is untouched), as the original.

    * ``variant="alpha_weighted"`` (the original, deliberately; the task configs' default): the
      model sees ``alpha_i e`` but the gradient is taken with respect to the unscaled ``e``, so each
      term carries an extra ``alpha_i``: ``|mean_i alpha_i e_t . grad f_c(alpha_i e)|``. It does
      **not** satisfy completeness.
    * ``variant="textbook"``: ``|mean_i e_t . grad f_c(alpha_i e)|``, whose signed sum over
      positions approaches ``f_c(e) - f_c(0)`` (:meth:`with_delta`).

    ``signed=True`` drops the absolute value. ``chunk_size``: interpolation points evaluated at
    once (vmapped through ``jax.lax.map``; 0 = all ``steps``), for bounded memory; every point is
    evaluated exactly once whatever the chunk.
    """

    name: ClassVar[str] = "integrated_gradient"
    steps: int = 50
    variant: str = "alpha_weighted"
    signed: bool = False
    chunk_size: int = 0
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        if int(self.steps) < 1:
            raise ValueError(f"integrated gradients needs steps >= 1, got {self.steps}")
        if self.variant not in IG_VARIANTS:
            raise ValueError(f"unknown integrated-gradients variant {self.variant!r}; valid: {list(IG_VARIANTS)}")
        if int(self.chunk_size) < 0:
            raise ValueError(f"chunk_size must be >= 0 (0 = all steps at once), got {self.chunk_size}")

    def alphas(self) -> jax.Array:
        """``<f32>[steps]``: ``i / steps`` for ``i = 1 .. steps``."""
        return jnp.arange(1, self.steps + 1, dtype=jnp.float32) / self.steps

    def weights(self) -> jax.Array:
        """Per-point weights: ``alpha_i`` for the original's form, 1 for textbook IG."""
        alphas = self.alphas()
        return alphas if self.variant == "alpha_weighted" else jnp.ones_like(alphas)

    def terms(self, model, tokens, target, aux_tokens=None) -> jax.Array:
        """``<f32>[steps, B, T]``: ``e_t . grad f_c(alpha_i e)`` per point, ``target`` resolved."""
        chunk = min(self.chunk_size or self.steps, self.steps)
        if _use_fast_path(self, model):
            tokens_tm, proj, context = projection(model, tokens, aux_tokens)

            def point(alpha):
                return jnp.sum(proj * projected_gradient(model, alpha * proj, tokens_tm, context, target), axis=-1)
            return jnp.swapaxes(jax.lax.map(point, self.alphas(), batch_size=chunk), 1, 2)
        emb = model.embed(tokens)

        def point(alpha):
            return jnp.sum(emb * embedding_gradient(model, alpha * emb, tokens, aux_tokens, target), axis=-1)
        return jax.lax.map(point, self.alphas(), batch_size=chunk)

    def _combine(self, terms):
        s = jnp.einsum("n,nbt->bt", self.weights(), terms) / self.steps
        return s if self.signed else jnp.abs(s)

    def scores(self, model, tokens, target, aux_tokens=None) -> jax.Array:
        """``<f32>[B, T]``; ``target <int32>[B]``."""
        return self._combine(self.terms(model, tokens, target, aux_tokens))

    def with_delta(self, model, tokens, *, target=None, aux_tokens=None) -> tuple[jax.Array, jax.Array]:
        """``(scores <f32>[B, T], delta <f32>[B])`` for textbook IG, where ``delta`` is the
        completeness gap ``sum_t attribution_t - (f_c(e) - f_c(0))`` of the signed attributions
        (Captum's convergence delta): it shrinks as ``steps`` grows."""
        if self.variant != "textbook":
            raise ValueError("completeness holds for textbook integrated gradients only: use variant='textbook'")
        require_model(model, self.name)
        with precision_scope(self.precision):
            tokens = jnp.asarray(tokens)
            target = resolve_target(model, tokens, target, aux_tokens)
            terms = self.terms(model, tokens, target, aux_tokens)
            attribution_sum = jnp.einsum("n,nbt->b", self.weights(), terms) / self.steps
            emb = model.embed(tokens)
            logits = [model.logits_from_embeddings(x, tokens, aux_tokens)[0] for x in (emb, jnp.zeros_like(emb))]
            f_x, f_0 = (jnp.take_along_axis(lg, target[:, None], axis=1)[:, 0] for lg in logits)
            return self._combine(terms), attribution_sum - (f_x - f_0)
