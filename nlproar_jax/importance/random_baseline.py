"""The random baseline: U[0, 1) per position, needing no model."""
from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from nlproar_jax.importance.base import measure_dataclass, row_keys


@measure_dataclass
class Random:
    """``U[0, 1)`` per (row, position): row ``i``'s key is ``key[i]`` (one key per row) or
    ``fold_in(key, i)`` (one key), and position ``t`` draws from ``fold_in(row key, t)``. So a score
    never depends on padding, and, with one key per row derived from the example's id (as the
    pipeline does), not on batching either. The original draws from a per-seed RNG in batch order."""

    name: ClassVar[str] = "random"

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]``; ``model`` may be None."""
        del model, target, aux_tokens
        batch, length = jnp.shape(tokens)
        positions = jnp.arange(length)

        def row(k):
            return jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(k, t)))(positions)
        return jax.vmap(row)(row_keys(key, batch))
