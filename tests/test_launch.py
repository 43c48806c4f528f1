"""Launching grids: the plan's dependency order, jobs and their afterok chains, Slurm scripts, and
idempotent re-launch (finished runs skipped, dependencies on them dropped). No Slurm needed."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from launch import jobs as joblib
from launch import slurm
from nlproar_jax.names import Paths
from nlproar_jax.roar.plan import plan_grid


def load_config(name="synthetic.py", **grid):
    spec = importlib.util.spec_from_file_location(f"cfg_{name[:-3]}", REPO_ROOT / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in grid.items():
        config.grid[key] = value
    return config


@pytest.fixture
def config(tmp_path):
    c = load_config(seeds=(0, 1), measures=("random", "attention", "gradient"), quantile_k=(10, 20, 30),
                    random_quantile_k=(100,), count_k=(1, 2))
    c.persistent_dir = str(tmp_path)
    return c


def finish(persistent_dir, run):
    """Fake a finished run: its results json."""
    path = Paths(persistent_dir).result(run.experiment)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"experiment_id": run.id}, f)


def ancestors(jobs, name):
    by_name = {j.name: j for j in jobs}
    out, todo = set(), list(by_name[name].after)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += by_name[n].after
    return out


def test_plan_runs_come_after_their_reference(config):
    plan = plan_grid(config)
    position = {run.id: i for i, run in enumerate(plan)}
    assert len(position) == len(plan)
    for run in plan:
        ref = run.experiment.reference()
        if ref is None:
            assert run.after == ()
            continue
        assert run.after == (ref.id,)
        assert position[ref.id] < position[run.id], run.id
        if run.experiment.recursive and run.experiment.k > run.experiment.step:
            assert ref.k == run.experiment.k - run.experiment.step and ref.recursive
    kinds = {(r.experiment.recursive, r.experiment.measure) for r in plan if r.experiment.k}
    assert (True, "random") not in kinds and (True, "attention") in kinds and (False, "attention") in kinds


def test_jobs_wait_for_every_reference(config, tmp_path):
    plan = plan_grid(config)
    jobs = joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path))
    job_of = {run.id: job.name for job in jobs for run in job.runs}
    assert sorted(job_of) == sorted(r.id for r in plan)
    names = [j.name for j in jobs]
    for job in jobs:  # topological: every awaited job comes earlier
        assert all(names.index(a) < names.index(job.name) for a in job.after)
    for run in plan:
        ref = run.experiment.reference()
        if ref is not None:
            assert job_of[ref.id] in ancestors(jobs, job_of[run.id]), run.id
    by_name = {j.name: j for j in jobs}
    # the lead computes the shared base-model importance of each model-based measure first
    lead = by_name["synthetic-s0-lead"]
    assert {r.experiment.measure for r in lead.runs} == {"attention", "gradient"} and len(lead.runs) == 2
    assert by_name["synthetic-s0-classic"].after == ("synthetic-s0-lead",)
    assert by_name["synthetic-s0-rec-quantile-k20"].after == ("synthetic-s0-rec-quantile-k10",)
    assert by_name["synthetic-s0-rec-count-k2"].after == ("synthetic-s0-rec-count-k1",)
    assert by_name["synthetic-s1-base"].after == ()
    assert by_name["synthetic-s0-classic"].is_array and not by_name["synthetic-s0-base"].is_array
    # without sharing, the classic runs wait only for the base
    plain = {j.name: j for j in joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path),
                                                  share_importance=False)}
    assert "synthetic-s0-lead" not in plain and plain["synthetic-s0-classic"].after == ("synthetic-s0-base",)


def test_relaunch_skips_finished_runs_and_drops_their_dependencies(config, tmp_path):
    plan = plan_grid(config)
    done = [r for r in plan if r.experiment.seed == 0 and not r.experiment.recursive]  # base + classic
    done += [r for r in plan if r.experiment.seed == 0 and r.experiment.recursive and r.experiment.k in (10, 1)]
    for run in done:
        finish(tmp_path, run)
    pending = joblib.pending_runs(plan, str(tmp_path))
    assert {r.id for r in pending} == {r.id for r in plan} - {r.id for r in done}
    jobs = {j.name: j for j in joblib.group_jobs(pending, str(tmp_path))}
    assert not any(name.startswith("synthetic-s0-") and name.endswith(("base", "classic", "lead", "-k10", "-k1"))
                   for name in jobs)
    # step 20 now starts at once: step 10 finished
    assert jobs["synthetic-s0-rec-quantile-k20"].after == ()
    assert jobs["synthetic-s0-rec-count-k2"].after == ()
    assert jobs["synthetic-s1-classic"].after == ("synthetic-s1-lead",)
    for run in plan:
        finish(tmp_path, run)
    assert joblib.pending_runs(plan, str(tmp_path)) == []
    assert joblib.group_jobs([], str(tmp_path)) == []


def test_cached_importance_needs_no_lead(config, tmp_path):
    plan = plan_grid(config)
    base = next(r for r in plan if r.experiment.k == 0 and r.experiment.seed == 0)
    finish(tmp_path, base)
    for tag in ("attention", "gradient"):
        path = Paths(str(tmp_path)).importance(base.experiment, tag)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    jobs = {j.name: j for j in joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path))}
    assert "synthetic-s0-lead" not in jobs and jobs["synthetic-s0-classic"].after == ()


def options(tmp_path, **kw):
    return slurm.SlurmOptions(script_dir=str(tmp_path / "scripts"), log_dir=str(tmp_path / "logs"), **kw)


def command(tmp_path):
    return slurm.RunCommand(config_file=str(REPO_ROOT / "configs" / "synthetic.py"), persistent_dir=str(tmp_path),
                            workdir=str(REPO_ROOT), repo_root=str(REPO_ROOT),
                            common_args=("--config.max_epochs=2", "--config.grid.measures=('random', 'gradient')"))


def test_slurm_dry_run_has_directives_arrays_and_afterok(config, tmp_path):
    jobs = joblib.group_jobs(joblib.pending_runs(plan_grid(config), str(tmp_path)), str(tmp_path))
    text = slurm.dry_run_text(jobs, command(tmp_path), options(tmp_path, partition="gpu", array_limit=4))
    assert "#SBATCH --partition=gpu" in text and "#SBATCH --requeue" in text
    assert "#SBATCH --time=00:15:00" in text and "#SBATCH --gres=gpu:1" in text
    classic = next(j for j in jobs if j.name == "synthetic-s0-classic")
    assert f"#SBATCH --array=0-{len(classic.runs) - 1}%4" in text
    assert "--dependency=afterok:${JOB_synthetic_s0_lead%%;*}" in text
    assert "-m nlproar_jax.train --config=" in text and f"--config.persistent_dir={tmp_path}" in text
    # launch overrides reach every task, shell-quoted
    assert "--config.max_epochs=2 '--config.grid.measures=('\"'\"'random'\"'\"', " in text
    for job in jobs:
        assert f"{job.name}.sbatch" in text
    assert not (tmp_path / "scripts").exists()  # a dry run writes nothing


def test_slurm_options_validate():
    with pytest.raises(ValueError, match="not a Slurm time"):
        slurm.SlurmOptions(script_dir="s", log_dir="l", time="ninety")
    with pytest.raises(ValueError, match="memory"):
        slurm.SlurmOptions(script_dir="s", log_dir="l", mem="lots")


def test_submit_chains_job_ids_and_array_lines_select_runs(config, tmp_path):
    jobs = joblib.group_jobs(joblib.pending_runs(plan_grid(config), str(tmp_path)), str(tmp_path))
    calls = []

    def fake_sbatch(args):
        calls.append(args)
        return str(1000 + len(calls))

    opts = options(tmp_path, time="01:00:00")
    ids = slurm.submit(jobs, command(tmp_path), opts, run_sbatch=fake_sbatch)
    assert list(ids) == [j.name for j in jobs]
    for job, args in zip(jobs, calls):
        assert args[-1] == slurm.script_path(opts, job)
        if job.after:
            assert args[0] == "--dependency=afterok:" + ":".join(ids[a] for a in job.after)
        else:
            assert len(args) == 1
    classic = next(j for j in jobs if j.name == "synthetic-s1-classic")
    lines = open(slurm.args_path(opts, classic)).read().splitlines()
    assert len(lines) == len(classic.runs)
    assert lines[2] == " ".join(classic.runs[2].command_args())
    script = open(slurm.script_path(opts, classic)).read()
    assert "#SBATCH --time=01:00:00" in script and "SLURM_ARRAY_TASK_ID + 1" in script


def test_array_script_runs_the_selected_line(config, tmp_path):
    """The generated bash picks line i + 1 for task i and passes the words through intact."""
    jobs = joblib.group_jobs(joblib.pending_runs(plan_grid(config), str(tmp_path)), str(tmp_path))
    job = next(j for j in jobs if j.is_array)
    opts = options(tmp_path, python="echo")  # "exec echo -m nlproar_jax.train ..." prints the command
    slurm.write_job_files([job], command(tmp_path), opts)
    out = subprocess.run(["bash", slurm.script_path(opts, job)], env={**os.environ, "SLURM_ARRAY_TASK_ID": "1"},
                         capture_output=True, text=True, check=True).stdout
    assert " ".join(job.runs[1].command_args()) in out
    assert "--config.grid.measures=('random', 'gradient')" in out


def test_grid_cli_dry_run(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    base = [sys.executable, "launch/grid.py", "--config=configs/synthetic.py",
            f"--config.persistent_dir={tmp_path}", "--config.grid.quantile_k=(10, 20)"]
    out = subprocess.run(base + ["--dry-run", "--partition=debug"], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --partition=debug" in out.stdout and "afterok" in out.stdout
    assert "'--config.grid.quantile_k=(10, 20)'" in out.stdout


def test_normalise_argv_accepts_hyphens():
    from launch.grid import normalise_argv

    assert normalise_argv(["x", "--dry-run", "--array-limit=3", "--no-share-importance", "--config.a-b=1"]) == [
        "x", "--dry_run", "--array_limit=3", "--noshare_importance", "--config.a-b=1"]
