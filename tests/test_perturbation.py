"""Perturbation measures (occlusion, LIME, KernelSHAP) and their masked forward pass: the math
(closed forms on a model linear in its token embeddings, exact Shapley values by brute force, lime's
weighted ridge fit recomputed in float64, the samplers' distributions), the contracts (fast path ==
generic path, batched == per example, padding never changes a score, jit == vmap == eager, every
sample evaluated exactly once whatever the chunk) and option validation."""

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch, tiny_model
from nlproar_jax.importance.linear_surrogates import (KernelShap, Lime, min_norm_solve, shapley_kernel,
                                                       shapley_size_cdf)
from nlproar_jax.importance.occlusion import Occlusion
from nlproar_jax.importance.perturbation import OUTPUTS, masked_outputs

MASK_ID = 3
ROWS = [[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]]  # [MASK] (3) in row 1; ids 0-2 never maskable
SMALL = {"occlusion": Occlusion(), "lime": Lime(samples=24), "kernel_shap": KernelShap(samples=24)}

# Rows the counting model has been asked for, one entry per call (see LinearBag._count).
CALLS: list = []


class LinearBag(nnx.Module):
    """``logits = (sum of the maskable tokens' embeddings) @ W + b``: linear in the embeddings, so a
    perturbation's target logit is linear in its keep-mask ``z``: ``f(z) = const + sum_t z_t a_t``
    with ``a_t = (e_{x_t} - e_[MASK]) . W[:, c]`` at maskable positions. It also offers the
    linear-input fast path (``P = e @ W``), and counts the rows every evaluation sees."""

    mask_token = MASK_ID

    def __init__(self, vocab_size=30, dim=4, num_classes=3, *, rngs: nnx.Rngs):
        self.table = nnx.Param(jax.random.normal(rngs.params(), (vocab_size, dim)))
        self.w = nnx.Param(jax.random.normal(rngs.params(), (dim, num_classes)))
        self.b = nnx.Param(jax.random.normal(rngs.params(), (num_classes,)))

    @staticmethod
    def _count(rows):
        jax.debug.callback(lambda n: CALLS.append(int(n)), np.int32(rows))

    def embed(self, tokens):
        return jnp.take(self.table[...], tokens, axis=0)

    def maskable(self, tokens):
        return tokens >= MASK_ID

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        self._count(tokens.shape[0])
        return jnp.where(self.maskable(tokens)[..., None], emb, 0.0).sum(1) @ self.w[...] + self.b[...], None

    def input_weights(self):
        return self.w[...]

    def aux_context(self, aux_tokens=None):
        return None

    def logits_from_projection(self, proj, tokens, context=None):
        self._count(tokens.shape[1])
        return jnp.where(self.maskable(tokens)[..., None], proj, 0.0).sum(0) + self.b[...], None

    def contributions(self, tokens, target):
        """``a_t`` (0 at non-maskable positions), numpy."""
        table, w = np.asarray(self.table[...]), np.asarray(self.w[...])
        a = (table[tokens] - table[MASK_ID]) @ w  # [B, T, C]
        a = np.take_along_axis(a, np.asarray(target)[:, None, None], axis=2)[..., 0]
        return np.where(np.asarray(tokens) >= MASK_ID, a, 0.0)


@pytest.fixture(scope="module")
def linear():
    return LinearBag(rngs=nnx.Rngs(params=0))


@pytest.fixture
def batch():
    return make_batch(ROWS, [0, 2, 1])


@pytest.fixture
def paired_batch():
    return make_batch(ROWS, [0, 2, 1], aux_rows=[[1, 12, 13, 2], [1, 14, 2], [1, 15, 16, 17, 2]])


@pytest.fixture(params=["single", "paired"])
def model_and_batch(request, tiny_single, tiny_paired, batch, paired_batch):
    return (tiny_single, batch) if request.param == "single" else (tiny_paired, paired_batch)


# One jitted entry point each, so equal options on equal shapes compile once for the whole module
# (a measure is a pytree whose options are static).
_explain = jax.jit(lambda fn, m, t, y, a, k: fn(m, t, target=y, aux_tokens=a, key=k))
_logits = jax.jit(lambda m, t, a: m(t, a)[0])


