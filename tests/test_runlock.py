"""One live writer per run: a second process is refused while the first holds a run's lock, and the
lock goes with its holder however the holder ends (exit, SIGKILL)."""
import os
import signal
import subprocess
import sys

from nlproar_jax.runtime.runlock import run_locks

HOLD = ("import sys, time; from nlproar_jax.runtime.runlock import run_locks\n"
        "with run_locks(sys.argv[1:]):\n    print('held', flush=True); time.sleep(60)\n")
TRY = ("import sys; from nlproar_jax.runtime.runlock import run_locks, RunBusyError\n"
       "try:\n    with run_locks(sys.argv[1:]): print('ok')\n"
       "except RunBusyError as e:\n    print(e); sys.exit(3)\n")


def try_locks(*paths):
    return subprocess.run([sys.executable, "-c", TRY, *paths], capture_output=True, text=True)


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path):
    a, b = str(tmp_path / "locks" / "run-a.lock"), str(tmp_path / "locks" / "run-b.lock")
    with run_locks([a]):
        p = try_locks(b, a)
        assert p.returncode == 3
        assert p.stdout.startswith(f"run-a is being run by pid {os.getpid()} on ")
        with run_locks([b]):  # the refused process took b, then released it when it failed on a
            pass
    assert try_locks(a).stdout.strip() == "ok"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    a = str(tmp_path / "run-a.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, a], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_locks(a).returncode == 3
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert try_locks(a).stdout.strip() == "ok"
    finally:
        if holder.poll() is None:
            holder.kill()
