"""The soft-attention head (Bujel et al. 2021; ``config.model = "transformer-soft-attention"``), its
auxiliary losses in the training loss, and the ``soft_attention`` measure: its equations, rows
independent of batch mates and padding, and, trained on the synthetic task, token scores that find
the generator's signal words."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax import importance
from nlproar_jax.models.soft_attention import SoftAttentionTransformer


def tiny(num_classes=2, seed=0, **kw):
    sizes = dict(dim=16, heads=2, layers=2, ff=32, max_len=64, evidence=8, hidden=12)
    return SoftAttentionTransformer(30, num_classes, **{**sizes, **kw}, rngs=nnx.Rngs(params=seed))


@pytest.fixture
def batch():  # the last row has nothing to score ([CLS] [EOS])
    return make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2], [1, 2]], [0, 1, 1, 0])


def test_the_head_computes_the_stated_equations(batch):
    model = tiny(gamma=0.3, max_target="label")
    tokens, labels = jnp.asarray(batch.tokens), jnp.asarray(batch.labels)
    states = np.asarray(model.encode(model.embed(tokens), tokens).hidden_states[-1], np.float64)
    p = lambda layer: (np.asarray(layer.kernel[...], np.float64), np.asarray(layer.bias[...], np.float64))  # noqa: E731
    (we, be), (ws, bs), (wh, bh), (wo, bo) = (p(model.head.evidence), p(model.head.score), p(model.head.hidden),
                                              p(model.head.out))
    maskable = batch.tokens >= 3
    a = np.where(maskable, 1 / (1 + np.exp(-(np.tanh(states @ we + be) @ ws + bs)[..., 0])), 0.0)
    alpha = a / np.maximum(a.sum(1, keepdims=True), 1e-300)
    logits = np.tanh(np.einsum("bt,btd->bd", alpha, states) @ wh + bh) @ wo + bo
    got_logits, got_alpha = model(tokens)
    np.testing.assert_allclose(got_logits, logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_alpha, alpha, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.token_scores(tokens), a, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.token_scores(tokens))[~maskable], 0.0)
    low = np.array([a[i][maskable[i]].min() if maskable[i].any() else 0 for i in range(4)])
    high = np.array([a[i][maskable[i]].max() if maskable[i].any() else 0 for i in range(4)])
    aux = np.where(maskable.any(1), 0.3 * (low ** 2 + (high - batch.labels) ** 2), 0.0)
    np.testing.assert_allclose(model.auxiliary_loss(tokens, None, labels), aux, rtol=1e-4, atol=1e-7)
    assert aux[3] == 0 and np.all(np.isfinite(np.asarray(got_logits)))
    one = tiny(gamma=0.3, max_target="one")  # the same parameters (same seed): the max is pulled to 1
    np.testing.assert_allclose(one.auxiliary_loss(tokens, None, labels),
                               np.where(maskable.any(1), 0.3 * (low ** 2 + (high - 1) ** 2), 0.0), rtol=1e-4, atol=1e-7)


def test_the_training_loss_adds_the_auxiliary_losses(batch):
    import optax

    from nlproar_jax.training.loop import loss_fn

    model = tiny(gamma=0.5)
    graphdef, params = nnx.split(model)
    tokens, labels = jnp.asarray(batch.tokens), jnp.asarray(batch.labels)
    ce = optax.softmax_cross_entropy_with_integer_labels(model(tokens)[0], labels)
    want = np.mean(np.asarray(ce) + np.asarray(model.auxiliary_loss(tokens, None, labels)))
    np.testing.assert_allclose(loss_fn(params, graphdef, batch), want, rtol=1e-5)
    weighted = batch._replace(weight=np.array([1, 1, 0, 1], np.float32))  # filler rows count for nothing
    np.testing.assert_allclose(loss_fn(params, graphdef, weighted),
                               np.mean((np.asarray(ce) + np.asarray(model.auxiliary_loss(tokens, None, labels)))[[0, 1, 3]]),
                               rtol=1e-5)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="binary task.*max_target=one"):
        tiny(num_classes=3, max_target="label")
    with pytest.raises(ValueError, match="max_target"):
        tiny(max_target="sometimes")
    tiny(num_classes=3, max_target="one")


def test_the_measure_reads_the_token_scores_row_by_row(batch):
    """Batched == per-example and padding never changes a score (single and paired inputs); a model
    without token scores is a clear error."""
    from nlproar_jax.models import build_model

    fn = importance.get("soft-attention")
    assert fn == importance.soft_attention() and importance.options_of("soft_attention") == ("precision",)
    model = tiny()
    score = jax.jit(lambda m, t, a: fn(m, t, target=None, aux_tokens=a))
    for aux in (None, np.array([[1, 12, 2, 0], [1, 13, 14, 2], [1, 2, 0, 0], [1, 15, 2, 0]], np.int32)):
        full = np.asarray(score(model, jnp.asarray(batch.tokens), aux))
        np.testing.assert_allclose(full, model.token_scores(jnp.asarray(batch.tokens), aux), rtol=1e-6)
        real = batch.tokens != 0
        padded = score(model, jnp.asarray(np.pad(batch.tokens, ((0, 0), (0, 3)))),
                       None if aux is None else np.pad(aux, ((0, 0), (0, 2))))
        np.testing.assert_allclose(np.asarray(padded)[:, :full.shape[1]][real], full[real], rtol=1e-5, atol=1e-7)
        alone = np.concatenate([score(model, jnp.asarray(batch.tokens[i:i + 1]), None if aux is None else aux[i:i + 1])
                                for i in range(4)])
        np.testing.assert_allclose(alone[real], full[real], rtol=1e-5, atol=1e-7)
    rnn = build_model(paired=False, vocab_size=30, num_classes=2, embedding_dim=4, hidden_size=3, seed=0)
    with pytest.raises(ValueError, match="no token_scores"):
        fn(rnn, jnp.asarray(batch.tokens))


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of ranking ``scores`` (descending) against boolean ``truth`` (ties in order)."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def test_trained_token_scores_find_the_signal_words():
    """On the synthetic task (1-3 signal words among 8-30 tokens), the trained head's token scores rank
    the generator's signal words first: token-level average precision over every test token the model
    scores, pooled over documents, is above 0.9; random scores get the signal words' share (~0.1)."""
    from ml_collections import ConfigDict

    from nlproar_jax.data.dataset import encode_task
    from nlproar_jax.data.synthetic import generate_split, load as load_synthetic
    from nlproar_jax.models import build_from_config
    from nlproar_jax.roar.scores import importance_over_split
    from nlproar_jax.training.loop import evaluate, fit

    data = encode_task(load_synthetic(seed=0, train_size=600, val_size=100, test_size=200))
    config = ConfigDict(dict(model="transformer-soft-attention",
                             transformer=dict(dim=32, heads=2, layers=2, ff=64, dropout=0.1, max_len=64),
                             soft_attention=dict(evidence=100, hidden=300, dropout=0.1, gamma=0.1, max_target="label")))
    model = build_from_config(config, data, seed=0)
    assert isinstance(model, SoftAttentionTransformer) and model.config.hidden_size == 32
    graphdef, params = nnx.split(model)
    (result,) = fit(graphdef, [params], [data.splits["train"]], [data.splits["val"]], [0], epochs=3, batch_size=32,
                    monitor="auroc", no_decay=(), learning_rate=3e-3)
    test = data.splits["test"]
    assert evaluate(graphdef, result.best_params, test, 32)["macro_f1"] > 0.95
    scores = importance_over_split(nnx.merge(graphdef, result.best_params), test, importance.soft_attention(),
                                   key=jax.random.key(0), batch_size=50)
    _, labels, positions = generate_split(0 * 1000 + 2, 200)  # the test split's generator (load's seed * 1000 + 2)
    np.testing.assert_array_equal(test.labels, labels)
    truth = np.zeros(len(test.main.values), bool)
    for i, where in enumerate(positions):
        truth[test.main.offsets[i] + 1 + np.asarray(where)] = True  # + 1: [CLS] comes first
    scored = test.main.values >= 3  # the maskable tokens: words, [UNK], [MASK]
    assert truth[scored].sum() == truth.sum()
    ap = average_precision(scores[scored], truth[scored])
    chance = average_precision(np.random.default_rng(0).random(scored.sum()), truth[scored])
    print(f"soft-attention token AP {ap:.3f}, random {chance:.3f}, signal share {truth[scored].mean():.3f}")
    assert ap > 0.9 and chance < 0.2


def test_a_classic_roar_run_by_its_own_token_scores(tmp_path):
    """``--config.model=transformer-soft-attention --config.importance_measure=soft_attention``: the
    base model and a classic ROAR run of the pipeline, masking by the model's own token scores."""
    from nlproar_jax.roar.run import run_experiment
    from test_pipeline import load_config

    c = load_config()
    c.model = "transformer-soft-attention"
    c.transformer.dim, c.transformer.ff, c.transformer.layers = 16, 32, 1
    c.soft_attention.evidence, c.soft_attention.hidden = 8, 12
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 120, 40, 40
    c.max_epochs, c.persistent_dir = 1, str(tmp_path)
    base = run_experiment(c)
    assert base["experiment_id"] == "synthetic_transformer-soft-attention_s-0"
    c.k, c.importance_measure = 10, "soft-attention"
    run = run_experiment(c)
    assert run["reference_id"] == base["experiment_id"]
    assert run["experiment_id"] == "synthetic_transformer-soft-attention_s-0_y-soft_attention_rs-quantile_k-10_r-0"
