"""A grid's runs grouped into jobs with dependencies, for a batch scheduler.

:func:`pending_runs` drops the runs that already finished (``results/<id>.json``
exists) and the dependencies on them, so launching again is idempotent.
:func:`group_jobs` puts the remaining runs into jobs, each an array of
independent runs that waits for whole other jobs:

- ``<task>-s<seed>-base``: the k = 0 model;
- ``<task>-s<seed>-lead``: for each importance file many runs share (the base
  model's importance per measure feeds every classic k and the first recursive
  step), the first such run: it computes and caches the importance, so the
  runs after it load it instead of all computing it at once;
- ``<task>-s<seed>-classic``: the other classic runs, after the base (and lead);
- ``<task>-s<seed>-rec-<strategy>-k<k>``: recursive step k of every measure,
  after step k - step (or the base / lead for the first step).

Backend-free: the Slurm backend (:mod:`launch.slurm`) renders these jobs.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

from nlproar_jax.names import MODEL_FREE, Experiment, Paths
from nlproar_jax.roar.plan import PlannedRun



@dataclasses.dataclass(frozen=True)
class Job:
    """One scheduler job: ``runs`` are independent of each other (an array when more than one) and
    start after every job named in ``after`` finished successfully."""

    name: str
    runs: tuple[PlannedRun, ...]
    after: tuple[str, ...]
    kind: str  # "base", "lead", "classic" or "recursive": picks default resources

    @property
    def is_array(self) -> bool:
        return len(self.runs) > 1


def is_finished(run: PlannedRun, persistent_dir: str) -> bool:
    """Whether ``run`` wrote its ``results/<id>.json`` (the last thing a run does)."""
    return os.path.exists(Paths(persistent_dir).result(run.experiment))


def pending_runs(plan: Sequence[PlannedRun], persistent_dir: str) -> list[PlannedRun]:
    """The runs of ``plan`` still to do, in plan order, each waiting only for runs still to do."""
    todo = [run for run in plan if not is_finished(run, persistent_dir)]
    ids = {run.id for run in todo}
    return [dataclasses.replace(run, after=tuple(a for a in run.after if a in ids)) for run in todo]


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
        return f"{prefix}-rec-{exp.strategy}-k{exp.k}"
    return f"{prefix}-classic"


def importance_leads(pending: Sequence[PlannedRun], persistent_dir: str) -> dict[str, str]:
    """``{importance file: id of the run that computes it}`` for every not-yet-cached importance file that
    more than one pending run needs (model-based measures only): the first such run in plan order."""
    paths = Paths(persistent_dir)
    users: dict[str, list[str]] = {}
    for run in pending:
        exp = run.experiment
        ref = exp.reference()
        if ref is None or exp.measure in MODEL_FREE:
            continue
        path = paths.importance(ref, exp.measure_tag)
        if not os.path.exists(path):
            users.setdefault(path, []).append(run.id)
    return {path: ids[0] for path, ids in users.items() if len(ids) > 1}


def group_jobs(pending: Sequence[PlannedRun], persistent_dir: str, *, share_importance: bool = True) -> list[Job]:
    """The pending runs as jobs, in an order where every job comes after the jobs it waits for.

    Args:
      pending: from :func:`pending_runs` (each ``after`` names only pending runs).
      share_importance: put the first user of each shared, uncached importance file in a ``lead`` job
        that the other users wait for (False: every run computes what it needs; results are the same,
        the importance files are written atomically).
    Raises:
      ValueError: a run waits for a run that is neither pending nor finished-and-dropped, or the
        groups form a cycle (a plan bug).
    """
    paths = Paths(persistent_dir)
    leads = importance_leads(pending, persistent_dir) if share_importance else {}
    lead_ids = set(leads.values())
    group_of: dict[str, str] = {}
    members: dict[str, list[PlannedRun]] = {}
    kinds: dict[str, str] = {}
    for run in pending:
        name = _group(run.experiment, run.id in lead_ids)
        group_of[run.id] = name
        members.setdefault(name, []).append(run)
        kinds[name] = "lead" if run.id in lead_ids else _kind(run.experiment)
    deps: dict[str, set[str]] = {name: set() for name in members}
    for run in pending:
        name = group_of[run.id]
        needs = list(run.after)
        ref = run.experiment.reference()
        if ref is not None:
            lead = leads.get(paths.importance(ref, run.experiment.measure_tag))
            if lead is not None and lead != run.id:
                needs.append(lead)
        for other in needs:
            if other not in group_of:
                raise ValueError(f"{run.id} waits for {other}, which is not in the pending plan; "
                                 "pass the output of pending_runs()")
            if group_of[other] != name:
                deps[name].add(group_of[other])
    order = _topological([name for name in members], deps)
    deps = _reduce(order, deps)
    return [Job(name, tuple(members[name]), tuple(sorted(deps[name], key=order.index)), kinds[name])
            for name in order]


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


def describe(jobs: Iterable[Job]) -> str:
    """The dependency structure, one line per job: ``name (n runs[, array]) after a, b``."""
    lines = []
    for job in jobs:
        size = f"{len(job.runs)} run{'s' if len(job.runs) != 1 else ''}{', array' if job.is_array else ''}"
        after = f" after {', '.join(job.after)}" if job.after else ""
        lines.append(f"{job.name} ({size}){after}")
    return "\n".join(lines)
