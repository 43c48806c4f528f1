"""Run a plan's runs on N local worker processes, each pinned to its own cores, dependencies respected.

The parent (:func:`run_parallel`) starts ``N`` copies of a worker command (``python -m
nlproar_jax.sweep ... --worker``); each worker loads the task once, then reads run ids from its
stdin, one per line, runs each (compiled programs stay in the worker, so later runs of the same
shapes do not compile again) and answers ``@nlproar ok <id>`` or ``@nlproar failed <id> <reason>`` on stdout (other stdout lines are
passed through to the log); its log
goes to ``<log_dir>/worker-<i>.log``. The parent hands a run to an idle worker once every run it
waits for succeeded; a failed run's dependents are not started, the others go on. Results are the
files each run writes, exactly as in the serial sweep; an interrupted parallel sweep is resumed by
running it again (finished runs are skipped, each run's lock keeps two copies apart).
"""
from __future__ import annotations

import logging
import os
import selectors
import subprocess
import sys
import time
from typing import Optional, Sequence

from nlproar_jax.runtime.progress import eta

log = logging.getLogger("nlproar_jax")
MARK = "@nlproar "  # protocol lines on a worker's stdout start with this; any other line is not ours


def local_gpus() -> list[str]:
    """The NVIDIA GPUs this process may use, without starting a backend (a JAX backend in the parent
    would claim the devices' memory): ``CUDA_VISIBLE_DEVICES`` when set, else one id per
    ``/dev/nvidia<N>`` device file."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        names = os.listdir("/dev")
    except OSError:
        return []
    return sorted((n[len("nvidia"):] for n in names if n.startswith("nvidia") and n[len("nvidia"):].isdigit()), key=int)


def default_workers() -> int:
    """``--workers=0`` (auto): one worker per local GPU (each sees only its own), else one per CPU core
    this process may use."""
    gpus = local_gpus()
    if gpus:
        return len(gpus)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def core_groups(workers: int, cores: Optional[Sequence[int]] = None) -> list[list[int]]:
    """This process's allowed cores split into ``workers`` disjoint groups (round-robin); with more
    workers than cores, groups share cores."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    if workers <= len(cores):
        return [cores[i::workers] for i in range(workers)]
    return [[cores[i % len(cores)]] for i in range(workers)]


def run_parallel(runs: Sequence, worker_argv: list[str], workers: int, log_dir: str,
                 env: Optional[dict] = None, pin: bool = False) -> list[str]:
    """Run ``runs`` (:class:`~nlproar_jax.roar.plan.PlannedRun`, plan order; ``after`` naming runs among
    them or already finished) on ``workers`` processes of ``worker_argv``; return the ids that failed or
    could not start because a run they need failed.

    Raises:
      RuntimeError: a worker exited unexpectedly (its log is named).
    """
    os.makedirs(log_dir, exist_ok=True)
    todo = {run.id: run for run in runs}
    waiting = set(todo)
    done: set[str] = set()
    failed: dict[str, str] = {}
    groups = core_groups(workers)
    gpus = local_gpus()
    procs, logs, busy = [], [], {}
    sel = selectors.DefaultSelector()
    for i, cores in enumerate(groups):
        path = os.path.join(log_dir, f"worker-{i}.log")
        logs.append(path)
        f = open(path, "a")
        pin_to = (lambda c=cores: os.sched_setaffinity(0, c)) if pin and hasattr(os, "sched_setaffinity") else None
        worker_env = dict(os.environ if env is None else env)
        if len(gpus) > 1:  # each worker sees one GPU (round-robin when there are more workers than GPUs)
            worker_env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        p = subprocess.Popen(worker_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=f, text=True,
                             bufsize=1, env=worker_env, preexec_fn=pin_to)
        f.close()
        procs.append(p)
        sel.register(p.stdout, selectors.EVENT_READ, i)
    log.info("%d runs on %d workers (cores %s%s); logs: %s", len(todo), workers,
             " | ".join(",".join(map(str, g)) for g in groups) if pin else "not pinned",
             f"; GPUs {' | '.join(gpus[i % len(gpus)] for i in range(workers))}" if len(gpus) > 1 else "", log_dir)
    t0, finished = time.perf_counter(), 0

    def blocked(rid: str) -> bool:
        return any(a in failed for a in todo[rid].after)

    def ready(rid: str) -> bool:
        return all(a in done or a not in todo for a in todo[rid].after)

    try:
        while waiting or busy:
            for rid in [r for r in list(waiting) if blocked(r)]:  # a run it needs failed
                waiting.discard(rid)
                failed[rid] = "a run it needs failed"
            for i, p in enumerate(procs):
                if i in busy:
                    continue
                nxt = next_run(todo, waiting, ready, busy_shares={getattr(todo[r], "shares", "") for r, _ in busy.values()})
                if nxt is None:
                    break
                waiting.discard(nxt)
                busy[i] = (nxt, time.perf_counter())
                p.stdin.write(nxt + "\n")
                p.stdin.flush()
            if not busy:
                if waiting:  # nothing runs and nothing can start: only blocked runs remain
                    continue
                break
            for key, _ in sel.select():
                i = key.data
                line = procs[i].stdout.readline()
                if not line:
                    raise RuntimeError(f"worker {i} exited (code {procs[i].wait()}); see {logs[i]}")
                if not line.startswith(MARK) or i not in busy:
                    log.info("worker %d: %s", i, line.rstrip())
                    continue
                status, _, rest = line[len(MARK):].strip().partition(" ")
                rid, _, reason = rest.partition(" ")
                start = busy.pop(i)[1]
                finished += 1
                if status == "ok":
                    done.add(rid)
                else:
                    failed[rid] = reason or "failed"
                when = eta(finished, len(todo), time.perf_counter() - t0)
                log.info("[%d/%d] %s %s in %.0fs on worker %d%s", finished, len(todo), rid,
                         "done" if status == "ok" else f"FAILED ({reason}; see {logs[i]})",
                         time.perf_counter() - start, i, f"  ({when})" if when else "")
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return sorted(failed)


def next_run(todo: dict, waiting: set, ready, busy_shares: set) -> Optional[str]:
    """The next run to hand out: the first ready one in plan order that shares no work
    (:attr:`~nlproar_jax.roar.plan.PlannedRun.shares`) with a running one, else the first ready one (it
    waits for the shared work: a reference's importance is computed by one process, under a lock)."""
    first = None
    for rid in todo:
        if rid in waiting and ready(rid):
            shares = getattr(todo[rid], "shares", "")
            if not shares or shares not in busy_shares:
                return rid
            first = first or rid
    return first


def worker_loop(run_one, stdin=None, stdout=None) -> None:
    """The worker side: for each run id read from ``stdin``, ``run_one(id)``, then answer on ``stdout``."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for line in stdin:
        rid = line.strip()
        if not rid:
            continue
        try:
            run_one(rid)
            stdout.write(f"{MARK}ok {rid}\n")
        except Exception as e:  # noqa: BLE001 - reported to the parent, which stops the run's dependents
            logging.getLogger("nlproar_jax").exception("%s failed", rid)
            stdout.write(f"{MARK}failed {rid} {type(e).__name__}: {' '.join(str(e).split())[:300]}\n")
        stdout.flush()
