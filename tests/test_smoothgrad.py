"""SmoothGrad, SmoothGrad x input and gradient SHAP: the noise (sigma x range, maskable positions
only), sigma = 0 is the gradient measures, each sample is the definition, gradient SHAP with the zero
baseline is unbiased for textbook IG, fast path == generic path, batched == per example == vmapped
and padding never changes a score, and exactly ``samples`` model evaluations whatever the chunk.

Every program here is compiled at XLA:CPU optimisation level 0 (``FAST_COMPILE``): the same numbers
(to float32 rounding), ~4x faster compiles of these tiny models; programs are shared between tests
through the module-level jitted ``run`` (same measure options, model structure and shapes)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import tiny_model
from nlproar_jax.importance.base import target_logit_sum
from nlproar_jax.importance.gradient_shap import GradientShap
from nlproar_jax.importance.gradients import Gradient, InputTimesGradient
from nlproar_jax.importance.smoothgrad import SmoothGrad, SmoothGradTimesInput, embedding_range, gaussian_noise

FAST_COMPILE = {"xla_backend_optimization_level": 0}
jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)

SG = SmoothGrad(samples=3, sigma=0.5)
SGXI = SmoothGradTimesInput(samples=3, sigma=0.5, signed=True)
SHAP = GradientShap(samples=3, baseline="random_tokens", stdevs=0.1, signed=True)
SHAP_MASK = GradientShap(samples=3, baseline="mask", stdevs=0.1, signed=True)


@functools.partial(jax.jit, static_argnames=("fn", "method"), compiler_options=FAST_COMPILE)
def run(fn, method, model, tokens, labels, aux, keys):
    """``fn``'s scores ``[B, T]`` or per-sample terms ``[S, B, T]`` (gold labels, one key per row)."""
    if method == "scores":
        return fn(model, tokens, target=labels, aux_tokens=aux, key=keys)
    return fn.terms(model, tokens, labels, aux, keys)


def keys_of(batch, seed=0):
    """One key per row from the example ids, as the pipeline's ``score_batch``."""
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.asarray(batch.index))


def call(fn, model, batch, method="scores", **kw):
    return np.asarray(run(fn, method, model, jnp.asarray(batch.tokens), jnp.asarray(batch.labels),
                          batch.aux_tokens, keys_of(batch, **kw)))


@jit
def grad_at(model, x, tokens, aux, labels):
    """``d f_gold / d e`` at ``x <f32>[B, T, D]``, straight through ``logits_from_embeddings``."""
    return jax.grad(lambda e: target_logit_sum(model.logits_from_embeddings(e, tokens, aux)[0], labels))(x)


@functools.partial(jax.jit, static_argnames=("sigma",), compiler_options=FAST_COMPILE)
def noisy_embeddings(model, tokens, keys, s, sigma):
    """SmoothGrad's input in sample ``s`` (it depends on sigma only, not on samples or chunks)."""
    return SmoothGrad(sigma=sigma).noisy_embeddings(model, tokens, keys, s)


@functools.partial(jax.jit, static_argnames=("baseline", "stdevs"), compiler_options=FAST_COMPILE)
def shap_inputs(model, tokens, keys, s, baseline, stdevs):
    """Gradient SHAP's ``(alpha, x, b)`` in sample ``s``."""
    return GradientShap(baseline=baseline, stdevs=stdevs).sample_inputs(model, tokens, keys, s)


def smoothgrad_term(model, x, tokens, labels):
    """||E g(x)|| per position, ``g`` straight through the model."""
    g = np.asarray(grad_at(model, x, tokens, None, labels), np.float64)
    return np.linalg.norm(g @ np.asarray(model.embedding_table(), np.float64).T, axis=-1)


def shap_term(model, alpha, x, b, tokens, labels):
    """(x - b) . grad f(b + alpha (x - b)) per position."""
    g = np.asarray(grad_at(model, b + alpha[:, None, None] * (x - b), tokens, None, labels))
    return ((x - b) * g).sum(-1)