def call(fn, model, b, key=0):
    return np.asarray(_explain(fn, model, b.tokens, b.labels, b.aux_tokens, jax.random.key(key)))


def row_keys(b, key=0):
    """One key per example id, as the pipeline's ``score_batch`` derives them."""
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(key), i))(jnp.asarray(b.index))


def score(fn, model, b, key=0):
    """Gold labels, one key per example id (``score_batch``'s convention, through the cached jit)."""
    return np.asarray(_explain(fn, model, b.tokens, b.labels, b.aux_tokens, row_keys(b, key)))


def target_output(model, tokens, aux, target, output="logit"):
    """The definition, straight through the model's training path: ``<f64>[N]``."""
    logits = _logits(model, jnp.asarray(tokens), None if aux is None else jnp.asarray(aux))
    out = jax.nn.softmax(logits, -1) if output == "probability" else logits
    return np.take_along_axis(np.asarray(out, np.float64), np.asarray(target)[:, None], 1)[:, 0]


def coalitions(row, aux_row, features):
    """Every coalition of ``features`` (subsets, as bit patterns ``0 .. 2**d - 1``) as masked copies of ``row``."""
    d = len(features)
    tokens = np.repeat(np.asarray(row)[None], 2 ** d, axis=0)
    member = (np.arange(2 ** d)[:, None] >> np.arange(d)[None]) & 1  # [2**d, d]
    for j, t in enumerate(features):
        tokens[member[:, j] == 0, t] = MASK_ID
    aux = None if aux_row is None else np.repeat(np.asarray(aux_row)[None], 2 ** d, axis=0)
    return tokens, aux, member


def coalition_values(model, b, output="logit"):
    """Per row: its features (maskable positions), the membership ``<int>[2**d, d]`` of every
    coalition and the explained output on each, all rows' coalitions in one forward pass."""
    rows = []
    for i, row in enumerate(b.tokens):
        features = [t for t, token in enumerate(row) if token >= MASK_ID]
        rows.append((features,) + coalitions(row, None if b.aux_tokens is None else b.aux_tokens[i], features))
    tokens = np.concatenate([r[1] for r in rows])
    aux = None if b.aux_tokens is None else np.concatenate([r[2] for r in rows])
    target = np.concatenate([np.full(len(r[1]), y) for r, y in zip(rows, b.labels)])
    values = np.split(target_output(model, tokens, aux, target, output), np.cumsum([len(r[1]) for r in rows])[:-1])
    return [(features, member, v) for (features, _, _, member), v in zip(rows, values)]


