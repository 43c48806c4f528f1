"""Plausibility metrics (nlproar_jax.evaluation.plausibility): closed-form cases, sklearn and scipy on
random ragged inputs (skipped without them), and the synthetic task's gold rationales."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from nlproar_jax.data.dataset import Ragged, encode_task
from nlproar_jax.data.synthetic import load as load_synthetic
from nlproar_jax.evaluation.plausibility import (auprc, average_precision, eligible_tokens, plausibility,
                                                 precision_recall_f1, selection_count, spearman,
                                                 synthetic_rationales, top_k)


# -- closed form (no sklearn) -----------------------------------------------------------------
def test_average_precision_and_auprc_closed_form():
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # a tie is one threshold: (R, P) = (1/2, 1/2) then (1, 2/3)
    assert average_precision([1, 1, 0], [1, 0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert auprc([1, 1, 0], [1, 0, 1]) == pytest.approx(0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 2 / 3) / 2)
    assert average_precision([3, 2, 1], [1, 1, 0]) == 1.0 and auprc([3, 2, 1], [1, 1, 0]) == 1.0
    assert np.isnan(average_precision([1, 2], [0, 0]))


def test_top_k_ties_counts_and_prf_closed_form():
    np.testing.assert_array_equal(top_k(np.array([3, 1, 2, 2, 0]), 2), [True, False, True, False, False])
    assert selection_count(7, 2) == 2  # default: the number of gold tokens
    assert selection_count(7, 2, k=10) == 7
    assert [selection_count(n, 0, percent=p) for n, p in ((7, 50), (40, 5), (20, 1), (10, 30))] == [3, 2, 0, 3]
    assert selection_count(10, 0, percent=29.0) == 2 and selection_count(100, 0, percent=0.5) == 0
    p, r, f = precision_recall_f1(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 1], bool))
    assert (p, r, f) == pytest.approx((0.5, 1 / 3, 0.4))
    assert precision_recall_f1(np.zeros(3, bool), np.ones(3, bool)) == (0.0, 0.0, 0.0)


def test_spearman_closed_form():
    # ranks (1, 2, 3, 4) against (1.5, 1.5, 3.5, 3.5): 4 / sqrt(5 * 4)
    assert spearman([1, 2, 3, 4], [0, 0, 1, 1]) == pytest.approx(4 / np.sqrt(20))
    assert spearman([4, 3, 2, 1], [0, 0, 1, 1]) == pytest.approx(-4 / np.sqrt(20))
    assert np.isnan(spearman([1, 1, 1], [0, 1, 0]))


def as_list(r):
    return [r.row(i) for i in range(len(r))]


def test_plausibility_ragged_eligible_only():
    scores = Ragged(np.array([9, 3, 1, 2, 2, 0, 9, 5, 1, 4, 9], np.float32), np.array([0, 6, 11]))
    gold = Ragged(np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0], bool), scores.offsets)
    eligible = Ragged(np.array([0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0], bool), scores.offsets)
    out = plausibility(scores, gold, eligible, threshold=1.5)
    # row 0's eligible tokens: scores (3, 1, 2, 2), gold (0, 0, 1, 1): top-2 = {3, first 2}; row 1 has no gold
    assert out["rows"] == 2 and out["rows_with_rationale"] == 1
    assert (out["topk_precision"], out["topk_recall"], out["topk_f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert out["map"] == pytest.approx(2 / 3)  # ranking 3 | 2 2 | 1: (R, P) = (0, 0), (1, 2/3), (1, 1/2)
    # threshold 1.5 selects (3, 2, 2) of row 0: P = 2/3, R = 1
    assert (out["threshold_precision"], out["threshold_recall"]) == pytest.approx((2 / 3, 1.0))
    # pooled: row 1's (5, 1, 4) are negatives; ranking 5 | 4 | 3 | 2 2 | 1 1 with gold only at the 2s
    assert out["auprc"] == pytest.approx((0 + 2 / 5) / 2)  # (0, 1) -> (0, 0) x3 -> (1, 2/5) -> (1, 2/7)
    assert out["spearman"] == pytest.approx(spearman([3, 1, 2, 2], [0, 0, 1, 1]))  # row 1: gold constant
    assert plausibility(scores.values, gold, eligible.values, threshold=1.5) == out  # flat, cut at gold's offsets
    with pytest.raises(ValueError, match="offsets"):
        plausibility(scores.values, as_list(gold))
    perfect = plausibility([np.array([0.0, 1, 1, 0])], [np.array([0, 1, 1, 0])])
    assert perfect["map"] == perfect["auprc"] == perfect["topk_f1"] == perfect["spearman"] == 1.0


# -- against sklearn / scipy on random inputs ---------------------------------------------------
def random_rows(seed, n_rows=40):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 25, n_rows)
    scores = [np.round(rng.normal(size=n), 1) for n in lengths]  # rounded: ties
    gold = [rng.random(n) < 0.3 for n in lengths]
    eligible = [rng.random(n) < 0.85 for n in lengths]
    return scores, gold, eligible


@pytest.mark.parametrize("seed", [0, 1])
def test_against_sklearn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    scores, gold, eligible = random_rows(seed)
    out = plausibility(scores, gold, eligible, threshold=0.2)
    rows = [(s[e], g[e]) for s, g, e in zip(scores, gold, eligible)]
    with_gold = [(s, g) for s, g in rows if g.any()]
    assert out["rows_with_rationale"] == len(with_gold) > 10
    want_map = np.mean([metrics.average_precision_score(g, s) for s, g in with_gold])
    assert out["map"] == pytest.approx(want_map, abs=1e-12)
    for s, g in with_gold:
        assert average_precision(s, g) == pytest.approx(metrics.average_precision_score(g, s), abs=1e-12)
    all_s = np.concatenate([s for s, _ in rows])
    all_g = np.concatenate([g for _, g in rows])
    precision, recall, _ = metrics.precision_recall_curve(all_g, all_s)
    assert out["auprc"] == pytest.approx(metrics.auc(recall, precision), abs=1e-12)

    def prfs(sel, g, **kw):
        return metrics.precision_recall_fscore_support(np.asarray(g, int), np.asarray(sel, int), average="binary",
                                                       zero_division=0, **kw)[:3]

    for prefix, select in (("topk", lambda s, g: top_k(s, g.sum())), ("threshold", lambda s, g: s > 0.2)):
        sels = [(select(s, g), g) for s, g in with_gold]
        macro = np.mean([prfs(sel, g) for sel, g in sels], axis=0)
        micro = prfs(np.concatenate([sel for sel, _ in sels]), np.concatenate([g for _, g in sels]))
        got = [out[f"{prefix}_{m}"] for m in ("precision", "recall", "f1")]
        got_micro = [out[f"{prefix}_{m}_micro"] for m in ("precision", "recall", "f1")]
        np.testing.assert_allclose(got, macro, atol=1e-12, err_msg=prefix)
        np.testing.assert_allclose(got_micro, micro, atol=1e-12, err_msg=prefix)
    fixed = plausibility(scores, gold, eligible, percent=20)
    sels = [(top_k(s, len(s) * 20 // 100), g) for s, g in with_gold]
    np.testing.assert_allclose(fixed["topk_f1"], np.mean([prfs(sel, g)[2] for sel, g in sels]), atol=1e-12)


def test_top_k_matches_a_sorted_reference():
    rng = np.random.default_rng(3)
    for _ in range(50):
        s = rng.integers(0, 4, rng.integers(1, 15)).astype(float)
        k = int(rng.integers(0, len(s) + 1))
        want = sorted(range(len(s)), key=lambda t: (-s[t], t))[:k]
        np.testing.assert_array_equal(np.flatnonzero(top_k(s, k)), sorted(want))


def test_spearman_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    scores, gold, _ = random_rows(4)
    for s, g in zip(scores, gold):
        g = g.astype(int)
        want = stats.spearmanr(s, g).statistic if len(s) > 1 and np.ptp(s) > 0 and np.ptp(g) > 0 else np.nan
        got = spearman(s, g)
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12)


# -- the synthetic task's gold rationales -------------------------------------------------------
def test_synthetic_rationales_are_the_signal_words():
    options = {"seed": 3, "train_size": 200, "val_size": 20, "test_size": 40}
    task = encode_task(load_synthetic(None, **options))
    for name in ("train", "test"):
        split = task.splits[name]
        gold = synthetic_rationales(name, encoded=split, **options)
        np.testing.assert_array_equal(gold.offsets, split.main.offsets)
        for i in range(len(split)):
            words = task.vocab.decode(split.main.row(i))
            flags = gold.row(i)
            assert words[0] == "[CLS]" and words[-1] == "[EOS]" and not flags[0] and not flags[-1]
            prefix = ("neg", "pos")[split.labels[i]]
            assert 1 <= flags.sum() <= 3
            for word, flag in zip(words[1:-1], flags[1:-1]):
                # gold: a signal word of the row's class; else a distractor (or a distractor unseen in training)
                assert word.startswith(prefix) if flag else word.startswith("w") or word == "[UNK]", (i, words, flags)
        elig = eligible_tokens(split.main)
        assert plausibility(gold, gold, elig)["map"] == 1.0  # ranking the gold tokens first is perfect
    with pytest.raises(ValueError, match="line up"):
        synthetic_rationales("test", encoded=task.splits["test"], **{**options, "seed": 4})


def test_plausibility_imports_no_jax():
    code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
            "import nlproar_jax.evaluation.plausibility\n"
            "import json; print(json.dumps(sorted(m for m in ('jax', 'flax') if m in sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