@pytest.fixture(params=["single", "paired"])
def model_and_batch(request, tiny_single, tiny_paired, single_batch, paired_batch):
    return (tiny_single, single_batch) if request.param == "single" else (tiny_paired, paired_batch)


# -- options ---------------------------------------------------------------------------------
def test_defaults_and_option_errors(tiny_single, single_batch):
    assert (SmoothGrad().samples, SmoothGrad().sigma, SmoothGrad().chunk_size) == (50, 0.15, 0)
    assert (GradientShap().samples, GradientShap().stdevs, GradientShap().baseline) == (5, 0.0, "random_tokens")
    assert hash(SG) == hash(SmoothGrad(samples=3, sigma=0.5))  # static: one program per option set
    for bad, match in [(dict(samples=0), "samples >= 1.*got 0"), (dict(samples=2.5), "samples >= 1.*2.5"),
                       (dict(sigma=-0.1), "sigma >= 0.*-0.1"), (dict(sigma=float("nan")), "sigma >= 0.*nan"),
                       (dict(chunk_size=-1), "chunk_size.*>= 0.*-1")]:
        for cls in (SmoothGrad, SmoothGradTimesInput):
            with pytest.raises(ValueError, match=match):
                cls(**bad)
    with pytest.raises(ValueError, match="baseline 'uniform'; valid: \\['zero', 'mask', 'random_tokens'\\]"):
        GradientShap(baseline="uniform")
    with pytest.raises(ValueError, match="stdevs >= 0.*inf"):
        GradientShap(stdevs=float("inf"))
    with pytest.raises(ValueError, match="key=jax.random.key"):
        SG(tiny_single, single_batch.tokens, target=single_batch.labels)


# -- the noise -------------------------------------------------------------------------------
@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def noise_layouts(keys, allowed, stdev):
    """Sample 7's noise of the batch, of the batch padded by 5, of row 1 alone, and time-major."""
    return (gaussian_noise(keys, 7, allowed, stdev, 6),
            gaussian_noise(keys, 7, jnp.pad(allowed, ((0, 0), (0, 5))), stdev, 6)[:, :6],
            gaussian_noise(keys[1:2], 7, allowed[1:2], stdev[1:2], 6)[0],
            jnp.swapaxes(gaussian_noise(keys, 7, allowed.T, stdev, 6, time_major=True), 0, 1))


def test_noise_is_sigma_times_the_range_at_maskable_positions_only(tiny_single, single_batch):
    model, tokens = tiny_single, jnp.asarray(single_batch.tokens)
    emb, allowed = model.embed(tokens), model.maskable(tokens)
    e, a = np.asarray(emb), np.asarray(allowed)
    want = np.array([np.ptp(e[b][a[b]]) for b in range(len(e))])
    np.testing.assert_allclose(embedding_range(emb, allowed), want, rtol=1e-6)
    np.testing.assert_array_equal(embedding_range(emb, jnp.zeros_like(allowed)), 0.0)  # nothing maskable
    keys, stdev, n = keys_of(single_batch), 0.5 * jnp.asarray(want), 4000
    noise = np.asarray(jit(jax.vmap(lambda s: gaussian_noise(keys, s, allowed, stdev, 6)))(jnp.arange(n)))
    assert np.all(noise[:, ~a] == 0)
    for b in range(len(e)):
        z = noise[:, b][:, a[b]]  # [n, positions, D]
        assert z.std() == pytest.approx(float(stdev[b]), rel=0.02)
        assert abs(z.mean()) < 4 * float(stdev[b]) / np.sqrt(z.size)
        assert abs(np.corrcoef(z[:, 0, 0], z[:, 1, 0])[0, 1]) < 0.1  # positions independent
    assert abs(np.corrcoef(noise[:, 0, 1, 0], noise[:, 1, 1, 0])[0, 1]) < 0.1  # rows independent
    # the same values whatever the padding, the batch mates or the layout
    padded, row, time_major = noise_layouts(keys, allowed, stdev)[1:]
    for variant in (padded, time_major):
        np.testing.assert_array_equal(variant, noise[7])
    np.testing.assert_array_equal(row, noise[7, 1])
    # and it is SmoothGrad's noise: e + eps, stdev sigma x range
    np.testing.assert_allclose(noisy_embeddings(model, tokens, keys, 7, 0.5) - emb, noise[7], atol=1e-6)


