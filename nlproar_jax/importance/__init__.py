"""Importance measures: names, the original's spellings, and the jitted entry point.

``compute_importance(measure, graphdef, params, batch, key, options, table)`` is
the one jitted boundary (compiled once per measure, options and batch shape);
the per-measure pure functions live in :mod:`nlproar_jax.importance.measures`.
"""
from __future__ import annotations

import functools

import jax

from nlproar_jax.importance.measures import (
    ImportanceOptions,
    attention_importance,
    gradient_importance,
    input_times_gradient_importance,
    integrated_gradient_completeness,
    integrated_gradient_importance,
    integrated_gradient_terms,
    mutual_information_importance,
    random_importance,
)
from nlproar_jax.importance.mutual_information import mutual_information_table
from flax import nnx

from nlproar_jax.names import IG_VARIANTS, MEASURE_ALIASES as ALIASES, canonical_measure  # noqa: F401

MEASURES = {
    "random": random_importance,
    "mutual_information": mutual_information_importance,
    "attention": attention_importance,
    "gradient": gradient_importance,
    "input_times_gradient": input_times_gradient_importance,
    "integrated_gradient": integrated_gradient_importance,
}
@functools.partial(jax.jit, static_argnames=("measure", "graphdef", "options"))
def compute_importance(measure: str, graphdef, params, batch, key, options: ImportanceOptions, table=None):
    """``<float32>[batch, seq_len]`` importance of every main-sequence position.

    Args:
      measure: a canonical name (see :func:`canonical_measure`).
      graphdef, params: the model, from ``nnx.split``.
      batch: a :class:`~nlproar_jax.data.batching.Batch`.
      key: PRNG key (used by ``random`` only).
      options: :class:`ImportanceOptions` (static).
      table: ``<float32>[vocab]`` for ``mutual_information``, else None.
    """
    model = nnx.merge(graphdef, params)
    return MEASURES[measure](model, batch, key, options, table)


__all__ = [
    "ALIASES", "IG_VARIANTS", "MEASURES", "ImportanceOptions", "attention_importance", "canonical_measure",
    "compute_importance", "gradient_importance", "input_times_gradient_importance",
    "integrated_gradient_completeness", "integrated_gradient_importance", "integrated_gradient_terms",
    "mutual_information_importance", "mutual_information_table", "random_importance",
]
