"""Training: every parameter moves, loss falls, an interrupted run resumed equals an uninterrupted one, and a
run with nothing to select fails loudly."""
import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from nlproar_jax.data.batching import train_batches, train_batch_rows, eval_batches, bucket_length
from nlproar_jax.data.dataset import encode_task
from nlproar_jax.data.synthetic import load as load_synthetic
from nlproar_jax.models import build_model
from nlproar_jax.training.optim import original_optimizer
from nlproar_jax.training.loop import TrainState, evaluate, fit, train_step


@pytest.fixture(scope="module")
def data():
    return encode_task(load_synthetic(train_size=300, val_size=80, test_size=80))


def new_model(data, seed=0):
    return build_model(paired=False, vocab_size=len(data.vocab), num_classes=2, embedding_dim=8, hidden_size=8,
                       seed=seed)


@pytest.mark.parametrize("paired", [False, True])
def test_one_step_changes_every_parameter(paired, tiny_single, tiny_paired, single_batch, paired_batch):
    model, batch = (tiny_paired, paired_batch) if paired else (tiny_single, single_batch)
    graphdef, params = nnx.split(model)
    tx = original_optimizer(model.no_weight_decay, 1e-3, 1e-5)
    before = jax.tree.map(np.array, params)
    state, loss = train_step(graphdef, tx, TrainState(jax.tree.map(np.array, params), tx.init(params)), batch)
    assert np.isfinite(loss)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(state.params)):
        a, b = np.asarray(a), np.asarray(b)
        if "embedding" in jax.tree_util.keystr(path):
            # only rows of tokens in the batch get a gradient (decayed rows move by L2 alone)
            used = np.unique(batch.aux_tokens if "aux" in jax.tree_util.keystr(path) else batch.tokens)
            assert np.all(np.any(a[used] != b[used], axis=1)), jax.tree_util.keystr(path)
        else:
            assert np.all(a != b), jax.tree_util.keystr(path)


def test_batches_cover_every_row_once_and_bucket(data):
    split = data.splits["train"]
    rows = np.concatenate(train_batch_rows(len(split), split.main.lengths, 32, seed=3, epoch=1))
    assert sorted(rows.tolist()) == list(range(len(split)))
    for batch in train_batches(split, 32, 3, 1):
        assert batch.tokens.shape[0] == 32
        assert batch.tokens.shape[1] == bucket_length(int((batch.tokens != 0).sum(1).max()))
    seen = np.concatenate([b.index[b.weight > 0] for b in eval_batches(split, 32)])
    assert sorted(seen.tolist()) == list(range(len(split)))
    again = np.concatenate(train_batch_rows(len(split), split.main.lengths, 32, seed=3, epoch=1))
    np.testing.assert_array_equal(rows, again)  # deterministic in (seed, epoch)


def test_loss_falls_and_model_learns_the_synthetic_task(data):
    model = new_model(data)
    graphdef, params = nnx.split(model)
    [result] = fit(graphdef, [params], [data.splits["train"]], [data.splits["val"]], [0], epochs=4, batch_size=16,
                   monitor="auroc", no_decay=model.no_weight_decay, learning_rate=1e-2)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.1
    assert evaluate(graphdef, result.best_params, data.splits["test"], 16)["auroc"] > 0.8
    assert result.best_epoch == 1 + int(np.argmax([h["val_auroc"] for h in result.history]))


class Interrupt(Exception):
    pass


def test_interrupted_run_resumed_equals_uninterrupted(data, tmp_path):
    model = new_model(data, seed=1)
    graphdef, params = nnx.split(model)
    splits = ([params], [data.splits["train"]], [data.splits["val"]], [1])
    kwargs = dict(epochs=3, batch_size=16, monitor="auroc")  # no_decay: the model's own
    [full] = fit(graphdef, *splits, **kwargs)

    ckpt, metrics = str(tmp_path / "ckpt"), str(tmp_path / "metrics.jsonl")

    def stop_after_first_epoch(records):
        if records[0]["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(graphdef, *splits, checkpoint_dir=ckpt, metrics_paths=[metrics], on_epoch=stop_after_first_epoch,
            **kwargs)
    [resumed] = fit(graphdef, *splits, checkpoint_dir=ckpt, metrics_paths=[metrics], **kwargs)
    assert resumed.best_epoch == full.best_epoch
    for a, b in zip(jax.tree.leaves(full.best_params), jax.tree.leaves(resumed.best_params)):
        np.testing.assert_array_equal(a, b)
    strip = lambda h: {k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k}  # noqa: E731
    assert [strip(h) for h in resumed.history] == [strip(h) for h in full.history]
    with open(metrics) as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3]  # nothing lost, nothing twice


def test_fit_takes_its_weight_decay_groups_from_the_model(data):
    """Without ``no_decay`` fit reads the model's ``no_weight_decay`` (a generic model may have none)."""
    model = new_model(data, seed=2)
    graphdef, params = nnx.split(model)
    splits = ([params], [data.splits["train"]], [data.splits["val"]], [2])
    kw = dict(epochs=1, batch_size=16, monitor="auroc")
    [implicit] = fit(graphdef, *splits, **kw)
    [explicit] = fit(graphdef, *splits, no_decay=model.no_weight_decay, **kw)
    for a, b in zip(jax.tree.leaves(implicit.best_params), jax.tree.leaves(explicit.best_params)):
        np.testing.assert_array_equal(a, b)


def test_a_diverging_run_fails_loudly(data, tmp_path):
    """NaN guard: a train loss that is not finite stops the run, naming it, before that epoch is checkpointed."""
    model = new_model(data)
    graphdef, params = nnx.split(model)
    with pytest.raises(FloatingPointError, match=r"run-x: the mean train loss of epoch 1 is nan.*diverged"):
        fit(graphdef, [params], [data.splits["train"]], [data.splits["val"]], [0], epochs=2, batch_size=16,
            monitor="auroc", learning_rate=1e30, checkpoint_dir=str(tmp_path / "ckpt"), names=["run-x"])
    assert not os.path.exists(tmp_path / "ckpt" / "1")


def test_a_run_whose_monitored_metric_is_always_nan_fails_loudly(data):
    """NaN guard: validation AUROC is NaN on a one-class split, so no epoch is ever best: an error naming the
    run, the metric and the last train loss, never the initial parameters returned as if selected."""
    model = new_model(data)
    graphdef, params = nnx.split(model)
    val = data.splits["val"]
    one_class = dataclasses.replace(val, labels=np.zeros_like(val.labels))
    with pytest.raises(FloatingPointError, match=r"run-y: the monitored validation metric auroc was NaN in every "
                                                 r"epoch \(1\.\.2; last train loss 0\.\d+"):
        fit(graphdef, [params], [data.splits["train"]], [one_class], [0], epochs=2, batch_size=16,
            monitor="auroc", names=["run-y"])
