"""Slurm backend: one sbatch script per job, arrays for independent tasks, per-task afterok dependencies.

Each :class:`~launch.jobs.Job` becomes ``<script_dir>/<job>.sbatch``; an array
job also gets ``<job>.args``, one line per array task (task i reads line i + 1).
A task of one run runs

  python -m nlproar_jax.train --config=<file> <launch overrides> <run overrides> --config.persistent_dir=<dir>

and a task of several runs (``runs_per_task``) runs them in one process, sharing
start-up and compiled programs:

  python -m nlproar_jax.sweep --config=<file> <launch overrides> --only=<id>,<id> --config.persistent_dir=<dir>

Jobs are submitted in dependency order with ``sbatch --parsable
--dependency=afterok:<job>_<task>:...``: a run waits for the array tasks that run
what it needs, not for whole arrays. Scripts ask for ``--requeue`` (a requeued
run resumes from its last finished epoch; a finished one is skipped) and
``--kill-on-invalid-dep=yes`` (a failed job cancels what waits for it instead of
leaving it pending forever; launch again to retry: finished runs are skipped).

Before submitting, the request is checked against the partition (``sinfo``, then
``sbatch --test-only``), so a request no node can satisfy is an error naming the
option, not a job pending forever; runs already queued or running from an
earlier launch (``squeue``, matched through ``<persistent_dir>/slurm/jobs.jsonl``)
are not submitted again, and new runs that need them wait for their tasks.
"""
from __future__ import annotations

import dataclasses
import json
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
# computing the reference's importance (lead jobs, recursive steps) plus one retraining. A task of
# several runs gets this per run.
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


@dataclasses.dataclass(frozen=True)
class Resources:
    """Default per-task request of a task: memory, CPU cores, and runs per array task."""

    mem: str
    cpus: int
    runs_per_task: int


# Memory: the task's peak resident size in a run here (data, embeddings, XLA programs, importance of
# the three splits) with about 2x margin; SNLI and MIMIC hold the largest datasets and embeddings.
# CPUs: XLA runs an LSTM's scan on one thread, matmuls on more; 2 keeps a node's cores shared well.
# Runs per task: synthetic runs take seconds, so 4 share one process's ~9 s start-up and compilation.
DEFAULT_RESOURCES = {
    "synthetic": Resources("2G", 1, 4),
    "sst": Resources("6G", 2, 1),
    "imdb": Resources("12G", 2, 1),
    "snli": Resources("24G", 2, 1),
    "mimic-a": Resources("24G", 2, 1),
    "mimic-d": Resources("24G", 2, 1),
    "babi-1": Resources("6G", 2, 1),
    "babi-2": Resources("6G", 2, 1),
    "babi-3": Resources("8G", 2, 1),
}
FALLBACK_RESOURCES = Resources("16G", 2, 1)
_TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$")


def default_resources(task: str) -> Resources:
    return DEFAULT_RESOURCES.get(task, FALLBACK_RESOURCES)


def _minutes(time: str) -> float:
    """A Slurm time (``M``, ``M:S``, ``H:M:S``, ``D-H[:M[:S]]``) in minutes."""
    days = 0
    if "-" in time:
        d, time = time.split("-", 1)
        days = int(d)
        parts = [int(p) for p in time.split(":")] + [0, 0]
        h, m, sec = parts[:3]
    else:
        parts = [int(p) for p in time.split(":")]
        h, m, sec = [0, *parts, 0] if len(parts) == 1 else [0, *parts] if len(parts) == 2 else parts
    return days * 1440 + h * 60 + m + sec / 60


