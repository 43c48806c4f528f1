"""Run a whole ROAR grid locally, in dependency order, then print the ROAR table.

  python -m nlproar_jax.sweep --config=configs/synthetic.py

The grid is ``config.grid`` (override any part: ``--config.grid.seeds=(0,1)``).
Finished runs are skipped, so rerunning after an interruption continues where it
stopped. All runs share one process, so jitted steps compile once; ``--workers=N``
runs independent runs on N worker processes instead, each pinned to its own cores
(:mod:`nlproar_jax.runtime.workers`; per-worker logs under
``<persistent_dir>/logs/``), with the same results. The table is
:func:`nlproar_jax.analysis.tables.format_roar_table`: a row per measure tag, so IG
variants and step counts stay apart.
"""
from __future__ import annotations

import logging
import sys
import time

from absl import app, flags

from nlproar_jax.analysis.tables import format_roar_table, load_results
from nlproar_jax.runtime.commandline import config_from_flags, run_command, setup_logging  # defines --config
from nlproar_jax.runtime.progress import eta

flags.DEFINE_bool("dry_run", False, "Print the plan (one line per run, with what it waits for) and exit.")
flags.DEFINE_integer("workers", 0, "Run independent runs on this many worker processes (1 = every run in this "
                     "process, one after another; 0 = auto: one per local GPU, each seeing only its own, else "
                     "one per CPU core).")
flags.DEFINE_bool("pin_workers", False, "Pin each worker of a --workers sweep to its own CPU cores (default: every "
                  "worker may use every core this process may, and the operating system shares them out; "
                  "measured faster on the CPU, benchmarks/RESULTS.md section G3).")