# -- the math ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fast_path", [True, False])
def test_occlusion_on_a_linear_model_is_the_closed_form_contribution(linear, batch, fast_path):
    expected = linear.contributions(batch.tokens, batch.labels)
    signed = call(Occlusion(signed=True, fast_path=fast_path), linear, batch)
    np.testing.assert_allclose(signed, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(call(Occlusion(fast_path=fast_path), linear, batch), np.abs(expected),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output", ["logit", "probability"])
def test_occlusion_is_leave_one_out_through_the_training_path(model_and_batch, output):
    """On the BiLSTMs (nonlinear): f(x) - f(x with t alone masked), each computed directly."""
    model, b = model_and_batch
    got = call(Occlusion(output=output, signed=True), model, b)
    for i, row in enumerate(b.tokens):
        aux = None if b.aux_tokens is None else b.aux_tokens[i:i + 1]
        clean = target_output(model, row[None], aux, b.labels[i:i + 1], output)[0]
        for t, token in enumerate(row):
            if token < MASK_ID:
                assert got[i, t] == 0
                continue
            masked = row.copy()
            masked[t] = MASK_ID
            expected = clean - target_output(model, masked[None], aux, b.labels[i:i + 1], output)[0]
            assert got[i, t] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_lime_with_every_mask_and_no_kernel_recovers_a_linear_models_coefficients(linear, batch):
    lime = Lime(exhaustive=True, kernel="none", alpha=0.0, output="logit", signed=True)
    np.testing.assert_allclose(call(lime, linear, batch), linear.contributions(batch.tokens, batch.labels),
                               rtol=1e-4, atol=1e-4)


def test_lime_with_every_mask_is_limes_weighted_ridge_fit(tiny_single, batch):
    """lime's kernel on the cosine distance and Ridge(alpha=1) with intercept, recomputed in float64
    from the model's probabilities on every coalition of each row's features."""
    got = call(Lime(exhaustive=True, signed=True), tiny_single, batch)
    for i, (features, z, y) in enumerate(coalition_values(tiny_single, batch, "probability")):
        distance = 100 * (1 - np.sqrt(z.sum(1) / len(features)))
        w = np.sqrt(np.exp(-distance ** 2 / 25.0 ** 2))
        zc = z - w @ z / w.sum()
        yc = y - w @ y / w.sum()
        coef = np.linalg.solve(zc.T @ (w[:, None] * zc) + np.eye(len(features)), zc.T @ (w * yc))
        np.testing.assert_allclose(got[i, features], coef, rtol=1e-3, atol=1e-6)
        assert np.all(np.delete(got[i], features) == 0)


def shapley_values(values, d):
    """Exact Shapley values from the values of all ``2**d`` coalitions (index = bit pattern)."""
    phi = np.zeros(d)
    for i in range(d):
        for s in range(2 ** d):
            if s >> i & 1:
                continue
            size = bin(s).count("1")
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            phi[i] += weight * (values[s | 1 << i] - values[s])
    return phi


@pytest.mark.parametrize("output, paired", [("logit", False), ("probability", False), ("logit", True)])
def test_kernel_shap_with_every_coalition_is_the_exact_shapley_value(output, paired, tiny_single, tiny_paired, batch,
                                                                     paired_batch):
    model, b = (tiny_paired, paired_batch) if paired else (tiny_single, batch)
    got = call(KernelShap(exhaustive=True, output=output, signed=True), model, b)
    for i, (features, _, values) in enumerate(coalition_values(model, b, output)):  # n <= 4 here
        expected = shapley_values(values, len(features))
        np.testing.assert_allclose(got[i, features], expected, rtol=1e-4, atol=1e-6)
        assert got[i].sum() == pytest.approx(values[-1] - values[0], rel=1e-4, abs=1e-6)  # efficiency


def test_kernel_shap_on_six_features_and_a_linear_model(tiny_single, linear):
    """n = 6: exact Shapley values of the (nonlinear) BiLSTM by brute force; on the linear model
    they are its coefficients."""
    b = make_batch([[1, 5, 6, 7, 8, 9, 10, 2]], [1])
    got = call(KernelShap(exhaustive=True, signed=True), tiny_single, b)[0]
    tokens, _, _ = coalitions(b.tokens[0], None, list(range(1, 7)))
    values = target_output(tiny_single, tokens, None, np.ones(64, np.int32))
    np.testing.assert_allclose(got[1:7], shapley_values(values, 6), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(call(KernelShap(exhaustive=True, signed=True), linear, b),
                               linear.contributions(b.tokens, b.labels), rtol=1e-4, atol=1e-4)


def test_sampled_kernel_shap_is_efficient_and_approaches_the_shapley_values(tiny_single, batch):
    exact = call(KernelShap(exhaustive=True, signed=True), tiny_single, batch)
    sampled = call(KernelShap(samples=600, signed=True, chunk_size=0), tiny_single, batch)
    np.testing.assert_allclose(sampled.sum(1), exact.sum(1), rtol=1e-4, atol=1e-6)  # f(x) - f(empty), exactly
    assert np.max(np.abs(sampled - exact)) < 0.1 * np.max(np.abs(exact))
    few = call(KernelShap(samples=3, signed=True, chunk_size=0), tiny_single, batch)  # underdetermined: minimum norm, finite
    assert np.all(np.isfinite(few))
    np.testing.assert_allclose(few.sum(1), exact.sum(1), rtol=1e-4, atol=1e-6)


def test_min_norm_solve_is_least_squares_of_minimum_norm():
    """The closed-form solves' core, on normal equations ``X^T X phi = X^T y``: fewer samples than
    features (singular: numpy's lstsq picks the minimum-norm solution) and more (regular)."""
    rng = np.random.default_rng(0)
    for samples in (3, 20):
        x = rng.normal(size=(2, samples, 6)).astype(np.float32)
        y = rng.normal(size=(2, samples)).astype(np.float32)
        got = min_norm_solve(jnp.einsum("bsi,bsj->bij", x, x), jnp.einsum("bsi,bs->bi", x, y))
        expected = [np.linalg.lstsq(x[i].astype(np.float64), y[i].astype(np.float64), rcond=None)[0] for i in range(2)]
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.max(np.abs(expected)))


def test_lime_samples_as_the_lime_package():
    """Sample 0 is the input; then 1 .. d tokens removed (uniform count), distinct, maskable only;
    each maskable position equally likely to go."""
    maskable = jnp.asarray([[False, True, True, True, True, True, False, False]])
    keys = jax.random.split(jax.random.key(0), 1)
    keep = np.asarray(jax.jit(Lime.keep_masks)(keys, maskable, jnp.arange(6000)))[:, 0]  # [S, T]
    assert keep[0].all() and keep[:, [0, 6, 7]].all()
    removed = (~keep).sum(1)[1:]
    assert removed.min() == 1 and removed.max() == 5
    np.testing.assert_allclose(np.bincount(removed, minlength=6)[1:] / len(removed), 0.2, atol=0.02)
    np.testing.assert_allclose((~keep[1:, 1:6]).mean(0), 0.6, atol=0.02)  # E[removed] / d = 3 / 5


def test_kernel_shap_samples_sizes_with_the_shapley_kernel():
    d = 6
    sizes = np.arange(1, d)
    p = (d - 1) / (sizes * (d - sizes))
    np.testing.assert_allclose(shapley_size_cdf(sizes, d), np.cumsum(p) / p.sum(), rtol=1e-5)
    binom = np.array([math.comb(d, k) for k in sizes])
    np.testing.assert_allclose(shapley_kernel(sizes, d), p / binom, rtol=1e-5)
    assert float(shapley_kernel(0, d)) == 0 and float(shapley_kernel(d, d)) == 0
    maskable = jnp.asarray([[False] + [True] * d + [False]])
    keys = jax.random.split(jax.random.key(1), 1)
    keep = np.asarray(jax.jit(KernelShap.keep_masks)(keys, maskable, jnp.arange(8000)))[:, 0]
    assert keep[0].all() and not keep[1, 1:7].any() and keep[:, [0, 7]].all()
    kept = keep[2:, 1:7].sum(1)
    np.testing.assert_allclose(np.bincount(kept, minlength=d)[1:] / len(kept), p / p.sum(), atol=0.015)


# -- the contracts -----------------------------------------------------------------------------
@pytest.mark.parametrize("lstm_impl", ["scan", "chunked"])
@pytest.mark.parametrize("paired", [False, True])
def test_projection_select_fast_path_equals_the_generic_path(paired, lstm_impl, batch, paired_batch):
    """The masked forward pass on random keep-masks, both outputs: the fast path (select between the
    clean projection and the mask token's row) == the generic path == each perturbation's output
    through the training path. (Measure level: the occlusion tests compare both paths with the
    definition.)"""
    model, b = tiny_model(paired, lstm_impl), (paired_batch if paired else batch)
    keep = jax.random.bernoulli(jax.random.key(0), 0.5, (7,) + b.tokens.shape)
    labels = jnp.asarray(b.labels)

    def both(m, t, a, fast):
        return [masked_outputs(m, t, labels, keep, a, output=o, fast_path=fast) for o in OUTPUTS]

    fast = jax.jit(both, static_argnums=3)(model, b.tokens, b.aux_tokens, True)
    generic = jax.jit(both, static_argnums=3)(model, b.tokens, b.aux_tokens, False)
    masked = np.where(np.asarray(keep) | (b.tokens < MASK_ID)[None], b.tokens[None], MASK_ID).reshape(-1, b.tokens.shape[1])
    aux = None if b.aux_tokens is None else np.tile(b.aux_tokens, (7, 1))
    for output, f, g in zip(OUTPUTS, fast, generic):
        np.testing.assert_allclose(f, g, rtol=1e-5, atol=1e-6)
        if lstm_impl == "scan":  # the perturbed rows, in order, each through the model alone
            np.testing.assert_allclose(np.asarray(f).reshape(-1),
                                       target_output(model, masked, aux, np.tile(b.labels, 7), output),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("paired", [False, True])
def test_occlusion_reusing_the_clean_states_equals_every_copy_run_whole(paired, batch, paired_batch):
    """The chunked kernel's leave-one-out recurrence (each removal's chains start from the clean
    run's states; removals g and T-1-g paired) == the select path on the T + 1 copies == the
    definition through the training path: odd and even lengths (the middle pair of an odd T
    removes one position twice), chunks that do not divide the pairs, logit and probability."""
    model, b = tiny_model(paired, "chunked"), (paired_batch if paired else batch)
    for pad in (0, 1):  # T = 6 and 7
        bb = b._replace(tokens=np.pad(b.tokens, ((0, 0), (0, pad))))
        for output in OUTPUTS:
            whole = call(Occlusion(output=output, signed=True, reuse_states=False), model, bb)
            for chunk in (None, 0, 2):
                got = call(Occlusion(output=output, signed=True, chunk_size=chunk), model, bb)
                np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-6)
        got = call(Occlusion(signed=True), model, bb)
        for i, row in enumerate(bb.tokens):  # the definition, row by row (logit)
            aux = None if bb.aux_tokens is None else bb.aux_tokens[i:i + 1]
            clean = target_output(model, row[None], aux, bb.labels[i:i + 1])[0]
            for t in np.flatnonzero(row >= MASK_ID):
                masked = row.copy()
                masked[t] = MASK_ID
                expected = clean - target_output(model, masked[None], aux, bb.labels[i:i + 1])[0]
                assert got[i, t] == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name, model_name", [("occlusion", "single"), ("occlusion", "paired"), ("lime", "linear"),
                                              ("kernel_shap", "linear")])
