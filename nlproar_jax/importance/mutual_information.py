"""The mutual-information measure and its table, built once from a training split (no model).

The original (``importance_measures/mutual_information.py``): binary presence of
each word per document; every count starts at 1 (one fake document per class
containing every word); for each class, the one-vs-rest 2x2 table of (word
present, class) gives MI in bits; rows [PAD], [CLS], [EOS] are 0; classes are
aggregated by a mean weighted by P(class) (smoothed counts).

**[ours]** the original computes ``0 * log 0`` as NaN (a word in every document
of a class, or a class with no documents: on bAbI every score is NaN, and torch
ranks NaN first); we use ``0 * log 0 = 0``.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nlproar_jax.data.dataset import Ragged
from nlproar_jax.data.tokens import CLS, EOS, PAD
from nlproar_jax.importance.base import measure_dataclass


def presence_counts(main: Ragged, labels: np.ndarray, vocab_size: int, num_classes: int) -> np.ndarray:
    """``<int64>[vocab_size, num_classes]``: documents of each class containing each word (unsmoothed)."""
    doc_id = np.repeat(np.arange(len(main)), main.lengths)
    pairs = np.unique(doc_id * vocab_size + main.values.astype(np.int64))  # (doc, word) present
    docs, words = np.divmod(pairs, vocab_size)
    counts = np.zeros((vocab_size, num_classes), np.int64)
    np.add.at(counts, (words, labels[docs]), 1)
    return counts


def _cell(n, n_a, n_b, total):
    # (n / N) * log2(N n / (n_a n_b)) with 0 log 0 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        val = (n / total) * (np.log2(total) + np.log2(n) - np.log2(n_a) - np.log2(n_b))
    return np.where(n > 0, val, 0.0)


def mutual_information_table(main: Ragged, labels: np.ndarray, vocab_size: int, num_classes: int) -> np.ndarray:
    """``<float32>[vocab_size]``: class-weighted one-vs-rest mutual information (bits) per word."""
    labels = np.asarray(labels)
    n11 = presence_counts(main, labels, vocab_size, num_classes) + 1  # word & class
    n_class = np.bincount(labels, minlength=num_classes)[None, :] + 1  # [1, C]
    total = float(len(labels) + num_classes)
    n10 = n11.sum(axis=1, keepdims=True) - n11  # word & other class
    n01 = n_class - n11  # no word & class
    n00 = n01.sum(axis=1, keepdims=True) - n01  # no word & other class
    n_c1, n_c0 = n01 + n11, n00 + n10
    n_w1, n_w0 = n11 + n10, n01 + n00
    mi = (_cell(n11, n_w1, n_c1, total) + _cell(n10, n_w1, n_c0, total)
          + _cell(n01, n_w0, n_c1, total) + _cell(n00, n_w0, n_c0, total))
    mi[[PAD, CLS, EOS], :] = 0.0
    return (mi * (n_class / total)).sum(axis=1).astype(np.float32)


@measure_dataclass
class MutualInformation:
    """``table[token]``: a dataset-level score per word (:func:`mutual_information_table`); needs no
    model. The table is a pytree leaf, so a new table does not recompile a jitted caller."""

    name: ClassVar[str] = "mutual_information"
    table: jax.Array = dataclasses.field(metadata={"leaf": True})

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]``; ``model`` may be None."""
        del model, target, aux_tokens, key
        return jnp.take(jnp.asarray(self.table, jnp.float32), jnp.asarray(tokens), axis=0)
