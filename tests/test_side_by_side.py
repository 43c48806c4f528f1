"""ROAR beside the cheap metrics (analysis/side_by_side.py): the join on hand-built results and erasure
records gives the expected rows, missing pieces leave empty columns, Spearman equals scipy's, and the
export and the report carry the table, the rank agreement and the plot. Fabricated data; no training."""
import csv
import json
import math
import os

import numpy as np
import pytest
import scipy.stats

from nlproar_jax import results as results_cli
from nlproar_jax.analysis import faithfulness as F
from nlproar_jax.analysis import report
from nlproar_jax.analysis import side_by_side as S
from test_results import GRAD, fake_grid, fake_result, write_results

RANDOM_KEEP = {10: 0.6, 20: 0.7}
GRAD_KEEP = {10: 0.8, 20: 0.85}


def keep_runs(seeds=(0,)):
    out = []
    for s in seeds:
        for measure, curve in (("random", RANDOM_KEEP), ("gradient", GRAD_KEEP)):
            for k, v in curve.items():
                r = fake_result(seed=s, k=k, measure=measure, test=v, mode="keep")
                r["experiment_id"] = r["experiment_id"].replace("_rs-quantile_", "_rs-quantile_rm-keep_")
                out.append(r)
    return out


def erasure_record(measure, seed=0, comp=0.2, suff=0.1, flip=0.15, auprc=0.8, settings_suffix="", removal="mask"):
    """An ``erasure/*.json`` as ``python -m nlproar_jax.evaluate`` writes it (the fields the tables read)."""
    return {"evaluation_id": f"synthetic_rnn_s-{seed}_y-{measure}{settings_suffix}",
            "base_id": f"synthetic_rnn_s-{seed}",
            "task": "synthetic", "model": "rnn", "seed": seed, "measure": measure, "measure_tag": measure,
            "measure_options": [], "split": "test", "rows": 10,
            "settings": {"removal": removal, "target": "gold", "bins": [1, 5, 10, 20, 50],
                         "aopc_normalisation": "mean", "split": "test"},
            "erasure": {"aopc_comprehensiveness": comp, "aopc_comprehensiveness_unirex": comp * 5 / 6,
                        "aopc_sufficiency": suff, "aopc_sufficiency_unirex": suff * 5 / 6, "flip_top1": flip},
            "plausibility": None if auprc is None else {"auprc": auprc, "map": auprc + 0.05, "topk_f1": auprc - 0.1},
            "seconds": {"erasure": 0.1}}


def evaluations():
    return [erasure_record("random", 0, comp=0.05, suff=0.3, flip=0.01, auprc=0.1),
            erasure_record("random", 1, comp=0.07, suff=0.32, flip=0.03, auprc=0.12),
            erasure_record("gradient", 0, comp=0.2, suff=0.1, flip=0.15, auprc=0.8),
            erasure_record("gradient", 1, comp=0.3, suff=0.2, flip=0.25, auprc=None),
            # other settings: not mixed into the default settings' means
            erasure_record("gradient", 0, comp=9.0, suff=9.0, flip=9.0, auprc=9.0, removal="delete",
                           settings_suffix="_ev-removal=delete"),
            erasure_record("attention", 0, comp=0.25, suff=0.12, flip=0.2, auprc=0.9)]  # evaluated, not swept


def by_key(rows):
    return {(r["strategy"], r["measure_tag"]): r for r in rows}