def test_batched_equals_per_example_and_padding_never_changes_a_score(name, model_name, batch, paired_batch,
                                                                     tiny_single, tiny_paired, linear):
    """On the BiLSTMs (single and paired: aux tiled per sample) and, for the samplers and fits,
    on the linear model (cheaper to compile; its fast path is time-major too)."""
    model, b = {"single": (tiny_single, batch), "paired": (tiny_paired, paired_batch), "linear": (linear, batch)}[model_name]
    fn = SMALL[name]
    full = score(fn, model, b)
    assert np.all(np.isfinite(full)) and np.all(full[b.tokens < MASK_ID] == 0)
    padded = b._replace(tokens=np.pad(b.tokens, ((0, 0), (0, 5))),
                        aux_tokens=None if b.aux_tokens is None else np.pad(b.aux_tokens, ((0, 0), (0, 2))))
    for i in range(len(b.labels)):  # each row alone, with 5 more [PAD] (and 2 on its auxiliary sequence)
        one = padded._replace(tokens=padded.tokens[i:i + 1], labels=b.labels[i:i + 1], index=b.index[i:i + 1],
                              weight=b.weight[i:i + 1],
                              aux_tokens=None if b.aux_tokens is None else padded.aux_tokens[i:i + 1])
        alone = score(fn, model, one)[0]
        np.testing.assert_allclose(alone[:full.shape[1]], full[i], rtol=1e-4, atol=1e-6)
        assert np.all(alone[full.shape[1]:] == 0)
    if name == "lime":  # (KernelSHAP is exact on a linear model whatever its samples)
        assert not np.allclose(score(fn, model, b, key=1), full)  # random: the key matters


