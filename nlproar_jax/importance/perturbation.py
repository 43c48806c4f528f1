"""What the perturbation measures share: the masked forward pass, chunked over samples.

A perturbation measure (:mod:`.occlusion`, :mod:`.linear_surrogates`) explains a class by
evaluating the model on copies of the input with some tokens removed. **Removing** a token means
what ROAR's masking does (:mod:`nlproar_jax.roar.masking`): it is replaced by ``model.mask_token``,
and only positions ``model.maskable(tokens)`` allows are ever removed. A perturbation is a
**keep-mask** ``<bool>[B, T]`` (True = keep); ``S`` of them for a batch are ``<bool>[S, B, T]``
(the measure's *samples*), and :func:`masked_outputs` gives the explained class's output
``<f32>[S, B]`` on each.

Two paths compute the same outputs:

* the **generic** path, the definition (any classifier): ``forward(model, where(keep, tokens,
  mask_token), aux_tokens)``, the model's training path (:func:`~nlproar_jax.models.protocol.forward`);
* the **projection-select** fast path (models with the linear-input fast path, such as the
  BiLSTMs): the input projection ``P = e @ W`` is per token, so a perturbed input's projection is a
  row-wise select ``where(keep, P, P_mask)`` between the clean tokens' ``P`` (computed once) and the
  mask token's row ``P_mask = e_mask @ W`` (computed once): no embedding lookup or matmul per
  sample, only the recurrence. A model with ``logits_from_selection`` (the BiLSTMs) makes the
  select inside its recurrence, step by step, so the perturbed projection ``[T, n B, K]`` is never
  written to memory (:func:`nlproar_jax.models.bilstm.select_recurrence`). The perturbed tokens
  still go to the model (they say where padding and specials are), and the auxiliary context is
  computed once.

Samples are evaluated in chunks of ``chunk_size`` (a ``lax.scan`` over full chunks, then one
remainder chunk): a chunk's ``n`` perturbations of the ``B`` rows form **one** batch of ``n * B``
rows, so the recurrence runs on large matrices and memory is bounded by the chunk. Every sample is
evaluated exactly once, whatever the chunk; ``chunk_size=None`` picks one from the shapes
(:func:`auto_chunk`), ``0`` evaluates every sample at once.

Each perturbed row is an independent row of that batch: a row's outputs never depend on its batch
mates, and padding (never maskable) never changes them.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Optional

import jax
import jax.numpy as jnp

from nlproar_jax.importance.base import precision_scope, require_model, resolve_target, row_keys
from nlproar_jax.importance.gradients import projection
from nlproar_jax.models.protocol import forward, has_fast_path

OUTPUTS = ("logit", "probability")
# chunk_size=None: about this many perturbed rows per chunk (the BiLSTM recurrence runs near its
# best rate from ~64 rows up on a 2-core CPU), capped so a chunk holds at most AUTO_CHUNK_TOKENS
# perturbed tokens (the fast path's selected projection is [T, rows, 8H] floats).
AUTO_CHUNK_ROWS = 256
AUTO_CHUNK_TOKENS = 1 << 16


# -- chunks ----------------------------------------------------------------------------------
def auto_chunk(samples: int, batch: int, seq_len: int) -> int:
    """Samples per chunk for ``chunk_size=None``: about :data:`AUTO_CHUNK_ROWS` perturbed rows, at
    most :data:`AUTO_CHUNK_TOKENS` tokens, at least one sample."""
    rows = min(AUTO_CHUNK_ROWS, max(1, AUTO_CHUNK_TOKENS // max(seq_len, 1)))
    return int(max(1, min(samples, rows // max(batch, 1))))


def resolve_chunk(chunk_size: Optional[int], samples: int, batch: int, seq_len: int) -> int:
    """The chunk a ``chunk_size`` option means: None = :func:`auto_chunk`, 0 = all ``samples``."""
    if chunk_size is None:
        return auto_chunk(samples, batch, seq_len)
    return int(min(chunk_size or samples, samples))


def check_chunk_size(chunk_size) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 0):
        raise ValueError(f"chunk_size must be None (auto), 0 (all samples at once) or a positive int, "
                         f"got {chunk_size!r}")


def check_output(output) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid: {list(OUTPUTS)}")


def scan_chunks(fn: Callable, samples: int, chunk: int, init):
    """Run ``fn(idx <int32>[n]) -> (increment, outputs)`` over sample indices ``0 .. samples-1`` in
    chunks of ``chunk`` (the last one may be smaller): every index exactly once. Returns the sum of
    the increments (a pytree shaped like ``init``, added to it) and the outputs stacked along their
    leading axis ``[samples, ...]``."""
    full, rest = divmod(samples, chunk)
    stats, outs = init, []

    def add(a, b):
        return jax.tree.map(jnp.add, a, b)

    if full == 1:
        inc, out = fn(jnp.arange(chunk, dtype=jnp.int32))
        stats = add(stats, inc)
        outs.append(out)
    elif full > 1:
        def body(carry, c):
            inc, out = fn(c * chunk + jnp.arange(chunk, dtype=jnp.int32))
            return add(carry, inc), out
        stats, out = jax.lax.scan(body, stats, jnp.arange(full, dtype=jnp.int32))
        outs.append(jax.tree.map(lambda x: x.reshape((full * chunk,) + x.shape[2:]), out))
    if rest:
        inc, out = fn(full * chunk + jnp.arange(rest, dtype=jnp.int32))
        stats = add(stats, inc)
        outs.append(out)
    return stats, jax.tree.map(lambda *xs: jnp.concatenate(xs) if len(xs) > 1 else xs[0], *outs)


# -- the masked forward pass -----------------------------------------------------------------
def _tile(tree, n: int):
    """Repeat every leaf ``n`` times along its leading (batch) axis: row ``s * B + b`` is row ``b``."""
    return jax.tree.map(lambda x: jnp.tile(x, (n,) + (1,) * (x.ndim - 1)), tree)


def masked_evaluator(model, tokens, target, aux_tokens=None, *, output: str = "logit",
                     fast_path: bool = True) -> Callable[[jax.Array], jax.Array]:
    """The perturbed-output function of one batch: ``evaluate(keep <bool>[n, B, T]) -> <f32>[n, B]``,
    the ``target``'s logit (or softmax probability) on each perturbation. What every sample shares
    (the clean projection, the mask token's projection row, the auxiliary context) is computed once,
    here. ``keep`` must be True wherever ``model.maskable(tokens)`` is False (not checked)."""
    check_output(output)
    batch, length = tokens.shape
    mask_token = jnp.asarray(model.mask_token, tokens.dtype)

    if fast_path and has_fast_path(model):
        tokens_tm, proj, context = projection(model, tokens, aux_tokens)  # [T, B], [T, B, K]
        proj_mask = mask_projection(model, tokens.dtype)

        def logits(keep):
            n = keep.shape[0]
            keep_tm = jnp.moveaxis(keep, 2, 0)  # [T, n, B]
            tok = jnp.where(keep_tm, tokens_tm[:, None], mask_token).reshape(length, n * batch)
            if hasattr(model, "logits_from_selection"):  # selects inside the recurrence
                lg = model.logits_from_selection(proj, proj_mask, keep_tm, tok, _tile(context, n))[0]
            else:
                p = jnp.where(keep_tm[..., None], proj[:, None], proj_mask).reshape(length, n * batch, -1)
                lg = model.logits_from_projection(p, tok, _tile(context, n))[0]
            return lg.reshape(n, batch, -1)
    else:
        def logits(keep):
            n = keep.shape[0]
            tok = jnp.where(keep, tokens[None], mask_token).reshape(n * batch, length)
            return forward(model, tok, _tile(aux_tokens, n))[0].reshape(n, batch, -1)

    def evaluate(keep):
        return target_output(logits(keep), target, output)
    return evaluate


def mask_projection(model, dtype=jnp.int32) -> jax.Array:
    """``<f32>[K]``: the mask token's row of the fast path's input projection."""
    return (model.embed(jnp.full((1, 1), model.mask_token, dtype)) @ model.input_weights())[0, 0]


def target_output(logits: jax.Array, target: jax.Array, output: str) -> jax.Array:
    """``logits <f32>[..., B, C]``, ``target <int32>[B]`` -> ``<f32>[..., B]``: the target's logit or
    softmax probability."""
    if output == "probability":
        logits = jax.nn.softmax(logits, axis=-1)
    index = jnp.broadcast_to(target[:, None], logits.shape[:-1] + (1,))
    return jnp.take_along_axis(logits, index, axis=-1)[..., 0]


def masked_outputs(model, tokens, target, keep, aux_tokens=None, *, output: str = "logit",
                   chunk_size: Optional[int] = 0, fast_path: bool = True) -> jax.Array:
    """``<f32>[S, B]``: the ``target`` class's output on each perturbation of each row.

    Args:
      model: a classifier (:mod:`nlproar_jax.models.protocol`).
      tokens: ``<int32>[B, T]``.
      target: ``<int32>[B]``, resolved (:func:`~nlproar_jax.importance.base.resolve_target`).
      keep: ``<bool>[S, B, T]``, True = keep ``tokens[b, t]``, False = replace it by
        ``model.mask_token``; only maskable positions may be False (this function forces the others
        to True).
      aux_tokens: ``<int32>[B, Ta]`` or None; never perturbed.
      output: ``"logit"`` or ``"probability"`` (the softmax probability of ``target``).
      chunk_size: perturbations evaluated at once (one batch of ``chunk * B`` rows): 0 = all ``S``
        (the default), None = :func:`auto_chunk`; each exactly once whatever the chunk.
      fast_path: use the projection-select path when the model offers the linear-input fast path.
    """
    tokens = jnp.asarray(tokens)
    keep = jnp.asarray(keep) | ~model.maskable(tokens)[None]
    samples = keep.shape[0]
    evaluate = masked_evaluator(model, tokens, target, aux_tokens, output=output, fast_path=fast_path)
    chunk = resolve_chunk(chunk_size, samples, *tokens.shape)
    return scan_chunks(lambda idx: ((), evaluate(keep[idx])), samples, chunk, ())[1]


# -- the calling convention ------------------------------------------------------------------
class PerturbationMeasure:
    """The calling convention of the perturbation measures: checks the model, resolves ``target``,
    derives one key per row when the measure samples (:attr:`needs_key`), and runs
    ``scores(model, tokens, target, aux_tokens, keys)`` under the measure's matmul precision."""

    name: ClassVar[str]

    @property
    def needs_key(self) -> bool:
        return False

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]`` (see :mod:`nlproar_jax.importance.base`); ``key``: one key, or one per row."""
        require_model(model, self.name)
        with precision_scope(self.precision):
            tokens = jnp.asarray(tokens)
            target = resolve_target(model, tokens, target, aux_tokens)
            keys = row_keys(key, tokens.shape[0]) if self.needs_key else None
            return self.scores(model, tokens, target, aux_tokens, keys)


# -- keep-mask samplers shared by the surrogate measures -------------------------------------
def _mix32(x: jax.Array) -> jax.Array:
    """A bijective avalanche mix of ``uint32`` (Wellons' "lowbias32")."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def sample_bits(keys: jax.Array, sample_index: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Random bits for samples ``sample_index <int32>[n]`` of rows with keys ``keys <key>[B]``:
    ``(per_sample <uint32>[n, B], per_position <uint32>[n, B, T])``.

    Sample ``s`` of row ``b`` has the key ``fold_in(keys[b], s)``, with data ``(w0, w1)``: its
    per-sample bits are ``w0``, position ``t``'s are ``mix(mix(t ^ w0) ^ w1)`` (``mix``: a bijective
    32-bit avalanche hash), so a draw depends on (row key, sample, position) only, never on batch
    mates or padding, and the positions of one sample never tie. One threefry hash per (row, sample):
    each threefry call site costs XLA:CPU about half a second of compile time."""
    sample_keys = jax.vmap(lambda s: jax.vmap(lambda k: jax.random.fold_in(k, s))(keys))(sample_index)  # [n, B]
    data = jax.random.key_data(sample_keys)  # [n, B, 2]
    w0, w1 = data[..., 0], data[..., 1]
    positions = jnp.arange(length, dtype=jnp.uint32)
    per_position = _mix32(_mix32(positions ^ w0[..., None]) ^ w1[..., None])
    return w0, per_position


def unit_float(bits: jax.Array) -> jax.Array:
    """``<f32>``: uniform in ``[0, 1)`` from ``uint32`` bits (their top 24)."""
    return (bits >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def ranked_order(bits: jax.Array, maskable: jax.Array) -> jax.Array:
    """``<int32>[..., T]``: a uniformly random order (by ``bits <uint32>[..., T]``, ties to the lower
    position) of each row's maskable positions, followed by the others."""
    positions = jnp.broadcast_to(jnp.arange(maskable.shape[-1], dtype=jnp.int32), maskable.shape)
    _, _, order = jax.lax.sort((~maskable, bits, positions), dimension=maskable.ndim - 1, num_keys=2,
                               is_stable=True)
    return order


