"""Seeds trained together (vmapped over stacked parameters) equal seeds trained one by one, and resume exactly."""
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from nlproar_jax.data.dataset import encode_task
from nlproar_jax.data.synthetic import load as load_synthetic
from nlproar_jax.models import build_model
from nlproar_jax.roar.run import run_experiment
from nlproar_jax.training.loop import evaluate, fit
from test_pipeline import load_config

# Stated tolerance: the same arithmetic up to float reassociation in batched matmuls.
PARAM_ATOL = 1e-4
METRIC_ATOL = 1e-3


@pytest.fixture(scope="module")
def stack3():
    data = encode_task(load_synthetic(train_size=120, val_size=40, test_size=40, max_length=16))
    seeds = [0, 1, 2]
    models = [build_model(paired=False, vocab_size=len(data.vocab), num_classes=2, embedding_dim=8, hidden_size=8,
                          seed=s) for s in seeds]
    graphdef = nnx.split(models[0])[0]
    params = [nnx.split(m)[1] for m in models]
    return data, seeds, graphdef, params


def test_stacked_fit_equals_separate_fits(stack3):
    data, seeds, graphdef, params = stack3
    kw = dict(epochs=2, batch_size=16, monitor="auroc")
    together = fit(graphdef, params, [data.splits["train"]] * 3, [data.splits["val"]] * 3, seeds, **kw)
    for s, p, t in zip(seeds, params, together):
        [alone] = fit(graphdef, [p], [data.splits["train"]], [data.splits["val"]], [s], **kw)
        assert t.best_epoch == alone.best_epoch
        for a, b in zip(jax.tree.leaves(alone.best_params), jax.tree.leaves(t.best_params)):
            np.testing.assert_allclose(a, b, atol=PARAM_ATOL)
        m1 = evaluate(graphdef, alone.best_params, data.splits["test"], 16)
        m2 = evaluate(graphdef, t.best_params, data.splits["test"], 16)
        for k in m1:
            assert m2[k] == pytest.approx(m1[k], abs=METRIC_ATOL)
        for h1, h2 in zip(alone.history, t.history):
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], abs=METRIC_ATOL)
            assert h2["models_in_program"] == 3 and "models_in_program" not in h1


class Interrupt(Exception):
    pass


