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
        exp = run.experiment
        twin = [f"{exp.task}_{exp.model}_s-{exp.seed}_y-{exp.measure_tag}_rs-{exp.strategy}_k-{exp.k}_r-0"] \
            if exp.recursive and exp.k == exp.step else []
        twin = [t for t in twin if t in position]  # ... when the grid has it (count k: random only)
        assert run.after == (ref.id, *twin)  # a first recursive step also waits for its classic twin
        assert all(position[a] < position[run.id] for a in run.after), run.id
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
    ids = {(r.experiment.seed, r.experiment.measure, r.experiment.k, r.experiment.recursive): r.id for r in plan}
    # the lead computes the shared base-model importance of each model-based measure first
    lead = by_name["synthetic-s0-lead"]
    assert {r.experiment.measure for r in lead.runs} == {"attention", "gradient"} and len(lead.runs) == 2
    assert lead.needs == (ids[0, "random", 0, False],)
    # finer dependencies: a measure's classic runs wait for that measure's lead run only (its array task),
    # random's for the base model only, and a recursive step for the previous step of its own measure
    attention = by_name["synthetic-s0-classic-attention"]
    assert attention.after == ("synthetic-s0-lead",) and attention.needs == (ids[0, "attention", 10, False],)
    assert by_name["synthetic-s0-classic-random"].needs == (ids[0, "random", 0, False],)
    assert by_name["synthetic-s0-rec-quantile-k20-gradient"].needs == (ids[0, "gradient", 10, True],)
    assert by_name["synthetic-s0-rec-count-k2-attention"].after == ("synthetic-s0-rec-count-k1-attention",)
    assert by_name["synthetic-s1-base"].after == () and by_name["synthetic-s1-base"].needs == ()
    assert attention.is_array and not by_name["synthetic-s0-base"].is_array
    assert attention.tasks == tuple((run,) for run in attention.runs)
    # without sharing, the classic runs wait only for the base
    plain = {j.name: j for j in joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path),
                                                  share_importance=False)}
    assert "synthetic-s0-lead" not in plain
    assert plain["synthetic-s0-classic-attention"].after == ("synthetic-s0-base",)


def test_runs_per_task_packs_runs_into_tasks(config, tmp_path):
    plan = plan_grid(config)
    jobs = {j.name: j for j in joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path),
                                                 runs_per_task=2)}
    random = jobs["synthetic-s0-classic-random"]  # quantile 10, 20, 30, 100 and count 1, 2
    assert [len(t) for t in random.tasks] == [2, 2, 2] and random.runs_per_task == 2
    assert random.task_of(random.runs[3].id) == 1
    assert slurm.args_lines(random)[1] == f"{random.runs[2].id},{random.runs[3].id}"
    with pytest.raises(ValueError, match="runs_per_task"):
        joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path), runs_per_task=0)


def test_on_gpus_each_classic_job_is_one_task_so_its_runs_train_as_one_program(config, tmp_path):
    from launch.grid import whole_task_kinds

    assert whole_task_kinds(1, "auto") == ("classic",) and whole_task_kinds(0, "auto") == ()
    assert whole_task_kinds(2, "false") == () and whole_task_kinds(1, True) == ("classic",)
    plan = plan_grid(config)
    pending = joblib.pending_runs(plan, str(tmp_path))
    jobs = {j.name: j for j in joblib.group_jobs(pending, str(tmp_path), whole_kinds=("classic",))}
    random = jobs["synthetic-s0-classic-random"]  # quantile 10, 20, 30, 100 and count 1, 2
    assert len(random.tasks) == 1 and len(random.runs) == 6 and not random.is_array
    assert slurm.args_lines(random) == [",".join(run.id for run in random.runs)]
    # the sweep in that task groups each strategy's consecutive runs into one program
    from nlproar_jax.sweep import group_classic_runs
    assert sorted(len(g) for g in group_classic_runs(list(random.runs))) == [2, 4]
    # other kinds keep runs_per_task
    assert all(len(t) == 1 for j in jobs.values() if j.kind != "classic" for t in j.tasks)


