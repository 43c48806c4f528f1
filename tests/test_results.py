"""The faithfulness summary (area between curves, clip, bootstrap over seeds) on hand-made curves with
known answers, and the results export (CSV columns, summary files, PNG plots) on fabricated results."""
import csv
import json
import math
import re
import os

import numpy as np
import pytest

from nlproar_jax.analysis import faithfulness as F
from nlproar_jax import results
from nlproar_jax.analysis import tables as R


# -- the math --------------------------------------------------------------------------------
def test_trapezoid_and_area_known_values():
    assert F.trapezoid([0, 1], [1, 1]) == pytest.approx(1.0)
    assert F.trapezoid([0, 0.5, 1], [0, 1, 0]) == pytest.approx(0.5)
    assert F.trapezoid([0], [3]) == 0.0
    with pytest.raises(ValueError, match="increasing"):
        F.trapezoid([0, 0], [1, 1])
    # random flat at 0.9 then drops to 0.5 at k=100; the measure drops to 0.5 at once
    k = [0, 10, 20, 100]
    random = [0.9, 0.85, 0.8, 0.5]
    measure = [0.9, 0.5, 0.4, 0.5]
    # diffs 0, .35, .4, 0: 0.1*(0+.35)/2 + 0.1*(.35+.4)/2 + 0.8*(.4+0)/2
    assert F.area_between_curves(k, random, measure) == pytest.approx(0.0175 + 0.0375 + 0.16)
    # random minus its k=100 value: .4, .35, .3, 0
    assert F.max_area(k, random) == pytest.approx(0.0375 + 0.0325 + 0.12)
    # up to k=20 only, still against random's k=100 value
    assert F.area_between_curves(k, random, measure, upto=20) == pytest.approx(0.055)
    assert F.max_area(k, random, upto=20) == pytest.approx(0.07)
    # count strategy: x in tokens
    assert F.area_between_curves([0, 1, 2], [1, 1, 1], [1, 0, 0], x_scale=1) == pytest.approx(1.5)


def test_relative_area_clips_and_handles_degenerate_max():
    assert F.relative_area(0.1, 0.2) == pytest.approx(0.5)
    assert F.relative_area(0.5, 0.2) == 1.0
    assert F.relative_area(-0.5, 0.2) == -1.0
    assert math.isnan(F.relative_area(0.1, 0.0))
    assert math.isnan(F.relative_area(0.1, float("nan")))


def test_faithfulness_closes_the_curve_at_random_k100():
    random = {0: 0.9, 10: 0.85, 20: 0.8, 100: 0.5}
    same = F.faithfulness({0: 0.9, 10: 0.85, 20: 0.8}, random)
    assert same.absolute == 0.0 and same.relative == 0.0 and same.k == (0, 10, 20, 100)
    # a measure at random's 100% value from k=10 on: diffs 0, .35, .3, 0 against the maximum's .4, .35, .3, 0
    best = F.faithfulness({0: 0.9, 10: 0.5, 20: 0.5}, random)
    assert best.absolute == pytest.approx(0.0175 + 0.0325 + 0.12) and best.maximum == pytest.approx(0.19)
    assert best.relative == pytest.approx(0.17 / 0.19)
    assert F.faithfulness({0: 0.9, 10: 0.2, 20: 0.1}, random).relative == 1.0  # clipped
    worse = F.faithfulness({0: 0.9, 10: 0.95, 20: 0.9}, random)
    assert worse.relative < 0
    # no k=100 for random: absolute only
    partial = F.faithfulness({0: 0.9, 10: 0.5}, {0: 0.9, 10: 0.8})
    assert partial.absolute == pytest.approx(0.1 * 0.3 / 2) and math.isnan(partial.relative)
    with pytest.raises(ValueError, match="fewer than 2"):
        F.faithfulness({10: 0.5}, {20: 0.5}, end=None)


def test_mean_ci_over_seeds():
    one = F.mean_ci([0.3])
    assert (one.mean, one.low, one.high, one.n) == (0.3, 0.3, 0.3, 1)
    same = F.mean_ci([0.2, 0.2, 0.2])
    assert same.low == same.high == same.mean == pytest.approx(0.2)
    vals = [0.1, 0.2, 0.3, 0.25, 0.22]
    ci = F.mean_ci(vals)
    assert ci.mean == pytest.approx(np.mean(vals)) and ci.n == 5
    assert min(vals) <= ci.low < ci.mean < ci.high <= max(vals)
    assert F.mean_ci(vals) == ci  # deterministic (seeded)
    assert F.mean_ci([0.1, float("nan"), 0.3]).n == 2
    assert math.isnan(F.mean_ci([]).mean)