def test_join_gives_the_expected_rows():
    runs = fake_grid(seeds=(0, 1, 2)) + keep_runs(seeds=(0,))
    rows = S.side_by_side(runs, evaluations())
    assert [(r["strategy"], r["measure_tag"]) for r in rows] == [
        ("quantile", "random"), ("quantile", "attention"), ("quantile", "gradient"),
        ("count", "random"), ("count", "attention"), ("count", "gradient")]
    assert set(rows[0]) == set(S.SIDE_BY_SIDE_COLUMNS)
    row = by_key(rows)
    grad = row[("quantile", "gradient")]
    # the summary's relative area, by hand, mean over the three seeds
    k, rnd = [0, 10, 20, 100], [0.9, 0.85, 0.8, 0.5]
    classic = [F.area_between_curves(k, rnd, [0.9, GRAD[10] - 0.01 * s, GRAD[20] - 0.01 * s, 0.5])
               / F.max_area(k, rnd) for s in (0, 1, 2)]
    recursive = [F.area_between_curves(k, rnd, [0.9, GRAD[10] - 0.02 * s, GRAD[20] - 0.02 * s, 0.5])
                 / F.max_area(k, rnd) for s in (0, 1, 2)]
    assert grad["roar_classic"] == pytest.approx(np.mean(classic))
    assert grad["roar_recursive"] == pytest.approx(np.mean(recursive))
    # keep: x = .1, .2, 1 (the base at 100); measure - random = .2, .15, 0; random(100) - random = .3, .2, 0
    assert grad["roar_keep"] == pytest.approx((0.1 * 0.35 / 2 + 0.8 * 0.15 / 2) / (0.1 * 0.5 / 2 + 0.8 * 0.2 / 2))
    assert grad["area"] == "relative" and grad["roar_seeds"] == 3 and grad["measure_name"] == "Gradient"
    # erasure: mean over seeds 0 and 1 of the default settings; plausibility only where evaluated
    assert grad["aopc_comprehensiveness"] == pytest.approx(0.25) and grad["aopc_sufficiency"] == pytest.approx(0.15)
    assert grad["flip_top1"] == pytest.approx(0.2) and grad["auprc"] == pytest.approx(0.8)
    assert grad["map"] == pytest.approx(0.85) and grad["erasure_seeds"] == 2
    assert grad["erasure_settings"] == "split=test removal=mask target=gold bins=1,5,10,20,50"
    # random: area 0 by definition wherever its curves exist
    rnd_row = row[("quantile", "random")]
    assert (rnd_row["roar_classic"], rnd_row["roar_recursive"], rnd_row["roar_keep"]) == (0.0, 0.0, 0.0)
    assert rnd_row["aopc_comprehensiveness"] == pytest.approx(0.06) and rnd_row["roar_seeds"] == 3
    # evaluated but not swept: erasure only
    att = row[("quantile", "attention")]
    assert all(math.isnan(att[c]) for c in S.ROAR_COLUMNS) and att["auprc"] == pytest.approx(0.9)
    # count masking: absolute area (x in tokens), no keep runs there
    count = row[("count", "gradient")]
    assert count["area"] == "absolute" and math.isnan(count["roar_classic"]) and math.isnan(count["roar_keep"])
    assert count["roar_recursive"] == pytest.approx(F.area_between_curves([0, 1, 2], [0.9, 0.89, 0.88],
                                                                          [0.9, 0.8, 0.7], x_scale=1))
    # unirex AOPC on request
    unirex = by_key(S.side_by_side(runs, evaluations(), aopc="unirex"))[("quantile", "gradient")]
    assert unirex["aopc_comprehensiveness"] == pytest.approx(0.25 * 5 / 6)


def test_missing_erasure_and_keep_leave_empty_columns(tmp_path):
    runs = fake_grid(seeds=(0,))
    rows = S.side_by_side(runs, [])
    assert rows and all(math.isnan(r[m]) for r in rows for m, _, _ in S.CHEAP_METRICS)
    assert all(math.isnan(r["roar_keep"]) and r["erasure_seeds"] == 0 and r["erasure_settings"] == "" for r in rows)
    assert S.rank_agreement(rows) == []
    assert "nothing to compare" in S.format_rank_agreement([])
    assert S.plot_all_side_by_side(rows, [], str(tmp_path)) == []
    # erasure without any ROAR run: rows with an empty strategy, no crash
    only = S.side_by_side([], evaluations())
    assert {r["strategy"] for r in only} == {""} and all(math.isnan(r["roar_classic"]) for r in only)
    write_results(tmp_path, runs)
    assert results_cli.main(["--persistent-dir", str(tmp_path), "--no-plots"]) == 0
    with open(tmp_path / "export" / "side_by_side.csv") as f:
        back = list(csv.DictReader(f))
    assert back and all(r["aopc_comprehensiveness"] == "" and r["roar_keep"] == "" for r in back)
    assert list(back[0]) == list(S.SIDE_BY_SIDE_COLUMNS)


@pytest.mark.parametrize("seed", range(6))
def test_spearman_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 20))
    x = rng.integers(0, 5, n).astype(float) if seed % 2 else rng.normal(size=n)  # ties on odd seeds
    y = x * rng.choice([-1, 1]) + rng.normal(scale=1.5, size=n)
    rho, p, m = S.spearman(x, y)
    want = scipy.stats.spearmanr(x, y)
    assert m == n and rho == pytest.approx(want.statistic, abs=1e-12) and p == pytest.approx(want.pvalue, rel=1e-9)
    np.testing.assert_allclose(S.average_ranks(x), scipy.stats.rankdata(x))
    # pairs with a NaN on either side are left out
    xn, yn = np.append(x, np.nan), np.append(y, 1.0)
    assert S.spearman(xn, yn)[:2] == pytest.approx((rho, p)) and S.spearman(xn, yn)[2] == n