def _format_minutes(minutes: float) -> str:
    total = int(round(minutes * 60))
    days, rest = divmod(total, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _mem_mb(mem: str) -> float:
    unit = mem[-1] if mem[-1].isalpha() else "M"
    return float(mem.rstrip("KMGT")) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """Per-task resources and where scripts and logs go. ``None`` (time, mem, cpus): the task's
    defaults (:data:`DEFAULT_TIME`, :data:`DEFAULT_RESOURCES`)."""

    script_dir: str
    log_dir: str
    partition: Optional[str] = None
    account: Optional[str] = None
    time: Optional[str] = None  # D-HH:MM:SS, HH:MM:SS or minutes, per task
    mem: Optional[str] = None
    gpus: int = 0  # no GPU request unless asked
    cpus: Optional[int] = None
    array_limit: int = 0  # at most this many tasks of one array at once; 0 = no limit
    python: str = "python"
    setup: str = ""  # shell lines run before the task (module load ..., source venv/bin/activate)
    extra: tuple[str, ...] = ()  # further sbatch options, e.g. ("--qos=short", "--constraint=a100")
    job_prefix: str = "nlproar-"

    def __post_init__(self):
        if self.time is not None and not _TIME_RE.match(self.time):
            raise ValueError(f"--time={self.time!r} is not a Slurm time; use e.g. 90, 01:30:00 or 1-00:00:00")
        if self.mem is not None and not _MEM_RE.match(self.mem):
            raise ValueError(f"--mem={self.mem!r} is not a Slurm memory size; use e.g. 16G or 16000M")
        if self.gpus < 0 or self.array_limit < 0:
            raise ValueError(f"--gpus and --array_limit must be >= 0, got {self.gpus} and {self.array_limit}")
        if self.cpus is not None and self.cpus < 1:
            raise ValueError(f"--cpus must be >= 1, got {self.cpus}")
        for option in self.extra:
            if not option.startswith("--"):
                raise ValueError(f"--sbatch_option={option!r} is not an sbatch option; use e.g. --qos=short")

    def time_for(self, job: Job) -> str:
        """The job's per-task time: ``time`` if given, else the task's default per run times the runs per task."""
        if self.time is not None:
            return self.time
        task = job.runs[0].experiment.task
        per_run = DEFAULT_TIME.get(task, FALLBACK_TIME)["base" if job.kind == "base" else "roar"]
        return _format_minutes(_minutes(per_run) * job.runs_per_task)

    def mem_for(self, job: Job) -> str:
        return self.mem if self.mem is not None else default_resources(job.runs[0].experiment.task).mem

    def cpus_for(self, job: Job) -> int:
        return self.cpus if self.cpus is not None else default_resources(job.runs[0].experiment.task).cpus

    def describe(self, job: Job) -> str:
        """The request of one task of ``job``, as printed before submitting."""
        return (f"--time={self.time_for(job)} --mem={self.mem_for(job)} --cpus-per-task={self.cpus_for(job)}"
                + (f" --gres=gpu:{self.gpus}" if self.gpus else " (no GPU)")
                + (f" --partition={self.partition}" if self.partition else ""))


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
    """One line per array task: the run's shell-quoted config overrides (a task of one run), or the
    comma-separated ids of the task's runs (a job whose tasks run several)."""
    if job.runs_per_task == 1:
        return [shlex.join(task[0].command_args()) for task in job.tasks]
    return [",".join(run.id for run in task) for task in job.tasks]


def render_script(job: Job, command: RunCommand, options: SlurmOptions) -> str:
    """The sbatch script of ``job`` (reads ``args_path`` when it is an array)."""
    q = shlex.quote
    log = os.path.join(options.log_dir, "%x-%A_%a.out" if job.is_array else "%x-%j.out")
    directives = [f"--job-name={options.job_prefix}{job.name}", f"--time={options.time_for(job)}",
                  f"--mem={options.mem_for(job)}", f"--cpus-per-task={options.cpus_for(job)}", "--ntasks=1"]
    if options.gpus:
        directives.append(f"--gres=gpu:{options.gpus}")
    if options.partition:
        directives.append(f"--partition={options.partition}")
    if options.account:
        directives.append(f"--account={options.account}")
    if job.is_array:
        limit = f"%{options.array_limit}" if options.array_limit else ""
        directives.append(f"--array=0-{len(job.tasks) - 1}{limit}")
    directives += [f"--output={log}", "--open-mode=append", "--requeue", "--kill-on-invalid-dep=yes",
                   *options.extra]
    lines = ["#!/bin/bash"] + [f"#SBATCH {d}" for d in directives]
    lines.append(f"# {len(job.runs)} run(s) of kind {job.kind} in {len(job.tasks)} task(s)"
                 + (f"; waits for: {', '.join(job.after)}" if job.after else ""))
    lines += [f"#   {i}: {', '.join(run.id for run in task)}" for i, task in enumerate(job.tasks)]
    lines += ["set -euo pipefail", f"cd {q(command.workdir)}",
              f'export PYTHONPATH={q(command.repo_root)}"${{PYTHONPATH:+:$PYTHONPATH}}"']
    if options.setup:
        lines.append(options.setup)
    if job.is_array:
        lines += [f'line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {q(args_path(options, job))})',
                  'if [ -z "$line" ]; then echo "no line for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2; fi']
    else:
        lines.append(f"line={q(args_lines(job)[0])}")
    common = " ".join(q(a) for a in command.common_args)
    head = f"exec {options.python} -m nlproar_jax.{'train' if job.runs_per_task == 1 else 'sweep'} " \
           f"--config={q(command.config_file)}" + (f" {common}" if common else "")
    tail = f"--config.persistent_dir={q(command.persistent_dir)}"
    if job.runs_per_task == 1:
        lines += ['eval "run_args=($line)"', f'{head} "${{run_args[@]}}" {tail}']
    else:
        lines.append(f'{head} --only="$line" {tail}')
    return "\n".join(lines) + "\n"


def _var(job: Job) -> str:
    return "JOB_" + re.sub(r"\W", "_", job.name)


def _task_ref(job: Job, run_id: str, job_id: str) -> str:
    """The Slurm dependency target of the task of ``job`` (submitted as ``job_id``) that runs ``run_id``."""
    return f"{job_id}_{job.task_of(run_id)}" if job.is_array else job_id


def dependency(job: Job, earlier: Sequence[Job], ids: dict[str, str], queued: dict[str, str]) -> Optional[str]:
    """``afterok:<target>:...`` for the runs ``job`` needs: tasks of ``earlier`` jobs (submitted as
    ``ids[name]``) or runs queued by an earlier launch (``queued[run id]``); None when it needs none."""
    owner = {run.id: other for other in earlier for run in other.runs}
    targets = []
    for need in job.needs:
        if need in owner:
            target = _task_ref(owner[need], need, ids[owner[need].name])
        elif need in queued:
            target = queued[need]
        else:
            raise ValueError(f"{job.name} needs {need}, which is neither in this launch nor queued")
        if target not in targets:
            targets.append(target)
    return "afterok:" + ":".join(targets) if targets else None


def submission_text(jobs: Sequence[Job], options: SlurmOptions, queued: Optional[dict[str, str]] = None) -> str:
    """The sbatch calls, as a shell script that would submit ``jobs`` with their dependencies."""
    lines = ["set -euo pipefail"]
    ids = {job.name: f"${{{_var(job)}%%;*}}" for job in jobs}
    for i, job in enumerate(jobs):
        dep = dependency(job, jobs[:i], ids, queued or {})
        dep = f" --dependency={dep}" if dep else ""
        lines.append(f"{_var(job)}=$(sbatch --parsable{dep} {shlex.quote(script_path(options, job))})")
    return "\n".join(lines)


def dry_run_text(jobs: Sequence[Job], command: RunCommand, options: SlurmOptions,
                 queued: Optional[dict[str, str]] = None) -> str:
    """Everything :func:`submit` would write and run, as text: structure, scripts, args files, sbatch calls."""
    out = ["# Dependency structure. Jobs: 'base' trains the k=0 model of a seed; 'lead' runs are the first",
           "# user of an importance file that several runs share (they compute and cache it; the others wait",
           "# for them and load it); 'classic-<measure>' are the other classic ROAR runs of a measure;",
           "# 'keep-<measure>' its keep-and-retrain runs; 'rec-<strategy>-k<k>-<measure>' is one",
           "# recursive step. afterok: a run starts when the array",
           "# tasks running what it needs succeeded (not whole arrays).",
           *[f"#   {line}" for line in describe(jobs).splitlines()]]
    for job in jobs:
        out += ["", f"# ---- {script_path(options, job)} ----", render_script(job, command, options).rstrip()]
        if job.is_array:
            out += [f"# ---- {args_path(options, job)} ----", *args_lines(job)]
    out += ["", "# ---- submission ----", submission_text(jobs, options, queued)]
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


# sbatch's error messages and the launcher option that sets what they complain about
_SBATCH_HINTS = (
    ("gres", "--gpus (this partition has no GPUs of that kind; --gpus=0 asks for none)"),
    ("memory specification", "--mem"),
    ("requested node configuration is not available", "--cpus, --mem or --gpus (more than any node of the "
     "partition has)"),
    ("more processors than permitted", "--cpus"),
    ("cpu count per node can not be satisfied", "--cpus"),
    ("invalid partition", "--partition"),
    ("invalid account", "--account"),
    ("time limit", "--time"),
    ("qos", "--sbatch_option (the QOS)"),
)


def explain_sbatch_error(stderr: str) -> str:
    """sbatch's error on one line, with the launcher option that caused it where we can tell."""
    text = " ".join(line.strip() for line in stderr.strip().splitlines() if line.strip())
    for needle, option in _SBATCH_HINTS:
        if needle in text.lower():
            return f"{text} (set by {option})"
    return text


def sbatch(args: list[str]) -> str:
    """Run ``sbatch --parsable <args>``; return the job id (the part before any ``;cluster``)."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found on PATH: run this on a Slurm login node, or use --dry-run "
                           "to print the scripts, or --backend=local to run the grid here")
    proc = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch failed: {explain_sbatch_error(proc.stderr)}")
    return proc.stdout.strip().split(";")[0]


def partition_limits(partition: Optional[str], run=subprocess.run) -> Optional[dict]:
    """``{"partition", "cpus", "mem_mb", "gpus"}``: the most any one node of ``partition`` (default: the
    cluster's default partition) offers, from ``sinfo``; None where ``sinfo`` is missing or fails."""
    if shutil.which("sinfo") is None:
        return None
    proc = run(["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    best = None
    names = set()
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        name, cpus, mem, gres = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        names.add(name)
        if (partition is None and not default) or (partition is not None and name != partition):
            continue
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        node = {"partition": name, "cpus": int(cpus.rstrip("+")), "mem_mb": float(mem.rstrip("+")), "gpus": gpus}
        if best is None:
            best = node
        else:
            best = {**best, **{k: max(best[k], node[k]) for k in ("cpus", "mem_mb", "gpus")}}
    if best is None and partition is not None and names:
        raise ValueError(f"--partition={partition!r} is not a partition of this cluster (partitions: "
                         f"{', '.join(sorted(names))})")
    return best


def check_limits(jobs: Sequence[Job], options: SlurmOptions, run=subprocess.run) -> list[str]:
    """Compare every job's CPUs, memory and GPUs with the partition's largest node (``sinfo``), before
    anything is written or submitted. Returns notes (e.g. "sinfo unavailable").

    Raises:
      ValueError: one line naming the option and what the partition offers (or the partitions there are).
    """
    limits = partition_limits(options.partition, run)
    if limits is None:
        return ["sinfo not available: the request was not checked against the partition"]
    where = f"partition {limits['partition']}"
    for job in jobs:
        cpus, mem = options.cpus_for(job), options.mem_for(job)
        if cpus > limits["cpus"]:
            raise ValueError(f"--cpus={cpus} is more than any node of {where} has ({limits['cpus']} CPUs); "
                             f"use --cpus={limits['cpus']} or fewer")
        if _mem_mb(mem) > limits["mem_mb"]:
            raise ValueError(f"--mem={mem} is more than any node of {where} has ({limits['mem_mb']:.0f}M); "
                             f"use --mem={int(limits['mem_mb'])}M or less")
        if options.gpus > limits["gpus"]:
            raise ValueError(f"--gpus={options.gpus} is more than any node of {where} has ({limits['gpus']} "
                             "GPUs); use --gpus=0 to run on CPUs")
    return []


def test_only(jobs: Sequence[Job], options: SlurmOptions, run=subprocess.run) -> None:
    """Ask ``sbatch --test-only`` whether the first job of each distinct request could start (the scripts
    must be written). Raises ValueError with sbatch's reason and the option behind it."""
    if shutil.which("sbatch") is None:
        return
    seen = set()
    for job in jobs:
        request = options.describe(job)
        if request in seen:
            continue
        seen.add(request)
        proc = run(["sbatch", "--test-only", script_path(options, job)], capture_output=True, text=True,
                   check=False)
        if proc.returncode != 0:
            raise ValueError(f"the cluster refuses the request of {job.name} ({request}): "
                             f"{explain_sbatch_error(proc.stderr)}")


def records_path(persistent_dir: str) -> str:
    """Every submitted job of every launch: one JSON line ``{"job_id", "name", "tasks": [[run ids]]}``."""
    return os.path.join(persistent_dir, "slurm", "jobs.jsonl")


def _parse_task_ids(text: str) -> Optional[list[int]]:
    """squeue's array task part: ``4`` or ``[0-3,5%2]``; None for a whole non-array job."""
    text = text.strip("[]").split("%")[0]
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return out


def queued_runs(persistent_dir: str, job_prefix: str = "nlproar-", run=subprocess.run) -> dict[str, str]:
    """``{run id: Slurm dependency target}`` of this ``persistent_dir``'s runs queued or running now: the
    project's jobs in ``squeue`` (by job name), matched to runs through :func:`records_path`.

    Raises:
      RuntimeError: ``squeue`` failed (submitting without knowing could duplicate runs).
    """
    path = records_path(persistent_dir)
    if not os.path.exists(path) or shutil.which("squeue") is None:
        return {}
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                records[str(rec["job_id"])] = rec
    proc = run(["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"squeue failed, so runs already queued are unknown: {proc.stderr.strip()}")
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3 or not fields[1].startswith(job_prefix):
            continue
        job_id, _, tasks = fields[0].partition("_")
        rec = records.get(job_id)
        if rec is None or rec["name"] != fields[1][len(job_prefix):]:
            continue
        array = len(rec["tasks"]) > 1
        indices = _parse_task_ids(tasks) if tasks else range(len(rec["tasks"]))
        for i in indices:
            for run_id in rec["tasks"][i]:
                out[run_id] = f"{job_id}_{i}" if array else job_id
    return out


def submit(jobs: Sequence[Job], command: RunCommand, options: SlurmOptions,
           run_sbatch: Callable[[list[str]], str] = sbatch, queued: Optional[dict[str, str]] = None,
           record_to: Optional[str] = None) -> dict[str, str]:
    """Write every script and submit the jobs in order; ``{job name: Slurm job id}``.

    ``queued``: runs already queued (:func:`queued_runs`) that jobs may need. ``record_to``: append each
    submitted job to this :func:`records_path` file as it is submitted. ``run_sbatch(args) -> job id`` is
    injectable for tests. If a submission fails, the error names the jobs already submitted (launching
    again finds them in the queue and submits only the rest)."""
    write_job_files(jobs, command, options)
    ids: dict[str, str] = {}
    for i, job in enumerate(jobs):
        args = []
        dep = dependency(job, jobs[:i], ids, queued or {})
        if dep:
            args.append(f"--dependency={dep}")
        args.append(script_path(options, job))
        try:
            ids[job.name] = run_sbatch(args)
        except RuntimeError as e:
            done = ", ".join(f"{n}={i}" for n, i in ids.items()) or "none"
            raise RuntimeError(f"{e}; already submitted: {done}") from e
        if record_to is not None:
            os.makedirs(os.path.dirname(record_to), exist_ok=True)
            with open(record_to, "a") as f:
                f.write(json.dumps({"job_id": ids[job.name], "name": job.name,
                                    "tasks": [[run.id for run in task] for task in job.tasks]}) + "\n")
    return ids
