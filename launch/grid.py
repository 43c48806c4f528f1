"""Launch a task's whole ROAR grid on Slurm (or run it here), skipping finished runs.

  python launch/grid.py --config=configs/sst.py --dry-run              # print scripts and dependencies
  python launch/grid.py --config=configs/sst.py --partition=gpu --time=01:00:00
  python launch/grid.py --config=configs/synthetic.py --backend=local   # the same plan, in this process

The grid is ``config.grid`` (``--config.grid.seeds=(0,1)`` etc.); every
``--config.*`` override given here is passed on to each run. Runs whose
``results/<id>.json`` exists under ``config.persistent_dir`` are not launched
again, and runs still queued or running from an earlier launch (``squeue``) are
not submitted twice: new runs that need them wait for them. So launching again
at any time (after failures, a cancelled job, or while jobs are queued)
continues the grid and never duplicates a run; a lock in each run directory
makes two live copies of one run impossible in any case.

Slurm: runs of one kind that wait for the same runs form one job (base; lead
runs that compute a shared importance; the other classic runs of each measure as
an array; each recursive step of each measure), each waiting with
``--dependency=afterok`` for exactly the array tasks that run what it needs.
With ``--gpus`` (and ``grid.classic_together`` not "false") each classic job is one
task holding all its runs, which trains every k of a measure and strategy as one
vmapped program on the GPU (``grid.classic_together="auto"`` there).
Resources default per task (``launch.slurm.DEFAULT_TIME``/``DEFAULT_RESOURCES``,
printed before submitting; no GPU unless ``--gpus``), and the request is
checked against the partition first. Scripts, args files and the submission
log go to ``<persistent_dir>/slurm/<launch time>/``, job output to
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

from nlproar_jax.analysis.tables import format_roar_table  # noqa: E402
from nlproar_jax.names import Paths  # noqa: E402
from nlproar_jax.sweep import classic_together, plan_results, run_plan  # noqa: E402  (defines --config and --dry_run)
from nlproar_jax.runtime.commandline import config_from_flags, run_command, setup_logging  # noqa: E402

BACKENDS = ("slurm", "local")
flags.DEFINE_enum("backend", "slurm", BACKENDS, "Where to run the plan.")
flags.DEFINE_string("partition", None, "Slurm partition (default: the cluster's default).")
flags.DEFINE_string("account", None, "Slurm account to charge.")
flags.DEFINE_string("time", None, "Wall time per task (e.g. 01:30:00); default: a per-task table "
                    "(launch.slurm.DEFAULT_TIME) from the original's measured run times, times the runs per task.")
flags.DEFINE_string("mem", None, "Memory per task (e.g. 8G); default: per task (launch.slurm.DEFAULT_RESOURCES).")
flags.DEFINE_integer("gpus", 0, "GPUs per task; 0 (the default) requests none.")
flags.DEFINE_integer("cpus", None, "CPU cores per task; default: per task (launch.slurm.DEFAULT_RESOURCES).")
flags.DEFINE_integer("runs_per_task", None, "Runs one array task runs in one process, sharing start-up and "
                     "compiled programs; default: per task (4 for synthetic, whose runs take seconds; else 1).")
flags.DEFINE_multi_string("sbatch_option", [], "A further sbatch option for every job, e.g. "
                          "--sbatch_option=--qos=short (repeat for more).")
flags.DEFINE_integer("array_limit", 0, "At most this many tasks of one array running at once (0 = no limit).")
flags.DEFINE_string("python", sys.executable, "The Python that runs each task (the same path must exist on "
                    "the compute nodes).")
flags.DEFINE_string("setup", "", "Shell lines each task runs first, e.g. 'module load cuda'.")
flags.DEFINE_string("script_dir", None, "Where scripts go (default: <persistent_dir>/slurm/<launch time>).")
flags.DEFINE_string("slurm_log_dir", None, "Where job output goes (default: <persistent_dir>/slurm/logs).")
flags.DEFINE_bool("share_importance", True, "Run one user of each shared importance file first (it computes "
                  "and caches the importance) and the other users after it, instead of all computing it.")
flags.DEFINE_bool("check", True, "Check the request against the partition (sinfo, sbatch --test-only) first.")


def whole_task_kinds(gpus: int, grouping) -> tuple[str, ...]:
    """The job kinds that run as one task: ("classic",) when tasks get GPUs and ``grouping``
    (``config.grid.classic_together``, evaluated for a GPU backend) groups there, so one process trains
    each measure's classic runs as one vmapped program; else none."""
    return ("classic",) if gpus > 0 and classic_together(grouping, backend="gpu") else ()


