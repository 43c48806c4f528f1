"""Keep-and-retrain (KAR, FRESH / UNIREX): keep each row's top k' tokens and mask every other maskable
token. Masking counts and complements, experiment ids, the plan and launcher, tables and plots, and one
tiny end-to-end keep run."""
import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from nlproar_jax.data.tokens import CLS, EOS, MASK, PAD, UNK
from nlproar_jax.names import Experiment
from nlproar_jax.roar.masking import masked_count, roar_mask

# Rows of different lengths, padded; no earlier [MASK] (keep is classic only: its rows have none).
ROWS = np.array([
    [CLS, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, EOS],
    [CLS, 10, 11, 12, UNK, EOS, PAD, PAD, PAD, PAD, PAD, PAD],
    [CLS, 20, EOS, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
    [CLS, 21, 22, 23, 24, 25, 26, EOS, PAD, PAD, PAD, PAD],
    [CLS, EOS, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD],  # nothing maskable
], np.int32)


def load_config(name="synthetic.py"):
    spec = importlib.util.spec_from_file_location(f"cfg_keep_{name[:-3]}", REPO_ROOT / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def with_(config, **kw):
    c = config.copy_and_resolve_references()
    for k, v in kw.items():
        c[k] = v
    return c


# -- masking ---------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy,k", [("count", 0), ("count", 1), ("count", 3), ("count", 6), ("count", 50),
                                        ("quantile", 10), ("quantile", 50), ("quantile", 90), ("quantile", 100)])
def test_keep_keeps_exactly_k_prime_top_tokens_and_masks_the_other_maskable_ones(strategy, k):
    rng = np.random.default_rng(k)
    scores = rng.normal(size=ROWS.shape).astype(np.float32)
    scores[ROWS < MASK] = 100.0  # non-maskable positions with huge scores are neither kept nor masked
    out = np.asarray(roar_mask(ROWS, scores, k, strategy, mode="keep"))
    for row, new, s in zip(ROWS, out, scores):
        maskable = row >= MASK
        n = int(maskable.sum())
        kept_expected = min(k, n) if strategy == "count" else (k * n) // 100
        kept = maskable & (new == row)
        assert kept.sum() == kept_expected  # k' >= n (count 50, quantile 100): every token kept
        assert np.all(new[maskable & ~kept] == MASK) and (new == MASK).sum() == n - kept_expected
        assert np.all(new[~maskable] == row[~maskable])  # [PAD], [CLS], [EOS] never change
        if 0 < kept_expected < n:  # the kept ones are the highest-scored maskable tokens
            assert s[kept].min() >= s[maskable & ~kept].max()
        assert len(new) == len(row)


def test_keep_everything_changes_nothing():
    scores = np.random.default_rng(0).normal(size=ROWS.shape).astype(np.float32)
    np.testing.assert_array_equal(roar_mask(ROWS, scores, 100, "quantile", mode="keep"), ROWS)
    np.testing.assert_array_equal(roar_mask(ROWS, scores, ROWS.shape[1], "count", mode="keep"), ROWS)
    # and keeping nothing masks every maskable token, exactly what removing everything masks
    np.testing.assert_array_equal(roar_mask(ROWS, scores, 0, "quantile", mode="keep"),
                                  roar_mask(ROWS, scores, 100, "quantile"))


@pytest.mark.parametrize("strategy,k", [("count", 2), ("count", 4), ("quantile", 30), ("quantile", 70)])
def test_keep_masks_are_the_complement_of_remove_masks_over_maskable_positions(strategy, k):
    scores = np.random.default_rng(k).normal(size=ROWS.shape).astype(np.float32)
    scores[0, 3] = scores[0, 4]  # a tie: both modes break it the same way (the lower position ranks first)
    maskable = ROWS >= MASK
    removed = np.asarray(roar_mask(ROWS, scores, k, strategy)) == MASK
    kept_out = np.asarray(roar_mask(ROWS, scores, k, strategy, mode="keep")) == MASK
    np.testing.assert_array_equal(kept_out, maskable & ~removed)