# -- fabricated results ------------------------------------------------------------------------
def fake_result(task="synthetic", seed=0, k=0, measure="random", strategy="quantile", recursive=False,
                test=0.9, **extra):
    step = 10 if strategy == "quantile" else 1
    base_id = f"{task}_rnn_s-{seed}"
    rec = f"r-1_st-{step}" if recursive else "r-0"
    eid = base_id if k == 0 else f"{base_id}_y-{measure}_rs-{strategy}_k-{k}_{rec}"
    metrics = {"accuracy": test, "macro_f1": test, "micro_f1": test, "auroc": test, "loss": 1 - test}
    r = {"task": task, "model": "rnn", "seed": seed, "k": k, "measure": measure, "strategy": strategy,
         "recursive": recursive and k > 0, "step": step, "ig_steps": 50, "ig_variant": "alpha_weighted",
         "experiment_id": eid, "reference_id": None if k == 0 else base_id, "monitor": "auroc",
         "dataset_key": f"{task}-abc",
         "importance_file": None if k == 0 else f"cache/importance/{base_id}__{measure}.npz",
         "reported_metric": "macro_f1", "best_epoch": 2, "epochs": 3, "train_size": 100,
         "notes": ["a note"], "val": dict(metrics), "test": metrics, "history": [],
         "seconds": {"load_data": 0.5, "train": 2.0, "evaluate": 0.25}, "device": "cpu:cpu",
         "device_count": 1, "hostname": "h"}
    r.update(extra)
    return r


RANDOM = {10: 0.85, 20: 0.8, 100: 0.5}
GRAD = {10: 0.6, 20: 0.5}


def fake_grid(seeds=(0, 1, 2)):
    out = []
    for s in seeds:
        shift = 0.01 * s
        out.append(fake_result(seed=s, test=0.9))
        out += [fake_result(seed=s, k=k, test=v) for k, v in RANDOM.items()]
        out += [fake_result(seed=s, k=k, measure="gradient", test=v - shift) for k, v in GRAD.items()]
        out += [fake_result(seed=s, k=k, measure="gradient", recursive=True, test=v - 2 * shift)
                for k, v in GRAD.items()]
        out += [fake_result(seed=s, k=k, strategy="count", test=0.9 - 0.01 * k) for k in (1, 2)]
        out += [fake_result(seed=s, k=k, measure="gradient", strategy="count", recursive=True, test=0.9 - 0.1 * k)
                for k in (1, 2)]
    return out


def write_results(root, results):
    os.makedirs(os.path.join(root, "results"), exist_ok=True)
    for r in results:
        with open(os.path.join(root, "results", r["experiment_id"] + ".json"), "w") as f:
            json.dump(r, f)


def test_seed_curves_share_base_and_random_baseline():
    curves = R.seed_curves(fake_grid())
    assert curves[("synthetic", "gradient", "quantile", True)][1] == pytest.approx({0: 0.9, 10: 0.58, 20: 0.48})
    assert curves[("synthetic", "random", "quantile", True)] == curves[("synthetic", "random", "quantile", False)]
    assert curves[("synthetic", "random", "quantile", False)][0][100] == 0.5


def test_roar_table_keeps_ig_variants_apart():
    """Two IG settings at the same k are two rows (grouped by measure tag), not one averaged row."""
    runs = [fake_result(test=0.9),
            fake_result(k=10, measure="integrated_gradient", test=0.6, ig_steps=50, ig_variant="alpha_weighted"),
            fake_result(k=10, measure="integrated_gradient", test=0.4, ig_steps=20, ig_variant="textbook",
                        experiment_id="synthetic_rnn_s-0_y-integrated_gradient-20t_rs-quantile_k-10_r-0")]
    text = R.format_roar_table(runs)
    rows = {re.split(r"\s{2,}", line)[0]: line.split()[-3:] for line in text.splitlines()
            if line.startswith("Integrated")}
    # one display name per measure; the settings only where two tags of one measure must be told apart
    assert rows == {"Integrated gradient (50 steps, α-weighted)": ["classic", "0.900", "0.600"],
                    "Integrated gradient (20 steps, textbook)": ["classic", "0.900", "0.400"]}
    names = R.results_table(runs)[1]
    assert {r["measure_name"] for r in names if r["k"]} == {"Integrated gradient (50 steps, α-weighted)",
                                                           "Integrated gradient (20 steps, textbook)"}