def test_queued_runs_are_not_submitted_again_and_their_dependents_wait_for_them(config, tmp_path):
    """A relaunch while an earlier launch's jobs are queued: squeue's entries (array ranges, single
    running tasks, plain jobs) map back to runs through the launch records."""
    plan = plan_grid(config)
    jobs = joblib.group_jobs(joblib.pending_runs(plan, str(tmp_path)), str(tmp_path))
    by_name = {j.name: j for j in jobs}
    records = slurm.records_path(str(tmp_path))
    os.makedirs(os.path.dirname(records))
    submitted = {"synthetic-s0-base": "41", "synthetic-s0-lead": "42", "synthetic-s0-classic-attention": "43"}
    with open(records, "w") as f:
        for name, job_id in submitted.items():
            f.write(json.dumps({"job_id": job_id, "name": name,
                                "tasks": [[r.id for r in t] for t in by_name[name].tasks]}) + "\n")
    finish(tmp_path, by_name["synthetic-s0-base"].runs[0])
    lost = by_name["synthetic-s0-lead"].runs[0]  # its task left the queue unfinished (failed or cancelled)
    squeue = "\n".join(["42_1|nlproar-synthetic-s0-lead|RUNNING", "43_[0-1]|nlproar-synthetic-s0-classic-attention|PENDING",
                        "99|nlproar-synthetic-s0-base|PENDING",  # another directory's job of the same name
                        "7|someone-else|RUNNING"])

    def fake_run(cmd, **kw):
        assert cmd[0] == "squeue"
        return subprocess.CompletedProcess(cmd, 0, squeue + "\n", "")

    queued = slurm.queued_runs(str(tmp_path), run=fake_run)
    lead, attention = by_name["synthetic-s0-lead"], by_name["synthetic-s0-classic-attention"]
    assert queued == {lead.runs[1].id: "42_1", attention.runs[0].id: "43_0", attention.runs[1].id: "43_1"}
    pending = joblib.pending_runs(plan, str(tmp_path), active=queued)
    assert not {r.id for r in pending} & set(queued)
    assert lost.id in {r.id for r in pending}
    active = [r for r in plan if r.id in queued]
    again = {j.name: j for j in joblib.group_jobs(pending, str(tmp_path), active=active)}
    gradient_lead = lead.runs[1].id
    rec = again["synthetic-s0-rec-quantile-k10-gradient"]
    assert rec.needs == (gradient_lead,)
    assert slurm.dependency(rec, [], {}, queued) == "afterok:42_1"
    assert again["synthetic-s0-classic-gradient"].needs == (gradient_lead,)  # not a second lead
    # attention's importance: its queued classic runs come first and compute it; the others wait for one
    assert "synthetic-s0-lead" not in again
    assert [r.id for r in again["synthetic-s0-classic-attention"].runs] == [lost.id]
    assert again["synthetic-s0-classic-attention"].needs == (attention.runs[0].id,)


def test_relaunch_skips_finished_runs_and_drops_their_dependencies(config, tmp_path):
    plan = plan_grid(config)
    done = [r for r in plan if r.experiment.seed == 0 and not r.experiment.recursive]  # base + classic
    done += [r for r in plan if r.experiment.seed == 0 and r.experiment.recursive and r.experiment.k in (10, 1)]
    for run in done:
        finish(tmp_path, run)
    pending = joblib.pending_runs(plan, str(tmp_path))
    assert {r.id for r in pending} == {r.id for r in plan} - {r.id for r in done}
    jobs = {j.name: j for j in joblib.group_jobs(pending, str(tmp_path))}
    assert not any(name.startswith(("synthetic-s0-base", "synthetic-s0-classic", "synthetic-s0-lead",
                                    "synthetic-s0-rec-quantile-k10", "synthetic-s0-rec-count-k1-")) for name in jobs)
    # step 20 now starts at once: step 10 finished
    assert jobs["synthetic-s0-rec-quantile-k20-gradient"].after == () == jobs["synthetic-s0-rec-quantile-k20-gradient"].needs
    assert jobs["synthetic-s0-rec-count-k2-attention"].after == ()
    assert jobs["synthetic-s1-classic-gradient"].after == ("synthetic-s1-lead",)
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
    assert "synthetic-s0-lead" not in jobs and jobs["synthetic-s0-classic-gradient"].after == ()


def options(tmp_path, **kw):
    return slurm.SlurmOptions(script_dir=str(tmp_path / "scripts"), log_dir=str(tmp_path / "logs"), **kw)


def command(tmp_path):
    return slurm.RunCommand(config_file=str(REPO_ROOT / "configs" / "synthetic.py"), persistent_dir=str(tmp_path),
                            workdir=str(REPO_ROOT), repo_root=str(REPO_ROOT),
                            common_args=("--config.max_epochs=2", "--config.grid.measures=('random', 'gradient')"))


