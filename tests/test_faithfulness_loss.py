"""Faithfulness-regularised training (UNIREX's comprehensiveness and sufficiency losses on the model's own
rationale): the losses are a direct computation's, differentiable, move the parameters, and off means the
old training step exactly; the config's errors name the bad value."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax import importance
from nlproar_jax.data.batching import Batch
from nlproar_jax.models.protocol import forward
from nlproar_jax.names import Experiment, faithfulness_loss_settings
from nlproar_jax.training.faithfulness_loss import FaithfulnessLoss, penalty, per_row, rationale
from nlproar_jax.training.loop import TrainState, loss_fn, stack, stack_batches, stacked_train_step, train_step
from test_pipeline import load_config

# rows with 6, 8, 5 and 1 eligible tokens (a [MASK], id 3, in the second: never a rationale token)
ROWS = [[1, 5, 6, 7, 8, 9, 10, 2], [1, 11, 3, 12, 13, 14, 15, 16, 17, 18, 2], [1, 19, 20, 21, 22, 23, 2],
        [1, 24, 2]]
LABELS = [0, 2, 1, 2]
LR = 0.1
TX = optax.sgd(LR)  # one optimiser object: the jitted steps compile once for the tests that share it
LOSS = FaithfulnessLoss(importance.get("input_times_gradient"), k=50, comprehensiveness_weight=0.7,
                        sufficiency_weight=0.3, comprehensiveness_margin=2.0, sufficiency_margin=0.3)


@pytest.fixture(scope="module")
def setup(tiny_single):
    model = tiny_single
    graphdef, params = nnx.split(model)
    batch = make_batch(ROWS, LABELS)
    batch = batch._replace(weight=np.array([1, 1, 0, 1], np.float32))  # the third row a filler
    return model, graphdef, params, batch


def old_loss_fn(params, graphdef, batch, dropout_key=None):
    """loss_fn as it was before the faithfulness losses existed (verbatim)."""
    model = nnx.merge(graphdef, params)
    if hasattr(model, "logits_and_auxiliary_loss"):
        logits, extra = model.logits_and_auxiliary_loss(batch.tokens, batch.aux_tokens, batch.labels)
    elif dropout_key is not None:
        (logits, _), extra = model(batch.tokens, batch.aux_tokens, dropout_key=dropout_key), 0.0
    else:
        (logits, _), extra = forward(model, batch.tokens, batch.aux_tokens), 0.0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels) + extra
    return jnp.sum(ce * batch.weight) / jnp.maximum(jnp.sum(batch.weight), 1.0)


def direct(model, batch: Batch, loss: FaithfulnessLoss) -> tuple[np.ndarray, np.ndarray, float]:
    """``(comprehensiveness, sufficiency, penalty)`` row by row in numpy, from the module docstring."""
    scores = np.asarray(jax.jit(lambda t, y: loss.measure(model, t, target=y))(batch.tokens, batch.labels))
    comp, suff = np.zeros(len(ROWS)), np.zeros(len(ROWS))
    one_row = jax.jit(lambda t: forward(model, t)[0][0])  # each (padded) row alone: padding changes nothing

    def ce(tokens, y):
        logits = np.asarray(one_row(jnp.asarray(tokens[None])), np.float64)
        return np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[y]

    for b, (row, y) in enumerate(zip(batch.tokens, batch.labels)):
        eligible = [t for t in range(len(row)) if row[t] > 3]  # words; not [PAD]/[CLS]/[EOS]/[MASK]
        count = loss.k * len(eligible) // 100
        ranked = sorted(eligible, key=lambda t: (-scores[b, t], t))  # ties to the lower position
        top = set(ranked[:count])
        if not top:
            continue
        removed = np.array([3 if t in top else tok for t, tok in enumerate(row)])
        kept = np.array([3 if tok >= 3 and t not in top else tok for t, tok in enumerate(row)])
        full = ce(row, y)
        comp[b] = max(0.0, loss.comprehensiveness_margin - (ce(removed, y) - full))
        suff[b] = max(0.0, loss.sufficiency_margin + ce(kept, y) - full)
    w = batch.weight
    total = np.sum(w * (loss.comprehensiveness_weight * comp + loss.sufficiency_weight * suff)) / max(w.sum(), 1)
    return comp, suff, total


def test_the_losses_equal_a_direct_computation(setup):
    model, graphdef, params, batch = setup
    @jax.jit
    def together(params, batch):  # one program: the rows, the penalty, and loss_fn with the loss on
        return (per_row(LOSS, graphdef, params, batch), penalty(LOSS, graphdef, params, batch),
                loss_fn(params, graphdef, batch, None, LOSS), old_loss_fn(params, graphdef, batch),
                loss_fn(params, graphdef, batch))
    rows, total_jax, with_loss, old, off = together(params, batch)
    assert off == old  # off: the old loss
    comp, suff, total = direct(model, batch, LOSS)
    assert np.asarray(rows["has_rationale"]).tolist() == [True, True, True, False]  # floor(50 * 1 / 100) = 0
    np.testing.assert_allclose(rows["comprehensiveness"], comp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows["sufficiency"], suff, rtol=1e-5, atol=1e-6)
    assert comp[:3].min() > 0 and suff[:3].min() > 0  # the margins make every hinge active here
    np.testing.assert_allclose(total_jax, total, rtol=1e-5)
    # the task loss plus the penalty is what loss_fn returns when the loss is on
    np.testing.assert_allclose(with_loss, old + total, rtol=1e-5)


def test_the_rationale_is_the_top_k_percent_of_eligible_tokens(setup):
    model, _, _, batch = setup
    scores = jnp.asarray(np.random.default_rng(0).normal(size=batch.tokens.shape), jnp.float32)
    top = np.asarray(rationale(model, jnp.asarray(batch.tokens), scores, 50))
    tokens = batch.tokens
    assert top.sum(1).tolist() == [3, 4, 2, 0]  # floor(50 n / 100), n = 6, 8 (the [MASK] excluded), 5, 1
    assert not top[tokens <= 3].any()  # never padding, specials or an earlier [MASK]


def test_the_losses_are_differentiable_and_move_the_parameters(setup):
    """One step of the training loop's own step function with and without the losses. With plain SGD
    (Adam's first step is lr * sign(g), blind to the loss's size) the difference of the two steps is
    lr times the gradient of the added losses: finite, and nonzero for every parameter."""
    _, graphdef, params, batch = setup
    lr, tx = LR, TX
    copy = lambda: jax.tree.map(np.array, params)  # train_step donates its state
    plain, loss_plain = train_step(graphdef, tx, TrainState(copy(), tx.init(params)), batch)
    regular, loss_regular = train_step(graphdef, tx, TrainState(copy(), tx.init(params)), batch, None,
                                       faithfulness=LOSS)
    assert float(loss_regular) > float(loss_plain)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(plain.params), jax.tree.leaves(regular.params)):
        grad = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) / lr  # d penalty / d parameter
        assert np.isfinite(grad).all(), jax.tree_util.keystr(path)
        assert np.abs(grad).max() > 1e-6, jax.tree_util.keystr(path)  # the losses move every parameter


def test_models_trained_together_get_their_single_runs_step(setup):
    """The vmapped step of several models (accelerators) with the losses equals each model's own step."""
    _, graphdef, params, batch = setup
    other = batch._replace(labels=np.roll(batch.labels, 1))
    copy = lambda: jax.tree.map(np.array, params)
    stacked_params = stack([copy(), copy()])
    together, losses = stacked_train_step(graphdef, TX, TrainState(stacked_params, jax.vmap(TX.init)(stacked_params)),
                                          stack_batches([batch, other]), None, faithfulness=LOSS)
    for m, b in enumerate((batch, other)):
        alone, loss = train_step(graphdef, TX, TrainState(copy(), TX.init(params)), b, None, faithfulness=LOSS)
        np.testing.assert_allclose(losses[m], loss, rtol=1e-6)
        for a, t in zip(jax.tree.leaves(alone.params), jax.tree.leaves(together.params)):
            np.testing.assert_allclose(np.asarray(t)[m], a, rtol=1e-5, atol=1e-7)


