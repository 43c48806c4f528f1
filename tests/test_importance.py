"""Importance measures: the math (finite differences, IG completeness, the original's IG form, MI),
the contracts (fast path == generic path, batched == per example, padding never changes a score,
jit == vmap == eager, targets), the registry, and no retracing on the pipeline's boundary."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlproar_jax import importance
from conftest import tiny_model
from nlproar_jax.data.dataset import Ragged
from nlproar_jax.importance import mutual_information_table
from nlproar_jax.names import ORIGINAL_MEASURES
from nlproar_jax.roar.scores import score_batch

TABLE = np.linspace(0, 1, 30).astype(np.float32)


# Small sample counts for the sampled measures: the contracts, not the estimates, are under test here.
FAST = {"integrated_gradient": {"steps": 20}, "smoothgrad": {"samples": 4}, "smoothgrad_times_input": {"samples": 4},
        "gradient_shap": {"samples": 4}, "lime": {"samples": 64}, "kernel_shap": {"samples": 64}}


def measure(name, model=None, **options):
    if name == "mutual_information":
        options.setdefault("table", TABLE)
    fn = importance.get(name, **{**FAST.get(name, {}), **options})
    if name in importance.LEARNED:  # gates of random weights (the contracts do not need trained ones)
        params = fn.init_params(model, jnp.full((1, 4), 5, jnp.int32), key=jax.random.key(1))
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(2), len(leaves))
        fn = dataclasses.replace(fn, params=jax.tree.unflatten(
            tree, [x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]))
    return fn


def score(name, model, batch, key=0, **options):
    """Scores through the pipeline's jitted boundary (gold labels, keys per example id)."""
    graphdef, params = nnx.split(model)
    return np.asarray(score_batch(measure(name, model, **options), graphdef, params, batch.tokens, batch.labels,
                                  batch.aux_tokens, jax.random.key(key), batch.index))


def gold_logit_of_embeddings(model, batch, emb):
    logits, _ = model.logits_from_embeddings(emb, batch.tokens, batch.aux_tokens)
    return jnp.take_along_axis(logits, jnp.asarray(batch.labels)[:, None], axis=1)[:, 0]


def embedding_grad(model, batch):
    """d f_gold / d e, straight through the full model: ``[B, T, D]``."""
    emb = model.embed(batch.tokens)
    grad = jax.jit(lambda m, e: jax.grad(lambda x: gold_logit_of_embeddings(m, batch, x).sum())(e))
    return emb, grad(model, emb)


@pytest.fixture(params=["single", "paired"])
def model_and_batch(request, tiny_single, tiny_paired, single_batch, paired_batch):
    return (tiny_single, single_batch) if request.param == "single" else (tiny_paired, paired_batch)


# -- the math ----------------------------------------------------------------------------------
def test_embedding_gradient_matches_finite_differences(model_and_batch):
    model, batch = model_and_batch
    emb, grad = embedding_grad(model, batch)
    emb64 = np.asarray(emb, np.float64)
    f = jax.jit(lambda m, e: gold_logit_of_embeddings(m, batch, e))
    rng = np.random.default_rng(0)
    for _ in range(4):
        b, t, d = rng.integers(3), rng.integers(1, 4), rng.integers(emb.shape[2])
        h = 1e-2
        plus, minus = emb64.copy(), emb64.copy()
        plus[b, t, d] += h
        minus[b, t, d] -= h
        fd = (f(model, jnp.asarray(plus, jnp.float32))[b] - f(model, jnp.asarray(minus, jnp.float32))[b]) / (2 * h)
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
    expected = np.sum(np.asarray(emb) * np.asarray(grad), axis=-1)
    got = score("input_times_gradient", model, batch)
    real = batch.tokens != 0
    np.testing.assert_allclose(got[real], np.abs(expected)[real], rtol=1e-4, atol=1e-6)
    signed = score("input_times_gradient", model, batch, signed=True)
    np.testing.assert_allclose(signed[real], expected[real], rtol=1e-4, atol=1e-6)
    # and e.g is the directional finite difference along e_t
    b, t, h = 0, 2, 1e-2
    e = np.asarray(emb, np.float64)
    plus, minus = e.copy(), e.copy()
    plus[b, t] *= 1 + h
    minus[b, t] *= 1 - h
    fd = (gold_logit_of_embeddings(model, batch, jnp.asarray(plus, jnp.float32))[b]
          - gold_logit_of_embeddings(model, batch, jnp.asarray(minus, jnp.float32))[b]) / (2 * h)
    assert float(fd) == pytest.approx(signed[b, t], rel=2e-2, abs=1e-4)


