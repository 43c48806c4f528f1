"""The small transformer trained from scratch (``config.model = "transformer"``): the classifier
protocol, rows independent of their batch mates and of padding (logits, attention and the gradient
measures, all through the generic path), textbook IG completeness, learning the synthetic task and a
classic ROAR run of the pipeline."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax import importance
from nlproar_jax.models import build_model
from nlproar_jax.models.protocol import Classifier, check_classifier, forward, has_fast_path
from nlproar_jax.models.transformer import SmallTransformer


def tiny(num_classes=3, seed=0, **kw):
    sizes = dict(dim=16, heads=2, layers=2, ff=32, max_len=64)
    return SmallTransformer(30, num_classes, **{**sizes, **kw}, rngs=nnx.Rngs(params=seed))


@pytest.fixture
def batch():
    return make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]], [0, 2, 1])


@pytest.fixture
def paired():
    return make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]], [0, 2, 1],
                      aux_rows=[[1, 12, 13, 2], [1, 14, 2], [1, 15, 16, 17, 2]])


def test_protocol_vocabulary_rules_and_sizes(batch):
    model = tiny()
    check_classifier(model)
    assert isinstance(model, Classifier) and not has_fast_path(model)
    assert model.mask_token == 3 and model.no_weight_decay == ()
    rnn = build_model(paired=False, vocab_size=30, num_classes=3, embedding_dim=4, hidden_size=3, seed=0)
    tokens = jnp.asarray(batch.tokens)
    np.testing.assert_array_equal(model.maskable(tokens), rnn.maskable(tokens))  # ids >= [MASK]
    assert model.embedding_table().shape == (30, 16)
    np.testing.assert_array_equal(model.embed(tokens), model.embedding_table()[tokens])
    (logits, attention), (generic, _) = jax.jit(
        lambda m, t: (forward(m, t), m.logits_from_embeddings(m.embed(t), t)))(model, tokens)
    assert logits.shape == (3, 3) and attention.shape == tokens.shape
    np.testing.assert_allclose(attention.sum(1), 1.0, rtol=1e-5)  # [CLS]'s row over the whole (single) sequence
    np.testing.assert_array_equal(np.asarray(attention)[batch.tokens == 0], 0.0)
    np.testing.assert_allclose(logits, generic, rtol=1e-6)
    # nlp-lime-ig's sizes by default
    full = nnx.eval_shape(lambda: SmallTransformer(30, 2, rngs=nnx.Rngs(params=0)))
    assert (full.config.hidden_size, full.config.num_attention_heads, len(full.layers),
            full.config.intermediate_size, full.config.hidden_act) == (128, 2, 2, 512, "relu")
    assert model.hidden_states(tokens).shape == (3, 3, 6, 16)  # embeddings + 2 layers, [B, T, H]
    with pytest.raises(ValueError, match="transformer.max_len"):
        model(jnp.ones((1, 65), jnp.int32))


def test_dropout_only_with_a_key(batch):
    model = tiny(dropout=0.5)
    tokens = jnp.asarray(batch.tokens)
    np.testing.assert_array_equal(model(tokens)[0], model(tokens)[0])
    dropped = model(tokens, dropout_key=jax.random.key(0))[0]
    assert not np.allclose(dropped, model(tokens)[0])


# (input_times_gradient is e . g of the same gradient: left out to keep the compiled programs small.)
MEASURES = {"attention": {}, "gradient": {}, "integrated_gradient": {"steps": 8}, "occlusion": {}}


@jax.jit
def _outputs(model, tokens, labels, aux):
    """Logits and every measure's scores (one compiled program per shape)."""
    out = {name: importance.get(name, **options)(model, tokens, target=labels, aux_tokens=aux)
           for name, options in MEASURES.items()}
    return {"logits": forward(model, tokens, aux)[0], **out}


def test_rows_independent_of_batch_mates_and_padding(batch, paired):
    """Logits, attention, gradient, integrated gradients and occlusion, all through the generic path (the
    model has no fast path): a row alone with more padding (after the main sequence and, for pairs,
    between the two parts), or among other batch mates, gives the same numbers as in its batch."""
    model = tiny()
    for b in (batch, paired):
        tokens, labels = jnp.asarray(b.tokens), jnp.asarray(b.labels)
        aux = None if b.aux_tokens is None else jnp.asarray(b.aux_tokens)
        full = _outputs(model, tokens, labels, aux)
        real = b.tokens != 0
        order = np.roll(np.arange(len(labels)), 1)  # other batch mates, same shapes: no new program
        rolled = _outputs(model, tokens[order], labels[order], None if aux is None else aux[order])
        alone = [_outputs(model, jnp.pad(tokens[i:i + 1], ((0, 0), (0, 4))), labels[i:i + 1],
                          None if aux is None else jnp.pad(aux[i:i + 1], ((0, 0), (0, 3)))) for i in range(len(labels))]
        for name in ["logits", *MEASURES]:
            want = np.asarray(full[name])
            assert np.all(np.isfinite(want)), name
            got = np.concatenate([np.asarray(o[name])[:, :want.shape[1]] for o in alone])
            mine = real if name != "logits" else np.ones(want.shape, bool)
            np.testing.assert_allclose(got[mine], want[mine], rtol=1e-4, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(np.asarray(rolled[name])[np.argsort(order)][mine], want[mine], rtol=1e-4,
                                       atol=1e-6, err_msg=name)


def test_textbook_ig_completeness(paired):
    """Scores sum to f(x) - f(baseline) up to the right Riemann sum's error, which falls like 1 / steps."""
    model = tiny(seed=3)
    errors = []
    for steps in (4, 32, 256):
        _, delta = importance.integrated_gradients(steps=steps, variant="textbook").with_delta(
            model, jnp.asarray(paired.tokens), target="predicted", aux_tokens=jnp.asarray(paired.aux_tokens))
        errors.append(float(np.max(np.abs(delta))))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] <= 2 * errors[0] * 4 / 256


def test_it_learns_the_synthetic_task_and_runs_classic_roar_in_the_pipeline(tmp_path):
    """``--config.model=transformer``: the base model learns the synthetic task (a short fit, a
    smaller model than the default) and a classic ROAR run follows."""
    from nlproar_jax.roar.run import run_experiment
    from test_pipeline import load_config

    c = load_config()
    c.model = "transformer"
    c.transformer.dim, c.transformer.ff, c.transformer.layers = 32, 64, 1
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 320, 64, 128
    c.max_epochs, c.learning_rate, c.persistent_dir = 3, 3e-3, str(tmp_path)
    base = run_experiment(c)
    assert base["experiment_id"] == "synthetic_transformer_s-0"
    assert base["test"]["macro_f1"] > 0.9
    c.k, c.importance_measure = 10, "gradient"
    run = run_experiment(c)
    assert run["reference_id"] == base["experiment_id"] and run["experiment_id"].startswith("synthetic_transformer_s-0_y-")