@pytest.mark.parametrize("name", sorted(SMALL))
def test_jit_and_vmap_give_the_same_scores(name, tiny_single, linear, batch):
    """vmapped over examples (a batch of one inside, the model closed over) == the jitted batch
    (occlusion on the BiLSTM; the samplers and fits on the linear model, cheaper to compile)."""
    fn, model = SMALL[name], tiny_single if name == "occlusion" else linear
    keys = row_keys(batch)
    vmapped = jax.jit(jax.vmap(lambda t, y, k: fn(model, t[None], target=y[None], key=k[None])[0]))(
        batch.tokens, batch.labels, keys)
    np.testing.assert_allclose(vmapped, score(fn, model, batch), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fn, samples", [(Occlusion(), None), (Lime(samples=11), 11), (KernelShap(samples=11), 11),
                                         (Lime(samples=11, fast_path=False), 11)])
def test_every_sample_is_evaluated_exactly_once_whatever_the_chunk(linear, batch, fn, samples):
    """What is counted: the rows every model evaluation receives (LinearBag's callback, in whichever
    path the measure takes), summed over the whole measure: ``samples * B`` (occlusion: ``(T + 1) * B``,
    the clean input and one removal per position). Chunks of 4 do not divide 11 or 7: a scan over
    full chunks, then the rest. The scores do not depend on the chunk."""
    batch_size, length = batch.tokens.shape
    samples = samples or length + 1
    reference = None
    for chunk in (0, 4):
        CALLS.clear()
        got = call(dataclasses.replace(fn, chunk_size=chunk), linear, batch)
        jax.effects_barrier()
        assert sum(CALLS) == samples * batch_size and len(CALLS) == (1 if chunk == 0 else -(-samples // chunk)), CALLS
        reference = got if reference is None else reference
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-6)


def test_masked_outputs_never_removes_what_is_not_maskable(linear, batch):
    labels = jnp.asarray(batch.labels)
    nothing_kept = jnp.zeros((1,) + batch.tokens.shape, bool)
    out = masked_outputs(linear, batch.tokens, labels, nothing_kept)
    expected = target_output_linear(linear, np.where(batch.tokens >= MASK_ID, MASK_ID, batch.tokens), batch.labels)
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)


