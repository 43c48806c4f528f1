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


def test_shared_work_waits_for_the_process_doing_it_then_finds_its_file(tmp_path):
    """waiting_lock (a reference's importance): a second process waits while the first holds the lock,
    and, after it, finds the file the first wrote instead of computing it again."""
    lock, out = str(tmp_path / "locks" / "imp.lock"), tmp_path / "imp.npz"
    work = ("import os, sys, time; from nlproar_jax.runtime.runlock import waiting_lock\n"
            "lock, out, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])\n"
            "with waiting_lock(lock, 'imp'):\n"
            "    print('in', flush=True)\n"
            "    if os.path.exists(out):\n        print('found', flush=True)\n"
            "    else:\n        time.sleep(pause); open(out, 'w').write('x'); print('computed', flush=True)\n")
    first = subprocess.Popen([sys.executable, "-c", work, lock, str(out), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "in"
        second = subprocess.run([sys.executable, "-c", work, lock, str(out), "0"], capture_output=True, text=True,
                                timeout=60)
        assert second.stdout.split() == ["in", "found"]  # it waited: the first had written the file by then
        assert first.stdout.readline().strip() == "computed"
    finally:
        first.wait(timeout=30)