def test_textbook_ig_completeness_error_shrinks_with_steps(model_and_batch):
    """Captum's convergence delta: sum_t attribution_t - (f(e) - f(0)) -> 0 as steps grow, through the
    generic path (the definition; the fast path gives the same scores, see the test below)."""
    model, batch = model_and_batch
    errors = []
    for steps in (4, 32, 256):
        ig = importance.integrated_gradients(steps=steps, variant="textbook", signed=True, fast_path=False)
        scores, delta = jax.jit(lambda m, b, ig=ig: ig.with_delta(m, b.tokens, target=b.labels,
                                                                   aux_tokens=b.aux_tokens))(model, batch)
        np.testing.assert_allclose(np.asarray(scores).sum(1) - np.asarray(delta),
                                   gold_logit_of_embeddings(model, batch, model.embed(batch.tokens))
                                   - gold_logit_of_embeddings(model, batch, 0 * model.embed(batch.tokens)),
                                   rtol=1e-4, atol=1e-5)
        errors.append(float(np.max(np.abs(delta))))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] <= 2 * errors[0] * 4 / 256  # the right Riemann sum's error falls like 1 / steps
    with pytest.raises(ValueError, match="textbook"):
        importance.integrated_gradients().with_delta(model, batch.tokens, target=batch.labels,
                                                     aux_tokens=batch.aux_tokens)


def test_alpha_weighted_ig_is_the_originals_definition(model_and_batch):
    """The original: the LSTM sees alpha_i e, the gradient is w.r.t. the unscaled e (so it carries alpha_i);
    score = |mean_i e_t . d/de f(alpha_i e)|. Computed here directly through the embeddings."""
    model, batch = model_and_batch
    steps = 8
    emb = model.embed(batch.tokens)
    grad_at = jax.jit(lambda m, e, a: jax.grad(lambda x: gold_logit_of_embeddings(m, batch, a * x).sum())(e))
    per_point = []
    for i in range(1, steps + 1):
        g = grad_at(model, emb, jnp.float32(i / steps))
        per_point.append(np.sum(np.asarray(emb) * np.asarray(g), axis=-1))
    expected = np.abs(np.mean(per_point, axis=0))
    got = score("integrated_gradient", model, batch, steps=steps)
    real = batch.tokens != 0
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-4, atol=1e-6)
    # textbook differs exactly by the alpha weights
    textbook = score("integrated_gradient", model, batch, steps=steps, variant="textbook")
    assert not np.allclose(textbook[real], got[real])


def test_ig_evaluates_exactly_n_points_whatever_the_chunk(tiny_single, single_batch):
    steps = 10
    ig = importance.integrated_gradients(steps=steps, chunk_size=3)
    labels = jnp.asarray(single_batch.labels)
    terms = jax.jit(lambda m, t: ig.terms(m, t, labels))(tiny_single, jnp.asarray(single_batch.tokens))
    assert terms.shape == (steps,) + single_batch.tokens.shape
    # point i is the term at alpha = i / N, evaluated once each
    emb = tiny_single.embed(single_batch.tokens)
    grad_at = jax.jit(lambda m, x: jax.grad(lambda e: gold_logit_of_embeddings(m, single_batch, e).sum())(x))
    for i in (1, 4, steps):
        g = grad_at(tiny_single, i / steps * emb)
        np.testing.assert_allclose(terms[i - 1], np.sum(np.asarray(emb * g), -1), rtol=1e-4, atol=1e-6)
    ref = score("integrated_gradient", tiny_single, single_batch, steps=steps)
    for chunk in (1, 3, 7):  # chunks that do not divide N: still every point exactly once
        np.testing.assert_allclose(score("integrated_gradient", tiny_single, single_batch, steps=steps,
                                         chunk_size=chunk), ref, rtol=1e-5)