def test_keep_with_a_models_own_maskable_positions_and_mask_id():
    tokens = np.array([[101, 7, 8, 9, 11, 102, 0], [101, 12, 13, 102, 0, 0, 0]], np.int32)
    maskable = (tokens != 0) & (tokens != 101) & (tokens != 102)
    scores = np.arange(tokens.size, dtype=np.float32).reshape(tokens.shape)[:, ::-1].copy()  # earlier = higher
    out = np.asarray(roar_mask(tokens, scores, 1, "count", maskable=jnp.asarray(maskable), mask_token=103,
                               mode="keep"))
    np.testing.assert_array_equal(out, [[101, 7, 103, 103, 103, 102, 0], [101, 12, 103, 102, 0, 0, 0]])


def test_one_compile_for_every_keep_k_and_unknown_mode_names_the_valid_ones():
    scores = np.zeros(ROWS.shape, np.float32)
    roar_mask(ROWS, scores, jnp.int32(1), "count", mode="keep")
    before = roar_mask._cache_size()
    for k in (2, 3, 7):
        roar_mask(ROWS, scores, jnp.int32(k), "count", mode="keep")
    assert roar_mask._cache_size() == before
    with pytest.raises(ValueError, match=r"unknown ROAR mode 'retain'; valid: \('remove', 'keep'\)"):
        roar_mask(ROWS, scores, 1, "count", mode="retain")
    np.testing.assert_array_equal(masked_count(jnp.asarray(ROWS >= MASK), 3, "count"), [3, 3, 1, 3, 0])


def test_mask_split_keeps_rows_ragged_and_complements_removal():
    from nlproar_jax.data.dataset import Ragged, Split
    from nlproar_jax.roar.scores import mask_split

    rows = [r[r != PAD] for r in ROWS[:4]]
    main = Ragged(np.concatenate(rows).astype(np.int32), np.cumsum([0] + [len(r) for r in rows]).astype(np.int64))
    split = Split(main=main, labels=np.zeros(len(rows), np.int32))
    scores = np.random.default_rng(1).normal(size=len(main.values)).astype(np.float32)
    keep = mask_split(split, scores, 40, "quantile", 2, mode="keep")
    remove = mask_split(split, scores, 40, "quantile", 2)
    for i, row in enumerate(rows):
        maskable = row >= MASK
        new = keep.main.row(i)
        assert len(new) == len(row) and (maskable & (new == row)).sum() == (40 * maskable.sum()) // 100
        np.testing.assert_array_equal(new == MASK, maskable & (remove.main.row(i) != MASK))


# -- experiment ids --------------------------------------------------------------------------
def test_keep_ids_are_distinct_and_remove_ids_unchanged():
    c = with_(load_config(), k=20, importance_measure="gradient")
    remove = Experiment.from_config(c)
    keep = Experiment.from_config(with_(c, roar_mode="keep"))
    assert remove.id == "synthetic_rnn_s-0_y-gradient_rs-quantile_k-20_r-0"  # as before keep existed
    assert keep.id == "synthetic_rnn_s-0_y-gradient_rs-quantile_rm-keep_k-20_r-0"
    assert Experiment.from_config(with_(c, roar_mode="keep", roar_strategy="count", k=3)).id == \
        "synthetic_rnn_s-0_y-gradient_rs-count_rm-keep_k-3_r-0"
    assert keep.keep and not remove.keep
    assert keep.fields()["mode"] == "keep" and remove.fields()["mode"] == "remove"
    assert keep.reference() == remove.reference() and keep.reference().id == "synthetic_rnn_s-0"
    assert keep.measure_tag == remove.measure_tag  # the same importance file
    base = Experiment.from_config(with_(c, k=0, roar_mode="keep"))  # k = 0 is the base model in either mode
    assert base.id == "synthetic_rnn_s-0" and base.mode == "remove"


def test_keep_is_classic_only_and_unknown_modes_name_the_valid_ones():
    c = with_(load_config(), k=20, importance_measure="gradient", roar_mode="keep")
    with pytest.raises(ValueError, match=r"roar_mode='keep'.*classic only: set recursive=False, or roar_mode='remove'"):
        Experiment.from_config(with_(c, recursive=True))
    with pytest.raises(ValueError, match=r"unknown roar_mode 'kar'; valid: \['remove', 'keep'\]"):
        Experiment.from_config(with_(c, roar_mode="kar"))


def test_train_command_of_a_keep_run_names_the_mode():
    from nlproar_jax.roar.references import train_command

    exp = Experiment.from_config(with_(load_config(), k=20, importance_measure="gradient", roar_mode="keep"))
    assert "--config.roar_mode=keep" in train_command(exp, "configs/synthetic.py")
    assert "roar_mode" not in train_command(exp.base(), "configs/synthetic.py")


