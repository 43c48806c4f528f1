"""Length-bucketed batches of a :class:`~nlproar_jax.data.dataset.Split`, built on the host or gathered on the device.

Every batch has exactly ``batch_size`` rows (a short last batch is filled with
copies of its first row, weight 0) and is right-padded to a *bucket* length
(:func:`bucket_length`), so a jitted step compiles once per bucket instead of
once per batch, and no batch is padded to the split's global maximum.

Device-resident training batches (the end of this module). The host path pads every batch with
numpy (:func:`make_batch`) and the jitted step copies it to the device, every step. Instead:

* :func:`to_device` (one split) or :func:`stack_to_device` (one split per stacked model) uploads
  a :class:`DeviceSplit` once: the main sequences right-padded with 0 ([PAD]) to the bucket of the
  longest row, the labels, the auxiliary sequences likewise;
* :class:`DeviceEpoch` uploads one epoch's row matrix ``<int32>[steps, B]`` and weights
  ``<f32>[steps, B]`` (``[steps, models, B]`` for a stack) once per epoch. The host still decides
  the rows (:func:`train_batch_rows`; the filler rows of a short last batch as :func:`make_batch`'s:
  copies of its first row, weight 0) and each step's static bucket lengths, from the split's
  lengths, which it keeps; it never reads anything back;
* :meth:`DeviceEpoch.batch` gathers step ``i``'s batch on the device (a jitted program of its
  own, compiled once per bucket pair). Per step only the step index, an int32 scalar, crosses
  from host to device.

The gathered :class:`Batch` is exactly :func:`make_batch`'s for the same rows (dtypes, shapes,
values), and for a stack exactly ``stack_batches``' (:mod:`nlproar_jax.training.loop`) of the models'
batches: every model's sequences padded to the longest bucket of the step. A train step fed from
there therefore runs the same program on the same inputs as one fed from the host (the gather is
deliberately not fused into the step), and trains bit for bit the same.
"""
from __future__ import annotations

import functools
from typing import Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
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


