"""Faithfulness-regularised training: UNIREX's comprehensiveness and sufficiency losses on the model's own
rationale (Chan et al., 2022, "UNIREX: A Unified Learning Framework for Language Model Rationale
Extraction", ICML; their ``attr_algo`` extractor: the rationale comes from an attribution method run on the
model being trained).

The objective is ``task loss + w_comp * L_comp + w_suff * L_suff`` (``config.faithfulness_loss``; off by
default, and then :func:`~nlproar_jax.training.loop.loss_fn` never calls this module: the training step
is the task loss's, unchanged). Per batch, on the *current* parameters:

1. **Rationale.** Scores ``<f32>[B, T]`` from the chosen measure (e.g. input x gradient) explaining each
   row's gold label, under ``stop_gradient`` on the parameters and the scores: they only choose tokens,
   and no second-order derivative is taken. The rationale of a row is its top ``floor(k n / 100)``
   *eligible* positions (``model.maskable(tokens)`` and not already ``model.mask_token``; ``n`` of them),
   ROAR's ``quantile`` rounding (:func:`~nlproar_jax.roar.masking.masked_count`), ties to the lower
   position (:func:`~nlproar_jax.roar.masking.top_positions`). On unmasked data these are exactly the
   positions the erasure metrics remove at bin ``k`` (:func:`nlproar_jax.evaluation.erasure.top_b`);
   earlier [MASK]s (a ROAR run's masked data) are never part of a rationale.
2. **Perturbed inputs**, with the mask-replacement convention (ROAR's, and the erasure metrics' default):
   ``x_rm``: the rationale replaced by ``model.mask_token``; ``x_keep``: every eligible position *but*
   the rationale replaced by it (specials and padding stay). Lengths are unchanged.
3. **Losses**, with ``CE(x) = -log p_y(x)`` the cross-entropy of the gold label ``y``, and the full
   input's ``CE(x)`` under ``stop_gradient``:

   * ``L_comp = relu(m_comp - (CE(x_rm) - CE(x)))``: removing the rationale must lower the gold label's
     probability by at least the factor ``exp(m_comp)`` (``p_rm <= p exp(-m_comp)``); default
     ``m_comp = 0.5``;
   * ``L_suff = relu(m_suff + CE(x_keep) - CE(x))``: the rationale alone must keep it
     (``p_keep >= p exp(m_suff)``); default ``m_suff = 0``.

   Per row; the batch's value is ``sum_b w_b l_b / max(sum_b w_b, 1)`` with the task loss's row weights
   ``w`` (filler rows 0), and a row whose rationale is empty (``floor(k n / 100) = 0``) contributes 0.

Why this form. It is UNIREX's ``margin`` criterion (their ``calc_comp_loss`` / ``calc_suff_loss``:
``max(-m, CE_full - CE_rm) + m`` and ``max(-m, CE_keep - CE_full) + m``), i.e. hinges on differences of
cross-entropies, which are log-probability ratios. Against hinges on the probability differences that the
erasure metrics report (ERASER's ``p - p_rm`` and ``p - p_keep``) it has the same zero set for the
sufficiency loss with ``m_suff = 0`` (``p_keep >= p``, i.e. the row's sufficiency <= 0), but its gradient
does not vanish when ``p_keep`` is small (``d CE/d logits = softmax - onehot`` against ``p (onehot -
softmax)`` for a probability), which is exactly when the loss is needed. Two deliberate choices differ
from UNIREX's code: the full input's ``CE(x)`` is under ``stop_gradient`` (the task loss owns the full
input; otherwise the sufficiency loss is cheapest to lower by making the *full* prediction worse), and
the comprehensiveness margin is small by default: on a binary task an input without its evidence is best
answered near 0.5, which is ``log(p / 0.5) <= log 2 ~ 0.69`` below a confident ``p``, so a margin above
that pays the model to predict the *wrong* class once the rationale is gone.

The full input's logits: the task loss's own (``full_logits``) when they are the deterministic forward
pass (no dropout key), else one more forward pass without dropout, as the perturbed inputs get.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nlproar_jax.data.batching import Batch
from nlproar_jax.models.protocol import forward
from nlproar_jax.roar.masking import masked_count, top_positions


@dataclasses.dataclass(frozen=True)
class FaithfulnessLoss:
    """The objective's settings (frozen and hashable: a static argument of the jitted train step).

    ``measure``: an importance measure (:mod:`nlproar_jax.importance`; deterministic, explains a model);
    ``k``: the rationale's size in percent of each row's eligible tokens; weights and margins as in the
    module docstring."""

    measure: Any
    k: int = 20
    comprehensiveness_weight: float = 0.0
    sufficiency_weight: float = 0.0
    comprehensiveness_margin: float = 0.5
    sufficiency_margin: float = 0.0

    @classmethod
    def from_settings(cls, settings) -> "FaithfulnessLoss":
        """From a checked config (:func:`nlproar_jax.names.faithfulness_loss_settings`)."""
        from nlproar_jax import importance

        return cls(measure=importance.get(settings.measure, **dict(settings.options)), k=int(settings.k),
                   comprehensiveness_weight=float(settings.comprehensiveness_weight),
                   sufficiency_weight=float(settings.sufficiency_weight),
                   comprehensiveness_margin=float(settings.comprehensiveness_margin),
                   sufficiency_margin=float(settings.sufficiency_margin))


def rationale(model, tokens: jax.Array, scores: jax.Array, k) -> jax.Array:
    """``<bool>[B, T]``: each row's top ``floor(k n / 100)`` eligible positions by ``scores <f32>[B, T]``
    (eligible: ``model.maskable(tokens)`` and not ``model.mask_token``; ``n`` of them per row)."""
    eligible = model.maskable(tokens) & (tokens != jnp.asarray(model.mask_token, tokens.dtype))
    ranked = jnp.where(eligible, scores.astype(jnp.float32), -jnp.inf)
    return top_positions(ranked, masked_count(eligible, k, "quantile")) & eligible


def perturbed_inputs(model, tokens: jax.Array, top: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(removed, kept)``, both ``<int32>[B, T]``: ``tokens`` with the rationale ``top <bool>[B, T]``
    replaced by ``model.mask_token``, and with every maskable position but the rationale replaced."""
    mask = jnp.asarray(model.mask_token, tokens.dtype)
    removed = jnp.where(top, mask, tokens)
    kept = jnp.where(model.maskable(tokens) & ~top, mask, tokens)
    return removed, kept