# -- the plan and the launcher ---------------------------------------------------------------
def keep_grid_config(tmp_path=None, **grid):
    c = load_config()
    c.grid.seeds = (0, 1)
    c.grid.measures = ("random", "attention", "gradient")
    c.grid.keep_quantile_k = (10, 20)
    c.grid.keep_count_k = (2,)
    for key, value in grid.items():
        c.grid[key] = value
    if tmp_path is not None:
        c.persistent_dir = str(tmp_path)
    return c


def test_default_grids_have_no_keep_runs():
    from nlproar_jax.roar.plan import plan_grid

    for name in ("synthetic.py", "sst.py"):
        c = load_config(name)
        assert tuple(c.grid.keep_quantile_k) == () and tuple(c.grid.keep_count_k) == ()
        assert not [run for run in plan_grid(c) if run.experiment.keep or "rm-keep" in run.id]


def test_plan_lists_keep_runs_after_their_base_model_with_distinct_ids():
    from nlproar_jax.roar.plan import plan_grid

    c = keep_grid_config()
    plan = plan_grid(c)
    without = plan_grid(keep_grid_config(keep_quantile_k=(), keep_count_k=()))
    remove_ids = [run.id for run in plan if not run.experiment.keep]
    assert remove_ids == [run.id for run in without]  # the remove runs and their order are untouched
    keep = [run for run in plan if run.experiment.keep]
    assert len({run.id for run in plan}) == len(plan)
    assert sorted((r.experiment.seed, r.experiment.measure, r.experiment.strategy, r.experiment.k) for r in keep) == \
        sorted((s, m, st, k) for s in (0, 1) for m in ("random", "attention", "gradient")
               for st, ks in (("quantile", (10, 20)), ("count", (2,))) for k in ks)
    position = {run.id: i for i, run in enumerate(plan)}
    for run in keep:
        exp = run.experiment
        assert not exp.recursive and exp.mode == "keep" and "_rm-keep_" in run.id
        assert run.after == (f"synthetic_rnn_s-{exp.seed}",) and position[run.after[0]] < position[run.id]
        assert ("roar_mode", "keep") in run.overrides and "--config.roar_mode=keep" in run.command_args()
        assert run.apply(c)["roar_mode"] == "keep" and Experiment.from_config(run.apply(c)).id == run.id
    # a global --config.roar_mode=keep changes no planned run: each names its mode
    assert [run.id for run in plan_grid(with_(c, roar_mode="keep"))] == [run.id for run in plan]
    with pytest.raises(ValueError, match=r"grid.keep_quantile_k=\(0, 10\): keep runs need k >= 1"):
        plan_grid(keep_grid_config(keep_quantile_k=(0, 10)))
    with pytest.raises(ValueError, match="out of range"):
        plan_grid(keep_grid_config(keep_quantile_k=(120,)))


def test_launcher_puts_keep_runs_in_keep_jobs_that_wait_like_classic_runs(tmp_path):
    from launch import jobs as joblib
    from nlproar_jax.roar.plan import plan_grid

    c = keep_grid_config(tmp_path, seeds=(0,), quantile_k=(10,), count_k=(), recursive=False)
    pending = joblib.pending_runs(plan_grid(c), str(tmp_path))
    jobs = {job.name: job for job in joblib.group_jobs(pending, str(tmp_path))}
    assert {"synthetic-s0-keep-random", "synthetic-s0-keep-attention", "synthetic-s0-keep-gradient"} <= set(jobs)
    assert all(run.experiment.keep for name, job in jobs.items() if "-keep-" in name for run in job.runs)
    assert not any(run.experiment.keep for name, job in jobs.items() if "-keep-" not in name for run in job.runs)
    assert jobs["synthetic-s0-keep-random"].needs == ("synthetic_rnn_s-0",)
    # the attention importance file is shared by its classic and keep runs: one lead computes it
    lead = [run for run in jobs["synthetic-s0-lead"].runs if run.experiment.measure == "attention"]
    assert len(lead) == 1 and lead[0].id in jobs["synthetic-s0-keep-attention"].needs


