"""Erasure faithfulness metrics without retraining: comprehensiveness, sufficiency, AOPC, decision flips.

ROAR retrains a model on inputs with their important tokens removed; the erasure metrics of ERASER
(DeYoung et al., 2020, "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL, section 4.2)
and UNIREX (Chan et al., 2022, "UNIREX: A Unified Learning Framework for Language Model Rationale
Extraction", ICML) ask the *same* model instead. For any classifier
(:mod:`nlproar_jax.models.protocol`) and any precomputed scores ``<f32>[B, T]`` (higher = more
important; e.g. from :mod:`nlproar_jax.importance`):

* **comprehensiveness(b)** ``= p_c(x) - p_c(x without its top-b tokens)`` (high = the top tokens
  were needed);
* **sufficiency(b)** ``= p_c(x) - p_c(x with only its top-b tokens)`` (low = they suffice);

with ``p`` the softmax probability and ``c`` the explained class: each row's gold label by default
(what :func:`nlproar_jax.roar.scores.importance_over_split` explains), or the model's prediction on
the full input (``target="predicted"``, what ERASER's and UNIREX's code use).

Bins and the top-b
------------------
``b`` is a percentage of the row's **eligible** tokens (``model.maskable(tokens)``: never padding
nor the model's specials), rounded exactly as ROAR's ``quantile`` strategy rounds:
``b = floor(k n / 100)`` for ``k`` in :data:`BINS` = (1, 5, 10, 20, 50) (ERASER's bins) and ``n``
eligible tokens (:func:`nlproar_jax.roar.masking.masked_count`). A bin that rounds to 0 removes
nothing (comprehensiveness 0) and keeps no eligible token for sufficiency. The top-b are chosen by
:func:`nlproar_jax.roar.masking.roar_mask` itself, so ties go to the lower position and the set is
ROAR's, token for token; like ROAR, a position that already holds ``model.mask_token`` ranks first
(it counts as removed already). Non-eligible positions are never removed: under "keep only the top-b"
every special and every padding position stays too.

Removal conventions (``removal=``)
----------------------------------
``"mask"`` (default; ROAR's): a removed token is replaced by ``model.mask_token`` in place, so the
length and every position are unchanged; the model sees the same kind of input as in ROAR masking.
``"delete"`` (ERASER's and UNIREX's): removed tokens are deleted and the row is re-packed
left-aligned: the kept positions (specials included) in their order, then padding, with
``model.pad_token`` if the model has that member, else [PAD] (0, the id batches are padded with).
The program's length is unchanged (the freed slots become padding).

AOPC (:func:`aopc`, ``normalisation=``)
-------------------------------------
The area over the perturbation curve summarises a metric over the bins ``B``:

* ``"mean"`` (default): ``(1/|B|) sum_b metric(b)``, what ERASER's evaluation code computes
  (``rationale_benchmark/metrics.py``, ``_instances_aopc``: ``np.average`` over instances and bins)
  and ferret (Attanasio et al., 2023) computes (``statistics.mean``);
* ``"unirex"``: ``(1/(|B| + 1)) sum_b metric(b)``, UNIREX's ``calc_aopc``
  (``src/utils/metrics.py``: ``sum(values) / (len(values) + 1)``), the form of Samek et al.'s AOPC
  (2017, "Evaluating the visualization of what a deep neural network has learned"), whose
  ``1/(L + 1)`` counts the unperturbed step ``b = 0``, which contributes 0.

The two differ by the factor ``|B| / (|B| + 1)`` (5/6 with the default bins): compare numbers only
under the same normalisation.

Decision flips
--------------
A flip is a change of the model's **argmax** away from its prediction on the full input (whatever
``c`` is; argmax ties go to the lower class):

* ``flip_top1``: removing the single top-ranked eligible token flips the decision ("decision flip,
  most informative token", Chrysostomou & Aletras, 2021, after Serrano & Smith, 2019); a row with
  no eligible token cannot flip;
* ``flip`` per bin: removing the top-b flips it (the comprehensiveness input's decision).

The split-level means are flip *rates*.

Evaluation
----------
All ``S = 2 + 2 |B|`` perturbations of a batch (the full input, the |B| comprehensiveness and |B|
sufficiency inputs, the top-1 removal) are one jitted program, evaluated in chunks of perturbations
like the perturbation measures (:func:`nlproar_jax.importance.perturbation.scan_chunks`;
``chunk_size=None`` = :func:`~nlproar_jax.importance.perturbation.auto_chunk`, 0 = all at once).
The flips need every class's logit, which the perturbation measures' ``masked_evaluator`` (one
class's output) does not return, so :func:`perturbed_logits` evaluates the perturbed inputs itself,
with the same two paths: the generic one (the model's ``forward`` on the perturbed tokens, the
definition) and, for models with the linear-input fast path (the BiLSTMs), a select/gather of the
clean tokens' input projection and the fill token's projection row (no per-perturbation embedding
lookup or matmul). A row's values never depend on its batch mates or on padding.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlproar_jax.data.batching import eval_batches
from nlproar_jax.data.dataset import Ragged, Split
from nlproar_jax.data.tokens import PAD
from nlproar_jax.importance.base import DEFAULT_PRECISION, precision_scope
from nlproar_jax.importance.gradients import projection
from nlproar_jax.importance.perturbation import _tile, check_chunk_size, resolve_chunk, scan_chunks
from nlproar_jax.models.protocol import check_classifier, forward, has_fast_path
from nlproar_jax.roar.masking import masked_count, roar_mask

BINS = (1, 5, 10, 20, 50)
REMOVALS = ("mask", "delete")
AOPC_NORMALISATIONS = ("mean", "unirex")
TARGETS = ("gold", "predicted")


# -- options ---------------------------------------------------------------------------------
def check_bins(bins: Sequence[int]) -> tuple[int, ...]:
    """``bins`` as a tuple of ints in ``0..100`` (percent of eligible tokens), at least one."""
    out = tuple(int(b) for b in bins)
    if not out or any(b != k or not 0 <= b <= 100 for b, k in zip(out, bins)):
        raise ValueError(f"bins must be one or more integer percentages in 0..100, got {bins!r}")
    return out


def check_removal(removal: str) -> None:
    if removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; valid: {list(REMOVALS)}")


def pad_token(model) -> int:
    """The id freed slots get under ``removal="delete"``: ``model.pad_token`` if the model has one,
    else [PAD]."""
    return int(getattr(model, "pad_token", PAD))


# -- which tokens: ROAR's top-b --------------------------------------------------------------
def top_b(tokens: jax.Array, scores: jax.Array, bins: Sequence[int], *, maskable: jax.Array,
          mask_token) -> jax.Array:
    """``<bool>[len(bins), B, T]``: each row's top ``floor(k n / 100)`` eligible positions per bin
    ``k``: exactly the positions :func:`~nlproar_jax.roar.masking.roar_mask` (``quantile``) masks."""
    def one(k):
        masked = roar_mask(tokens, scores, k, "quantile", maskable=maskable, mask_token=mask_token)
        return maskable & (masked == jnp.asarray(mask_token, tokens.dtype))
    return jax.vmap(one)(jnp.asarray(bins, jnp.int32))


def keep_masks(tokens: jax.Array, scores: jax.Array, bins: Sequence[int], *, maskable: jax.Array,
               mask_token) -> jax.Array:
    """``<bool>[S, B, T]`` (True = keep), ``S = 2 + 2 len(bins)``: the full input, the
    comprehensiveness inputs (top-b removed, one per bin), the sufficiency inputs (only the top-b of
    the eligible tokens kept), the top-1 removal (ROAR's ``count`` strategy at k = 1)."""
    top = top_b(tokens, scores, bins, maskable=maskable, mask_token=mask_token)
    top1 = maskable & (roar_mask(tokens, scores, 1, "count", maskable=maskable, mask_token=mask_token)
                       == jnp.asarray(mask_token, tokens.dtype))
    full = jnp.ones((1,) + tokens.shape, bool)
    return jnp.concatenate([full, ~top, top | ~maskable[None], ~top1[None]])


def _layout(keep: jax.Array, removal: str) -> tuple[jax.Array, jax.Array]:
    """``(src <int32>[..., T], valid <bool>[..., T])``: perturbed position ``j`` holds the clean token
    at ``src[j]`` where ``valid[j]``, the fill token elsewhere."""
    length = keep.shape[-1]
    if removal == "mask":
        return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), keep.shape), keep
    src = jnp.argsort(~keep, axis=-1, stable=True).astype(jnp.int32)  # kept positions first, in order
    return src, jnp.arange(length) < keep.sum(-1, keepdims=True)


