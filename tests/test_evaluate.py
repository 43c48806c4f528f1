"""``python -m nlproar_jax.evaluate``: erasure and plausibility of a grid's measures on its base model.

One small trained base model (the tiny synthetic task, trained long enough to find the signal words)
is evaluated once for the module; the acceptance check of issue 14: random is the least plausible
measure on the synthetic task.
"""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from test_pipeline import load_config

MEASURES = ("random", "mutual_information", "gradient", "integrated_gradient", "occlusion")
OVERRIDES = {"dataset.train_size": 1000, "dataset.val_size": 40, "dataset.test_size": 40, "embedding_dim": 8,
             "hidden_size": 8, "max_epochs": 4, "learning_rate": 1e-2, "ig_steps": 4}


def small_config(persistent_dir):
    c = load_config()
    for key, value in OVERRIDES.items():
        node, _, field = key.rpartition(".")
        (c[node] if node else c)[field] = value
    c.persistent_dir = str(persistent_dir)
    c.grid.measures = MEASURES
    return c


def cli(*args):
    command = [sys.executable, "-m", "nlproar_jax.evaluate", "--config=configs/synthetic.py",
               "--config.malloc_hugetlb=False", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from nlproar_jax.evaluate import evaluate_grid
    from nlproar_jax.roar.run import run_experiment

    config = small_config(tmp_path_factory.mktemp("evaluate"))
    base = run_experiment(config)
    return config, base, evaluate_grid(config)


def test_every_measure_gets_a_file_with_its_metrics(evaluated):
    from nlproar_jax.names import Paths

    config, base, evaluations = evaluated
    assert base["test"]["accuracy"] > 0.8  # the model found the signal words: plausibility means something
    assert [e["measure"] for e in evaluations] == list(MEASURES)
    tags = {e["measure"]: e["measure_tag"] for e in evaluations}
    assert tags["integrated_gradient"] == "integrated_gradient-4a"
    for e in evaluations:
        path = Paths(config.persistent_dir).erasure("synthetic_rnn_s-0", e["measure_tag"])
        assert path.endswith(f"erasure/synthetic_rnn_s-0_y-{e['measure_tag']}.json") and os.path.exists(path)
        with open(path) as f:
            assert json.load(f) == e
        assert e["base_id"] == "synthetic_rnn_s-0" and e["split"] == "test" and e["rows"] == 40
        assert e["settings"] == {"split": "test", "removal": "mask", "target": "gold", "bins": [1, 5, 10, 20, 50],
                                 "aopc_normalisation": "mean", "plausibility_k": "gold"}
        assert set(e["metrics"]) == {"aopc_comprehensiveness", "aopc_sufficiency", "flip_top1", "auprc", "map",
                                     "topk_f1"}
        assert {"comprehensiveness@10", "sufficiency@50", "flip@20",
                "aopc_comprehensiveness_unirex"} <= set(e["erasure"])
        assert e["plausibility"]["rows_with_rationale"] == 40
        assert e["importance_cached"] is False and os.path.exists(os.path.join(config.persistent_dir,
                                                                              e["importance_file"]))
        assert {"importance", "erasure", "plausibility"} <= set(e["seconds"])


def test_random_is_the_least_plausible_measure(evaluated):
    _, _, evaluations = evaluated
    by = {e["measure"]: e["metrics"] for e in evaluations}
    for metric in ("auprc", "map"):
        others = {m: v[metric] for m, v in by.items() if m != "random"}
        assert by["random"][metric] < min(others.values()), (metric, by["random"][metric], others)
    assert by["mutual_information"]["auprc"] == pytest.approx(1.0)  # the signal words are all it has seen
    # and the faithful measures' top tokens matter more to the model than random ones
    assert by["random"]["aopc_comprehensiveness"] < min(
        v["aopc_comprehensiveness"] for m, v in by.items() if m != "random")


def test_a_rerun_skips_and_exports(evaluated):
    from nlproar_jax.analysis.tables import export, format_erasure_table
    from nlproar_jax.evaluate import evaluate_grid

    config, _, evaluations = evaluated
    folder = os.path.join(config.persistent_dir, "erasure")
    mtimes = {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)}
    assert evaluate_grid(config) == evaluations
    assert {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)} == mtimes
    table = format_erasure_table(evaluations)
    assert "Integrated gradient" in table and "comp_aopc" in table and "f1@gold" in table
    assert "settings: Integrated gradient: 4 steps, α-weighted" in table
    written = export(config.persistent_dir, plots=False)
    with open(written["erasure_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["measure"] for r in rows] == list(MEASURES)
    assert {"aopc_comprehensiveness", "auprc", "erasure_comprehensiveness@1", "plausibility_map"} <= set(rows[0])


def test_a_file_without_plausibility_is_evaluated_again(evaluated):
    """A file written before its task had gold rationales (SST and bAbI got theirs later) is redone."""
    from nlproar_jax.evaluate import evaluate_grid

    config, _, evaluations = evaluated
    path = os.path.join(config.persistent_dir, "erasure", "synthetic_rnn_s-0_y-random.json")
    with open(path) as f:
        old = json.load(f)
    with open(path, "w") as f:
        json.dump({**old, "plausibility": None}, f)
    again = evaluate_grid(config)
    assert again[0]["plausibility"] == old["plausibility"] and again[0]["metrics"] == old["metrics"]
    assert again[0]["importance_cached"] is True and again[1:] == evaluations[1:]


def test_command_line_rerun_prints_the_table(evaluated):
    config, _, _ = evaluated
    args = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
    result = cli(*args, f"--config.grid.measures={MEASURES!r}".replace(" ", ""),
                 f"--config.persistent_dir={config.persistent_dir}")
    assert result.returncode == 0, result.stderr
    assert "5 of 5 evaluations already done" in result.stderr
    assert "\nRandom " in result.stdout and "export/erasure.csv" in result.stdout
    assert "settings: Integrated gradient: 4 steps, α-weighted" in result.stdout


def test_missing_base_model_names_the_command(tmp_path):
    result = cli(f"--config.persistent_dir={tmp_path}")
    assert result.returncode == 2
    assert "python -m nlproar_jax.train --config=configs/synthetic.py --config.seed=0 --config.k=0" in result.stderr
    assert not os.path.exists(tmp_path / "erasure")


def test_settings_and_gold_alignment(tmp_path):
    from nlproar_jax.evaluate import evaluation_settings, settings_tag, synthetic_gold
    from nlproar_jax.roar.run import load_base_data

    config = small_config(tmp_path)
    assert settings_tag(evaluation_settings(config)) == ""
    config.evaluation.removal, config.evaluation.bins = "delete", (10, 20)
    assert settings_tag(evaluation_settings(config)) == "_ev-removal=delete,bins=10,20"
    config.evaluation.target = "argmax"
    with pytest.raises(ValueError, match="evaluation.target"):
        evaluation_settings(config)
    data = load_base_data(config)
    gold = synthetic_gold(config, data, "test")
    assert 40 <= gold.values.sum() <= 120  # 1-3 signal words per document
    config.dataset.seed = 1  # another generator seed: other documents
    with pytest.raises(ValueError, match="do not line up|non-signal"):
        synthetic_gold(config, data, "test")


def test_evaluated_split_only_importance_gives_the_same_scores(evaluated, tmp_path):
    """``evaluation.importance_splits="evaluated"``: an uncached measure is scored on the evaluated split
    alone (with the random key it has in the every-split computation), cached apart from ROAR's file, and
    every metric equals the every-split evaluation's."""
    import shutil

    import numpy as np

    from nlproar_jax.evaluate import evaluate_grid
    from nlproar_jax.names import Paths

    config, _, evaluations = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(config.persistent_dir, copy)
    shutil.rmtree(copy / "erasure")
    c = config.copy_and_resolve_references()
    c.persistent_dir, c.grid.measures, c.evaluation.importance_splits = str(copy), ("random", "gradient"), "evaluated"
    paths = Paths(str(copy))
    for tag in ("random", "gradient"):
        os.remove(paths.importance("synthetic_rnn_s-0", tag))
    again = {e["measure"]: e for e in evaluate_grid(c)}
    before = {e["measure"]: e for e in evaluations}
    for tag in ("random", "gradient"):
        full = paths.importance("synthetic_rnn_s-0", tag)
        assert not os.path.exists(full) and again[tag]["importance_file"].endswith(f"__{tag}.test.npz")
        with np.load(full[:-len(".npz")] + ".test.npz") as z, \
                np.load(os.path.join(config.persistent_dir, before[tag]["importance_file"])) as ref:
            assert list(z) == ["test"] and np.array_equal(z["test"], ref["test"])
        assert again[tag]["metrics"] == before[tag]["metrics"] and again[tag]["settings"] == before[tag]["settings"]
    with pytest.raises(ValueError, match=r"unknown evaluation.importance_splits 'some'; valid: \['all', 'evaluated'\]"):
        c.evaluation.importance_splits = "some"
        evaluate_grid(c)
