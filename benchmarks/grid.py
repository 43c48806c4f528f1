"""A whole small ROAR grid three ways, interleaved: what a user pays per run.

  python benchmarks/grid.py --config=configs/synthetic.py --repeats 1 --out benchmarks/results_grid_cpu.jsonl

1. ``cli``: one ``python -m nlproar_jax.train`` command line per run, in plan order (what the original's
   job scripts do: every run pays start-up, data loading and compilation);
2. ``serial``: ``python -m nlproar_jax.sweep --workers=1`` (one process, runs one after another: the
   sweep before the parallel runner);
3. ``parallel``: ``python -m nlproar_jax.sweep --workers=N`` (N worker processes; N = this process's
   cores unless ``--workers`` says otherwise: the sweep's default; not pinned to cores since commit
   a07f0f7, pinned before it);
4. ``parallel_pinned`` and ``parallel_unpinned`` (not by default): the same with ``--pin_workers`` (each
   worker on its own cores) or ``--nopin_workers`` (every worker may use every core);
5. ``waves`` (not by default): ``sweep --workers=1 --config.grid.classic_together=waves`` (one process; every
   run whose inputs are ready trains with the others as one vmapped program, at most
   ``grid.models_together`` at a time: what ``auto`` picks on an accelerator);
6. ``serial_before`` (with ``--before-tree DIR``): ``python -m nlproar_jax.sweep`` of another checkout, run
   in DIR with its own warm dataset cache: the sweep as it was before the grid work, issue 16's "today's
   serial sweep" (``git worktree add ../nlproar-before 750e240``; the grid's overrides must mean the same
   there).

Each way starts from an empty persistent directory with a warm dataset cache. ``--cache fresh`` (the
default) leaves XLA's persistent compilation cache where a user's grid has it, inside that directory:
it starts empty, so each program is compiled once per grid and every later process of the grid (a
command line, a worker) loads it; ``--cache none`` (``--config.compilation_cache_dir=none``) turns it
off, so every process compiles everything it runs, as a job on a machine without a shared cache. Ways are interleaved per repeat; one JSON line per (way, repeat) with the wall time and seconds
per run, then one line of ratios (medians). Extra ``--config.*`` arguments go to every command.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# each way but cli: the arguments it adds to ``python -m nlproar_jax.sweep`` ({workers}: ``--workers``)
SWEEP_WAYS = {
    "serial": ["--workers=1"],
    "parallel": ["--workers={workers}"],
    "parallel_pinned": ["--workers={workers}", "--pin_workers"],
    "parallel_unpinned": ["--workers={workers}", "--nopin_workers"],
    "waves": ["--workers=1", "--config.grid.classic_together=waves"],
    "serial_before": [],  # run in --before-tree: that checkout's own defaults
}


def plan_args(config: str, overrides: list[str]) -> list[list[str]]:
    """Each run's ``train`` overrides, in plan order (from ``sweep --dry_run``-equivalent planning)."""
    code = ("import sys, json\nfrom absl import flags\nfrom nlproar_jax.runtime import commandline\n"
            "from nlproar_jax.roar.plan import plan_grid\n"
            "flags.FLAGS(sys.argv)\nprint(json.dumps([r.command_args() for r in plan_grid(flags.FLAGS.config)]))\n")
    out = subprocess.run([sys.executable, "-c", code, f"--config={config}", *overrides], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def warm_datasets(config: str, overrides: list[str], directory: str, tree: str = ROOT) -> None:
    """Build the task's encoded dataset cache under ``directory`` (``cache/datasets``), so no way pays for
    it (each way's directory starts with a copy)."""
    code = ("import sys\nfrom absl import flags\nfrom nlproar_jax.runtime import commandline\n"
            "from nlproar_jax.roar.run import load_base_data\n"
            "flags.FLAGS(sys.argv)\nload_base_data(flags.FLAGS.config)\n")
    subprocess.run([sys.executable, "-c", code, f"--config={config}", *overrides,
                    f"--config.persistent_dir={directory}"], cwd=tree, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": tree})


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def run(cmd: list[str], tree: str = ROOT) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "NLPROAR_PROGRESS": "off", "PYTHONPATH": tree})
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/synthetic.py")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--ways", nargs="+", default=["cli", "serial", "parallel"], choices=["cli", *SWEEP_WAYS])
    p.add_argument("--before-tree", default=None,
                   help="a checkout of the code before the grid work, for the serial_before way")
    p.add_argument("--cache", default="fresh", choices=["fresh", "none"],
                   help="XLA's compilation cache: fresh (empty, inside each way's directory) or none (off)")
    p.add_argument("--out", default=None)
    a, overrides = p.parse_known_args()
    if ("serial_before" in a.ways) != (a.before_tree is not None):
        p.error("--ways serial_before and --before-tree DIR go together")
    before = os.path.abspath(a.before_tree) if a.before_tree else None
    runs = plan_args(a.config, overrides)
    cache = tempfile.mkdtemp(prefix="nlproar-grid-data-")  # warm dataset cache shared by every way
    warm_datasets(a.config, overrides, cache)
    if before:  # the other checkout's own dataset cache (its format may differ)
        os.makedirs(os.path.join(cache, "before"))
        warm_datasets(a.config, overrides, os.path.join(cache, "before"), before)
    rows, times = [], {w: [] for w in a.ways}
    common = {"config": a.config, "overrides": overrides, "runs": len(runs), "workers": a.workers, "cache": a.cache,
              "hostname": platform.node(), "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
              "commit": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip(),
              **({"before_tree": before, "before_commit": subprocess.run(
                  ["git", "rev-parse", "HEAD"], cwd=before, capture_output=True, text=True).stdout.strip()} if before else {})}
    try:
        for repeat in range(a.repeats):
            for way in a.ways:
                d = tempfile.mkdtemp(prefix=f"nlproar-grid-{way}-")
                os.makedirs(os.path.join(d, "cache"), exist_ok=True)
                source = os.path.join(cache, "before") if way == "serial_before" else cache
                shutil.copytree(os.path.join(source, "cache", "datasets"), os.path.join(d, "cache", "datasets"))
                base = [f"--config={a.config}", *overrides, f"--config.persistent_dir={d}"]
                if a.cache == "none":
                    base.append("--config.compilation_cache_dir=none")
                if way == "cli":
                    seconds = sum(run([sys.executable, "-m", "nlproar_jax.train", *base, *r]) for r in runs)
                else:
                    extra = [arg.format(workers=a.workers) for arg in SWEEP_WAYS[way]]
                    seconds = run([sys.executable, "-m", "nlproar_jax.sweep", *base, *extra],
                                  tree=before if way == "serial_before" else ROOT)
                done = len(os.listdir(os.path.join(d, "results")))
                shutil.rmtree(d, ignore_errors=True)
                times[way].append(seconds)
                row = {"way": way, "repeat": repeat, "seconds": seconds, "seconds_per_run": seconds / len(runs),
                       "results": done, **common}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    med = {w: statistics.median(ts) for w, ts in times.items() if ts}
    ratios = {f"{x}/{y}": med[x] / med[y] for x in med for y in med if x != y}
    summary = {"way": "ratios (median seconds, larger = the second way faster)", "median_seconds": med,
               "ratios": ratios, **common}
    rows.append(summary)
    print(json.dumps(summary))
    if a.out:
        with open(a.out, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