def perturb(tokens: jax.Array, keep: jax.Array, removal: str, *, mask_token, pad_token: int = PAD) -> jax.Array:
    """``<int32>[S, B, T]``: ``tokens <int32>[B, T]`` under each keep-mask ``<bool>[S, B, T]``, by
    ``removal``: "mask" writes ``mask_token`` at removed positions, "delete" drops them and packs
    the rest to the left, padding with ``pad_token``."""
    check_removal(removal)
    src, valid = _layout(keep, removal)
    fill = jnp.asarray(mask_token if removal == "mask" else pad_token, tokens.dtype)
    gathered = jnp.take_along_axis(jnp.broadcast_to(tokens, keep.shape), src, axis=-1)
    return jnp.where(valid, gathered, fill)


# -- the perturbed forward pass --------------------------------------------------------------
def perturbed_logits(model, tokens: jax.Array, aux_tokens: Optional[jax.Array], removal: str, *,
                     fast_path: bool = True):
    """``evaluate(keep <bool>[n, B, T]) -> logits <f32>[n, B, C]``: every class's logit on each
    perturbation of the batch (row ``s * B + b`` of one model batch is perturbation ``s`` of row
    ``b``). What the perturbations share (the clean projection, the fill token's projection row, the
    auxiliary context) is computed once, here. ``keep`` must be True at non-eligible positions."""
    check_removal(removal)
    batch, length = tokens.shape
    fill_id = model.mask_token if removal == "mask" else pad_token(model)
    fill = jnp.asarray(fill_id, tokens.dtype)

    if fast_path and has_fast_path(model):
        tokens_tm, proj, context = projection(model, tokens, aux_tokens)  # [T, B], [T, B, K]
        proj_fill = (model.embed(jnp.full((1, 1), fill)) @ model.input_weights())[0, 0]  # [K]
        cols = jnp.arange(batch)[None, None, :]

        def evaluate(keep):
            n = keep.shape[0]
            src, valid = _layout(keep, removal)
            src_tm, valid_tm = jnp.moveaxis(src, 2, 0), jnp.moveaxis(valid, 2, 0)  # [T, n, B]
            p = jnp.where(valid_tm[..., None], proj[src_tm, cols], proj_fill).reshape(length, n * batch, -1)
            tok = jnp.where(valid_tm, tokens_tm[src_tm, cols], fill).reshape(length, n * batch)
            return model.logits_from_projection(p, tok, _tile(context, n))[0].reshape(n, batch, -1)
    else:
        def evaluate(keep):
            n = keep.shape[0]
            tok = perturb(tokens, keep, removal, mask_token=model.mask_token, pad_token=pad_token(model))
            return forward(model, tok.reshape(n * batch, length), _tile(aux_tokens, n))[0].reshape(n, batch, -1)
    return evaluate