flags.DEFINE_bool("worker", False, "Internal: be one worker of a --workers sweep (run ids on stdin).")
flags.DEFINE_string("only", None, "Run only these runs of the plan (comma-separated experiment ids, as the "
                    "dry run prints them), in plan order; the Slurm launcher's tasks of several runs use this.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    log = logging.getLogger("nlproar_jax")
    from nlproar_jax.roar.plan import plan_grid

    config = config_from_flags()
    try:
        plan = plan_grid(config)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    if flags.FLAGS.only is not None:
        plan = select_runs(plan, flags.FLAGS.only)
    if flags.FLAGS.dry_run:
        for run in plan:
            print(run.id, "after", ",".join(run.after) or "-")
        return
    if flags.FLAGS.worker:
        return work(config, plan)
    workers = flags.FLAGS.workers
    if workers < 0:
        log.error("--workers=%d: give 0 (auto: one per local GPU, else per CPU core), 1 (serial) or more", workers)
        sys.exit(2)
    if workers == 0:
        from nlproar_jax.runtime.workers import default_workers
        workers = default_workers()
    if workers > 1:
        run_parallel_plan(config, plan, workers)
    else:
        run_plan(config, plan)
    if flags.FLAGS.only is None:
        print(format_roar_table(plan_results(plan, config.persistent_dir)))


def plan_results(plan, persistent_dir: str) -> list[dict]:
    """The finished results of ``plan``'s runs: the table a sweep prints is its own grid's, even where
    ``persistent_dir`` also holds other grids (another model's; ``python -m nlproar_jax.results`` shows
    them all, one table per task and model)."""
    ids = {run.id for run in plan}
    return [r for r in load_results(persistent_dir) if r["experiment_id"] in ids]


def select_runs(plan, only: str) -> list:
    """The runs of ``plan`` named in ``only`` (comma-separated ids), in plan order.

    Raises:
      ValueError: an id is not in the plan (names the nearest one)."""
    import difflib

    wanted = [w.strip() for w in only.split(",") if w.strip()]
    ids = [run.id for run in plan]
    for w in wanted:
        if w not in ids:
            close = difflib.get_close_matches(w, ids, n=1)
            raise ValueError(f"--only: {w!r} is not a run of this grid"
                             + (f"; did you mean {close[0]!r}?" if close else "")
                             + " (python -m nlproar_jax.sweep --dry_run lists them)")
    return [run for run in plan if run.id in set(wanted)]


def run_plan(config, plan) -> None:
    """Run ``plan`` (a list of :class:`~nlproar_jax.roar.plan.PlannedRun`, in dependency order) in this
    process, loading the task once; finished runs are skipped by :func:`~nlproar_jax.roar.run.run_experiment`.
    ``config.grid.classic_together`` (:func:`together_mode`) picks the runs that train together
    (:func:`~nlproar_jax.roar.run_together`): waves (:func:`group_waves`), each seed's classic runs of one
    measure and strategy (:func:`group_classic_runs`), or none."""
    from nlproar_jax.roar.run import load_base_data, run_experiment, run_together

    log = logging.getLogger("nlproar_jax")
    data = load_base_data(config)
    t0 = time.perf_counter()
    mode = together_mode(config.grid.classic_together)
    if mode == "waves":
        groups = group_waves(plan, int(config.grid.models_together))
    else:
        groups = group_classic_runs(plan) if mode == "true" else [[run] for run in plan]
    done = 0
    for group in groups:
        done += len(group)
        # the grid's ETA from the runs so far (finished runs are skipped in an instant: a resumed sweep's
        # first estimates are optimistic)
        when = eta(done - len(group), len(plan), time.perf_counter() - t0)
        names = (" + ".join(run.id for run in group) if len(group) <= 3
                 else f"{len(group)} runs together: {group[0].id} ... {group[-1].id}")
        log.info("[%d/%d] %s%s", done, len(plan), names, f"  ({when})" if when else "")
        if len(group) == 1:
            run_experiment(group[0].apply(config), base_data=data)
        else:
            run_together([run.apply(config) for run in group], base_data=data)
    log.info("sweep of %d runs done in %.0fs", len(plan), time.perf_counter() - t0)


def run_parallel_plan(config, plan, workers: int) -> None:
    """``plan`` on ``workers`` processes (:func:`nlproar_jax.runtime.workers.run_parallel`); finished runs
    are skipped before any is handed out. Raises ValueError naming the runs that failed."""
    import os

    from nlproar_jax.names import Paths
    from nlproar_jax.runtime.workers import run_parallel

    paths = Paths(config.persistent_dir)
    todo = [run for run in plan if not os.path.exists(paths.result(run.experiment))]
    if not todo:
        return
    argv = [sys.executable, "-m", "nlproar_jax.sweep", *without_flag(sys.argv[1:], "workers"), "--worker"]
    try:
        failed = run_parallel(todo, argv, min(workers, len(todo)), os.path.join(paths.root, "logs"),
                              pin=flags.FLAGS.pin_workers)
    except RuntimeError as e:  # a worker died (killed, out of memory): what finished is on disk
        logging.getLogger("nlproar_jax").error("%s; rerun the same command to continue the grid", e)
        sys.exit(1)
    if failed:
        raise ValueError(f"{len(failed)} of {len(todo)} runs failed or could not start: {', '.join(failed)} "
                         f"(logs: {os.path.join(paths.root, 'logs')}); rerun to retry them")


def without_flag(args: list[str], name: str) -> list[str]:
    """``args`` without ``--name=V`` / ``--name V`` (an integer flag)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == f"--{name}":
            skip = True
            continue
        if not a.startswith(f"--{name}="):
            out.append(a)
    return out


def work(config, plan) -> None:
    """One worker of a parallel sweep: the task loaded once, then the runs named on stdin."""
    from nlproar_jax.roar.run import load_base_data, run_experiment
    from nlproar_jax.runtime.workers import worker_loop

    by_id = {run.id: run for run in plan}
    data = load_base_data(config)
    worker_loop(lambda rid: run_experiment(by_id[rid].apply(config), base_data=data))


def together_mode(value, backend: str | None = None) -> str:
    """``config.grid.classic_together`` (:data:`~nlproar_jax.names.CLASSIC_TOGETHER`, or a bool) resolved
    to "waves", "true" or "false": ``"auto"`` is "waves" on an accelerator backend and "false" on the CPU.

    Raises:
      ValueError: an unknown value (names the valid ones)."""
    from nlproar_jax.names import CLASSIC_TOGETHER

    if isinstance(value, bool):
        return "true" if value else "false"
    choice = str(value).lower()
    if choice not in CLASSIC_TOGETHER:
        raise ValueError(f"unknown grid.classic_together {value!r}; valid: {list(CLASSIC_TOGETHER)}")
    if choice == "auto":
        import jax

        return "waves" if (backend or jax.default_backend()) != "cpu" else "false"
    return choice


def classic_together(value, backend: str | None = None) -> bool:
    """Whether ``config.grid.classic_together`` trains any runs together (:func:`together_mode`)."""
    return together_mode(value, backend) != "false"


def group_waves(plan, limit: int = 32) -> list[list]:
    """``plan`` cut into waves of runs that can train as one program: a run's wave is one more than the
    latest wave of the runs it waits for that are in ``plan`` (a run waiting for none is in wave 0: the
    seeds' base models), so no run waits for a run of its own wave or a later one. Each wave keeps plan
    order and is cut into groups of at most ``limit`` runs; waves run in order. In a ROAR grid: the base
    models, then every classic run of every measure and seed (and the keep runs), then each recursive
    step (the first step's runs reuse their classic twins, finished one wave before)."""
    if limit < 1:
        raise ValueError(f"grid.models_together must be >= 1, got {limit}")
    wave: dict[str, int] = {}
    for run in plan:  # plan order is topological
        wave[run.id] = 1 + max((wave[a] for a in run.after if a in wave), default=-1)
    waves: dict[int, list] = {}
    for run in plan:
        waves.setdefault(wave[run.id], []).append(run)
    return [runs[i:i + limit] for _, runs in sorted(waves.items()) for i in range(0, len(runs), limit)]


def group_classic_runs(plan) -> list[list]:
    """``plan`` cut into groups: consecutive classic runs (k > 0) of one seed, measure and strategy
    form one group (their reference is the seed's base model, already earlier in the plan); every
    other run is a group of its own. The plan's order is kept."""
    def key(run):
        e = run.experiment
        return None if e.is_base or e.recursive else (e.seed, e.measure, e.strategy)

    groups: list[list] = []
    for run in plan:
        if groups and key(run) is not None and key(groups[-1][-1]) == key(run):
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


if __name__ == "__main__":
    run_command(main)
