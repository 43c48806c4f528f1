"""The soft-attention measure: a soft-attention model's own token scores (zero-shot token labelling,
Bujel et al. 2021; :mod:`nlproar_jax.models.soft_attention`)."""
from __future__ import annotations

from typing import ClassVar, Optional

import jax

from nlproar_jax.importance.base import DEFAULT_PRECISION, measure_dataclass, precision_scope, require_model


@measure_dataclass
class SoftAttention:
    """``a_t = sigmoid(w . tanh(W_e h_t + b_e) + b)``, the sigmoid token scores of a model with a
    soft-attention head (``model.token_scores(tokens, aux_tokens)``; 0 where the model scores nothing).
    Model-specific: other models have no such scores. Like ``attention`` it explains the prediction
    as a whole, so ``target`` is not used."""

    name: ClassVar[str] = "soft_attention"
    precision: Optional[str] = DEFAULT_PRECISION

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]``."""
        del target, key
        require_model(model, self.name)
        if not hasattr(model, "token_scores"):
            raise ValueError(f"{type(model).__name__} has no token_scores: the soft_attention measure needs a model "
                             "with a soft-attention head (config.model='transformer-soft-attention')")
        with precision_scope(self.precision):
            return model.token_scores(tokens, aux_tokens)