def test_off_is_exactly_the_old_loss_and_program(setup):
    _, graphdef, params, batch = setup

    def program(f):  # the compiled value-and-grad, without the function's name
        text = jax.jit(jax.value_and_grad(f), static_argnums=(1,)).lower(params, graphdef, batch).as_text()
        return re.sub(r"jit_\w+", "jit_f", text)
    assert program(loss_fn) == program(old_loss_fn)


def test_config_off_by_default_and_ids_only_change_when_on():
    c = load_config()
    assert faithfulness_loss_settings(c) is None
    exp = Experiment.from_config(c)
    assert exp.id == "synthetic_rnn_s-0" and "faithfulness_loss" not in exp.fields()
    c.faithfulness_loss.measure = "times-input-gradient"  # the original's spelling
    c.faithfulness_loss.comprehensiveness_weight = 0.5
    c.faithfulness_loss.sufficiency_weight = 0.25
    on = Experiment.from_config(c)
    assert on.id == "synthetic_rnn_s-0_fl-input_times_gradient-k=20,comp=0.5,suff=0.25"
    assert on.fields()["faithfulness_loss"]["measure"] == "input_times_gradient"
    c.k, c.importance_measure = 10, "gradient"
    roar = Experiment.from_config(c)
    assert roar.id == "synthetic_rnn_s-0_fl-input_times_gradient-k=20,comp=0.5,suff=0.25_y-gradient_rs-quantile_k-10_r-0"
    assert roar.reference().id == on.id
    c.faithfulness_loss.comprehensiveness_margin = 1.0
    assert Experiment.from_config(c).id.startswith("synthetic_rnn_s-0_fl-input_times_gradient-k=20,comp=0.5,"
                                                   "suff=0.25,comp_margin=1_")
    c.k, c.faithfulness_loss.measure = 0, "integrated_gradient"
    assert Experiment.from_config(c).id.startswith("synthetic_rnn_s-0_fl-integrated_gradient-50a-k=20")
    loss = FaithfulnessLoss.from_settings(faithfulness_loss_settings(c))
    assert loss.measure == importance.get("integrated_gradient", steps=50, variant="alpha_weighted")
    hash(loss)  # a static argument of the jitted step

    from nlproar_jax.roar.references import train_command
    command = train_command(roar, "configs/synthetic.py")
    assert "--config.faithfulness_loss.measure=input_times_gradient" in command
    assert "--config.faithfulness_loss.comprehensiveness_weight=0.5" in command


