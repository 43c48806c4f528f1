"""One live writer per run: an exclusive ``flock`` on ``<persistent_dir>/locks/<run id>.lock``
(:meth:`nlproar_jax.names.Paths.lock`) for as long as a process works on the run (data, importance,
training, results).

Two copies of one run (a relaunch while the first launch's job still runs, two sweeps on one
``persistent_dir``) would otherwise write the same checkpoints and files. The second copy fails at once
with :class:`RunBusyError`, naming the holder; the lock is released when the holder exits, however it
exits (the kernel drops ``flock`` locks of a dead process), so a killed or cancelled run never leaves a
stale lock behind. ``flock`` works on local disks and on the NFS v4 / Lustre / GPFS mounts clusters use
for shared directories.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from typing import Iterator, Sequence


class RunBusyError(RuntimeError):
    """Another live process holds the lock of a run this process was asked to run."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 512).decode(errors="replace").strip() or "another process"


@contextlib.contextmanager
def run_locks(lock_paths: Sequence[str]) -> Iterator[None]:
    """Hold every lock file of ``lock_paths`` (created if missing) until the block ends. Lock files are
    never deleted (deleting a lock file another process has open would let two processes hold "it").

    Raises:
      RunBusyError: one is held by another live process (the ones already taken are released).
    """
    fds: list[int] = []
    try:
        for path in lock_paths:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                run_id = os.path.basename(path).removesuffix(".lock")
                raise RunBusyError(f"{run_id} is being run by {holder}; not starting a "
                                   "second copy (wait for it, or stop it and rerun)") from None
            fds.append(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (f"pid {os.getpid()} on {socket.gethostname()} since "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
                           + (f" (Slurm job {os.environ['SLURM_JOB_ID']})" if "SLURM_JOB_ID" in os.environ
                              else "")).encode(), 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # releases the flock


@contextlib.contextmanager
def waiting_lock(lock_path: str, what: str = "") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing, never deleted) until the block
    ends, waiting for another process that holds it (logging once who, when it has to wait). For work
    that several runs share and one process should do while the others wait for its file (a reference's
    importance), unlike :func:`run_locks`, which refuses a second copy of a run."""
    import logging

    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger("nlproar_jax").info("waiting for %s: %s computes it", what or lock_path, _holder(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)