def test_one_display_name_per_measure_with_settings_shown_once():
    from nlproar_jax.names import display_names, measure_details, settings_note

    tags = ["random", "integrated_gradient-50a", "lime-samples=500"]
    assert display_names(tags) == {"random": "Random", "integrated_gradient-50a": "Integrated gradient",
                                   "lime-samples=500": "LIME"}
    assert settings_note(tags) == "Integrated gradient: 50 steps, α-weighted; LIME: samples=500"
    assert measure_details("integrated_gradient-20t-chunk_size=8") == "20 steps, textbook, chunk_size=8"
    runs = [fake_result(test=0.9),
            fake_result(k=10, measure="integrated_gradient", test=0.6, ig_steps=50, ig_variant="alpha_weighted")]
    text = R.format_roar_table(runs)
    assert "Integrated gradient       classic" in text and "integrated_gradient" not in text
    assert text.splitlines()[-1] == "settings: Integrated gradient: 50 steps, α-weighted"
    columns, rows = R.results_table(runs)
    assert "measure_name" in columns and rows[1]["measure_name"] == "Integrated gradient"


def test_roar_table_from_seed_curves():
    text = R.format_roar_table(fake_grid())
    lines = text.splitlines()
    assert lines[0] == "synthetic: test macro_f1 (mean over seeds), quantile masking"
    assert lines[1].split()[2:] == ["k=0%", "k=10%", "k=20%", "k=100%"]
    rows = [line.split() for line in lines if line.startswith(("Gradient", "Random"))]
    # random's classic curve is not repeated as a recursive row in the table
    assert [r[:2] for r in rows[:3]] == [["Gradient", "classic"], ["Random", "classic"], ["Gradient", "recursive"]]
    assert rows[2][2:] == ["0.900", f"{0.6 - 0.02:.3f}", f"{0.5 - 0.02:.3f}"]  # mean over seeds 0, 1, 2
    assert "count masking" in text
    assert R.format_roar_table([]) == "(no ROAR runs finished yet)"


def two_model_grid():
    """The fake grid twice in one directory: as the BiLSTM (``rnn``) and as a transformer 0.3 lower."""
    out = fake_grid(seeds=(0,))
    for r in fake_grid(seeds=(0,)):
        r = json.loads(json.dumps(r))
        r.update(model="transformer", experiment_id=r["experiment_id"].replace("_rnn_", "_transformer_"),
                 reference_id=r["reference_id"] and r["reference_id"].replace("_rnn_", "_transformer_"))
        for split in ("val", "test"):
            r[split] = {name: value - 0.3 for name, value in r[split].items()}
        out.append(r)
    return out


def test_two_models_of_one_task_never_share_a_curve(tmp_path):
    runs = two_model_grid()
    curves = R.seed_curves(runs)
    rnn = curves[("synthetic (rnn)", "gradient", "quantile", False)][0]
    transformer = curves[("synthetic (transformer)", "gradient", "quantile", False)][0]
    assert rnn == {0: 0.9, 10: 0.6, 20: 0.5}
    assert transformer == pytest.approx({0: 0.6, 10: 0.3, 20: 0.2})
    assert not any(key[0] == "synthetic" for key in curves)
    text = R.format_roar_table(runs)
    heads = [line for line in text.splitlines() if "(mean over seeds)" in line]
    assert heads == [f"synthetic ({m}): test macro_f1 (mean over seeds), {s} masking"
                     for m in ("rnn", "transformer") for s in ("quantile", "count")]
    rows = R.summarize(runs)
    by = {(r["model"], r["measure_tag"], r["strategy"], r["roar"]): r for r in rows}
    # each model against its own random curve: the same relative area (both shifted by 0.3)
    a, b = by[("rnn", "gradient", "quantile", "classic")], by[("transformer", "gradient", "quantile", "classic")]
    assert a["task"] == b["task"] == "synthetic" and a["study"] == "synthetic (rnn)"
    assert a["relative_mean"] == pytest.approx(b["relative_mean"])
    assert "synthetic (transformer)" in R.format_summary(rows)
    assert sorted(os.path.basename(p) for p in __import__("nlproar_jax.analysis.plots", fromlist=["x"])
                  .plot_all(runs, str(tmp_path))) == sorted(
        f"roar_synthetic_{m}_{s}.png" for m in ("rnn", "transformer") for s in ("quantile", "count"))
    # one model alone keeps the plain task label
    assert R.format_roar_table(fake_grid()).splitlines()[0].startswith("synthetic: ")


def test_sweep_and_launcher_print_the_one_table():
    from launch import grid
    from nlproar_jax import sweep

    assert sweep.format_roar_table is R.format_roar_table and grid.format_roar_table is R.format_roar_table
    assert sweep.load_results is R.load_results and grid.plan_results is sweep.plan_results