@pytest.mark.parametrize("fields, message", [
    (dict(measure="gradeint", sufficiency_weight=1.0), r"unknown faithfulness_loss.measure 'gradeint'; valid: \["),
    (dict(measure="random", sufficiency_weight=1.0), r"unknown faithfulness_loss.measure 'random'"),
    (dict(measure="lime", sufficiency_weight=1.0), r"valid: \['attention', 'gradient', 'input_times_gradient'"),
    (dict(measure="gradient"), r"comprehensiveness_weight=0 and sufficiency_weight=0 adds nothing"),
    (dict(comprehensiveness_weight=0.5), r"need faithfulness_loss.measure, one of \["),
    (dict(measure="gradient", sufficiency_weight=1.0, k=0), r"faithfulness_loss.k=0 is out of range: an integer 1..100"),
    (dict(measure="gradient", sufficiency_weight=1.0, k=101), r"faithfulness_loss.k=101 is out of range"),
    (dict(measure="gradient", sufficiency_weight=-1.0), r"faithfulness_loss.sufficiency_weight=-1.0 must be a finite"),
    (dict(measure="gradient", sufficiency_weight=1.0, comprehensiveness_margin=float("nan")),
     r"faithfulness_loss.comprehensiveness_margin=nan must be"),
])
def test_config_errors_name_the_bad_value(fields, message):
    c = load_config()
    for name, value in fields.items():
        c.faithfulness_loss[name] = value
    with pytest.raises(ValueError, match=message) as e:
        Experiment.from_config(c)
    assert "\n" not in str(e.value)