@pytest.mark.slow  # two subprocesses importing JAX: 10-45 s on a loaded 2-core machine
def test_command_line_keep_sweep_plan_and_one_line_errors(tmp_path):
    """The README's keep sweep, as a dry run: the override parses and the plan lists the keep runs;
    recursive keep is one line with exit code 2."""
    import subprocess
    import sys

    def cli(module, *args):
        return subprocess.run([sys.executable, "-m", module, "--config=configs/synthetic.py", *args,
                               f"--config.persistent_dir={tmp_path}", "--config.malloc_hugetlb=False"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})

    out = cli("nlproar_jax.sweep", "--config.grid.keep_quantile_k=(10,20,30)", "--dry_run")
    assert out.returncode == 0, out.stderr
    keep = [line for line in out.stdout.splitlines() if "_rm-keep_" in line]
    assert len(keep) == 3 * len(load_config().grid.measures)
    assert "synthetic_rnn_s-0_y-gradient_rs-quantile_rm-keep_k-20_r-0 after synthetic_rnn_s-0" in keep
    out = cli("nlproar_jax.train", "--config.k=10", "--config.roar_mode=keep", "--config.recursive=True")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "roar_mode='keep'" in lines[0] and "recursive=False" in lines[0], out.stderr


# -- tables and plots ------------------------------------------------------------------------
def fake(seed=0, k=0, measure="random", strategy="quantile", mode="remove", test=0.9, recursive=False):
    exp = Experiment("synthetic", seed, k, measure, strategy, recursive, 10 if strategy == "quantile" else 1,
                     50, "alpha_weighted", mode=mode if k else "remove")
    metrics = {"accuracy": test, "macro_f1": test, "micro_f1": test, "auroc": test, "loss": 1 - test}
    r = {**exp.fields(), "reference_id": None if k == 0 else exp.base().id, "reported_metric": "macro_f1",
         "monitor": "auroc", "val": dict(metrics), "test": metrics, "seconds": {"train": 1.0}, "notes": []}
    if mode == "remove":
        del r["mode"]  # results written before the field existed are remove runs
    return r


def fake_keep_grid(seeds=(0, 1)):
    out = []
    for s in seeds:
        out.append(fake(s, test=0.9))
        out += [fake(s, k, test=v) for k, v in {10: 0.85, 20: 0.8, 100: 0.5}.items()]
        out += [fake(s, k, "gradient", test=v) for k, v in {10: 0.6, 20: 0.5}.items()]
        out += [fake(s, k, "random", mode="keep", test=v) for k, v in {10: 0.55, 20: 0.6}.items()]
        out += [fake(s, k, "gradient", mode="keep", test=v + 0.01 * s) for k, v in {10: 0.85, 20: 0.88}.items()]
        out += [fake(s, k, "gradient", strategy="count", mode="keep", test=0.7) for k in (1, 2)]
    return out


def test_keep_curves_are_their_own_and_never_enter_remove_curves_or_the_summary():
    from nlproar_jax.analysis import tables as R

    results = fake_keep_grid()
    remove_only = [r for r in results if r.get("mode", "remove") == "remove"]
    assert R.seed_curves(results) == R.seed_curves(remove_only)
    assert R.summarize(results, upto=(None, 20)) == R.summarize(remove_only, upto=(None, 20))
    keep = R.seed_curves(results, mode="keep")
    assert set(keep) == {("synthetic", "random", "quantile", False), ("synthetic", "gradient", "quantile", False),
                         ("synthetic", "gradient", "count", False)}
    # the base model is quantile keep k = 100 (nothing masked); count keep has no such level
    assert keep[("synthetic", "gradient", "quantile", False)][1] == pytest.approx({10: 0.86, 20: 0.89, 100: 0.9})
    assert keep[("synthetic", "gradient", "count", False)][0] == {1: 0.7, 2: 0.7}
    with pytest.raises(ValueError, match="valid"):
        R.seed_curves(results, mode="kar")
    rows = R.results_table(results)[1]
    assert {(r["roar"], r["mode"]) for r in rows} == {("base", "remove"), ("classic", "remove"), ("keep", "keep")}


