"""Run a whole ROAR grid locally, in dependency order, then print the ROAR table.

  python -m nlproar_jax.sweep --config=configs/synthetic.py

The grid is ``config.grid`` (override any part: ``--config.grid.seeds=(0,1)``).
Finished runs are skipped, so rerunning after an interruption continues where it
stopped. All runs share one process, so jitted steps compile once.
"""
from __future__ import annotations

import logging
import sys
import time

from absl import app, flags

from nlproar_jax.train import config_from_flags, setup_logging  # defines --config

flags.DEFINE_bool("dry_run", False, "Print the plan (one line per run, with what it waits for) and exit.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    log = logging.getLogger("nlproar_jax")
    from nlproar_jax.plan import plan_grid
    from nlproar_jax.summary import format_roar_table, load_results

    config = config_from_flags()
    try:
        plan = plan_grid(config)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    if flags.FLAGS.dry_run:
        for run in plan:
            print(run.id, "after", ",".join(run.after) or "-")
        return
    run_plan(config, plan)
    print(format_roar_table(load_results(config.persistent_dir)))


def run_plan(config, plan) -> None:
    """Run ``plan`` (a list of :class:`~nlproar_jax.plan.PlannedRun`, in dependency order) in this
    process, loading the task once; finished runs are skipped by :func:`~nlproar_jax.roar.run_experiment`."""
    from nlproar_jax.roar import load_base_data, run_experiment

    log = logging.getLogger("nlproar_jax")
    data = load_base_data(config)
    t0 = time.perf_counter()
    for i, run in enumerate(plan, 1):
        log.info("[%d/%d] %s", i, len(plan), run.id)
        run_experiment(run.apply(config), base_data=data)
    log.info("sweep of %d runs done in %.0fs", len(plan), time.perf_counter() - t0)


if __name__ == "__main__":
    app.run(main)
