"""Length-bucketed batches of a :class:`~nlproar_jax.data.dataset.Split`.

Every batch has exactly ``batch_size`` rows (a short last batch is filled with
copies of its first row, weight 0) and is right-padded to a *bucket* length
(:func:`bucket_length`), so a jitted step compiles once per bucket instead of
once per batch, and no batch is padded to the split's global maximum.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

from nlproar_jax.data.dataset import Split


class Batch(NamedTuple):
    """A padded batch. Row ``j`` is example ``index[j]`` of its split.

    tokens: ``<int32>[batch, seq_len]`` main sequence, [PAD]=0 on the right.
    labels: ``<int32>[batch]`` gold labels.
    index: ``<int32>[batch]`` row id in the split (random importance is keyed on it).
    weight: ``<float32>[batch]`` 1 for real rows, 0 for filler rows.
    aux_tokens: ``<int32>[batch, aux_len]`` auxiliary sequence, or None for single-sequence tasks.
    """

    tokens: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    weight: np.ndarray
    aux_tokens: Optional[np.ndarray] = None


def bucket_length(n: int) -> int:
    """The padded length for a longest row of ``n``: a multiple of 8 up to 64, 32 up to 256, else 128."""
    if n <= 0:
        raise ValueError(f"sequence length must be positive, got {n}")
    q = 8 if n <= 64 else 32 if n <= 256 else 128
    return -(-n // q) * q


def make_batch(split: Split, rows: np.ndarray, batch_size: int) -> Batch:
    """Pad ``rows`` (at most ``batch_size`` of them) into one :class:`Batch`."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    if n == 0 or n > batch_size:
        raise ValueError(f"a batch takes 1..{batch_size} rows, got {n}")
    weight = np.zeros(batch_size, np.float32)
    weight[:n] = 1.0
    full = np.concatenate([rows, np.full(batch_size - n, rows[0])])
    tokens = split.main.pad(full, bucket_length(int(split.main.lengths[full].max())))
    aux = None
    if split.aux is not None:
        aux = split.aux.pad(full, bucket_length(int(split.aux.lengths[full].max())))
    return Batch(tokens, split.labels[full].astype(np.int32), full.astype(np.int32), weight, aux)


def length_key(split: Split) -> np.ndarray:
    lengths = split.main.lengths
    if split.aux is not None:  # sort on the bucket pair so both sequences pad tightly
        lengths = lengths * 100_000 + split.aux.lengths
    return lengths


def eval_batches(split: Split, batch_size: int) -> Iterator[Batch]:
    """All rows once, sorted by length (fewest padded positions), in fixed order."""
    order = np.argsort(length_key(split), kind="stable")
    for start in range(0, len(order), batch_size):
        yield make_batch(split, order[start : start + batch_size], batch_size)


def train_batch_rows(n: int, lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                     pool_batches: int = 50) -> list[np.ndarray]:
    """The row ids of each training batch of one epoch, deterministic in (seed, epoch).

    Rows are shuffled; then, within pools of ``pool_batches`` batches, sorted by
    length so a batch holds similar lengths (torchtext's BucketIterator idea);
    then the batch order is shuffled. ``pool_batches=0`` gives plain shuffled
    batches, as the original's DataLoader did. Every row appears exactly once.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    if pool_batches > 0:
        pool = pool_batches * batch_size
        perm = np.concatenate([
            perm[s : s + pool][np.argsort(lengths[perm[s : s + pool]], kind="stable")]
            for s in range(0, n, pool)
        ]) if n else perm
    batches = [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    if pool_batches > 0:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def train_batches(split: Split, batch_size: int, seed: int, epoch: int,
                  pool_batches: int = 50) -> Iterator[Batch]:
    for rows in train_batch_rows(len(split), length_key(split), batch_size, seed, epoch, pool_batches):
        yield make_batch(split, rows, batch_size)
