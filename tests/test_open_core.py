"""The open core: classifiers that are not ours (written here, meeting nlproar_jax.models.protocol)
go through every measure, ROAR masking, training and a classic ROAR run of the pipeline.

Two models: a bag of embeddings with a linear head (no attention; closed-form attributions) and a
1-D convolution with attention pooling (returns attention; no linear-input fast path).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax import importance
from nlproar_jax.data.dataset import encode_task
from nlproar_jax.data.synthetic import load as load_synthetic
from nlproar_jax.models import register_model
from nlproar_jax.models.protocol import Classifier, check_classifier
from nlproar_jax.roar.masking import roar_mask

MASK_ID = 3  # this test vocabulary's mask id; maskable = id >= 3 (as the task data's vocabulary)


class _LookupEmbedding(nnx.Module):
    """What both test models share: a lookup table, the task vocabulary's maskable ids and mask id."""

    mask_token = MASK_ID

    def __init__(self, vocab_size: int, dim: int, *, rngs: nnx.Rngs):
        self.table = nnx.Param(jax.random.normal(rngs.params(), (vocab_size, dim)))

    def embed(self, tokens):
        return jnp.take(self.table[...], tokens, axis=0)

    def embedding_table(self):
        return self.table[...]

    def maskable(self, tokens):
        return tokens >= MASK_ID


class BagOfEmbeddings(_LookupEmbedding):
    """``logits = W . mean of the maskable tokens' embeddings + b``: linear in the embeddings."""

    def __init__(self, vocab_size: int, dim: int, num_classes: int, *, rngs: nnx.Rngs):
        super().__init__(vocab_size, dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        keep = self.maskable(tokens)[..., None].astype(emb.dtype)
        mean = (emb * keep).sum(1) / jnp.maximum(keep.sum(1), 1.0)
        return self.head(mean), None


class ConvAttention(_LookupEmbedding):
    """Embeddings (zero at padding) -> 1-D convolution (width 3) -> tanh -> attention pooling over the
    maskable positions -> linear."""

    def __init__(self, vocab_size: int, dim: int, num_classes: int, *, rngs: nnx.Rngs):
        super().__init__(vocab_size, dim, rngs=rngs)
        self.conv = nnx.Conv(dim, dim, kernel_size=(3,), padding="SAME", rngs=rngs)
        self.score = nnx.Linear(dim, 1, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        h = jnp.tanh(self.conv(emb * (tokens != 0)[..., None]))
        allowed = self.maskable(tokens)
        alpha = jax.nn.softmax(jnp.where(allowed, self.score(h)[..., 0], -1e30), axis=-1) * allowed
        return self.head(jnp.einsum("bt,btd->bd", alpha, h)), alpha


def tiny(cls, seed=0):
    return cls(30, 6, 3, rngs=nnx.Rngs(params=seed))


@pytest.fixture
def batch():
    return make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]], [0, 2, 1])


# Small sample counts: the contracts, not the estimates, are under test here.
FAST = {"integrated_gradient": {"steps": 8}, "smoothgrad": {"samples": 4}, "smoothgrad_times_input": {"samples": 4},
        "gradient_shap": {"samples": 4}, "lime": {"samples": 64}, "kernel_shap": {"samples": 64}}


def get(name, model=None, **options):
    if name == "mutual_information":
        options["table"] = np.linspace(0, 1, 30).astype(np.float32)
    fn = importance.get(name, **{**FAST.get(name, {}), **options})
    if name in importance.LEARNED:  # gates of random weights (the contract does not need trained ones)
        params = fn.init_params(model, jnp.ones((1, 4), jnp.int32), key=jax.random.key(1))
        leaves, tree = jax.tree.flatten(params)
        noise = jax.random.split(jax.random.key(2), len(leaves))
        fn = dataclasses.replace(fn, params=jax.tree.unflatten(tree, [x + jax.random.normal(k, x.shape) for x, k in zip(leaves, noise)]))
    return fn