# -- the contracts -----------------------------------------------------------------------------
@pytest.mark.parametrize("lstm_impl", ["scan", "chunked"])
@pytest.mark.parametrize("paired", [False, True])
def test_fast_path_equals_the_generic_path(paired, lstm_impl, single_batch, paired_batch):
    """The BiLSTM's linear-input fast path (projected space, time-major) gives the definition's scores,
    with either BiLSTM kernel (the chunked kernel's hand-written VJP included). For integrated
    gradients the per-point terms agree, so every variant (a fixed weighting of them) does."""
    model, batch = tiny_model(paired, lstm_impl), (paired_batch if paired else single_batch)
    real = batch.tokens != 0
    for name, options in [("gradient", {}), ("input_times_gradient", {"signed": True})]:
        fast = score(name, model, batch, fast_path=True, **options)
        generic = score(name, model, batch, fast_path=False, **options)
        np.testing.assert_allclose(fast[real], generic[real], rtol=1e-5, atol=1e-6, err_msg=name)
    labels = jnp.asarray(batch.labels)
    terms = {fast: jax.jit(lambda m, t, a, ig=measure("integrated_gradient", steps=8, fast_path=fast):
                           ig.terms(m, t, labels, a))(model, jnp.asarray(batch.tokens), batch.aux_tokens)
             for fast in (True, False)}
    np.testing.assert_allclose(np.asarray(terms[True])[:, real], np.asarray(terms[False])[:, real],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ORIGINAL_MEASURES)  # the newer measures: tests/test_{smoothgrad,perturbation,diffmask}.py
