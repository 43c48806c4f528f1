"""The parallel local sweep (--workers) runs the plan's runs on worker processes (pinned to their own cores
with --pin_workers), respects dependencies, and writes the same results as the serial sweep; a failing run
stops only its dependents."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

GRID = ["--config=configs/synthetic.py", "--config.dataset.train_size=200", "--config.dataset.val_size=60",
        "--config.dataset.test_size=60", "--config.max_epochs=1", "--config.hidden_size=8",
        "--config.embedding_dim=8", "--config.grid.measures=('random','gradient')", "--config.grid.quantile_k=(10,)",
        "--config.grid.random_quantile_k=()"]


def sweep(persistent_dir, *extra):
    return subprocess.run([sys.executable, "-m", "nlproar_jax.sweep", *GRID, f"--config.persistent_dir={persistent_dir}",
                           *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def results(persistent_dir):
    folder = os.path.join(persistent_dir, "results")
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            r = json.load(f)
        history = [{k: v for k, v in epoch.items() if "seconds" not in k and "per_s" not in k}
                   for epoch in r["history"]]  # wall times differ; every number computed is compared
        out[name] = (r["test"], r["val"], history, r.get("same_as"))
    return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The serial sweep of the grid, once for the module: ``(persistent_dir, its output)``."""
    d = tmp_path_factory.mktemp("serial")
    out = sweep(d, "--workers=1")
    assert out.returncode == 0, out.stderr[-3000:]
    return d, out


def test_two_workers_write_what_the_serial_sweep_writes(serial, tmp_path):
    serial, a = serial
    parallel = tmp_path / "parallel"
    b = sweep(parallel, "--workers", "2")
    assert b.returncode == 0, b.stderr[-3000:]
    assert results(serial) == results(parallel) and len(results(serial)) == 4
    assert "on 2 workers (cores not pinned)" in b.stderr and "[4/4]" in b.stderr
    assert sorted(os.listdir(parallel / "logs")) == ["worker-0.log", "worker-1.log"]
    # the table is printed as by the serial sweep; a rerun has nothing to do
    assert a.stdout == b.stdout
    c = sweep(parallel, "--workers=2")
    assert c.returncode == 0 and "runs on" not in c.stderr and c.stdout == a.stdout


def test_a_failed_run_stops_only_its_dependents(tmp_path):
    """The base model's result is there but its model is not: every gradient run (they need the model)
    fails or is not started; random's runs (no model needed) finish; the sweep says which failed."""
    d = tmp_path / "grid"
    assert sweep(d, "--only=synthetic_rnn_s-0").returncode == 0
    import shutil
    shutil.rmtree(d / "runs" / "synthetic_rnn_s-0" / "model")
    out = sweep(d, "--workers=2")
    assert out.returncode == 2, out.stderr[-3000:]
    assert "runs failed or could not start" in out.stderr and "gradient" in out.stderr.splitlines()[-1]
    names = set(os.listdir(d / "results"))
    assert "synthetic_rnn_s-0_y-random_rs-quantile_k-10_r-0.json" in names
    assert not any("gradient" in n for n in names)


def test_a_killed_worker_loses_nothing_when_the_sweep_is_rerun(serial, tmp_path):
    """SIGKILL one worker while it trains: the sweep stops (exit 1, one line naming the worker's log);
    rerunning (on pinned workers) completes the grid, every result equal to an uninterrupted serial sweep's."""
    import signal
    import time

    serial, d = serial[0], tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nlproar_jax.sweep", *GRID, f"--config.persistent_dir={d}",
                             "--workers=2"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        t0 = time.time()
        while time.time() - t0 < 300:  # the base model and one more run done: both workers have runs
            if (d / "results").is_dir() and len(os.listdir(d / "results")) >= 2:
                break
            time.sleep(0.1)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no worker processes"
        os.kill(int(children[0]), signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "exited" in err and "rerun the same command" in err, err[-2000:]
    assert len(os.listdir(d / "results")) < 4
    again = sweep(d, "--workers=2", "--pin_workers")  # resumed on pinned workers (each on its own core)
    assert again.returncode == 0, again.stderr[-3000:]
    # as many pinned workers as runs are left, each given its share of the cores (core_groups)
    assert "workers (cores " in again.stderr and "not pinned" not in again.stderr
    assert results(d) == results(serial)


def test_workers_default_to_one_per_gpu_else_one_per_core(monkeypatch, tmp_path):
    """``--workers=0`` (the default): one worker per visible GPU, each worker seeing only its own
    (``CUDA_VISIBLE_DEVICES``), else one per allowed CPU core. No backend is started to count them."""
    from types import SimpleNamespace

    from nlproar_jax.runtime.workers import default_workers, local_gpus, run_parallel

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpus() == [] and default_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert local_gpus() == ["0", "3"] and default_workers() == 2
    # each worker process gets one of the GPUs: a stand-in worker reports what it sees in its log
    worker = ("import os, sys\nsys.stderr.write('sees ' + os.environ['CUDA_VISIBLE_DEVICES'] + '\\n')\n"
              "for line in sys.stdin:\n    print('@nlproar ok ' + line.strip(), flush=True)\n")
    runs = [SimpleNamespace(id=f"r{i}", after=()) for i in range(4)]
    assert run_parallel(runs, [sys.executable, "-c", worker], 2, str(tmp_path)) == []
    seen = sorted(open(tmp_path / f"worker-{i}.log").read().strip() for i in range(2))
    assert seen == ["sees 0", "sees 3"]


def test_the_runner_starts_runs_that_share_no_work_with_running_ones_first():
    """Runs masking by one measure on one model share its importance (one process computes it); with
    other work ready, an idle worker takes that instead of waiting for the shared importance."""
    from nlproar_jax.roar.plan import plan_grid
    from nlproar_jax.runtime.workers import next_run
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO_ROOT, "configs/synthetic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.grid.measures, c.grid.quantile_k, c.grid.random_quantile_k = ("gradient", "attention"), (10, 20), ()
    plan = plan_grid(c)
    todo = {r.id: r for r in plan}
    base = plan[0].id
    waiting = set(todo) - {base}
    ready = lambda rid: all(a == base for a in todo[rid].after)  # noqa: E731 - the base model is done
    first = next_run(todo, waiting, ready, busy_shares=set())
    assert todo[first].experiment.measure == "gradient" and todo[first].experiment.k == 10
    waiting.discard(first)
    second = next_run(todo, waiting, ready, busy_shares={todo[first].shares})
    assert todo[second].experiment.measure == "attention"  # not gradient k = 20, which would wait
    assert todo[second].shares != todo[first].shares != ""
    # nothing else ready: the run that waits for the shared work is handed out all the same
    only = {rid for rid in waiting if todo[rid].shares == todo[first].shares}
    assert next_run(todo, only, ready, busy_shares={todo[first].shares}) in only


def test_pinned_workers_get_disjoint_shares_of_the_cores():
    """``--pin_workers``: each worker's cores (round-robin shares; more workers than cores share them)."""
    from nlproar_jax.runtime.workers import core_groups

    assert core_groups(2, [0, 1]) == [[0], [1]]
    assert core_groups(2, [0, 1, 2, 3]) == [[0, 2], [1, 3]]
    assert core_groups(1, [4, 5, 6]) == [[4, 5, 6]]
    assert core_groups(3, [0, 1]) == [[0], [1], [0]]