# -- one batch -------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("graphdef", "bins", "removal", "predicted", "chunk_size",
                                             "fast_path", "precision"))
def _erasure(graphdef, params, tokens, scores, target, aux_tokens, *, bins, removal, predicted, chunk_size,
             fast_path, precision):
    model = nnx.merge(graphdef, params)
    with precision_scope(precision):
        maskable = model.maskable(tokens)
        keep = keep_masks(tokens, scores, bins, maskable=maskable, mask_token=model.mask_token)
        samples, nb = keep.shape[0], len(bins)
        evaluate = perturbed_logits(model, tokens, aux_tokens, removal, fast_path=fast_path)
        chunk = resolve_chunk(chunk_size, samples, *tokens.shape)
        logits = scan_chunks(lambda idx: ((), evaluate(keep[idx])), samples, chunk, ())[1]  # [S, B, C]
    prediction = jnp.argmax(logits[0], axis=-1).astype(jnp.int32)
    target = prediction if predicted else target
    probs = jax.nn.softmax(logits, axis=-1)
    p = jnp.take_along_axis(probs, jnp.broadcast_to(target[None, :, None], probs.shape[:2] + (1,)), axis=-1)[..., 0]
    decision = jnp.argmax(logits, axis=-1)  # [S, B]
    full = p[0]
    return {
        "probability": full,
        "target": target,
        "prediction": prediction,
        "eligible": maskable.sum(axis=1).astype(jnp.int32),
        "removed": jax.vmap(lambda k: masked_count(maskable, k, "quantile"))(jnp.asarray(bins, jnp.int32)).T,
        "comprehensiveness": (full[None] - p[1 : 1 + nb]).T,
        "sufficiency": (full[None] - p[1 + nb : 1 + 2 * nb]).T,
        "flip": (decision[1 : 1 + nb] != prediction[None]).T,
        "flip_top1": decision[-1] != prediction,
    }