# -- the math ----------------------------------------------------------------------------------
@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def sigma_zero_and_gradient_measures(model, tokens, labels, keys):
    return [fn(model, tokens, target=labels, key=keys) for fn in
            (SmoothGrad(samples=2, sigma=0.0), Gradient(), SmoothGradTimesInput(samples=2, sigma=0.0), InputTimesGradient())]


def test_sigma_zero_gives_the_gradient_measures(tiny_single, single_batch):
    """With sigma = 0 the noise is exactly 0: the mean of identical gradient scores."""
    sg, grad, sgxi, ixg = sigma_zero_and_gradient_measures(tiny_single, jnp.asarray(single_batch.tokens),
                                                           jnp.asarray(single_batch.labels), keys_of(single_batch))
    np.testing.assert_allclose(sg, grad, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sgxi, ixg, rtol=1e-6, atol=1e-8)


def test_smoothgrad_samples_are_the_definition(tiny_single, single_batch):
    """Sample s of SmoothGrad is ||E g(e + eps_s)||, of SmoothGrad x input (e + eps_s) . g(e + eps_s),
    with g straight through the model (fast path here; == generic below)."""
    model, batch = tiny_single, single_batch
    tokens, keys, labels = jnp.asarray(batch.tokens), keys_of(batch), jnp.asarray(batch.labels)
    terms = call(SG, model, batch, "terms"), call(SGXI, model, batch, "terms")
    real = batch.tokens != 0
    for s in range(SG.samples):
        x = noisy_embeddings(model, tokens, keys, s, SG.sigma)
        assert not np.allclose(x, model.embed(tokens))
        np.testing.assert_allclose(terms[0][s][real], smoothgrad_term(model, x, tokens, labels)[real],
                                   rtol=1e-4, atol=1e-6)
        g = np.asarray(grad_at(model, x, tokens, None, labels))
        np.testing.assert_allclose(terms[1][s][real], (np.asarray(x) * g).sum(-1)[real], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fn", [SHAP, SHAP_MASK], ids=["random_tokens", "mask"])
def test_gradient_shap_samples_are_the_definition(fn, tiny_single, single_batch):
    """Sample s is (x_s - b_s) . grad f(b_s + alpha_s (x_s - b_s)) with x_s = e + noise (maskable positions)
    and b_s random vocabulary rows / the [MASK] embedding at maskable positions, e elsewhere."""
    model, batch = tiny_single, single_batch
    tokens, keys, labels = jnp.asarray(batch.tokens), keys_of(batch), jnp.asarray(batch.labels)
    terms = call(fn, model, batch, "terms")  # the fast path
    emb, allowed = np.asarray(model.embed(tokens)), np.asarray(model.maskable(tokens))
    table = np.asarray(model.embedding_table())
    real = batch.tokens != 0
    for s in range(fn.samples):
        alpha, x, b = (np.asarray(v) for v in shap_inputs(model, tokens, keys, s, fn.baseline, fn.stdevs))
        assert np.all((alpha >= 0) & (alpha < 1))
        np.testing.assert_array_equal(x[~allowed], emb[~allowed])
        assert np.all(x[allowed] != emb[allowed])
        np.testing.assert_array_equal(b[~allowed], emb[~allowed])
        if fn.baseline == "mask":
            np.testing.assert_array_equal(b[allowed], np.broadcast_to(table[model.mask_token], b[allowed].shape))
        else:
            assert all(np.any(np.all(table == row, axis=1)) for row in b[allowed])
        np.testing.assert_allclose(terms[s][real], shap_term(model, alpha, x, b, tokens, labels)[real],
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(terms[s][~allowed], 0.0)  # x - b = 0 off the maskable positions


def test_gradient_shap_with_the_zero_baseline_is_unbiased_for_textbook_ig(tiny_single, single_batch):
    """alpha ~ U[0, 1): E[e . grad f(alpha e)] = int_0^1 h(a) da with h(a) = e . grad f(a e): textbook IG.
    Checked (1) per sample against the definition, (2) alpha's law, (3) the mean of 2000 samples against
    the integral by Gauss-Legendre quadrature (24 nodes; h is smooth, and the 16-node answer bounds
    its error), within 4 Monte-Carlo standard errors."""
    model, batch = tiny_single, single_batch
    tokens, keys, labels = jnp.asarray(batch.tokens), keys_of(batch), jnp.asarray(batch.labels)
    n = 2000
    fn = GradientShap(samples=n, baseline="zero", signed=True)
    terms = call(fn, model, batch, "terms").astype(np.float64)  # [n, B, T]
    alphas = np.asarray(jit(jax.vmap(lambda s: fn.alphas(keys, s)))(jnp.arange(n)))  # [n, B]
    emb = np.asarray(model.embed(tokens))
    zero = np.zeros_like(emb)

    def h(a):
        return shap_term(model, np.full(len(emb), a, np.float32), emb, zero, tokens, labels).astype(np.float64)

    for s in (0, 1, n - 1):
        np.testing.assert_allclose(terms[s], shap_term(model, alphas[s], emb, zero, tokens, labels),
                                   rtol=1e-4, atol=1e-6)
    assert np.all((alphas >= 0) & (alphas < 1))
    assert abs(alphas.mean() - 0.5) < 4 * np.sqrt(1 / 12 / alphas.size)
    assert abs(alphas.var() - 1 / 12) < 0.01

    def integral(nodes):
        x, w = np.polynomial.legendre.leggauss(nodes)
        return sum(wi / 2 * h((xi + 1) / 2) for xi, wi in zip(x, w))

    ig, ig_coarse = integral(24), integral(16)
    se = terms.std(0) / np.sqrt(n)
    real = batch.tokens != 0
    err = np.abs(terms.mean(0) - ig)
    assert np.all(err[real] <= 4 * se[real] + np.abs(ig - ig_coarse)[real] + 1e-6), (err, se)
    assert np.all(4 * se[real] < 0.25 * np.abs(ig[real]).max())  # the check has teeth


# -- the contracts -----------------------------------------------------------------------------
@pytest.mark.parametrize("lstm_impl", ["scan", "chunked"])
@pytest.mark.parametrize("paired", [False, True])
def test_fast_path_equals_the_generic_path(paired, lstm_impl, single_batch, paired_batch):
    """Per sample, so with the same noise, alphas and baselines in both paths: gradient SHAP with random
    baselines and input noise (every random draw and projection of the fast path) on both BiLSTM
    families and kernels; SmoothGrad's ||E g|| on the same noise, mapped back by W^T, on the
    single-sequence scan model. SmoothGrad x input and the [MASK] / zero baselines: fast path == the
    definition, above."""
    model, batch = tiny_model(paired, lstm_impl), (paired_batch if paired else single_batch)
    real = batch.tokens != 0
    for fn in (SHAP, SG) if (lstm_impl, paired) == ("scan", False) else (SHAP,):
        fast = call(fn, model, batch, "terms")  # shared with the tests above and below
        generic = call(dataclasses.replace(fn, fast_path=False), model, batch, "terms")
        np.testing.assert_allclose(fast[:, real], generic[:, real], rtol=1e-5, atol=1e-6, err_msg=fn.name)


@pytest.mark.parametrize("case", ["single-smoothgrad", "paired-gradient_shap"])
def test_batched_equals_per_example_vmapped_and_padding_never_changes_a_score(case, tiny_single, tiny_paired,
                                                                               single_batch, paired_batch):
    """Each row alone, padded with 5 more positions (and its aux sequence with 2), under jax.vmap,
    gives the batch's per-sample terms: random draws follow the row's key and the position only."""
    paired, fn = case.startswith("paired"), SHAP if case.endswith("shap") else SG
    model, batch = (tiny_paired, paired_batch) if paired else (tiny_single, single_batch)
    full = call(fn, model, batch, "terms")
    assert np.all(np.isfinite(full))
    tokens = jnp.pad(jnp.asarray(batch.tokens), ((0, 0), (0, 5)))
    aux = None if batch.aux_tokens is None else jnp.pad(jnp.asarray(batch.aux_tokens), ((0, 0), (0, 2)))

    def one(t, y, a, k):
        return fn.terms(model, t[None], y[None], None if a is None else a[None], k[None])[:, 0]

    per_row = jit(jax.vmap(one, in_axes=(0, 0, None if aux is None else 0, 0), out_axes=1))(
        tokens, jnp.asarray(batch.labels), aux, keys_of(batch))
    real = batch.tokens != 0
    np.testing.assert_allclose(np.asarray(per_row)[:, :, : real.shape[1]][:, real], full[:, real],
                               rtol=1e-5, atol=1e-6)


# -- model evaluations -------------------------------------------------------------------------
SEEN = []  # what each model evaluation saw: the (noisy / interpolated) embeddings or projection


def _record(x):
    SEEN.append(np.asarray(x))


class Counting(nnx.Module):
    """The tiny BiLSTM, generic path only; each call of logits_from_embeddings records its input (a
    debug callback: once per evaluated sample, also inside the vmapped chunks)."""

    def __init__(self, inner):
        self.inner = inner
        self.mask_token = inner.mask_token

    def embed(self, tokens):
        return self.inner.embed(tokens)

    def embedding_table(self):
        return self.inner.embedding_table()

    def maskable(self, tokens):
        return self.inner.maskable(tokens)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        jax.debug.callback(_record, emb)
        return self.inner.logits_from_embeddings(emb, tokens, aux_tokens)


class CountingFast(Counting):
    """... with the fast path: each call of logits_from_projection records its input."""

    def input_weights(self):
        return self.inner.input_weights()

    def aux_context(self, aux_tokens):
        return self.inner.aux_context(aux_tokens)

    def logits_from_projection(self, proj, tokens, context=None):
        jax.debug.callback(_record, proj)
        return self.inner.logits_from_projection(proj, tokens, context)


def test_model_evaluations_equal_the_sample_count_whatever_the_chunk(tiny_single, single_batch):
    """7 samples in chunks of 3 (3 + 3 + a remainder of 1): the model is evaluated exactly 7 times, on
    the whole batch each time, on each sample's input exactly once (SmoothGrad, generic path: e + eps_s;
    gradient SHAP, fast path: (b_s + alpha_s (x_s - b_s)) W), and each sample's term is its definition."""
    tokens, keys, labels = jnp.asarray(single_batch.tokens), keys_of(single_batch), jnp.asarray(single_batch.labels)
    w = np.asarray(tiny_single.input_weights())
    real = single_batch.tokens != 0
    for fn, model in ((dataclasses.replace(SG, samples=7, chunk_size=3), Counting(tiny_single)),
                      (dataclasses.replace(SHAP, samples=7, chunk_size=3), CountingFast(tiny_single))):
        SEEN.clear()
        terms = np.asarray(run(fn, "terms", model, tokens, labels, None, keys))
        jax.effects_barrier()
        assert len(SEEN) == 7, fn.name
        for s in range(7):
            if isinstance(fn, SmoothGrad):
                x = noisy_embeddings(tiny_single, tokens, keys, s, fn.sigma)
                want, seen = smoothgrad_term(tiny_single, x, tokens, labels), np.asarray(x)
            else:
                alpha, x, b = (np.asarray(v) for v in shap_inputs(tiny_single, tokens, keys, s, fn.baseline,
                                                                     fn.stdevs))
                want = shap_term(tiny_single, alpha, x, b, tokens, labels)
                seen = np.swapaxes((b + alpha[:, None, None] * (x - b)) @ w, 0, 1)
            assert all(got.shape == seen.shape for got in SEEN)  # the whole batch each time
            assert sum(np.allclose(got, seen, rtol=1e-5, atol=1e-6) for got in SEEN) == 1, (fn.name, s)
            np.testing.assert_allclose(terms[s][real], want[real], rtol=1e-4, atol=1e-6)
