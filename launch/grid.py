"""Launch a task's whole ROAR grid on Slurm (or run it here), skipping finished runs.

  python launch/grid.py --config=configs/sst.py --dry-run              # print scripts and dependencies
  python launch/grid.py --config=configs/sst.py --partition=gpu --time=01:00:00
  python launch/grid.py --config=configs/synthetic.py --backend=local   # the same plan, in this process

The grid is ``config.grid`` (``--config.grid.seeds=(0,1)`` etc.); every
``--config.*`` override given here is passed on to each run. Runs whose
``results/<id>.json`` exists under ``config.persistent_dir`` are not launched
again and nothing waits for them, so launching again after failures or a
cancelled job continues the grid. Do not launch again while the previous
launch's jobs are still queued: their runs are not finished, so they would be
submitted twice (harmless, the second copy finds the first one's result or
checkpoints, but wasteful).

Slurm: one job per group (base; lead runs that compute a shared importance;
the other classic runs as one array; each recursive step of every measure as
one array), chained with ``--dependency=afterok``; scripts, args files and the
submission log go to ``<persistent_dir>/slurm/<launch time>/``, job output to
``<persistent_dir>/slurm/logs/``. See :mod:`launch.jobs` and :mod:`launch.slurm`.
"""
from __future__ import annotations

import logging
import os
import sys
import time

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:  # run as a file: ``python launch/grid.py``
    sys.path.insert(0, _REPO_ROOT)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from nlproar_jax.analysis.tables import format_roar_table, load_results  # noqa: E402
from nlproar_jax.names import Paths  # noqa: E402
from nlproar_jax.sweep import run_plan  # noqa: E402  (defines --config and --dry_run)
from nlproar_jax.runtime.commandline import config_from_flags, run_command, setup_logging  # noqa: E402

BACKENDS = ("slurm", "local")
flags.DEFINE_enum("backend", "slurm", BACKENDS, "Where to run the plan.")
flags.DEFINE_string("partition", None, "Slurm partition (default: the cluster's default).")
flags.DEFINE_string("account", None, "Slurm account to charge.")
flags.DEFINE_string("time", None, "Wall time per task (e.g. 01:30:00); default: a per-task table "
                    "(launch.slurm.DEFAULT_TIME) from the original's measured run times.")
flags.DEFINE_string("mem", "16G", "Memory per task.")
flags.DEFINE_integer("gpus", 1, "GPUs per task (0 = CPU only).")
flags.DEFINE_integer("cpus", 4, "CPU cores per task.")
flags.DEFINE_integer("array_limit", 0, "At most this many tasks of one array running at once (0 = no limit).")
flags.DEFINE_string("python", sys.executable, "The Python that runs each task (the same path must exist on "
                    "the compute nodes).")
flags.DEFINE_string("setup", "", "Shell lines each task runs first, e.g. 'module load cuda'.")
flags.DEFINE_string("script_dir", None, "Where scripts go (default: <persistent_dir>/slurm/<launch time>).")
flags.DEFINE_string("slurm_log_dir", None, "Where job output goes (default: <persistent_dir>/slurm/logs).")
flags.DEFINE_bool("share_importance", True, "Run one user of each shared importance file first (it computes "
                  "and caches the importance) and the other users after it, instead of all computing it.")

_OURS = ("dry_run", "backend", "partition", "account", "time", "mem", "gpus", "cpus", "array_limit", "python",
         "setup", "script_dir", "slurm_log_dir", "share_importance")
_NOT_PASSED_ON = ("persistent_dir", "config_file")  # set explicitly for every task


def normalise_argv(argv: list[str]) -> list[str]:
    """Accept ``--dry-run`` for ``--dry_run`` (and ``--no-dry-run``) for this script's own flags."""
    out = []
    for arg in argv:
        if arg.startswith("--") and not arg.startswith("--config"):
            name, eq, value = arg[2:].partition("=")
            under = name.replace("-", "_")
            negated = under[2:].lstrip("_") if under.startswith("no") else None
            if under in _OURS:
                arg = f"--{under}{eq}{value}"
            elif negated in _OURS:
                arg = f"--no{negated}{eq}{value}"
        out.append(arg)
    return out


def _render_value(value) -> str:
    return value if isinstance(value, str) else repr(value)


def launch_overrides() -> tuple[str, ...]:
    """This command line's ``--config.*`` overrides as arguments for each task (not persistent_dir)."""
    values = config_flags.get_override_values(flags.FLAGS["config"])
    return tuple(f"--config.{path}={_render_value(value)}" for path, value in values.items()
                 if path not in _NOT_PASSED_ON and value is not None)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    log = logging.getLogger("nlproar_jax")
    from launch import jobs as joblib
    from launch import slurm
    from nlproar_jax.roar.plan import plan_grid

    FLAGS = flags.FLAGS
    config = config_from_flags()
    persistent_dir = os.path.abspath(config.persistent_dir)
    paths = Paths(persistent_dir)
    try:
        plan = plan_grid(config)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    pending = joblib.pending_runs(plan, persistent_dir)
    print(f"# {config.task}: {len(plan)} runs in the grid, {len(plan) - len(pending)} finished (skipped), "
          f"{len(pending)} to run; persistent_dir={persistent_dir}")
    if not pending:
        return
    if FLAGS.backend == "local":
        if FLAGS.dry_run:
            for run in pending:
                print(run.id, "after", ",".join(run.after) or "-")
            return
        run_plan(config, pending)
        print(format_roar_table(load_results(persistent_dir)))
        return
    try:
        options = slurm.SlurmOptions(
            script_dir=os.path.abspath(FLAGS.script_dir or paths.slurm_launch(time.strftime("%Y%m%d-%H%M%S"))),
            log_dir=os.path.abspath(FLAGS.slurm_log_dir or paths.slurm_logs),
            partition=FLAGS.partition, account=FLAGS.account, time=FLAGS.time, mem=FLAGS.mem, gpus=FLAGS.gpus,
            cpus=FLAGS.cpus, array_limit=FLAGS.array_limit, python=FLAGS.python, setup=FLAGS.setup)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    command = slurm.RunCommand(config_file=os.path.abspath(config.config_file), persistent_dir=persistent_dir,
                               workdir=os.getcwd(), repo_root=_REPO_ROOT, common_args=launch_overrides())
    jobs = joblib.group_jobs(pending, persistent_dir, share_importance=FLAGS.share_importance)
    if FLAGS.dry_run:
        print(slurm.dry_run_text(jobs, command, options))
        return
    try:
        ids = slurm.submit(jobs, command, options)
    except RuntimeError as e:
        log.error("%s", e)
        sys.exit(1)
    lines = [f"{name}: {job_id}" for name, job_id in ids.items()]
    with open(os.path.join(options.script_dir, "submitted.txt"), "w") as f:
        f.write(joblib.describe(jobs) + "\n\n" + "\n".join(lines) + "\n")
    print(joblib.describe(jobs))
    print("\n".join(lines))
    print(f"# scripts: {options.script_dir}; logs: {options.log_dir}")


if __name__ == "__main__":
    run_command(main, normalise_argv(sys.argv))