def keep_first(order: jax.Array, maskable: jax.Array, count: jax.Array) -> jax.Array:
    """``<bool>[..., T]``: keep the first ``count <int>[...]`` maskable positions of ``order`` (from
    :func:`ranked_order`) and every position that is not maskable; remove the other maskable ones."""
    kept_in_order = jnp.arange(order.shape[-1]) < jnp.asarray(count)[..., None]
    kept = jnp.put_along_axis(jnp.zeros(order.shape, bool), order, kept_in_order, axis=-1, inplace=False)
    return kept | ~maskable


def all_keep_masks(sample_index: jax.Array, maskable: jax.Array) -> jax.Array:
    """``<bool>[n, B, T]``: enumeration of every coalition: sample ``s`` keeps maskable position
    ``t`` iff bit ``t`` of ``s`` is set (``0 <= s < 2**T``). A row with ``d`` maskable positions sees
    each of its ``2**d`` coalitions ``2**(T - d)`` times (the other bits are ignored)."""
    length = maskable.shape[1]
    bits = (sample_index[:, None] >> jnp.arange(length, dtype=jnp.int32)[None]) & 1  # [n, T]
    return (bits[:, None, :] == 1) | ~maskable[None]


EXHAUSTIVE_MAX_LENGTH = 16


def check_exhaustive_length(length: int, measure: str) -> None:
    if length > EXHAUSTIVE_MAX_LENGTH:
        raise ValueError(f"{measure} with exhaustive=True enumerates 2**seq_len coalitions; seq_len is {length}, "
                         f"at most {EXHAUSTIVE_MAX_LENGTH} is allowed")
