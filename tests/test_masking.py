"""ROAR masking: exact per-row counts, eligibility, earlier masks kept, ties, one compile for every k."""
import jax.numpy as jnp
import numpy as np
import pytest

from nlproar_jax.roar.masking import roar_mask
from nlproar_jax.data.tokens import CLS, EOS, MASK, PAD, UNK

ROWS = np.array([
    [CLS, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, EOS],
    [CLS, 10, MASK, 12, UNK, EOS, PAD, PAD, PAD, PAD, PAD, PAD],
    [CLS, 20, EOS, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
    [CLS, MASK, MASK, 21, 22, 23, 24, EOS, PAD, PAD, PAD, PAD],
], np.int32)


def eligible_count(row):
    return int(np.sum(row >= MASK))


@pytest.mark.parametrize("strategy,k", [("count", 0), ("count", 1), ("count", 3), ("count", 50),
                                        ("quantile", 10), ("quantile", 50), ("quantile", 90), ("quantile", 100)])
def test_exact_counts_eligibility_and_kept_masks(strategy, k):
    rng = np.random.default_rng(k)
    scores = rng.normal(size=ROWS.shape).astype(np.float32)
    scores[ROWS < MASK] = 100.0  # ineligible positions with huge scores must still never be masked
    out = np.asarray(roar_mask(ROWS, scores, k, strategy))
    for row, new in zip(ROWS, out):
        n = eligible_count(row)
        expected = min(k, n) if strategy == "count" else (k * n) // 100
        already = row == MASK
        # earlier masks rank first and count towards k'; they are never undone
        assert np.sum(new == MASK) == max(expected, int(already.sum()))
        assert np.all(new[already] == MASK)
        assert np.all(new[row < MASK] == row[row < MASK])  # [PAD], [CLS], [EOS] untouched
        changed = new != row
        assert np.all(new[changed] == MASK)
        assert len(new) == len(row)


def test_top_scores_are_masked_and_ties_prefer_the_lower_position():
    row = np.array([[CLS, 10, 11, 12, 13, EOS]], np.int32)
    out = roar_mask(row, np.array([[0, 0.1, 0.9, 0.5, 0.9, 0]], np.float32), 2, "count")
    np.testing.assert_array_equal(out, [[CLS, 10, MASK, 12, MASK, EOS]])
    out = roar_mask(row, np.zeros((1, 6), np.float32), 2, "count")
    np.testing.assert_array_equal(out, [[CLS, MASK, MASK, 12, 13, EOS]])


def test_recursive_masking_keeps_previous_masks_and_adds_new_ones():
    row = ROWS[:1]
    scores = np.arange(12, dtype=np.float32)[None, :]
    first = roar_mask(row, scores, 20, "quantile")  # floor(0.2 * 10) = 2
    second = roar_mask(first, -scores, 40, "quantile")  # 4 in all: the 2 kept + 2 more
    assert np.sum(np.asarray(first) == MASK) == 2
    assert np.sum(np.asarray(second) == MASK) == 4
    assert np.all(np.asarray(second)[np.asarray(first) == MASK] == MASK)


def test_one_compile_for_every_k():
    scores = np.zeros(ROWS.shape, np.float32)
    roar_mask(ROWS, scores, jnp.int32(1), "count")
    before = roar_mask._cache_size()
    for k in (2, 3, 7):
        roar_mask(ROWS, scores, jnp.int32(k), "count")
    assert roar_mask._cache_size() == before


def test_unknown_strategy_names_the_valid_ones():
    with pytest.raises(ValueError, match="count.*quantile"):
        roar_mask(ROWS, np.zeros(ROWS.shape, np.float32), 1, "topk")


def test_masked_count_is_k_prime_per_row():
    from nlproar_jax.roar.masking import masked_count

    maskable = jnp.asarray(ROWS >= MASK)
    n = np.asarray(maskable).sum(1)  # 10, 4, 1, 6
    np.testing.assert_array_equal(masked_count(maskable, 3, "count"), np.minimum(3, n))
    np.testing.assert_array_equal(masked_count(maskable, 50, "quantile"), (50 * n) // 100)
    with pytest.raises(ValueError, match="valid"):
        masked_count(maskable, 3, "top")


def test_a_models_own_maskable_positions_and_mask_id():
    """Another vocabulary (e.g. a transformer's: mask id 103, specials chosen by the model) masks only
    where the model allows, writes its mask id, and keeps its earlier masks."""
    tokens = np.array([[101, 7, 103, 9, 11, 102, 0], [101, 12, 13, 102, 0, 0, 0]], np.int32)
    maskable = (tokens != 0) & (tokens != 101) & (tokens != 102)
    scores = np.arange(tokens.size, dtype=np.float32).reshape(tokens.shape)[:, ::-1].copy()  # earlier = higher
    out = np.asarray(roar_mask(tokens, scores, 2, "count", maskable=jnp.asarray(maskable), mask_token=103))
    np.testing.assert_array_equal(out, [[101, 103, 103, 9, 11, 102, 0], [101, 103, 103, 102, 0, 0, 0]])