def erasure_batch(model, tokens, scores, target, aux_tokens=None, *, bins: Sequence[int] = BINS,
                  removal: str = "mask", chunk_size: Optional[int] = None, fast_path: bool = True,
                  precision: Optional[str] = DEFAULT_PRECISION) -> dict[str, jax.Array]:
    """The erasure metrics of one batch, per row (jitted; one program per shape and options).

    Args:
      model: a classifier (:mod:`nlproar_jax.models.protocol`).
      tokens: ``<int32>[B, T]``; scores: ``<f32>[B, T]`` (only eligible positions are read).
      target: the explained class: ``<int>[B]`` (e.g. gold labels), one class index, or
        ``"predicted"`` (the argmax on the full input).
      aux_tokens: ``<int32>[B, Ta]`` or None; never perturbed.
      bins: percentages of each row's eligible tokens (module docstring).
      removal: ``"mask"`` or ``"delete"`` (module docstring).
      chunk_size: perturbations evaluated at once (None = auto, 0 = all ``2 + 2 len(bins)``).
      fast_path: use the projection path when the model has the linear-input fast path.
      precision: the matmul precision (``jax.default_matmul_precision``), None = the ambient one.

    Returns a dict of arrays: ``probability`` ``<f32>[B]`` (``p_c(x)``), ``target`` and
    ``prediction`` ``<int32>[B]``, ``eligible`` ``<int32>[B]`` (``n``), ``removed``
    ``<int32>[B, nb]`` (``b`` per bin), ``comprehensiveness`` and ``sufficiency`` ``<f32>[B, nb]``,
    ``flip`` ``<bool>[B, nb]``, ``flip_top1`` ``<bool>[B]``.
    """
    check_classifier(model)
    check_removal(removal)
    check_chunk_size(chunk_size)
    bins = check_bins(bins)
    graphdef, params = nnx.split(model)
    return _call(graphdef, params, tokens, scores, target, aux_tokens, bins=bins, removal=removal,
                 chunk_size=chunk_size, fast_path=fast_path, precision=precision)


def _call(graphdef, params, tokens, scores, target, aux_tokens, **options):
    tokens = jnp.asarray(tokens, jnp.int32)
    predicted = isinstance(target, str)
    if predicted and target != "predicted":
        raise ValueError(f"unknown target {target!r}: pass class indices or \"predicted\"")
    if predicted:
        target = jnp.zeros(tokens.shape[0], jnp.int32)
    else:
        target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), tokens.shape[:1])
    scores = jnp.asarray(scores, jnp.float32)
    if scores.shape != tokens.shape:
        raise ValueError(f"scores have shape {scores.shape}; tokens {tokens.shape}")
    aux_tokens = None if aux_tokens is None else jnp.asarray(aux_tokens, jnp.int32)
    return _erasure(graphdef, params, tokens, scores, target, aux_tokens, predicted=predicted, **options)


# -- summaries -------------------------------------------------------------------------------
def aopc(values, normalisation: str = "mean"):
    """The AOPC of per-bin values ``[..., nb]`` (e.g. the ``comprehensiveness`` of
    :func:`erasure_batch`): ``"mean"`` = their mean (ERASER's code, ferret), ``"unirex"`` =
    their sum / (nb + 1) (UNIREX; Samek et al.'s ``1/(L+1)``). See the module docstring."""
    if normalisation not in AOPC_NORMALISATIONS:
        raise ValueError(f"unknown AOPC normalisation {normalisation!r}; valid: {list(AOPC_NORMALISATIONS)}")
    nb = values.shape[-1]
    return values.sum(-1) / (nb if normalisation == "mean" else nb + 1)