def per_row(loss: FaithfulnessLoss, graphdef, params, batch: Batch,
            full_logits: Optional[jax.Array] = None) -> dict[str, jax.Array]:
    """The losses of each row, all ``<f32>[B]`` but ``has_rationale <bool>[B]``: ``comprehensiveness``,
    ``sufficiency`` (0 where the rationale is empty), and the cross-entropies ``ce_full``, ``ce_removed``,
    ``ce_kept``. Differentiable in ``params`` through ``ce_removed`` and ``ce_kept`` only.

    ``full_logits <f32>[B, C]``: the deterministic logits on ``batch.tokens`` if the caller has them
    (the task loss's), else computed here."""
    tokens, labels = batch.tokens, batch.labels
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(params))
    scores = jax.lax.stop_gradient(loss.measure(frozen, tokens, target=labels, aux_tokens=batch.aux_tokens))
    model = nnx.merge(graphdef, params)
    top = rationale(model, tokens, scores, loss.k)
    removed, kept = perturbed_inputs(model, tokens, top)
    batch_size = tokens.shape[0]
    aux = None if batch.aux_tokens is None else jnp.concatenate([batch.aux_tokens, batch.aux_tokens])
    logits, _ = forward(model, jnp.concatenate([removed, kept]), aux)  # one pass over both: [2B, C]
    if full_logits is None:
        full_logits, _ = forward(model, tokens, batch.aux_tokens)
    ce_full = jax.lax.stop_gradient(optax.softmax_cross_entropy_with_integer_labels(full_logits, labels))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.concatenate([labels, labels]))
    ce_removed, ce_kept = ce[:batch_size], ce[batch_size:]
    has = top.any(axis=1)
    comp = jnp.where(has, jax.nn.relu(loss.comprehensiveness_margin - (ce_removed - ce_full)), 0.0)
    suff = jnp.where(has, jax.nn.relu(loss.sufficiency_margin + ce_kept - ce_full), 0.0)
    return {"comprehensiveness": comp, "sufficiency": suff, "has_rationale": has, "ce_full": ce_full,
            "ce_removed": ce_removed, "ce_kept": ce_kept}


def penalty(loss: FaithfulnessLoss, graphdef, params, batch: Batch,
            full_logits: Optional[jax.Array] = None) -> jax.Array:
    """``<f32>[]``: ``w_comp * L_comp + w_suff * L_suff``, each the weighted mean over the batch's rows
    (the task loss's weights and denominator): what :func:`~nlproar_jax.training.loop.loss_fn` adds."""
    rows = per_row(loss, graphdef, params, batch, full_logits)
    total = loss.comprehensiveness_weight * rows["comprehensiveness"] + loss.sufficiency_weight * rows["sufficiency"]
    return jnp.sum(total * batch.weight) / jnp.maximum(jnp.sum(batch.weight), 1.0)