_OURS = ("dry_run", "backend", "partition", "account", "time", "mem", "gpus", "cpus", "runs_per_task",
         "sbatch_option", "array_limit", "python", "setup", "script_dir", "slurm_log_dir", "share_importance", "check")
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
    queued = {}
    if FLAGS.backend == "slurm" and not FLAGS.dry_run:
        try:
            queued = slurm.queued_runs(persistent_dir)
        except RuntimeError as e:
            log.error("%s", e)
            sys.exit(1)
    pending = joblib.pending_runs(plan, persistent_dir, active=queued)
    finished = len(plan) - len(pending) - len(queued)
    print(f"# {config.task}: {len(plan)} runs in the grid, {finished} finished (skipped), "
          + (f"{len(queued)} queued or running already (not submitted again), " if queued else "")
          + f"{len(pending)} to run; persistent_dir={persistent_dir}")
    if not pending:
        return
    if FLAGS.backend == "local":
        if FLAGS.dry_run:
            for run in pending:
                print(run.id, "after", ",".join(run.after) or "-")
            return
        run_plan(config, pending)
        print(format_roar_table(plan_results(plan, persistent_dir)))
        return
    try:
        options = slurm.SlurmOptions(
            script_dir=os.path.abspath(FLAGS.script_dir or paths.slurm_launch(time.strftime("%Y%m%d-%H%M%S"))),
            log_dir=os.path.abspath(FLAGS.slurm_log_dir or paths.slurm_logs),
            partition=FLAGS.partition, account=FLAGS.account, time=FLAGS.time, mem=FLAGS.mem, gpus=FLAGS.gpus,
            cpus=FLAGS.cpus, array_limit=FLAGS.array_limit, python=FLAGS.python, setup=FLAGS.setup,
            extra=tuple(FLAGS.sbatch_option))
        runs_per_task = FLAGS.runs_per_task or slurm.default_resources(config.task).runs_per_task
        jobs = joblib.group_jobs(pending, persistent_dir, share_importance=FLAGS.share_importance,
                                 runs_per_task=runs_per_task, active=[r for r in plan if r.id in queued],
                                 whole_kinds=whole_task_kinds(FLAGS.gpus, config.grid.classic_together))
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    command = slurm.RunCommand(config_file=os.path.abspath(config.config_file), persistent_dir=persistent_dir,
                               workdir=os.getcwd(), repo_root=_REPO_ROOT, common_args=launch_overrides())
    requests = sorted({options.describe(job) for job in jobs})
    print(f"# {len(jobs)} jobs, {runs_per_task} run(s) per task; per task: " + "; ".join(requests))
    if FLAGS.dry_run:
        print(slurm.dry_run_text(jobs, command, options, queued))
        return
    try:
        if FLAGS.check:  # sinfo first: an impossible request writes nothing
            for note in slurm.check_limits(jobs, options):
                print(f"# {note}")
        slurm.write_job_files(jobs, command, options)
        if FLAGS.check:
            slurm.test_only(jobs, options)
    except ValueError as e:
        log.error("%s", e)
        sys.exit(2)
    try:
        ids = slurm.submit(jobs, command, options, queued=queued, record_to=slurm.records_path(persistent_dir))
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