def test_roar_table_shows_keep_blocks_beside_remove_blocks():
    from nlproar_jax.analysis import tables as R

    text = R.format_roar_table(fake_keep_grid())
    blocks = text.split("\n\n")
    titles = [b.splitlines()[0] for b in blocks]
    assert titles == ["synthetic: test macro_f1 (mean over seeds), quantile masking",
                      "synthetic: test macro_f1 (mean over seeds), quantile keep-and-retrain "
                      "(k: % of tokens kept, the others masked)",
                      "synthetic: test macro_f1 (mean over seeds), count keep-and-retrain (k: tokens kept, "
                      "the others masked)"]
    remove, keep = blocks[0].splitlines(), blocks[1].splitlines()
    assert not any("keep" in line for line in remove[1:])
    assert keep[1].split() == ["measure", "roar", "k=10%", "k=20%", "k=100%"]
    assert keep[3].split() == ["Gradient", "keep", "0.855", "0.885", "0.900"]
    assert keep[4].split() == ["Random", "keep", "0.550", "0.600", "0.900"]
    assert R.format_roar_table([r for r in fake_keep_grid() if r["k"] == 0 or r.get("mode") == "keep"]) \
        .splitlines()[0].endswith("quantile keep-and-retrain (k: % of tokens kept, the others masked)")


def test_plots_draw_keep_curves_in_a_third_dashed_panel(tmp_path):
    import matplotlib.image

    from nlproar_jax.analysis import plots

    results = fake_keep_grid()
    paths = plots.plot_all(results, str(tmp_path / "with"))
    without = plots.plot_all([r for r in results if r.get("mode", "remove") == "remove"], str(tmp_path / "without"))
    assert [os.path.basename(p) for p in paths] == ["roar_synthetic_quantile.png", "roar_synthetic_count.png"]
    assert [os.path.basename(p) for p in without] == ["roar_synthetic_quantile.png"]
    wide, narrow = matplotlib.image.imread(paths[0]), matplotlib.image.imread(without[0])
    assert wide.shape[1] == pytest.approx(narrow.shape[1] * 1.5, abs=2)  # three panels, not two

    drawn = {}
    real_plot_roar = plots.plot_roar

    def spy(curves, **kw):
        drawn[kw["strategy"]] = kw.get("keep")
        return real_plot_roar(curves, **kw)

    plots.plot_roar, saved = spy, plots.plot_roar
    try:
        plots.plot_all(results, str(tmp_path / "spy"))
    finally:
        plots.plot_roar = saved
    assert set(drawn["quantile"]) == {"random", "gradient"} and set(drawn["count"]) == {"gradient"}


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_tiny_keep_run_end_to_end(tmp_path):
    from nlproar_jax.analysis.tables import format_roar_table, load_results
    from nlproar_jax.data.dataset import TaskData
    from nlproar_jax.names import Paths
    from nlproar_jax.roar.references import masked_data
    from nlproar_jax.roar.run import load_base_data, run_experiment

    c = load_config()
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 100, 40, 40
    c.dataset.max_length = 16
    c.embedding_dim = c.hidden_size = 6
    c.max_epochs = 1
    c.persistent_dir = str(tmp_path)
    run_experiment(c)  # the k = 0 base model
    keep_cfg = with_(c, k=30, importance_measure="attention", roar_mode="keep")
    with pytest.raises(ValueError, match="classic only"):
        run_experiment(with_(keep_cfg, recursive=True))
    result = run_experiment(keep_cfg)
    assert result["experiment_id"] == "synthetic_rnn_s-0_y-attention_rs-quantile_rm-keep_k-30_r-0"
    assert result["mode"] == "keep" and result["recursive"] is False
    assert result["reference_id"] == "synthetic_rnn_s-0"
    removed = run_experiment(with_(c, k=30, importance_measure="attention"))
    assert removed["mode"] == "remove" and removed["importance_file"] == result["importance_file"]

    # the data it trained on: floor(30 n / 100) tokens kept per row, every other maskable one masked
    paths, base = Paths(c.persistent_dir), load_base_data(c)
    data: TaskData = masked_data(paths, Experiment.from_config(keep_cfg), base, keep_cfg)
    for name, split in data.splits.items():
        for i in range(len(split)):
            row, new = base.splits[name].main.row(i), split.main.row(i)
            maskable = row >= MASK
            assert (maskable & (new == row)).sum() == (30 * maskable.sum()) // 100
            assert np.all(new[~maskable] == row[~maskable]) and np.all(new[maskable & (new != row)] == MASK)

    text = format_roar_table(load_results(c.persistent_dir))
    keep_block = next(b for b in text.split("\n\n") if "keep-and-retrain" in b.splitlines()[0])
    row = next(line for line in keep_block.splitlines() if line.startswith("Attention"))
    assert row.split()[:2] == ["Attention", "keep"]
    assert float(row.split()[2]) == pytest.approx(result["test"]["macro_f1"], abs=5e-4)
