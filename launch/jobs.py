"""A grid's runs grouped into scheduler jobs, each waiting only for the runs it needs.

:func:`pending_runs` drops the runs that already finished (``results/<id>.json``
exists) and those already queued or running under the scheduler (``active``),
keeping dependencies only on runs still to do or still queued, so launching
again is idempotent. :func:`group_jobs` puts the remaining runs into jobs: runs
of one kind that wait for exactly the same runs form one job (an array when
more than one task); each task runs ``runs_per_task`` runs in one process.

- ``<task>-s<seed>-base``: the k = 0 model;
- ``<task>-s<seed>-lead``: for each importance file several runs share (the base
  model's importance per measure feeds every classic k and the first recursive
  step), the first such run: it computes and caches the importance, so the
  runs after it load it instead of all computing it at once;
- ``<task>-s<seed>-classic-<measure>``: the other classic runs of a measure,
  after the base model (random) or after that measure's lead;
- ``<task>-s<seed>-keep-<measure>``: a measure's keep-and-retrain runs, waiting
  like its classic runs (they share the base model's importance file);
- ``<task>-s<seed>-rec-<strategy>-k<k>-<measure>``: recursive step k of a
  measure, after its step k - step (or the base / its lead for the first step).

A job records the runs it waits for (``needs``), not whole jobs: the backend
turns each into the one array task that runs it (Slurm: ``afterok:<job>_<task>``),
so a classic run of one measure never waits for another measure's lead.
Backend-free: :mod:`launch.slurm` renders these jobs.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Collection, Iterable, Sequence

from nlproar_jax.names import MODEL_FREE, Experiment, Paths
from nlproar_jax.roar.plan import PlannedRun


@dataclasses.dataclass(frozen=True)
class Job:
    """One scheduler job: independent ``tasks`` (an array when more than one), each running its runs
    one after another in one process, started once every run in ``needs`` finished successfully.

    ``needs`` holds run ids: of runs in earlier jobs of ``after`` (their names, for reading), or of
    runs queued by an earlier launch (the backend knows their job ids)."""

    name: str
    tasks: tuple[tuple[PlannedRun, ...], ...]
    needs: tuple[str, ...]
    after: tuple[str, ...]
    kind: str  # "base", "lead", "classic" or "recursive": picks default resources

    @property
    def runs(self) -> tuple[PlannedRun, ...]:
        return tuple(run for task in self.tasks for run in task)

    @property
    def is_array(self) -> bool:
        return len(self.tasks) > 1

    @property
    def runs_per_task(self) -> int:
        return max(len(task) for task in self.tasks)

    def task_of(self, run_id: str) -> int:
        """The array task index that runs ``run_id``."""
        for i, task in enumerate(self.tasks):
            if any(run.id == run_id for run in task):
                return i
        raise KeyError(f"{run_id} is not a run of job {self.name}")


def is_finished(run: PlannedRun, persistent_dir: str) -> bool:
    """Whether ``run`` wrote its ``results/<id>.json`` (the last thing a run does)."""
    return os.path.exists(Paths(persistent_dir).result(run.experiment))


def pending_runs(plan: Sequence[PlannedRun], persistent_dir: str,
                 active: Collection[str] = ()) -> list[PlannedRun]:
    """The runs of ``plan`` still to do, in plan order: not finished and not in ``active`` (ids of runs
    already queued or running, e.g. from :func:`launch.slurm.queued_runs`); each keeps waiting only for
    runs still to do or still active."""
    todo = [run for run in plan if not is_finished(run, persistent_dir) and run.id not in active]
    keep = {run.id for run in todo} | set(active)
    return [dataclasses.replace(run, after=tuple(a for a in run.after if a in keep)) for run in todo]


def _kind(exp: Experiment) -> str:
    if exp.is_base:
        return "base"
    return "recursive" if exp.recursive else "classic"


def _group(exp: Experiment, lead: bool) -> str:
    prefix = f"{exp.task}-s{exp.seed}"
    if exp.is_base:
        return f"{prefix}-base"
    if lead:
        return f"{prefix}-lead"
    if exp.recursive:
        return f"{prefix}-rec-{exp.strategy}-k{exp.k}-{exp.measure_tag}"
    if exp.keep:
        return f"{prefix}-keep-{exp.measure_tag}"
    return f"{prefix}-classic-{exp.measure_tag}"


def importance_leads(pending: Sequence[PlannedRun], persistent_dir: str,
                     active: Sequence[PlannedRun] = ()) -> dict[str, str]:
    """``{importance file: id of the run that computes it}`` for every not-yet-cached importance file that
    more than one run needs (model-based measures only): an ``active`` (already queued) user if there is
    one, else the first pending user in plan order."""
    paths = Paths(persistent_dir)
    users: dict[str, list[str]] = {}
    for run in [*active, *pending]:
        exp = run.experiment
        ref = exp.reference()
        if ref is None or exp.measure in MODEL_FREE:
            continue
        path = paths.importance(ref, exp.measure_tag)
        if not os.path.exists(path):
            users.setdefault(path, []).append(run.id)
    return {path: ids[0] for path, ids in users.items() if len(ids) > 1}


def group_jobs(pending: Sequence[PlannedRun], persistent_dir: str, *, share_importance: bool = True,
               runs_per_task: int = 1, active: Sequence[PlannedRun] = (),
               whole_kinds: Collection[str] = ()) -> list[Job]:
    """The pending runs as jobs, in an order where every job comes after the jobs it waits for.

    Args:
      pending: from :func:`pending_runs` (each ``after`` names only pending or ``active`` runs).
      share_importance: put the first user of each shared, uncached importance file in a ``lead`` job
        that the other users wait for (False: every run computes what it needs; results are the same,
        the importance files are written atomically).
      runs_per_task: how many runs of a job one task (one process) runs, one after another; >1 shares
        start-up and compiled programs between short runs, at the price of coarser dependencies.
      active: the runs queued or running from an earlier launch; pending runs may wait for them (an
        active user of a shared importance file is its lead).
      whole_kinds: job kinds ("base", "lead", "classic", "recursive") whose jobs run all their runs in one
        task, whatever ``runs_per_task`` says: on GPUs the launcher passes ("classic",), so a measure's
        classic runs (every k of one strategy) reach one process, where ``grid.classic_together="auto"``
        trains them as one vmapped program.
    Raises:
      ValueError: a run waits for a run that is neither pending nor active, ``runs_per_task`` < 1, or
        the groups form a cycle (a plan bug).
    """
    if runs_per_task < 1:
        raise ValueError(f"runs_per_task must be >= 1, got {runs_per_task}")
    paths = Paths(persistent_dir)
    leads = importance_leads(pending, persistent_dir, active) if share_importance else {}
    lead_ids = set(leads.values())
    pending_ids = {run.id for run in pending}
    active = {run.id for run in active}
    needs_of: dict[str, frozenset[str]] = {}
    for run in pending:
        needs = set(run.after)
        ref = run.experiment.reference()
        if ref is not None:
            lead = leads.get(paths.importance(ref, run.experiment.measure_tag))
            if lead is not None and lead != run.id:
                needs.add(lead)
        for other in needs:
            if other not in pending_ids and other not in active:
                raise ValueError(f"{run.id} waits for {other}, which is neither pending nor queued; "
                                 "pass the output of pending_runs()")
        needs_of[run.id] = frozenset(needs)
    needs_of = _reduce_needs([run.id for run in pending], needs_of)
    # runs of one group name and one set of needs form a job; a name with several sets gets a suffix
    members: dict[tuple[str, frozenset], list[PlannedRun]] = {}
    for run in pending:
        members.setdefault((_group(run.experiment, run.id in lead_ids), needs_of[run.id]), []).append(run)
    by_name: dict[str, list[tuple[str, frozenset]]] = {}
    for key in members:
        by_name.setdefault(key[0], []).append(key)
    named: dict[tuple[str, frozenset], str] = {}
    for name, keys in by_name.items():
        for i, key in enumerate(keys):
            named[key] = name if len(keys) == 1 else f"{name}-{i + 1}"
    job_of = {run.id: named[key] for key, runs in members.items() for run in runs}
    deps = {named[key]: {job_of[n] for n in key[1] if n in job_of} for key in members}
    order = _topological(list(deps), deps)
    direct = _reduce(order, deps)
    jobs = []
    for key, runs in sorted(members.items(), key=lambda item: order.index(named[item[0]])):
        name = named[key]
        kind = "lead" if runs[0].id in lead_ids else _kind(runs[0].experiment)
        per_task = len(runs) if kind in whole_kinds else runs_per_task
        tasks = tuple(tuple(runs[i:i + per_task]) for i in range(0, len(runs), per_task))
        jobs.append(Job(name, tasks, tuple(sorted(key[1])), tuple(sorted(direct[name], key=order.index)), kind))
    return jobs


def _topological(names: list[str], deps: dict[str, set[str]]) -> list[str]:
    """``names`` reordered so each comes after its ``deps``, otherwise keeping the given order."""
    done: list[str] = []
    placed: set[str] = set()
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if deps[n] <= placed]
        if not ready:
            raise ValueError(f"job dependencies form a cycle among {remaining}")
        done.append(ready[0])
        placed.add(ready[0])
        remaining.remove(ready[0])
    return done


def _reduce(order: list[str], deps: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop dependencies implied by others (base -> lead -> classic: classic needs only lead)."""
    ancestors: dict[str, set[str]] = {}
    for name in order:  # topological: every dependency's ancestors are known already
        ancestors[name] = set().union(*[ancestors[d] | {d} for d in deps[name]])
    return {name: {d for d in ds if not any(d in ancestors[o] for o in ds if o != d)} for name, ds in deps.items()}


def _reduce_needs(order: list[str], needs: dict[str, frozenset]) -> dict[str, frozenset]:
    """Drop the needs implied by another need (a classic run needs its lead, which needs the base)."""
    ancestors: dict[str, set[str]] = {}
    for rid in order:  # plan order is topological
        ancestors[rid] = set().union(*[ancestors.get(n, set()) | {n} for n in needs[rid]])
    return {rid: frozenset(n for n in ns if not any(n in ancestors.get(o, ()) for o in ns if o != n))
            for rid, ns in needs.items()}


def describe(jobs: Iterable[Job]) -> str:
    """The dependency structure, one line per job: ``name (n runs[, array of t tasks]) after a, b``."""
    lines = []
    for job in jobs:
        runs = len(job.runs)
        size = f"{runs} run{'s' if runs != 1 else ''}"
        if job.is_array:
            size += f", array of {len(job.tasks)} tasks"
        elif runs > 1:
            size += " in one task"
        outside = [n for n in job.needs if not any(n == r.id for j in jobs for r in j.runs)]
        after = list(job.after) + ([f"{len(outside)} run(s) queued earlier"] if outside else [])
        lines.append(f"{job.name} ({size})" + (f" after {', '.join(after)}" if after else ""))
    return "\n".join(lines)
