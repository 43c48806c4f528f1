"""Importance measures: the math (finite differences, IG completeness, the original's IG form, MI),
the contracts (batched == per example, padding never changes a score), and no retracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlproar_jax.data.dataset import Ragged
from nlproar_jax.importance import (
    MEASURES,
    ImportanceOptions,
    canonical_measure,
    compute_importance,
    integrated_gradient_completeness,
    integrated_gradient_terms,
    mutual_information_table,
)

def jit_with_model(fn, model, static_argnums=()):
    """``fn(model, *args)`` jitted, the model passed as (static graphdef, params)."""
    graphdef, params = nnx.split(model)
    shifted = tuple(i + 1 for i in static_argnums)
    jitted = jax.jit(lambda p, *args: fn(nnx.merge(graphdef, p), *args), static_argnums=shifted)
    return lambda *args: jitted(params, *args)


def gold_logit_of_embeddings(model, batch, emb):
    logits, _ = model.logits_from_embeddings(emb, batch.tokens, batch.aux_tokens)
    return jnp.take_along_axis(logits, jnp.asarray(batch.labels)[:, None], axis=1)[:, 0]


def embedding_grad(model, batch):
    """d f_gold / d e, straight through the full model: ``[B, T, D]``."""
    emb = model.embed(batch.tokens)
    grad = jit_with_model(lambda m, e: jax.grad(lambda x: gold_logit_of_embeddings(m, batch, x).sum())(e), model)
    return emb, grad(emb)


def score(measure, model, batch, options=ImportanceOptions(ig_steps=20), table=None, key=0):
    graphdef, params = nnx.split(model)
    return np.asarray(compute_importance(measure, graphdef, params, batch, jax.random.key(key), options, table))


@pytest.fixture(params=["single", "paired"])
def model_and_batch(request, tiny_single, tiny_paired, single_batch, paired_batch):
    return (tiny_single, single_batch) if request.param == "single" else (tiny_paired, paired_batch)


def test_embedding_gradient_matches_finite_differences(model_and_batch):
    model, batch = model_and_batch
    emb, grad = embedding_grad(model, batch)
    emb64 = np.asarray(emb, np.float64)
    f = jit_with_model(lambda m, e: gold_logit_of_embeddings(m, batch, e), model)
    rng = np.random.default_rng(0)
    for _ in range(4):
        b, t, d = rng.integers(3), rng.integers(1, 4), rng.integers(emb.shape[2])
        h = 1e-2
        plus, minus = emb64.copy(), emb64.copy()
        plus[b, t, d] += h
        minus[b, t, d] -= h
        fd = (f(jnp.asarray(plus, jnp.float32))[b] - f(jnp.asarray(minus, jnp.float32))[b]) / (2 * h)
        assert float(fd) == pytest.approx(float(grad[b, t, d]), rel=2e-2, abs=2e-4)


def test_gradient_is_norm_over_vocabulary_of_onehot_gradient(model_and_batch):
    """||d f / d onehot(x_t)||_2, materialised explicitly on the tiny vocabulary."""
    model, batch = model_and_batch
    _, grad = embedding_grad(model, batch)
    table = np.asarray(model.embedding[...])
    expected = np.linalg.norm(np.einsum("vd,btd->btv", table, np.asarray(grad)), axis=-1)
    got = score("gradient", model, batch)
    real = batch.tokens != 0
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-4, atol=1e-6)


def test_input_times_gradient(model_and_batch):
    model, batch = model_and_batch
    emb, grad = embedding_grad(model, batch)
    expected = np.abs(np.sum(np.asarray(emb) * np.asarray(grad), axis=-1))
    got = score("input_times_gradient", model, batch)
    real = batch.tokens != 0
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-4, atol=1e-6)
    # and e.g is the directional finite difference along e_t
    b, t, h = 0, 2, 1e-2
    e = np.asarray(emb, np.float64)
    plus, minus = e.copy(), e.copy()
    plus[b, t] *= 1 + h
    minus[b, t] *= 1 - h
    fd = (gold_logit_of_embeddings(model, batch, jnp.asarray(plus, jnp.float32))[b]
          - gold_logit_of_embeddings(model, batch, jnp.asarray(minus, jnp.float32))[b]) / (2 * h)
    assert abs(float(fd)) == pytest.approx(got[b, t], rel=2e-2, abs=1e-4)


def test_textbook_ig_completeness_error_shrinks_with_steps(model_and_batch):
    model, batch = model_and_batch
    completeness = jit_with_model(integrated_gradient_completeness, model, static_argnums=(1,))
    errors = []
    for steps in (5, 50, 400):
        total, delta = completeness(batch, ImportanceOptions(ig_steps=steps))
        errors.append(float(np.max(np.abs(np.asarray(total) - np.asarray(delta)))))
    assert errors[2] < errors[1] < errors[0]
    np.testing.assert_allclose(total, delta, rtol=1e-2, atol=2e-3)


def test_alpha_weighted_ig_is_the_originals_definition(model_and_batch):
    """The original: the LSTM sees alpha_i e, the gradient is w.r.t. the unscaled e (so it carries alpha_i);
    score = |mean_i e_t . d/de f(alpha_i e)|. Computed here directly through the embeddings."""
    model, batch = model_and_batch
    steps = 8
    emb = model.embed(batch.tokens)
    grad_at = jit_with_model(
        lambda m, e, a: jax.grad(lambda x: gold_logit_of_embeddings(m, batch, a * x).sum())(e), model)
    per_point = []
    for i in range(1, steps + 1):
        g = grad_at(emb, jnp.float32(i / steps))
        per_point.append(np.sum(np.asarray(emb) * np.asarray(g), axis=-1))
    expected = np.abs(np.mean(per_point, axis=0))
    got = score("integrated_gradient", model, batch, ImportanceOptions(ig_steps=steps))
    real = batch.tokens != 0
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-4, atol=1e-6)
    # textbook differs exactly by the alpha weights
    textbook = score("integrated_gradient", model, batch, ImportanceOptions(ig_steps=steps, ig_variant="textbook"))
    assert not np.allclose(textbook[real], got[real])


def test_ig_evaluates_exactly_n_points_whatever_the_chunk(tiny_single, single_batch):
    steps = 10
    terms_fn = jit_with_model(integrated_gradient_terms, tiny_single, static_argnums=(1,))
    terms = terms_fn(single_batch, ImportanceOptions(ig_steps=steps, ig_chunk_size=3))
    assert terms.shape == (steps,) + single_batch.tokens.shape
    # point i is the term at alpha = i / N, evaluated once each
    emb = tiny_single.embed(single_batch.tokens)
    grad_at = jit_with_model(
        lambda m, x: jax.grad(lambda e: gold_logit_of_embeddings(m, single_batch, e).sum())(x), tiny_single)
    for i in (1, 4, steps):
        g = grad_at(i / steps * emb)
        np.testing.assert_allclose(terms[i - 1], np.sum(np.asarray(emb * g), -1), rtol=1e-4, atol=1e-6)
    ref = score("integrated_gradient", tiny_single, single_batch, ImportanceOptions(ig_steps=steps))
    for chunk in (1, 3, 7):  # chunks that do not divide N: still every point exactly once
        opts = ImportanceOptions(ig_steps=steps, ig_chunk_size=chunk)
        np.testing.assert_allclose(score("integrated_gradient", tiny_single, single_batch, opts), ref, rtol=1e-5)


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_batched_equals_per_example_and_padding_never_changes_a_score(measure, model_and_batch):
    model, batch = model_and_batch
    table = np.linspace(0, 1, 30).astype(np.float32) if measure == "mutual_information" else None
    full = score(measure, model, batch, table=table)
    padded = batch._replace(tokens=np.pad(batch.tokens, ((0, 0), (0, 5))),
                            aux_tokens=None if batch.aux_tokens is None else np.pad(batch.aux_tokens, ((0, 0), (0, 2))))
    full_p = score(measure, model, padded, table=table)
    real = batch.tokens != 0
    np.testing.assert_allclose(full_p[:, : full.shape[1]][real], full[real], rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(full))
    for i in range(len(batch.labels)):
        one = batch._replace(tokens=batch.tokens[i : i + 1], labels=batch.labels[i : i + 1],
                             index=batch.index[i : i + 1], weight=batch.weight[i : i + 1],
                             aux_tokens=None if batch.aux_tokens is None else batch.aux_tokens[i : i + 1])
        s = score(measure, model, one, table=table)
        np.testing.assert_allclose(s[0][real[i]], full[i][real[i]], rtol=1e-5, atol=1e-6)


def test_random_is_uniform_and_keyed(tiny_single, single_batch):
    a = score("random", tiny_single, single_batch, key=0)
    assert np.all((a >= 0) & (a < 1))
    assert not np.allclose(a, score("random", tiny_single, single_batch, key=1))
    np.testing.assert_array_equal(a, score("random", tiny_single, single_batch, key=0))


def test_attention_measure_is_the_attention(tiny_single, single_batch):
    _, alpha = tiny_single(single_batch.tokens)
    np.testing.assert_allclose(score("attention", tiny_single, single_batch), alpha, rtol=1e-6)


def test_mutual_information_equals_direct_computation():
    # vocab: 0..4 specials, words 5, 6, 7; 3 classes
    docs = [[1, 5, 6, 2], [1, 5, 5, 2], [1, 6, 7, 2], [1, 7, 2], [1, 5, 7, 2]]
    labels = np.array([0, 0, 1, 2, 2])
    table = mutual_information_table(Ragged.from_list([np.array(d) for d in docs]), labels, 8, 3)
    n_docs = len(docs) + 3
    expected = np.zeros(8)
    for w in range(8):
        if w in (0, 1, 2):
            continue
        for c in range(3):
            # smoothed one-vs-rest 2x2 counts: one fake document per class containing every word
            n = np.zeros((2, 2))
            for d, y in list(zip(docs, labels)) + [(list(range(8)), cc) for cc in range(3)]:
                n[int(w in d), int(y == c)] += 1
            mi = 0.0
            for a in (0, 1):
                for b in (0, 1):
                    p = n[a, b] / n_docs
                    if p > 0:
                        mi += p * np.log2(p / (n[a].sum() / n_docs * n[:, b].sum() / n_docs))
            expected[w] += mi * (np.sum(labels == c) + 1) / n_docs
    np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-7)
    assert table[[0, 1, 2]].tolist() == [0, 0, 0]


def test_mutual_information_is_finite_where_the_original_gives_nan():
    # word 5 occurs in every document of class 0: a zero cell; the original yields NaN, ours 0 log 0 = 0
    docs = [[1, 5, 2], [1, 5, 2], [1, 6, 2]]
    table = mutual_information_table(Ragged.from_list([np.array(d) for d in docs]), np.array([0, 0, 1]), 7, 3)
    assert np.all(np.isfinite(table))


def test_measure_names_accept_the_originals_spellings():
    assert canonical_measure("integrated-gradient") == "integrated_gradient"
    assert canonical_measure("times-input-gradient") == "input_times_gradient"
    assert canonical_measure("mutual-information") == "mutual_information"
    with pytest.raises(ValueError, match="valid:.*attention"):
        canonical_measure("saliency")
    with pytest.raises(ValueError, match="ig_variant"):
        ImportanceOptions(ig_variant="trapezoid")


def test_no_retrace_on_the_hot_path(tiny_single, single_batch):
    graphdef, params = nnx.split(tiny_single)
    opts = ImportanceOptions(ig_steps=4)
    compute_importance("integrated_gradient", graphdef, params, single_batch, jax.random.key(0), opts, None)
    before = compute_importance._cache_size()
    other = single_batch._replace(labels=np.array([1, 1, 0], np.int32), tokens=single_batch.tokens[::-1].copy())
    compute_importance("integrated_gradient", graphdef, params, other, jax.random.key(1), opts, None)
    params2 = jax.tree.map(lambda x: x * 1.01, params)
    compute_importance("integrated_gradient", graphdef, params2, other, jax.random.key(1), opts, None)
    assert compute_importance._cache_size() == before
