"""Slurm backend: one sbatch script per job, arrays for independent runs, afterok chains.

Each :class:`~launch.jobs.Job` becomes ``<script_dir>/<job>.sbatch``; an array
job also gets ``<job>.args``, one shell-quoted line of config overrides per
array task (task i runs line i + 1). Every task runs

  python -m nlproar_jax.train --config=<file> <launch overrides> <run overrides> --config.persistent_dir=<dir>

Jobs are submitted in dependency order with ``sbatch --parsable
--dependency=afterok:<ids>``. Scripts ask for ``--requeue`` (a requeued run
resumes from its last finished epoch; a finished one is skipped) and
``--kill-on-invalid-dep=yes`` (a failed job cancels what waits for it instead
of leaving it pending forever; launch again to retry: finished runs are skipped).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from typing import Callable, Optional, Sequence

from launch.jobs import Job, describe

# Per-task wall time per job kind, with margin over the original's measured times on one
# datacenter GPU (ORIGINAL.md section 8: e.g. SNLI base 44 min, IG importance 27 min, one ROAR
# retrain 49 min, one recursive step 46-69 min; MIMIC diabetes IG 89 min). "roar" covers
# computing the reference's importance (lead jobs, recursive steps) plus one retraining.
DEFAULT_TIME = {
    "synthetic": {"base": "00:15:00", "roar": "00:15:00"},
    "sst": {"base": "00:30:00", "roar": "00:45:00"},
    "imdb": {"base": "00:45:00", "roar": "01:30:00"},
    "snli": {"base": "02:00:00", "roar": "03:00:00"},
    "mimic-a": {"base": "01:00:00", "roar": "02:00:00"},
    "mimic-d": {"base": "01:00:00", "roar": "04:00:00"},
    "babi-1": {"base": "01:00:00", "roar": "01:30:00"},
    "babi-2": {"base": "01:00:00", "roar": "01:30:00"},
    "babi-3": {"base": "01:30:00", "roar": "02:00:00"},
}
FALLBACK_TIME = {"base": "02:00:00", "roar": "04:00:00"}
_TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$")


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """Per-task resources and where scripts and logs go. ``time=None``: :data:`DEFAULT_TIME`."""

    script_dir: str
    log_dir: str
    partition: Optional[str] = None
    account: Optional[str] = None
    time: Optional[str] = None  # D-HH:MM:SS, HH:MM:SS or minutes
    mem: str = "16G"
    gpus: int = 1
    cpus: int = 4
    array_limit: int = 0  # at most this many tasks of one array at once; 0 = no limit
    python: str = "python"
    setup: str = ""  # shell lines run before the task (module load ..., source venv/bin/activate)
    job_prefix: str = "nlproar-"

    def __post_init__(self):
        if self.time is not None and not _TIME_RE.match(self.time):
            raise ValueError(f"--time={self.time!r} is not a Slurm time; use e.g. 90, 01:30:00 or 1-00:00:00")
        if not _MEM_RE.match(self.mem):
            raise ValueError(f"--mem={self.mem!r} is not a Slurm memory size; use e.g. 16G or 16000M")
        for name in ("gpus", "cpus", "array_limit"):
            if getattr(self, name) < 0 or (name == "cpus" and self.cpus < 1):
                raise ValueError(f"--{name} must be >= {1 if name == 'cpus' else 0}, got {getattr(self, name)}")

    def time_for(self, job: Job) -> str:
        if self.time is not None:
            return self.time
        task = job.runs[0].experiment.task
        table = DEFAULT_TIME.get(task, FALLBACK_TIME)
        return table["base" if job.kind == "base" else "roar"]


@dataclasses.dataclass(frozen=True)
class RunCommand:
    """What every task runs: ``python -m nlproar_jax.train --config=<config_file> <common_args>
    <the run's overrides> --config.persistent_dir=<persistent_dir>``, from ``workdir``."""

    config_file: str  # absolute
    persistent_dir: str  # absolute
    workdir: str  # where relative config paths (data_dir, embeddings) resolve: the launch directory
    repo_root: str  # put on PYTHONPATH so ``-m nlproar_jax.train`` imports from any workdir
    common_args: tuple[str, ...] = ()  # the launch's own --config.* overrides, passed to every run


def script_path(options: SlurmOptions, job: Job) -> str:
    return os.path.join(options.script_dir, f"{job.name}.sbatch")


def args_path(options: SlurmOptions, job: Job) -> str:
    return os.path.join(options.script_dir, f"{job.name}.args")


def args_lines(job: Job) -> list[str]:
    """One shell-quoted line of config overrides per run, in array-task order."""
    return [shlex.join(run.command_args()) for run in job.runs]