def fill_rows(rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` (1..``batch_size`` row ids) filled up to ``batch_size``: ``(<int64>[batch_size] rows, the
    filler ones copies of the first; <f32>[batch_size] weight, 1 for the given rows, 0 for the filler)``."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    if n == 0 or n > batch_size:
        raise ValueError(f"a batch takes 1..{batch_size} rows, got {n}")
    weight = np.zeros(batch_size, np.float32)
    weight[:n] = 1.0
    return np.concatenate([rows, np.full(batch_size - n, rows[0])]), weight


def make_batch(split: Split, rows: np.ndarray, batch_size: int) -> Batch:
    """Pad ``rows`` (at most ``batch_size`` of them) into one :class:`Batch`."""
    full, weight = fill_rows(rows, batch_size)
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


# -- device-resident training batches (module docstring) ------------------------------------
class DeviceSplit(NamedTuple):
    """A split on the device; a stack of ``models`` splits (of equal sizes) has a leading model axis.

    tokens: ``<int32>[(models,) N, L]`` main sequences, right-padded with 0 to ``L`` (bucketed).
    labels: ``<int32>[(models,) N]``.
    aux_tokens: ``<int32>[(models,) N, A]`` auxiliary sequences, or None for single-sequence tasks.
    """

    tokens: jax.Array
    labels: jax.Array
    aux_tokens: Optional[jax.Array] = None

    @property
    def stacked(self) -> bool:
        return self.tokens.ndim == 3


def _padded_length(lengths: np.ndarray) -> int:
    """The bucket of the longest row (at least that of 1): no batch's bucket is longer."""
    return bucket_length(max(int(lengths.max()) if len(lengths) else 0, 1))


def _host_arrays(split: Split, length: int, aux_length: Optional[int]):
    everything = np.arange(len(split))
    aux = None if split.aux is None else split.aux.pad(everything, aux_length)
    return split.main.pad(everything, length), np.asarray(split.labels).astype(np.int32), aux


def to_device(split: Split, length: Optional[int] = None, aux_length: Optional[int] = None) -> DeviceSplit:
    """``split`` on the default device, its sequences padded to ``length`` and ``aux_length`` (default:
    the bucket of the split's longest row)."""
    length = _padded_length(split.main.lengths) if length is None else length
    if split.aux is not None and aux_length is None:
        aux_length = _padded_length(split.aux.lengths)
    return DeviceSplit(*jax.device_put(_host_arrays(split, length, aux_length)))


def stack_to_device(splits: Sequence[Split]) -> DeviceSplit:
    """One split per stacked model (equal sizes; all paired or none) as one :class:`DeviceSplit` with a
    leading model axis, every split padded to the longest bucket of them all."""
    if len({len(s) for s in splits}) > 1:
        raise ValueError(f"stacked splits need equal sizes, got {[len(s) for s in splits]}")
    if len({s.aux is None for s in splits}) > 1:
        raise ValueError("stacked splits must all have auxiliary sequences or all have none")
    length = max(_padded_length(s.main.lengths) for s in splits)
    aux_length = None if splits[0].aux is None else max(_padded_length(s.aux.lengths) for s in splits)
    per_split = [_host_arrays(s, length, aux_length) for s in splits]
    stacked = [None if parts[0] is None else np.stack(parts) for parts in zip(*per_split)]
    return DeviceSplit(*jax.device_put(stacked))


def _gather(data: DeviceSplit, rows: jax.Array, weight: jax.Array, length: int, aux_length: Optional[int]) -> Batch:
    aux = None if data.aux_tokens is None else data.aux_tokens[rows, :aux_length]
    return Batch(data.tokens[rows, :length], data.labels[rows], rows, weight, aux)


def _gather_any(data: DeviceSplit, rows, weight, length: int, aux_length: Optional[int]) -> Batch:
    if length > data.tokens.shape[-1]:
        raise ValueError(f"length {length} exceeds the device split's padded length {data.tokens.shape[-1]}")
    if data.aux_tokens is not None and (aux_length is None or aux_length > data.aux_tokens.shape[-1]):
        raise ValueError(f"aux_length {aux_length} must be given and at most the device split's padded "
                         f"auxiliary length {data.aux_tokens.shape[-1]}")
    rows, weight = jnp.asarray(rows, jnp.int32), jnp.asarray(weight, jnp.float32)
    gather = functools.partial(_gather, length=length, aux_length=None if data.aux_tokens is None else aux_length)
    return jax.vmap(gather)(data, rows, weight) if data.stacked else gather(data, rows, weight)


gather_batch = jax.jit(_gather_any, static_argnames=("length", "aux_length"))
"""``(data, rows <int32>[(models,) B], weight <f32>[(models,) B], length, aux_length=None) -> Batch``:
rows ``rows`` of ``data`` padded to ``length`` (static) and ``aux_length`` (static; None without
auxiliary sequences); equals ``make_batch(split, rows, B)`` when ``rows`` holds ``make_batch``'s filler
rows and ``weight`` its weights, and ``length`` is its bucket (for a stack: ``stack_batches``' result,
``length`` the longest of the models' buckets)."""


@functools.partial(jax.jit, static_argnames=("length", "aux_length"))
def _gather_step(data: DeviceSplit, rows: jax.Array, weight: jax.Array, step: jax.Array, length: int,
                 aux_length: Optional[int]) -> Batch:
    return _gather_any(data, rows[step], weight[step], length, aux_length)


class DeviceEpoch:
    """One epoch's training batches, gathered on the device.

    ``data``: :func:`to_device` of the one split, or :func:`stack_to_device` of one split per model;
    ``splits``: those splits on the host (only their lengths are read); ``rows[m][i]``: model ``m``'s
    rows at step ``i`` (1..``batch_size`` of them, :func:`train_batch_rows`).
    Building it uploads the epoch's rows and weights (one transfer each); :meth:`batch` then sends
    only the step index."""

    def __init__(self, data: DeviceSplit, splits: Sequence[Split], rows: Sequence[Sequence[np.ndarray]],
                 batch_size: int):
        models, steps = len(splits), len(rows[0])
        if data.stacked != (models > 1) or len(rows) != models or any(len(r) != steps for r in rows):
            raise ValueError(f"need a stacked device split for several models and one row list of {steps} "
                             f"steps per model: got {models} splits, {len(rows)} row lists, "
                             f"stacked={data.stacked}")
        matrix = np.zeros((steps, models, batch_size), np.int32)
        weight = np.zeros((steps, models, batch_size), np.float32)
        for m, model_rows in enumerate(rows):
            for i, r in enumerate(model_rows):
                matrix[i, m], weight[i, m] = fill_rows(r, batch_size)  # make_batch's filler rows and weights

        def buckets(lengths_of) -> list[int]:  # each step's longest bucket over the models, as stack_batches
            longest = np.stack([lengths_of(s)[matrix[:, m]].max(axis=1) for m, s in enumerate(splits)], axis=1)
            return [max(bucket_length(int(x)) for x in step) for step in longest]

        self.data = data
        self.lengths = buckets(lambda s: s.main.lengths) if steps else []
        paired = splits[0].aux is not None
        self.aux_lengths = buckets(lambda s: s.aux.lengths) if paired and steps else [None] * steps
        if models == 1:
            matrix, weight = matrix[:, 0], weight[:, 0]
        self.rows, self.weight = jax.device_put((matrix, weight))

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, step: int) -> Batch:
        """Step ``step``'s batch (``[B, L]``, or ``[models, B, L]`` for a stack), on the device."""
        return _gather_step(self.data, self.rows, self.weight, np.int32(step), length=self.lengths[step],
                            aux_length=self.aux_lengths[step])