def test_interrupted_stack_resumed_equals_uninterrupted(stack3, tmp_path):
    data, seeds, graphdef, params = stack3
    args = (graphdef, params, [data.splits["train"]] * 3, [data.splits["val"]] * 3, seeds)
    kw = dict(epochs=3, batch_size=16, monitor="auroc")
    full = fit(*args, **kw)
    ckpt = str(tmp_path / "ckpt")
    metrics = [str(tmp_path / f"metrics-{s}.jsonl") for s in seeds]

    def stop_after_first_epoch(records):
        assert len(records) == 3  # one record per model
        if records[0]["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(*args, checkpoint_dir=ckpt, metrics_paths=metrics, on_epoch=stop_after_first_epoch, **kw)
    resumed = fit(*args, checkpoint_dir=ckpt, metrics_paths=metrics, **kw)
    strip = lambda h: {k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k}  # noqa: E731
    for f, r, path in zip(full, resumed, metrics):
        assert r.best_epoch == f.best_epoch
        for a, b in zip(jax.tree.leaves(f.best_params), jax.tree.leaves(r.best_params)):
            np.testing.assert_array_equal(a, b)  # the same program on the same state: exact
        assert [strip(h) for h in r.history] == [strip(h) for h in f.history]
        with open(path) as fh:
            assert [json.loads(line)["epoch"] for line in fh] == [1, 2, 3]


def test_stacked_fit_refuses_splits_of_different_sizes(stack3):
    data, seeds, graphdef, params = stack3
    small = encode_task(load_synthetic(train_size=100, val_size=40, test_size=40, max_length=16))
    with pytest.raises(ValueError, match="train splits of equal size"):
        fit(graphdef, params[:2], [data.splits["train"], small.splits["train"]], [data.splits["val"]] * 2,
            seeds[:2], epochs=1, batch_size=16, monitor="auroc")


def tiny_roar_config(tmp_path, name):
    c = load_config()
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 100, 40, 40
    c.dataset.max_length = 16
    c.embedding_dim = c.hidden_size = 6
    c.max_epochs = 1
    c.importance_measure = "attention"
    c.persistent_dir = str(tmp_path / name)
    return c


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_num_seeds_writes_the_same_results_as_separate_runs(tmp_path, mode):
    separate, together = tiny_roar_config(tmp_path, "a"), tiny_roar_config(tmp_path, "b")
    together.num_seeds = 2
    together.seeds_together = mode
    run_experiment(together)
    with pytest.raises(ValueError, match="seeds_together.*vmap"):
        bad = together.copy_and_resolve_references()
        bad.seeds_together = "threads"
        run_experiment(bad)
    for seed in (0, 1):
        separate.seed = seed
        alone = run_experiment(separate)
        with open(tmp_path / "b" / "results" / f"synthetic_rnn_s-{seed}.json") as f:
            stacked = json.load(f)
        assert stacked["experiment_id"] == alone["experiment_id"]
        for k in alone["test"]:
            assert stacked["test"][k] == pytest.approx(alone["test"][k], abs=METRIC_ATOL)
        assert os.path.isdir(tmp_path / "b" / "runs" / f"synthetic_rnn_s-{seed}" / "model")


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_k_together_writes_the_same_results_as_separate_runs(tmp_path, mode):
    """Classic ROAR at k = 10, 20, 30 trained together (one vmapped program, or one process) writes
    what three separate runs write."""
    together, separate = tiny_roar_config(tmp_path, "b"), tiny_roar_config(tmp_path, "a")
    run_experiment(together)  # the k = 0 base models
    run_experiment(separate)
    together.k, together.k_together, together.seeds_together = 10, (20, 30), mode
    first = run_experiment(together)
    assert first["k"] == 10
    for k in (10, 20, 30):
        separate.k = k
        alone = run_experiment(separate)
        with open(tmp_path / "b" / "results" / f"{alone['experiment_id']}.json") as f:
            stacked = json.load(f)
        assert stacked["k"] == k and stacked["reference_id"] == "synthetic_rnn_s-0"
        for metric in alone["test"]:
            assert stacked["test"][metric] == pytest.approx(alone["test"][metric], abs=METRIC_ATOL)
    # Rerunning the group finds every run finished.
    assert run_experiment(together)["test"] == first["test"]


@pytest.mark.parametrize("changes, message", [
    (dict(k=10, k_together=(20,), recursive=True), "recursive"),
    (dict(k=0, k_together=(20,)), "k > 0"),
    (dict(k=10, k_together=(10,)), "repeats"),
    (dict(k=10, k_together=(120,)), "out of range"),
])
def test_k_together_refuses_what_cannot_train_together(tmp_path, changes, message):
    c = tiny_roar_config(tmp_path, "c")
    for key, value in changes.items():
        c[key] = value
    with pytest.raises(ValueError, match=message):
        run_experiment(c)


def test_sweep_groups_each_seeds_classic_runs_by_measure_and_strategy():
    from nlproar_jax.roar.plan import plan_grid
    from nlproar_jax.sweep import group_classic_runs

    c = load_config()
    c.grid.seeds = (0, 1)
    plan = plan_grid(c)
    groups = group_classic_runs(plan)
    assert [run for group in groups for run in group] == plan  # same runs, same order
    for group in groups:
        exps = [run.experiment for run in group]
        if len(group) > 1:
            assert all(e.k > 0 and not e.recursive for e in exps)
            assert len({(e.seed, e.measure, e.strategy) for e in exps}) == 1
        else:
            assert exps[0].is_base or exps[0].recursive or exps[0].k > 0
    quantile_random = [g for g in groups if g[0].experiment.measure == "random"
                       and g[0].experiment.strategy == "quantile" and len(g) > 1]
    assert sorted(r.experiment.k for r in quantile_random[0]) == sorted(
        list(c.grid.quantile_k) + list(c.grid.random_quantile_k))


def test_classic_together_auto_groups_on_accelerators_only():
    from nlproar_jax.sweep import classic_together

    assert load_config().grid.classic_together == "auto"
    assert classic_together("auto", backend="gpu") and classic_together("auto", backend="tpu")
    assert not classic_together("auto", backend="cpu")
    assert classic_together("auto") == (jax.default_backend() != "cpu")
    assert classic_together("True") and classic_together(True) and not classic_together("false")
    with pytest.raises(ValueError, match=r"grid.classic_together 'yes'; valid: \['auto', 'waves', 'true', 'false'\]"):
        classic_together("yes")


def test_together_auto_is_waves_on_accelerators():
    from nlproar_jax.sweep import together_mode

    assert together_mode("auto", backend="gpu") == "waves" and together_mode("auto", backend="cpu") == "false"
    assert together_mode("waves") == "waves" and together_mode(True) == "true" and together_mode(False) == "false"


def test_waves_group_every_run_whose_inputs_are_ready():
    from nlproar_jax.roar.plan import plan_grid
    from nlproar_jax.sweep import group_waves

    c = load_config()
    c.grid.seeds = (0, 1)
    plan = plan_grid(c)
    groups = group_waves(plan, limit=1000)
    assert sorted(run.id for group in groups for run in group) == sorted(run.id for run in plan)
    done: set[str] = set()
    for group in groups:  # every run's inputs come from earlier groups, never its own
        ids = {run.id for run in group}
        assert all(a in done for run in group for a in run.after) and not any(a in ids for run in group for a in run.after)
        done |= ids
    # wave 0: both seeds' base models; wave 1: every classic run of every measure and seed
    assert [run.experiment.is_base for run in groups[0]] == [True, True]
    classic = [run for run in plan if not run.experiment.is_base and not run.experiment.recursive]
    assert {run.id for run in groups[1]} == {run.id for run in classic}
    # the cap cuts waves into groups of at most `limit`, keeping the order
    capped = group_waves(plan, limit=7)
    assert max(len(g) for g in capped) == 7 and [r for g in capped for r in g] == [r for g in groups for r in g]
    with pytest.raises(ValueError, match="models_together must be >= 1"):
        group_waves(plan, limit=0)


@pytest.mark.slow
def test_a_sweep_in_waves_writes_what_the_serial_sweep_writes(tmp_path):
    """Waves (the accelerator default) on the CPU with vmapped stacks: each run's metrics equal the plain
    serial sweep's (float reassociation in the stacked matmuls only)."""
    from nlproar_jax.roar.plan import plan_grid
    from nlproar_jax.sweep import run_plan

    results = {}
    for name, mode in (("plain", "false"), ("waves", "waves")):
        c = tiny_roar_config(tmp_path, name)
        c.grid.seeds, c.grid.measures, c.grid.quantile_k = (0, 1), ("random", "attention"), (10, 20)
        c.grid.random_quantile_k, c.grid.count_k = (), ()
        c.grid.classic_together, c.seeds_together = mode, "vmap"
        plan = plan_grid(c)
        run_plan(c, plan)
        results[name] = {}
        for run in plan:
            with open(tmp_path / name / "results" / f"{run.id}.json") as f:
                results[name][run.id] = json.load(f)
    assert results["plain"].keys() == results["waves"].keys() and len(results["plain"]) == 14
    for rid, alone in results["plain"].items():
        for metric in alone["test"]:
            assert results["waves"][rid]["test"][metric] == pytest.approx(alone["test"][metric], abs=METRIC_ATOL), rid