def target_output_linear(model, tokens, target):
    logits, _ = model.logits_from_embeddings(model.embed(jnp.asarray(tokens)), jnp.asarray(tokens))
    return np.take_along_axis(np.asarray(logits), np.asarray(target)[:, None], 1)[:, 0]


def test_random_measures_need_a_key_unless_exhaustive(linear, batch):
    def no_key(fn, tokens, labels):
        return _explain(fn, linear, tokens, labels, None, None)

    with pytest.raises(ValueError, match="key"):
        no_key(Lime(samples=4), batch.tokens, batch.labels)
    assert np.all(np.isfinite(no_key(KernelShap(exhaustive=True), batch.tokens, batch.labels)))
    assert np.all(np.isfinite(no_key(Occlusion(), batch.tokens, batch.labels)))
    with pytest.raises(ValueError, match="at most 16"):
        no_key(KernelShap(exhaustive=True), np.full((1, 17), 5), np.zeros(1, np.int32))


@pytest.mark.parametrize("cls, options, match", [
    (Occlusion, {"output": "loss"}, "unknown output 'loss'; valid: \\['logit', 'probability'\\]"),
    (Occlusion, {"chunk_size": -1}, "chunk_size"),
    (Lime, {"samples": 1}, "samples >= 2"),
    (Lime, {"kernel": "cosine"}, "unknown lime kernel 'cosine'; valid"),
    (Lime, {"kernel_width": 0.0}, "kernel_width > 0"),
    (Lime, {"alpha": -1.0}, "alpha >= 0"),
    (KernelShap, {"samples": 2}, "samples >= 3"),
    (KernelShap, {"output": "prob"}, "valid"),
])
def test_options_are_validated(cls, options, match):
    with pytest.raises(ValueError, match=match):
        cls(**options)


def test_coalition_helper_enumerates_every_subset():
    tokens, _, member = coalitions([1, 5, 6, 2], None, [1, 2])
    assert sorted(map(tuple, member)) == sorted(itertools.product([0, 1], repeat=2))
    assert tokens[0].tolist() == [1, MASK_ID, MASK_ID, 2] and tokens[-1].tolist() == [1, 5, 6, 2]