def test_slurm_dry_run_has_directives_arrays_and_afterok(config, tmp_path):
    jobs = joblib.group_jobs(joblib.pending_runs(plan_grid(config), str(tmp_path)), str(tmp_path))
    text = slurm.dry_run_text(jobs, command(tmp_path), options(tmp_path, partition="gpu", array_limit=4, gpus=1))
    assert "#SBATCH --partition=gpu" in text and "#SBATCH --requeue" in text
    assert "#SBATCH --time=00:15:00" in text and "#SBATCH --gres=gpu:1" in text
    assert "#SBATCH --mem=2G" in text and "#SBATCH --cpus-per-task=1" in text  # the synthetic task's defaults
    classic = next(j for j in jobs if j.name == "synthetic-s0-classic-random")
    assert f"#SBATCH --array=0-{len(classic.runs) - 1}%4" in text
    assert "--dependency=afterok:${JOB_synthetic_s0_lead%%;*}_0 " in text  # one array task, not the array
    assert "'lead' runs are the first" in text  # the groups are explained
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
    with pytest.raises(ValueError, match="sbatch option"):
        slurm.SlurmOptions(script_dir="s", log_dir="l", extra=("qos=short",))
    assert slurm._format_minutes(slurm._minutes("00:15:00") * 4) == "01:00:00"
    assert slurm._minutes("1-02:00:00") == 26 * 60 and slurm._minutes("90") == 90


def test_requests_are_checked_against_the_partition(config, tmp_path, monkeypatch):
    """An impossible request is a one-line error naming the option (sinfo's node sizes), before any
    sbatch; sbatch's own refusals name the option too."""
    jobs = joblib.group_jobs(joblib.pending_runs(plan_grid(config), str(tmp_path)), str(tmp_path))
    monkeypatch.setattr(slurm.shutil, "which", lambda name: "/usr/bin/" + name if name == "sinfo" else None)

    def fake_run(cmd, **kw):
        assert cmd[0] == "sinfo"
        return subprocess.CompletedProcess(cmd, 0, "debug*|2|19284|(null)\ngpu|64|512000|gpu:a100:4(S:0-1)\n", "")

    assert slurm.check_limits(jobs, options(tmp_path), run=fake_run) == []
    with pytest.raises(ValueError, match=r"--cpus=4 is more than any node of partition debug has \(2 CPUs\)"):
        slurm.check_limits(jobs, options(tmp_path, cpus=4), run=fake_run)
    with pytest.raises(ValueError, match="--mem=64G is more than"):
        slurm.check_limits(jobs, options(tmp_path, mem="64G"), run=fake_run)
    with pytest.raises(ValueError, match=r"--gpus=1 .* \(0 GPUs\)"):
        slurm.check_limits(jobs, options(tmp_path, gpus=1), run=fake_run)
    slurm.check_limits(jobs, options(tmp_path, gpus=4, cpus=64, partition="gpu"), run=fake_run)
    with pytest.raises(ValueError, match="--partition='gpus' is not a partition.*debug, gpu"):
        slurm.check_limits(jobs, options(tmp_path, partition="gpus"), run=fake_run)
    assert slurm.explain_sbatch_error("sbatch: error: Invalid generic resource (gres) specification\n").endswith(
        "(set by --gpus (this partition has no GPUs of that kind; --gpus=0 asks for none))")


def test_submit_chains_job_ids_and_array_lines_select_runs(config, tmp_path):
    jobs = joblib.group_jobs(joblib.pending_runs(plan_grid(config), str(tmp_path)), str(tmp_path))
    calls = []

    def fake_sbatch(args):
        calls.append(args)
        return str(1000 + len(calls))

    opts = options(tmp_path, time="01:00:00")
    records = slurm.records_path(str(tmp_path))
    ids = slurm.submit(jobs, command(tmp_path), opts, run_sbatch=fake_sbatch, record_to=records)
    assert list(ids) == [j.name for j in jobs]
    job_of = {run.id: job for job in jobs for run in job.runs}
    for job, args in zip(jobs, calls):
        assert args[-1] == slurm.script_path(opts, job)
        if job.needs:
            targets = [ids[job_of[n].name] + (f"_{job_of[n].task_of(n)}" if job_of[n].is_array else "")
                       for n in job.needs]
            assert args[0] == "--dependency=afterok:" + ":".join(targets)
        else:
            assert len(args) == 1 and job.after == ()
    with open(records) as f:
        assert [json.loads(line)["job_id"] for line in f] == list(ids.values())
    classic = next(j for j in jobs if j.name == "synthetic-s1-classic-random")
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


def test_readme_sst_dry_run_as_written():
    """The README's `python launch/grid.py --config=configs/sst.py --dry-run`, verbatim: no data, no Slurm
    and nothing written are needed to see the jobs, scripts and sbatch calls."""
    runs = REPO_ROOT / "runs" / "sst"
    existed = runs.exists()
    out = subprocess.run([sys.executable, "launch/grid.py", "--config=configs/sst.py", "--dry-run"], cwd=REPO_ROOT,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "#   sst-s0-base (1 run)" in out.stdout and "#SBATCH --mem=6G" in out.stdout
    assert "--gres" not in out.stdout and "afterok:" in out.stdout
    assert runs.exists() == existed
