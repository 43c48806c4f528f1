"""Progress of long loops: a ``tqdm`` bar on a terminal, a log line every ``interval`` seconds elsewhere.

An epoch of IMDB or the importance over a split can take minutes; on a terminal a bar shows where it is
(examples/s, ETA), and in a log file (Slurm, ``nohup``, CI) a line every :data:`LOG_INTERVAL` seconds says
the same (``tqdm``'s own meter), so a job's log never goes silent for long. Short loops print nothing
extra: the first line comes after ``interval`` seconds, and a bar disappears when done.

    with Progress(len(split), "importance test") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines when stderr is not a terminal
log = logging.getLogger("nlproar_jax")


def _interactive() -> bool:
    if os.environ.get("NLPROAR_PROGRESS") == "log":
        return False
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class Progress:
    """Counts ``update(n)`` towards ``total`` (``unit`` per count). ``interval``: seconds between log
    lines when not on a terminal (None: :data:`LOG_INTERVAL`); ``NLPROAR_PROGRESS=off`` silences it,
    ``=log`` forces log lines on a terminal too."""

    def __init__(self, total: int, desc: str, unit: str = "ex", interval: Optional[float] = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.interval = LOG_INTERVAL if interval is None else float(interval)
        self.count = 0
        self.start = self.last = time.perf_counter()
        mode = os.environ.get("NLPROAR_PROGRESS", "auto")
        self.bar = None
        self.silent = mode == "off"
        if not self.silent and _interactive():
            tqdm.monitor_interval = 0  # no monitor thread (it only adjusts the refresh rate)
            self.bar = tqdm(total=self.total, desc=desc, unit=unit, unit_scale=True, leave=False,
                            mininterval=0.5, delay=2.0, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.count += int(n)
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if not self.silent and now - self.last >= self.interval and self.count < self.total:
            self.last = now
            log.info("%s", tqdm.format_meter(self.count, self.total, now - self.start, prefix=self.desc,
                                             unit=self.unit, ncols=0))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def eta(done: int, total: int, elapsed: float) -> str:
    """``"ETA 3:25"`` from ``done`` of ``total`` items in ``elapsed`` seconds (empty before the first)."""
    if done <= 0 or done >= total:
        return ""
    return "ETA " + tqdm.format_interval(elapsed / done * (total - done))