def call(fn, model, batch):
    """Scores with one key per example id (as the pipeline derives them), so a row's random draws
    never depend on its position in the batch."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.asarray(batch.index))
    return np.asarray(jax.jit(lambda m, t, y, k: fn(m, t, target=y, key=k))(model, batch.tokens, batch.labels, keys))


def test_the_models_meet_the_protocol():
    for cls in (BagOfEmbeddings, ConvAttention):
        model = tiny(cls)
        check_classifier(model)
        assert isinstance(model, Classifier)
    with pytest.raises(TypeError, match="lacks.*maskable"):
        check_classifier(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("cls", [BagOfEmbeddings, ConvAttention])
@pytest.mark.parametrize("name", importance.MEASURES)
def test_every_measure_runs_batched_per_example_and_padding_invariant(cls, name, batch):
    model = tiny(cls)
    fn = get(name, model)
    if name in importance.MODEL_SPECIFIC:  # read off models that have them: a clear error on these
        with pytest.raises(ValueError, match=f"no {importance.MODEL_SPECIFIC[name]}"):
            call(fn, model, batch)
        return
    if name == "attention" and cls is BagOfEmbeddings:
        with pytest.raises(ValueError, match="returns no attention"):
            call(fn, model, batch)
        return
    full = call(fn, model, batch)
    assert full.shape == batch.tokens.shape and np.all(np.isfinite(full))
    real = batch.tokens != 0
    padded = batch._replace(tokens=np.pad(batch.tokens, ((0, 0), (0, 4))))
    np.testing.assert_allclose(call(fn, model, padded)[:, :full.shape[1]][real], full[real], rtol=1e-5, atol=1e-6)
    for i in range(len(batch.labels)):
        one = batch._replace(tokens=batch.tokens[i:i + 1], labels=batch.labels[i:i + 1], index=batch.index[i:i + 1])
        np.testing.assert_allclose(call(fn, model, one)[0][real[i]], full[i][real[i]], rtol=1e-5, atol=1e-6)


def test_closed_form_attributions_on_the_linear_model(batch):
    """For logits = W mean(e) + b: d f_c / d e_t = W[:, c] / n at the n maskable positions, 0 elsewhere;
    IG of a linear function is exact at any number of steps."""
    model = tiny(BagOfEmbeddings)
    emb = np.asarray(model.embed(batch.tokens), np.float64)
    table = np.asarray(model.table[...], np.float64)
    w = np.asarray(model.head.kernel[...], np.float64)[:, batch.labels].T  # [B, D]: W[:, c] per row
    maskable = np.asarray(model.maskable(batch.tokens))
    n = maskable.sum(1, keepdims=True)
    grad = np.where(maskable[..., None], w[:, None, :] / n[..., None], 0.0)  # [B, T, D]
    e_dot_g = (emb * grad).sum(-1)
    steps = 8
    expected = {
        "gradient": np.linalg.norm(np.einsum("vd,btd->btv", table, grad), axis=-1),
        "input_times_gradient": np.abs(e_dot_g),
        "integrated_gradient": np.abs(e_dot_g) * (steps + 1) / (2 * steps),  # mean of alpha_i = (N+1)/2N
    }
    for name, want in expected.items():
        got = call(get(name, **({"steps": steps} if name == "integrated_gradient" else {})), model, batch)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    ig = importance.integrated_gradients(steps=3, variant="textbook", signed=True)
    scores, delta = ig.with_delta(model, batch.tokens, target=batch.labels)
    np.testing.assert_allclose(scores, e_dot_g, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)  # completeness holds exactly for a linear model


def test_textbook_ig_completeness_on_the_convolution(batch):
    model = tiny(ConvAttention)
    errors = []
    for steps in (4, 32, 256):
        _, delta = importance.integrated_gradients(steps=steps, variant="textbook").with_delta(
            model, batch.tokens, target="predicted")
        errors.append(float(np.max(np.abs(delta))))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] <= 2 * errors[0] * 4 / 256  # the right Riemann sum's error falls like 1 / steps
    _, alpha = model.logits_from_embeddings(model.embed(batch.tokens), batch.tokens)
    np.testing.assert_allclose(call(importance.attention(), model, batch), alpha, rtol=1e-6)


@pytest.mark.parametrize("cls", [BagOfEmbeddings, ConvAttention])
def test_a_roar_masking_step_masks_exact_counts_of_maskable_tokens(cls, batch):
    model = tiny(cls)
    tokens = jnp.asarray(batch.tokens)
    scores = importance.integrated_gradients(steps=4)(model, tokens, target=batch.labels)
    maskable = model.maskable(tokens)
    masked = np.asarray(roar_mask(tokens, scores, 2, "count", maskable=maskable, mask_token=model.mask_token))
    newly = (masked == MASK_ID) & (np.asarray(tokens) != MASK_ID)
    already = (np.asarray(tokens) == MASK_ID).sum(1)
    np.testing.assert_array_equal(newly.sum(1) + already, np.minimum(2, np.asarray(maskable).sum(1)))
    assert not np.any(newly & ~np.asarray(maskable))
    top = np.argsort(-np.where(np.asarray(maskable), np.asarray(scores), -np.inf), axis=1, kind="stable")
    for i, row in enumerate(top):  # the masked positions are the top-scored ones ([MASK] first)
        ranked = sorted(row[:np.asarray(maskable)[i].sum()], key=lambda t: np.asarray(tokens)[i, t] != MASK_ID)
        assert set(np.flatnonzero(masked[i] == MASK_ID)) == set(ranked[:2])


def test_short_training_learns(tmp_path):
    from nlproar_jax.training.loop import evaluate, fit

    data = encode_task(load_synthetic(train_size=300, val_size=80, test_size=80))
    model = BagOfEmbeddings(len(data.vocab), 16, data.num_classes, rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model)
    (result,) = fit(graphdef, [params], [data.splits["train"]], [data.splits["val"]], [0], epochs=4,
                    batch_size=16, monitor="auroc", no_decay=(), learning_rate=3e-2)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.1
    assert evaluate(graphdef, result.best_params, data.splits["test"], 16)["auroc"] > 0.75


def conv_attention_from_config(config, data, seed):
    return ConvAttention(len(data.vocab), int(config.embedding_dim), data.num_classes, rngs=nnx.Rngs(params=seed))


def test_a_classic_roar_run_through_the_pipeline(tmp_path):
    """The pipeline's own run (base model -> importance over every split -> masking -> retraining ->
    results -> report) with a model registered by name, as a user would plug theirs in."""
    from nlproar_jax.analysis.tables import export
    from nlproar_jax.names import Experiment, Paths
    from nlproar_jax.roar.references import experiment_measure, load_trained
    from nlproar_jax.roar.run import load_base_data, run_experiment
    from nlproar_jax.roar.scores import importance_over_split
    from test_pipeline import load_config

    register_model("conv-attention", conv_attention_from_config)
    c = load_config()
    c.model = "conv-attention"
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 200, 60, 60
    c.embedding_dim, c.max_epochs, c.learning_rate, c.ig_steps = 16, 3, 1e-2, 8
    c.persistent_dir = str(tmp_path)
    base = run_experiment(c)
    assert base["experiment_id"] == "synthetic_conv-attention_s-0"
    results = {}
    for measure in ("integrated_gradient", "random"):
        c.k, c.importance_measure = 30, measure
        results[measure] = run_experiment(c)
        assert results[measure]["reference_id"] == base["experiment_id"]
    # The cached importance is the measure applied to the trained base model, explaining gold labels.
    c.importance_measure = "integrated_gradient"
    exp = Experiment.from_config(c)
    paths = Paths(c.persistent_dir)
    task = load_base_data(c)
    trained = load_trained(paths, exp.reference(), c, task)
    assert isinstance(trained, ConvAttention)
    with np.load(paths.importance(exp.reference(), exp.measure_tag)) as cached:
        assert set(cached.files) == {"train", "val", "test"}
        again = importance_over_split(trained, task.splits["test"], experiment_measure(exp, c, task),
                                      key=jax.random.key(0), batch_size=7)
        np.testing.assert_allclose(cached["test"], again, rtol=1e-5, atol=1e-7)
    written = export(c.persistent_dir, report=True)
    with open(written["report"]) as f:
        assert "synthetic_conv-attention_s-0" in f.read()