def test_a_sweep_prints_its_own_grids_table(tmp_path):
    from types import SimpleNamespace
    from nlproar_jax import sweep

    runs = two_model_grid()
    write_results(tmp_path, runs)
    plan = [SimpleNamespace(id=r["experiment_id"]) for r in runs if r["model"] == "transformer"]
    mine = sweep.plan_results(plan, str(tmp_path))
    assert len(mine) == len(plan) and {r["model"] for r in mine} == {"transformer"}
    assert R.format_roar_table(mine).splitlines()[0].startswith("synthetic: ")


def test_summarize_matches_hand_computation():
    rows = R.summarize(fake_grid(), upto=(None, 20))
    by = {(r["measure_tag"], r["strategy"], r["roar"], r["upto"]): r for r in rows}
    per_seed = []
    for s in (0, 1, 2):
        g = {k: v - 2 * 0.01 * s for k, v in GRAD.items()}
        absolute = F.area_between_curves([0, 10, 20, 100], [0.9, 0.85, 0.8, 0.5], [0.9, g[10], g[20], 0.5])
        per_seed.append(absolute / F.max_area([0, 10, 20, 100], [0.9, 0.85, 0.8, 0.5]))
    rec = by[("gradient", "quantile", "recursive", 100)]
    assert rec["n_seeds"] == 3 and rec["seeds"] == [0, 1, 2] and rec["k"] == [0, 10, 20, 100]
    assert rec["relative_mean"] == pytest.approx(np.mean(np.clip(per_seed, -1, 1)))
    assert rec["relative_per_seed"][2] == pytest.approx(min(1.0, per_seed[2]))
    assert rec["relative_low"] <= rec["relative_mean"] <= rec["relative_high"]
    assert ("gradient", "quantile", "classic", 100) in by and ("gradient", "quantile", "recursive", 20) in by
    count = by[("gradient", "count", "recursive", 2)]
    assert count["absolute_mean"] > 0 and math.isnan(count["relative_mean"]) and count["x_unit"] == "tokens"
    assert not any(r["measure_tag"] == "random" for r in rows)
    text = R.format_summary(rows)
    assert "Gradient" in text and "recursive" in text and "no confidence interval" not in text
    one = R.format_summary(R.summarize(fake_grid(seeds=(0,))))
    assert one.splitlines()[-1] == "one seed: no confidence interval (each [low, high] is the point itself)"


def test_single_seed_ci_is_the_point():
    rows = R.summarize(fake_grid(seeds=(0,)))
    rec = next(r for r in rows if r["roar"] == "recursive" and r["strategy"] == "quantile")
    assert rec["n_seeds"] == 1 and rec["relative_low"] == rec["relative_mean"] == rec["relative_high"]


def test_results_table_columns_and_csv(tmp_path):
    results = fake_grid(seeds=(0,))
    columns, rows = R.results_table(results)
    for col in ("experiment_id", "reference_id", "dataset_key", "task", "seed", "measure", "measure_tag",
                "strategy", "k", "recursive", "roar", "step", "test_reported", "val_reported", "test_macro_f1",
                "val_auroc", "seconds_train", "seconds_total", "device", "notes"):
        assert col in columns, col
    assert len(rows) == len(results) and rows[0]["roar"] == "base"
    path = tmp_path / "r.csv"
    R.write_csv(str(path), columns, rows)
    with open(path) as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(results) and list(back[0]) == columns
    assert float(back[0]["seconds_total"]) == pytest.approx(2.75) and back[0]["notes"] == "a note"


def test_export_writes_csv_json_and_png(tmp_path):
    write_results(tmp_path, fake_grid(seeds=(0, 1)))
    out = tmp_path / "out"
    assert results.main(["--persistent-dir", str(tmp_path), "--out", str(out), "--upto", "20"]) == 0
    for name in ("results.csv", "summary.csv", "summary.json"):
        assert (out / name).exists(), name
    summary = json.load(open(out / "summary.json"))
    assert summary["runs"] == len(fake_grid(seeds=(0, 1))) and summary["summary"]
    assert any(r["relative_mean"] is None for r in summary["summary"])  # NaN -> null (count)
    pngs = sorted(os.listdir(out / "plots"))
    assert pngs == ["roar_synthetic_count.png", "roar_synthetic_quantile.png"]
    with open(out / "plots" / pngs[1], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_export_without_results_is_a_clear_error(tmp_path, capsys):
    assert results.main(["--persistent-dir", str(tmp_path)]) == 2
    assert "no results/*.json" in capsys.readouterr().err
