"""glibc's malloc tunable that makes XLA on CPU faster: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``.

XLA's CPU runtime allocates its large temporaries afresh on every call, and glibc
serves big allocations with ``mmap``: every train step first-touches tens of
megabytes of new 4 KiB pages. With ``glibc.malloc.hugetlb=1`` malloc asks the kernel
for transparent huge pages (``madvise``), which cuts those page faults. On this project's
2-core VM one IMDB epoch trained about 15% faster with it, with identical losses; SST's
short sentences gained nothing (benchmarks/RESULTS.md, "glibc huge pages in real runs").

glibc reads tunables only at process start, so :func:`reexec_with_hugetlb` re-runs
the current command once with the tunable added. It does nothing off Linux/glibc,
when the tunable is already set, or when ``NLPROAR_MALLOC_REEXEC=0``.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Mapping, Optional

HUGETLB = "glibc.malloc.hugetlb=1"
_GUARD = "NLPROAR_MALLOC_REEXEC"


def with_hugetlb(tunables: str) -> str:
    """``GLIBC_TUNABLES`` value with ``glibc.malloc.hugetlb=1`` added (other tunables kept)."""
    kept = [t for t in tunables.split(":") if t and not t.startswith("glibc.malloc.hugetlb=")]
    return ":".join([*kept, HUGETLB])


def needs_reexec(environ: Mapping[str, str], system: Optional[str] = None, libc: Optional[str] = None) -> bool:
    """True when this process runs on Linux + glibc without the tunable and re-execution is allowed."""
    system = platform.system() if system is None else system
    libc = platform.libc_ver()[0] if libc is None else libc
    if system != "Linux" or libc != "glibc" or environ.get(_GUARD) in ("0", "done"):
        return False
    return "glibc.malloc.hugetlb=" not in environ.get("GLIBC_TUNABLES", "")


def reexec_with_hugetlb(argv: Optional[list[str]] = None) -> None:
    """Replace this process with the same command under ``glibc.malloc.hugetlb=1`` (at most once).

    ``argv``: the full interpreter command line; default ``sys.orig_argv`` (``python -m ...``
    or ``python script.py ...`` as typed). Call it before any heavy work: nothing survives.
    """
    if not needs_reexec(os.environ):
        return
    env = dict(os.environ, GLIBC_TUNABLES=with_hugetlb(os.environ.get("GLIBC_TUNABLES", "")))
    env[_GUARD] = "done"
    argv = list(sys.orig_argv if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)