def test_spearman_degenerate_cases():
    assert all(math.isnan(v) for v in S.spearman([1, 2], [2, 1])[:2])  # n < 3
    assert math.isnan(S.spearman([1, 1, 1, 1], [1, 2, 3, 4])[0])  # constant
    assert S.spearman([1, 2, 3, 4], [4, 3, 2, 1])[:2] == (-1.0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        S.spearman([1, 2, 3], [1, 2])


def test_rank_agreement_orients_sufficiency():
    runs = fake_grid(seeds=(0,))
    runs += [fake_result(k=k, measure="attention", test=v) for k, v in {10: 0.7, 20: 0.6}.items()]
    runs += [fake_result(k=k, measure="occlusion", test=v) for k, v in {10: 0.65, 20: 0.55}.items()]
    evs = [erasure_record("random", comp=0.05, suff=0.3, flip=0.01, auprc=0.1),
           erasure_record("attention", comp=0.1, suff=0.2, flip=0.1, auprc=0.5),
           erasure_record("occlusion", comp=0.15, suff=0.15, flip=0.2, auprc=0.6),
           erasure_record("gradient", comp=0.2, suff=0.1, flip=0.15, auprc=0.8)]
    rows = S.side_by_side(runs, evs)
    quantile = [r for r in rows if r["strategy"] == "quantile"]
    # ROAR: random 0 < attention < occlusion < gradient
    assert [r["measure_tag"] for r in quantile] == ["random", "attention", "gradient", "occlusion"]
    areas = [r["roar_classic"] for r in quantile]
    assert areas[0] < areas[1] < areas[3] < areas[2]
    agreement = {(a["strategy"], a["roar"], a["metric"]): a for a in S.rank_agreement(rows)}
    comp = agreement[("quantile", "classic", "aopc_comprehensiveness")]
    suff = agreement[("quantile", "classic", "aopc_sufficiency")]
    flip = agreement[("quantile", "classic", "flip_top1")]
    assert (comp["rho"], comp["agreement"], comp["n"]) == (1.0, 1.0, 4)
    assert (suff["rho"], suff["agreement"]) == (-1.0, 1.0)
    assert (comp["agreement_without_random"], comp["n_without_random"]) == (1.0, 3)
    # flip ranks occlusion above gradient: 0.8 with random, 0.5 without
    assert flip["rho"] == pytest.approx(0.8) and flip["agreement_without_random"] == pytest.approx(0.5)
    text = S.format_rank_agreement(S.rank_agreement(rows))
    assert "classic" in text and "+1.00 (+1.00)" in text and "+0.80 (+0.50)" in text and "comp AOPC" in text
    assert "across 4 measures" in text and "without random (3 measures)" in text


def write_erasure(root, records):
    os.makedirs(os.path.join(root, "erasure"), exist_ok=True)
    for ev in records:
        with open(os.path.join(root, "erasure", ev["evaluation_id"] + ".json"), "w") as f:
            json.dump(ev, f)


def test_export_and_report_carry_the_section(tmp_path, capsys):
    from test_report import fake_persistent_dir

    fake_persistent_dir(str(tmp_path))
    write_erasure(str(tmp_path), [erasure_record("random", comp=0.05, suff=0.3, flip=0.01, auprc=0.1),
                                  erasure_record("attention", comp=0.1, suff=0.2, flip=0.1, auprc=0.5),
                                  erasure_record("gradient", comp=0.2, suff=0.1, flip=0.15, auprc=0.8)])
    out = tmp_path / "x"
    assert results_cli.main(["--persistent-dir", str(tmp_path), "--out", str(out), "--report"]) == 0
    printed = capsys.readouterr().out
    assert "rank agreement of ROAR (quantile masking)" in printed and "(n/a)" in printed  # 2 measures without random
    assert (out / "side_by_side.csv").exists() and (out / "rank_agreement.csv").exists()
    png = out / "plots" / "side_by_side_synthetic_quantile.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text(encoding="utf-8")
    section = page[page.index("<h2>ROAR beside the cheap metrics</h2>"):page.index("<h2>Test metric per k")]
    assert "comp AOPC" in section and "AUPRC" in section and "Rank agreement" in section
    assert 'alt="side_by_side_synthetic_quantile.png"' in section and "data:image/png;base64," in section
    assert ">Gradient<" in section and ">Attention<" in section
    # the library call alone computes the section from the erasure files
    alone = report.write_report(str(tmp_path), str(tmp_path / "alone.html"), n_examples=1)
    assert "side_by_side_synthetic_quantile.png" in open(alone, encoding="utf-8").read()


def test_report_without_erasure_says_so(tmp_path):
    from test_report import fake_persistent_dir

    fake_persistent_dir(str(tmp_path))
    page = open(report.write_report(str(tmp_path), str(tmp_path / "r.html"), n_examples=1), encoding="utf-8").read()
    assert "ROAR beside the cheap metrics" in page and "No erasure results yet" in page
