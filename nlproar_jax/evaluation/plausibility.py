"""Plausibility: how well importance scores agree with gold token rationales (numpy only, no JAX).

Plausibility asks whether a measure ranks the tokens *people* (or a generator) marked as evidence
first; it says nothing about faithfulness (ROAR, :mod:`.erasure`). Everything is ragged per row, in
the layout of :class:`~nlproar_jax.data.dataset.Ragged`: ``scores`` (one float per main-sequence
token, higher = more important), ``rationales`` (one bool per token, True = gold evidence) and
optionally ``eligible`` (one bool per token; default all). **Only eligible tokens count**: pass
:func:`eligible_tokens` of the split (the tokens ROAR may mask: never [PAD], [CLS], [EOS]) so
specials neither help nor hurt. Each argument is a :class:`Ragged`, a sequence of 1-D arrays, or a
flat array aligned with the values of another argument that is a :class:`Ragged` (such as the
scores :func:`~nlproar_jax.roar.scores.importance_over_split` returns).

Metrics (:func:`plausibility` returns them all; the per-row functions are public):

* **top-k precision / recall / F1**: each row selects its top-k eligible tokens (ties to the lower
  position, as ROAR's ``roar_mask``). ``k`` is the row's number of gold tokens by default (then
  P = R = F1, the "R-precision"), or a fixed count ``k`` (``min(k, n)``), or ``percent`` of the
  row's ``n`` eligible tokens rounded like ROAR's quantile strategy, ``floor(percent n / 100)``.
  Per-row values (``zero_division`` = 0, as sklearn's ``precision_recall_fscore_support(...,
  average="binary", zero_division=0)``) are averaged over the rows with at least one gold token
  (ERASER's instance-macro scores average F1s, not an F1 of averages); ``*_micro`` pools the counts
  over those rows.
* **threshold precision / recall / F1** (only with ``threshold=``): a token is selected when its score
  is ``> threshold`` (strictly, as UNIREX's ``calc_plaus``, whose default threshold is 0.0; no
  default here, because scores of different measures live on different scales).
* **auprc**: the area under the precision-recall curve of all eligible tokens of all rows pooled
  (one ranking; scores must be comparable across rows), trapezoidal over recall from the point
  (recall 0, precision 1), i.e. sklearn's ``auc(recall, precision)`` on ``precision_recall_curve``;
  ERASER and UNIREX compute the same area per row and average it.
* **map**: mean average precision: per-row AP, step-wise without interpolation, ties as one
  threshold (sklearn's ``average_precision_score``), averaged over rows with at least one gold
  token (ERASER also drops rows whose tokens are *all* gold, which score 1 here).
* **spearman**: per-row Spearman rank correlation of scores with the 0/1 gold labels (average ranks
  for ties), averaged over the rows where it is defined (neither side constant).

:func:`synthetic_rationales` gives the synthetic task's gold rationales (its signal words),
aligned with the encoded split: the generator's ``signal_positions`` count from the first word and
encoding prepends [CLS], so each position moves right by one. :func:`file_rationales` gives those
the loaders of :data:`FILE_RATIONALE_TASKS` derive from the data files (SST: the words whose
treebank label is polar in the sentence's direction, :mod:`nlproar_jax.data.sst`; bAbI: the words
of the supporting statements, :mod:`nlproar_jax.data.babi`), checked token for token against the
encoded split. [CLS] and [EOS] are never gold.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from nlproar_jax.data.dataset import SPLITS, Ragged, Split
from nlproar_jax.data.synthetic import generate_split
from nlproar_jax.data.tokens import FIRST_ELIGIBLE

RowsLike = Union[Ragged, Sequence[np.ndarray]]


# -- ragged inputs ---------------------------------------------------------------------------
def as_rows(x: RowsLike, offsets: Optional[np.ndarray] = None) -> list[np.ndarray]:
    """``x`` as a list of 1-D arrays, one per row. A flat 1-D array (e.g. the scores
    :func:`~nlproar_jax.roar.scores.importance_over_split` returns, aligned with ``split.main.values``)
    is cut at ``offsets``."""
    if isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype != object:
        if offsets is None:
            raise ValueError("a flat array needs row offsets: pass a Ragged (or another argument as one)")
        x = Ragged(x, offsets)
    if isinstance(x, Ragged):
        if len(x.values) != x.offsets[-1]:
            raise ValueError(f"{len(x.values)} values for rows ending at offset {x.offsets[-1]}")
        return [x.values[x.offsets[i] : x.offsets[i + 1]] for i in range(len(x))]
    return [np.asarray(r).reshape(-1) for r in x]


def eligible_tokens(tokens: Ragged, first_eligible: int = FIRST_ELIGIBLE) -> Ragged:
    """``<bool>`` per token: the tokens ROAR may mask under the task vocabulary's rule
    (``id >= [MASK]``: never [PAD], [CLS], [EOS]; the BiLSTMs' ``maskable``)."""
    return Ragged(tokens.values >= first_eligible, tokens.offsets)


def _aligned(scores: RowsLike, rationales: RowsLike, eligible: Optional[RowsLike]):
    """Per row: ``(scores, gold)`` of the eligible tokens only (float64, bool)."""
    offsets = next((x.offsets for x in (scores, rationales, eligible) if isinstance(x, Ragged)), None)
    s_rows, g_rows = as_rows(scores, offsets), as_rows(rationales, offsets)
    e_rows = as_rows(eligible, offsets) if eligible is not None else [None] * len(s_rows)
    if not len(s_rows) == len(g_rows) == len(e_rows):
        raise ValueError(f"{len(s_rows)} score rows, {len(g_rows)} rationale rows, {len(e_rows)} eligibility rows")
    out = []
    for i, (s, g, e) in enumerate(zip(s_rows, g_rows, e_rows)):
        e = np.ones(len(s), bool) if e is None else np.asarray(e, bool)
        if not len(s) == len(g) == len(e):
            raise ValueError(f"row {i}: {len(s)} scores, {len(g)} rationale flags, {len(e)} eligibility flags")
        out.append((np.asarray(s, np.float64)[e], np.asarray(g, bool)[e]))
    return out


# -- per-row metrics -------------------------------------------------------------------------
def top_k(scores: np.ndarray, count: int) -> np.ndarray:
    """``<bool>[n]``: the ``count`` highest scores, ties to the lower position (ROAR's rule)."""
    selected = np.zeros(len(scores), bool)
    selected[np.argsort(-np.asarray(scores), kind="stable")[: max(int(count), 0)]] = True
    return selected


def selection_count(n: int, gold: int, *, k: Optional[int] = None, percent: Optional[float] = None) -> int:
    """How many tokens a row of ``n`` eligible tokens (``gold`` of them gold) selects: ``gold`` by
    default, ``min(k, n)``, or ``floor(percent n / 100)`` (integer arithmetic for an integer
    ``percent``, so it equals ROAR's ``masked_count``)."""
    if k is not None and percent is not None:
        raise ValueError("pass k or percent, not both")
    if k is not None:
        return min(int(k), n)
    if percent is not None:
        if float(percent) == int(percent):
            return (int(percent) * n) // 100
        return int(np.floor(float(percent) * n / 100 + 1e-9))
    return gold


def precision_recall_f1(selected: np.ndarray, gold: np.ndarray) -> tuple[float, float, float]:
    """Binary precision, recall and F1 of a selection against gold flags; 0 where undefined."""
    tp = int(np.sum(selected & gold))
    ns, ng = int(np.sum(selected)), int(np.sum(gold))
    p = tp / ns if ns else 0.0
    r = tp / ng if ng else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _curve(scores: np.ndarray, gold: np.ndarray):
    """``(precision, recall)`` at each distinct score threshold, highest first (sklearn's
    ``_binary_clf_curve``). Requires at least one gold token."""
    order = np.argsort(-scores, kind="stable")
    s, g = scores[order], gold[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of equal scores
    tps = np.cumsum(g)[ends].astype(np.float64)
    precision = tps / (ends + 1)
    return precision, tps / tps[-1]


def average_precision(scores: np.ndarray, gold: np.ndarray) -> float:
    """Step-wise AP, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (sklearn's
    ``average_precision_score``); NaN without a gold token."""
    gold = np.asarray(gold, bool)
    if not gold.any():
        return float("nan")
    precision, recall = _curve(np.asarray(scores, np.float64), gold)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auprc(scores: np.ndarray, gold: np.ndarray) -> float:
    """Trapezoidal area under the precision-recall curve from (recall 0, precision 1) (sklearn's
    ``auc(recall, precision)`` on ``precision_recall_curve``); NaN without a gold token."""
    gold = np.asarray(gold, bool)
    if not gold.any():
        return float("nan")
    precision, recall = _curve(np.asarray(scores, np.float64), gold)
    r, p = np.r_[0.0, recall], np.r_[1.0, precision]
    return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(xs)]
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based average ranks
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either side is constant."""
    ra, rb = _average_ranks(np.asarray(a, np.float64)), _average_ranks(np.asarray(b, np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / denom) if denom > 0 else float("nan")


# -- a whole split ---------------------------------------------------------------------------
def _prf_summary(selections, golds, prefix: str) -> dict[str, float]:
    rows = [precision_recall_f1(s, g) for s, g in zip(selections, golds) if g.any()]
    out = {}
    for j, name in enumerate(("precision", "recall", "f1")):
        out[f"{prefix}_{name}"] = float(np.mean([r[j] for r in rows])) if rows else float("nan")
    pooled = [(s, g) for s, g in zip(selections, golds) if g.any()]
    if pooled:
        p, r, f = precision_recall_f1(np.concatenate([s for s, _ in pooled]), np.concatenate([g for _, g in pooled]))
    else:
        p = r = f = float("nan")
    out.update({f"{prefix}_precision_micro": p, f"{prefix}_recall_micro": r, f"{prefix}_f1_micro": f})
    return out


def plausibility(scores: RowsLike, rationales: RowsLike, eligible: Optional[RowsLike] = None, *,
                 k: Optional[int] = None, percent: Optional[float] = None,
                 threshold: Optional[float] = None) -> dict[str, float]:
    """Every plausibility metric of ``scores`` against ``rationales`` (module docstring).

    Returns ``topk_{precision,recall,f1}`` (row means) and their ``_micro`` (pooled) variants,
    ``threshold_*`` likewise when ``threshold`` is given, ``auprc`` (pooled), ``map``, ``spearman``,
    ``rows`` and ``rows_with_rationale``. Metrics over no defined row are NaN.
    """
    rows = _aligned(scores, rationales, eligible)
    golds = [g for _, g in rows]
    with_gold = [(s, g) for s, g in rows if g.any()]
    top = [top_k(s, selection_count(len(s), int(g.sum()), k=k, percent=percent)) for s, g in rows]
    out: dict[str, float] = {"rows": len(rows), "rows_with_rationale": len(with_gold)}
    out.update(_prf_summary(top, golds, "topk"))
    if threshold is not None:
        out.update(_prf_summary([s > threshold for s, _ in rows], golds, "threshold"))
    pooled_s = np.concatenate([s for s, _ in rows]) if rows else np.zeros(0)
    pooled_g = np.concatenate(golds) if rows else np.zeros(0, bool)
    out["auprc"] = auprc(pooled_s, pooled_g)
    out["map"] = float(np.mean([average_precision(s, g) for s, g in with_gold])) if with_gold else float("nan")
    rhos = [spearman(s, g) for s, g in rows if len(s) > 1]
    rhos = [r for r in rhos if not np.isnan(r)]
    out["spearman"] = float(np.mean(rhos)) if rhos else float("nan")
    return out


# -- gold rationales of the synthetic task ---------------------------------------------------
def rationales_from_positions(positions: Sequence[Sequence[int]], lengths: Sequence[int], *,
                              shift: int = 1) -> Ragged:
    """``<bool>`` per token of rows of ``lengths`` (encoded lengths), True at ``p + shift`` for each
    ``p`` in ``positions[i]`` (``shift=1``: the [CLS] that encoding prepends)."""
    lengths = np.asarray(lengths, np.int64)
    if len(positions) != len(lengths):
        raise ValueError(f"{len(positions)} position lists for {len(lengths)} rows")
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.zeros(int(offsets[-1]), bool)
    for i, ps in enumerate(positions):
        ps = np.asarray(ps, np.int64) + shift
        if len(ps) and (ps.min() < 0 or ps.max() >= lengths[i]):
            raise ValueError(f"row {i}: positions {ps.tolist()} outside a row of length {lengths[i]}")
        values[offsets[i] + ps] = True
    return Ragged(values, offsets)


def synthetic_rationales(split: str = "test", *, seed: int = 0, train_size: int = 2000, val_size: int = 400,
                         test_size: int = 400, encoded: Optional[Split] = None, **generator_options) -> Ragged:
    """The synthetic task's gold rationales for one split, aligned with its encoded tokens
    (``[CLS] words [EOS]``): True at the signal words.

    Takes the options of :func:`nlproar_jax.data.synthetic.load` (the task config's ``dataset``
    options) and regenerates the split as ``load`` does (split ``i`` of ("train", "val", "test") uses
    the generator seed ``seed * 1000 + i``). ``encoded``: the encoded split, to check the rows line
    up (same lengths), else ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    size = {"train": train_size, "val": val_size, "test": test_size}[split]
    docs, _, positions = generate_split(seed * 1000 + SPLITS.index(split), size, **generator_options)
    gold = rationales_from_positions(positions, [len(d) + 2 for d in docs], shift=1)
    if encoded is not None and not np.array_equal(encoded.main.offsets, gold.offsets):
        raise ValueError("the encoded split's rows do not line up with the generator's documents "
                         "(different sizes, seed or generator options?)")
    return gold


# -- gold rationales read from the data files (SST, bAbI) ------------------------------------
FILE_RATIONALE_TASKS = ("sst", "babi-1", "babi-2", "babi-3")


def rationales_from_masks(masks: Sequence[np.ndarray]) -> Ragged:
    """``<bool>`` per token of the encoded rows ``[CLS] tokens [EOS]``: ``masks[i]`` (``<bool>[n_i]``, one
    flag per token of row ``i``) with False for [CLS] in front and [EOS] behind; rows of ``n_i + 2``."""
    rows = [np.concatenate([[False], np.asarray(m, dtype=bool).reshape(-1), [False]]) for m in masks]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Ragged(np.concatenate(rows) if rows else np.zeros(0, bool), offsets)


def file_rationales(task: str, split: str, data_dir: Optional[str], *, encoded: Optional[Split] = None,
                    vocab=None, **options) -> Ragged:
    """The gold rationales of ``split`` of ``task`` (one of :data:`FILE_RATIONALE_TASKS`), read from
    the task's files under ``data_dir`` with the loader ``options`` (the task config's ``dataset``
    options), aligned with the encoded split ``[CLS] tokens [EOS]``.

    ``encoded``: the encoded split, to check the rows line up (same lengths), and with ``vocab`` (the
    task's :class:`~nlproar_jax.data.tokens.Vocabulary`) that they hold the same tokens; else
    ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if task == "sst":
        from nlproar_jax.data import sst

        per_split = sst.gold_rationales(data_dir, **options)
    elif task in FILE_RATIONALE_TASKS:
        from nlproar_jax.data import babi

        per_split = babi.gold_rationales(int(task.split("-")[1]), data_dir, **options)
    else:
        raise ValueError(f"task {task!r} has no gold rationales in its files; valid: {list(FILE_RATIONALE_TASKS)}")
    docs, masks = per_split[split]
    gold = rationales_from_masks(masks)
    if encoded is not None:
        if not np.array_equal(encoded.main.offsets, gold.offsets):
            raise ValueError(f"the encoded {split} split of {task} does not line up with the rows read from the "
                             f"files ({len(encoded)} rows against {len(docs)}, or other lengths): other data "
                             "files or dataset options, or a pretrained tokenizer's word pieces (gold rationales "
                             "are per word)?")
        if vocab is not None:
            ids = Ragged.from_list([vocab.encode(d) for d in docs])
            differ = np.flatnonzero(ids.values != encoded.main.values)
            if len(differ):
                row = int(np.searchsorted(encoded.main.offsets, differ[0], side="right") - 1)
                raise ValueError(f"row {row} of the encoded {split} split of {task} holds other tokens than the "
                                 f"files give ({docs[row][:8]}...): other data files or dataset options?")
    return gold
