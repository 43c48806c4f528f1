"""The glibc huge-page re-execution: tunables merged, applied at most once, skipped where it does not apply."""
import os
import platform
import subprocess
import sys

import pytest

from nlproar_jax.runtime.malloc import HUGETLB, needs_reexec, with_hugetlb


def test_with_hugetlb_keeps_other_tunables_and_replaces_an_old_value():
    assert with_hugetlb("") == HUGETLB
    assert with_hugetlb("glibc.malloc.arena_max=2") == f"glibc.malloc.arena_max=2:{HUGETLB}"
    assert with_hugetlb("glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2") == f"glibc.malloc.arena_max=2:{HUGETLB}"


@pytest.mark.parametrize("environ, system, libc, expected", [
    ({}, "Linux", "glibc", True),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "Linux", "glibc", True),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "Linux", "glibc", False),  # the user chose: respected
    ({"GLIBC_TUNABLES": HUGETLB}, "Linux", "glibc", False),
    ({"NLPROAR_MALLOC_REEXEC": "0"}, "Linux", "glibc", False),
    ({"NLPROAR_MALLOC_REEXEC": "done"}, "Linux", "glibc", False),  # never loops
    ({}, "Darwin", "", False),
    ({}, "Linux", "musl", False),
])
def test_needs_reexec(environ, system, libc, expected):
    assert needs_reexec(environ, system=system, libc=libc) is expected


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="Linux/glibc only")
def test_reexec_runs_the_same_command_once_with_the_tunable(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        "from nlproar_jax.runtime.malloc import reexec_with_hugetlb\n"
        "print('start', flush=True)\n"
        "reexec_with_hugetlb()\n"
        "print(os.environ.get('GLIBC_TUNABLES'), os.environ.get('NLPROAR_MALLOC_REEXEC'), sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "NLPROAR_MALLOC_REEXEC")}
    out = subprocess.run([sys.executable, str(script), "--x=1"], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["start", "start", f"{HUGETLB} done ['--x=1']"]
    env["NLPROAR_MALLOC_REEXEC"] = "0"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["start", "None 0 []"]