def render_script(job: Job, command: RunCommand, options: SlurmOptions) -> str:
    """The sbatch script of ``job`` (reads ``args_path`` when it is an array)."""
    q = shlex.quote
    log = os.path.join(options.log_dir, "%x-%A_%a.out" if job.is_array else "%x-%j.out")
    directives = [f"--job-name={options.job_prefix}{job.name}", f"--time={options.time_for(job)}",
                  f"--mem={options.mem}", f"--cpus-per-task={options.cpus}", "--ntasks=1"]
    if options.gpus:
        directives.append(f"--gres=gpu:{options.gpus}")
    if options.partition:
        directives.append(f"--partition={options.partition}")
    if options.account:
        directives.append(f"--account={options.account}")
    if job.is_array:
        limit = f"%{options.array_limit}" if options.array_limit else ""
        directives.append(f"--array=0-{len(job.runs) - 1}{limit}")
    directives += [f"--output={log}", "--open-mode=append", "--requeue", "--kill-on-invalid-dep=yes"]
    lines = ["#!/bin/bash"] + [f"#SBATCH {d}" for d in directives]
    lines.append(f"# {len(job.runs)} run(s) of kind {job.kind}"
                 + (f"; waits for: {', '.join(job.after)}" if job.after else ""))
    lines += [f"#   {i}: {run.id}" for i, run in enumerate(job.runs)]
    lines += ["set -euo pipefail", f"cd {q(command.workdir)}",
              f'export PYTHONPATH={q(command.repo_root)}"${{PYTHONPATH:+:$PYTHONPATH}}"']
    if options.setup:
        lines.append(options.setup)
    if job.is_array:
        lines += [f'line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {q(args_path(options, job))})',
                  'if [ -z "$line" ]; then echo "no overrides for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2; fi',
                  'eval "run_args=($line)"']
    else:
        lines.append(f"run_args=({args_lines(job)[0]})")
    common = " ".join(q(a) for a in command.common_args)
    lines.append(f"exec {options.python} -m nlproar_jax.train --config={q(command.config_file)}"
                 + (f" {common}" if common else "")
                 + f' "${{run_args[@]}}" --config.persistent_dir={q(command.persistent_dir)}')
    return "\n".join(lines) + "\n"


def _var(job: Job) -> str:
    return "JOB_" + re.sub(r"\W", "_", job.name)


def submission_text(jobs: Sequence[Job], options: SlurmOptions) -> str:
    """The sbatch calls, as a shell script that would submit ``jobs`` with their dependencies."""
    lines = ["set -euo pipefail"]
    by_name = {job.name: job for job in jobs}
    for job in jobs:
        dep = ""
        if job.after:
            ids = ":".join(f"${{{_var(by_name[a])}%%;*}}" for a in job.after)
            dep = f" --dependency=afterok:{ids}"
        lines.append(f"{_var(job)}=$(sbatch --parsable{dep} {shlex.quote(script_path(options, job))})")
    return "\n".join(lines)


def dry_run_text(jobs: Sequence[Job], command: RunCommand, options: SlurmOptions) -> str:
    """Everything :func:`submit` would write and run, as text: structure, scripts, args files, sbatch calls."""
    out = ["# dependency structure (afterok: a job starts when every job it waits for succeeded)",
           *[f"#   {line}" for line in describe(jobs).splitlines()]]
    for job in jobs:
        out += ["", f"# ---- {script_path(options, job)} ----", render_script(job, command, options).rstrip()]
        if job.is_array:
            out += [f"# ---- {args_path(options, job)} ----", *args_lines(job)]
    out += ["", "# ---- submission ----", submission_text(jobs, options)]
    return "\n".join(out)


def write_job_files(jobs: Sequence[Job], command: RunCommand, options: SlurmOptions) -> None:
    os.makedirs(options.script_dir, exist_ok=True)
    os.makedirs(options.log_dir, exist_ok=True)
    for job in jobs:
        if job.is_array:
            with open(args_path(options, job), "w") as f:
                f.write("\n".join(args_lines(job)) + "\n")
        with open(script_path(options, job), "w") as f:
            f.write(render_script(job, command, options))


def sbatch(args: list[str]) -> str:
    """Run ``sbatch --parsable <args>``; return the job id (the part before any ``;cluster``)."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found on PATH: run this on a Slurm login node, or use --dry-run "
                           "to print the scripts, or --backend=local to run the grid here")
    proc = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


def submit(jobs: Sequence[Job], command: RunCommand, options: SlurmOptions,
           run_sbatch: Callable[[list[str]], str] = sbatch) -> dict[str, str]:
    """Write every script and submit the jobs in order; ``{job name: Slurm job id}``.

    ``run_sbatch(args) -> job id`` is injectable for tests. If a submission fails, the error names the
    jobs already submitted (cancel them with ``scancel``, or leave them: launching again skips only
    finished runs, so do not launch again while they are queued)."""
    write_job_files(jobs, command, options)
    ids: dict[str, str] = {}
    for job in jobs:
        args = []
        if job.after:
            args.append("--dependency=afterok:" + ":".join(ids[a] for a in job.after))
        args.append(script_path(options, job))
        try:
            ids[job.name] = run_sbatch(args)
        except RuntimeError as e:
            done = ", ".join(f"{n}={i}" for n, i in ids.items()) or "none"
            raise RuntimeError(f"{e}\nalready submitted: {done}") from e
    return ids
