"""The attention measure: the model's own attention weights over the main sequence."""
from __future__ import annotations

from typing import ClassVar, Optional

import jax

from nlproar_jax.importance.base import DEFAULT_PRECISION, measure_dataclass, precision_scope, require_model
from nlproar_jax.models.protocol import forward


@measure_dataclass
class Attention:
    """``alpha_t``, the attention a model returns beside its logits (0 where it does not attend).
    It explains the prediction as a whole, so ``target`` is not used."""

    name: ClassVar[str] = "attention"
    precision: Optional[str] = DEFAULT_PRECISION

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]``."""
        del target, key
        require_model(model, self.name)
        with precision_scope(self.precision):
            _, alpha = forward(model, tokens, aux_tokens)
        if alpha is None:
            raise ValueError(f"{type(model).__name__} returns no attention weights: the attention measure "
                             "needs a model whose logits_from_embeddings returns (logits, attention)")
        return alpha