def summarise(rows: dict, bins: Sequence[int] = BINS) -> dict[str, float]:
    """Means over rows of per-row erasure values (:func:`erasure_batch` / :func:`erasure_rows_over_split`):
    ``comprehensiveness@k``, ``sufficiency@k``, ``flip@k`` per bin ``k``; ``aopc_comprehensiveness``
    and ``aopc_sufficiency`` ("mean" normalisation) and their ``_unirex`` variants; ``flip_top1``;
    ``probability`` (mean ``p_c(x)``); ``rows``."""
    bins = check_bins(bins)
    comp = np.asarray(rows["comprehensiveness"], np.float64)
    suff = np.asarray(rows["sufficiency"], np.float64)
    flip = np.asarray(rows["flip"], np.float64)
    out = {"rows": int(comp.shape[0]), "probability": float(np.mean(rows["probability"]))}
    for j, k in enumerate(bins):
        out[f"comprehensiveness@{k}"] = float(comp[:, j].mean())
        out[f"sufficiency@{k}"] = float(suff[:, j].mean())
        out[f"flip@{k}"] = float(flip[:, j].mean())
    for name, values in (("comprehensiveness", comp), ("sufficiency", suff)):
        out[f"aopc_{name}"] = float(aopc(values, "mean").mean())
        out[f"aopc_{name}_unirex"] = float(aopc(values, "unirex").mean())
    out["flip_top1"] = float(np.mean(rows["flip_top1"]))
    return out


# -- a whole split ---------------------------------------------------------------------------
def erasure_rows_over_split(model, split: Split, scores: Union[Ragged, np.ndarray], *, batch_size: int,
                            bins: Sequence[int] = BINS, removal: str = "mask", target: str = "gold",
                            chunk_size: Optional[int] = None, fast_path: bool = True,
                            precision: Optional[str] = DEFAULT_PRECISION) -> dict[str, np.ndarray]:
    """:func:`erasure_batch`'s per-row values for every row of ``split``, in split order (numpy).

    ``scores``: one float per main-sequence position, aligned with ``split.main.values`` (what
    :func:`~nlproar_jax.roar.scores.importance_over_split` returns) or as a :class:`Ragged` with the
    split's offsets. ``target``: ``"gold"`` (``split.labels``) or ``"predicted"``. Batches are
    :func:`~nlproar_jax.data.batching.eval_batches` (length-bucketed; one compile per bucket)."""
    check_classifier(model)
    check_removal(removal)
    check_chunk_size(chunk_size)
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid: {list(TARGETS)}")
    bins = check_bins(bins)
    values = scores.values if isinstance(scores, Ragged) else np.asarray(scores)
    if isinstance(scores, Ragged) and not np.array_equal(scores.offsets, split.main.offsets):
        raise ValueError("scores are not aligned with the split (different offsets)")
    if values.shape != split.main.values.shape:
        raise ValueError(f"{values.shape[0]} scores for {split.main.values.shape[0]} tokens")
    rows = Ragged(values.astype(np.float32), split.main.offsets)
    graphdef, params = nnx.split(model)
    out: dict[str, np.ndarray] = {}
    for batch in eval_batches(split, batch_size):
        s = rows.pad(batch.index.astype(np.int64), batch.tokens.shape[1])
        res = _call(graphdef, params, batch.tokens, s, "predicted" if target == "predicted" else batch.labels,
                    batch.aux_tokens, bins=bins, removal=removal, chunk_size=chunk_size, fast_path=fast_path,
                    precision=precision)
        real = batch.weight > 0
        index = batch.index[real].astype(np.int64)
        for name, value in res.items():
            value = np.asarray(value)
            if name not in out:
                out[name] = np.zeros((len(split),) + value.shape[1:], value.dtype)
            out[name][index] = value[real]
    return out


def erasure_over_split(model, split: Split, scores: Union[Ragged, np.ndarray], *, batch_size: int,
                       bins: Sequence[int] = BINS, removal: str = "mask", target: str = "gold",
                       chunk_size: Optional[int] = None, fast_path: bool = True,
                       precision: Optional[str] = DEFAULT_PRECISION) -> dict[str, float]:
    """The split's means (:func:`summarise`) of :func:`erasure_rows_over_split`."""
    rows = erasure_rows_over_split(model, split, scores, batch_size=batch_size, bins=bins, removal=removal,
                                   target=target, chunk_size=chunk_size, fast_path=fast_path, precision=precision)
    return summarise(rows, bins)