def test_batched_equals_per_example_and_padding_never_changes_a_score(name, model_and_batch):
    model, batch = model_and_batch
    full = score(name, model, batch)
    padded = batch._replace(tokens=np.pad(batch.tokens, ((0, 0), (0, 5))),
                            aux_tokens=None if batch.aux_tokens is None else np.pad(batch.aux_tokens, ((0, 0), (0, 2))))
    full_p = score(name, model, padded)
    real = batch.tokens != 0
    np.testing.assert_allclose(full_p[:, : full.shape[1]][real], full[real], rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(full))
    for i in range(len(batch.labels)):
        one = batch._replace(tokens=batch.tokens[i : i + 1], labels=batch.labels[i : i + 1],
                             index=batch.index[i : i + 1], weight=batch.weight[i : i + 1],
                             aux_tokens=None if batch.aux_tokens is None else batch.aux_tokens[i : i + 1])
        s = score(name, model, one)
        np.testing.assert_allclose(s[0][real[i]], full[i][real[i]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ORIGINAL_MEASURES)
def test_eager_jit_and_vmap_give_the_same_scores(name, model_and_batch):
    """A measure is a pure function: under jax.jit (model as an argument) and vmapped over examples it
    gives the same scores; on the single-sequence model also called eagerly and under nnx.jit."""
    model, batch = model_and_batch
    fn = measure(name, model)
    tokens, labels, aux = jnp.asarray(batch.tokens), jnp.asarray(batch.labels), batch.aux_tokens
    keys = jax.random.split(jax.random.key(0), len(labels))

    def call(m, t, y, a, k):
        return fn(m, t, target=y, aux_tokens=a, key=k)

    jitted = np.asarray(jax.jit(call)(model, tokens, labels, aux, keys))

    def one(t, y, a, k):  # one example at a time, model closed over
        return call(model, t[None], y[None], None if a is None else a[None], k[None])[0]

    vmapped = jax.jit(jax.vmap(one, in_axes=(0, 0, None if aux is None else 0, 0)))(tokens, labels, aux, keys)
    np.testing.assert_allclose(vmapped, jitted, rtol=1e-5, atol=1e-6)
    if aux is None:
        np.testing.assert_allclose(call(model, tokens, labels, aux, keys), jitted, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(nnx.jit(call)(model, tokens, labels, aux, keys), jitted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ("gradient", "input_times_gradient", "integrated_gradient"))
def test_targets_gold_predicted_and_class_index(name, tiny_single, single_batch):
    model, batch = tiny_single, single_batch
    fn = measure(name, signed=True) if name != "gradient" else measure(name)
    explain = jax.jit(lambda m, t, y, a: fn(m, t, target=y, aux_tokens=a))
    logits, _ = model(batch.tokens, batch.aux_tokens)
    predicted = np.asarray(jnp.argmax(logits, axis=-1))
    by_predicted = jax.jit(lambda m, t, a: fn(m, t, target="predicted", aux_tokens=a))(model, batch.tokens,
                                                                                      batch.aux_tokens)
    np.testing.assert_allclose(by_predicted, explain(model, batch.tokens, predicted, batch.aux_tokens), rtol=1e-6)
    per_class = [np.asarray(explain(model, batch.tokens, np.full(3, c, np.int32), batch.aux_tokens)) for c in range(3)]
    np.testing.assert_allclose(per_class[2], explain(model, batch.tokens, 2, batch.aux_tokens),
                               rtol=1e-5, atol=1e-7)  # a single class index, for every row
    assert not np.allclose(per_class[0], per_class[1])
    gold = np.asarray(explain(model, batch.tokens, batch.labels, batch.aux_tokens))
    for i, y in enumerate(batch.labels):
        np.testing.assert_allclose(gold[i], per_class[y][i], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="target is required"):
        fn(model, batch.tokens, aux_tokens=batch.aux_tokens)
    with pytest.raises(ValueError, match="predicted"):
        fn(model, batch.tokens, target="gold", aux_tokens=batch.aux_tokens)


def test_random_is_uniform_and_keyed(tiny_single, single_batch):
    a = score("random", tiny_single, single_batch, key=0)
    assert np.all((a >= 0) & (a < 1))
    assert not np.allclose(a, score("random", tiny_single, single_batch, key=1))
    np.testing.assert_array_equal(a, score("random", tiny_single, single_batch, key=0))
    rand = importance.random_baseline()
    one_key = np.asarray(rand(None, single_batch.tokens, key=jax.random.key(3)))  # no model needed
    per_row = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(3))
    np.testing.assert_array_equal(one_key, rand(None, single_batch.tokens, key=per_row))
    with pytest.raises(ValueError, match="key"):
        rand(None, single_batch.tokens)


def test_model_free_measures_need_no_model(single_batch):
    mi = importance.get("mutual-information", table=TABLE)
    np.testing.assert_array_equal(mi(None, single_batch.tokens), TABLE[single_batch.tokens])
    with pytest.raises(ValueError, match="explains a model"):
        importance.gradient()(None, single_batch.tokens, target=0)


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


# -- the registry --------------------------------------------------------------------------------
def test_registry_accepts_the_originals_spellings_and_names_valid_options():
    assert isinstance(importance.get("integrated-gradient"), importance.IntegratedGradients)
    assert isinstance(importance.get("times-input-gradient"), importance.InputTimesGradient)
    ig = importance.get("integrated-gradient", steps=7, variant="textbook", signed=True)
    assert (ig.steps, ig.variant, ig.signed) == (7, "textbook", True)
    assert importance.integrated_gradients(steps=7, variant="textbook", signed=True) == ig
    with pytest.raises(ValueError, match="valid:.*attention"):
        importance.get("saliency")
    with pytest.raises(ValueError, match="unknown option.*'n_steps'.*valid:.*'steps'"):
        importance.get("integrated_gradient", n_steps=5)
    with pytest.raises(ValueError, match="for measure 'gradient'.*valid"):
        importance.get("gradient", steps=5)
    with pytest.raises(ValueError, match="table="):
        importance.get("mutual_information")
    with pytest.raises(ValueError, match="variant.*valid"):
        importance.integrated_gradients(variant="trapezoid")
    with pytest.raises(ValueError, match="steps >= 1"):
        importance.integrated_gradients(steps=0)


def test_attributions_run_at_highest_matmul_precision(tiny_single, single_batch):
    """Float32 matmuls stay float32 on GPUs/TPUs (no TF32): the lowered program says HIGHEST."""
    fn = importance.integrated_gradients(steps=2)
    text = jax.jit(lambda m, t, y: fn(m, t, target=y)).lower(tiny_single, single_batch.tokens,
                                                             single_batch.labels).as_text()
    assert "HIGHEST" in text and "DEFAULT" not in text
    loose = dataclasses.replace(fn, precision=None)
    with jax.default_matmul_precision("bfloat16"):
        text = jax.jit(lambda m, t, y: loose(m, t, target=y)).lower(tiny_single, single_batch.tokens,
                                                                    single_batch.labels).as_text()
    assert "HIGHEST" not in text


def test_no_retrace_on_the_pipeline_boundary(tiny_single, single_batch):
    graphdef, params = nnx.split(tiny_single)
    ig = importance.integrated_gradients(steps=4)
    b = single_batch
    score_batch(ig, graphdef, params, b.tokens, b.labels, None, jax.random.key(0), b.index)
    before = score_batch._cache_size()
    other = b._replace(labels=np.array([1, 1, 0], np.int32), tokens=b.tokens[::-1].copy())
    score_batch(ig, graphdef, params, other.tokens, other.labels, None, jax.random.key(1), other.index)
    params2 = jax.tree.map(lambda x: x * 1.01, params)
    score_batch(importance.integrated_gradients(steps=4), graphdef, params2, other.tokens, other.labels, None,
                jax.random.key(1), other.index)
    mi = importance.mutual_information(table=TABLE)
    score_batch(mi, None, None, b.tokens, b.labels, None, jax.random.key(0), b.index)
    after_mi = score_batch._cache_size()
    score_batch(importance.mutual_information(table=TABLE * 2), None, None, b.tokens, b.labels, None,
                jax.random.key(0), b.index)  # a new table is a new leaf value, not a new program
    assert before == after_mi - 1 and score_batch._cache_size() == after_mi
