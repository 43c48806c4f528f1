"""Progress output: log lines at an interval when stderr is not a terminal, silence when asked, the ETA."""
import contextlib
import logging

from nlproar_jax.runtime.progress import Progress, eta


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def captured_lines():
    """The project logger's messages at INFO, collected in the yielded list."""
    handler = Lines()
    logger = logging.getLogger("nlproar_jax")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run(monkeypatch, mode, interval):
    monkeypatch.setenv("NLPROAR_PROGRESS", mode)
    with captured_lines() as lines:
        with Progress(5, "importance test", interval=interval) as bar:
            for _ in range(5):
                bar.update(1)
    return lines


def test_log_lines_every_interval_until_done(monkeypatch):
    lines = run(monkeypatch, "log", interval=0.0)
    assert len(lines) == 4  # after 1, 2, 3 and 4 of 5; none once finished
    assert lines[0].startswith("importance test:  20% 1/5") and "ex/s" in lines[0]


def test_short_loops_and_off_print_nothing(monkeypatch):
    assert run(monkeypatch, "log", interval=60.0) == []
    assert run(monkeypatch, "off", interval=0.0) == []


def test_eta():
    assert eta(3, 10, 30.0) == "ETA 01:10" and eta(0, 10, 5.0) == "" and eta(10, 10, 5.0) == ""


def test_log_lines_come_at_the_stated_interval(monkeypatch):
    """Stderr not a terminal: one line each time ``interval`` (the default, 30 s) has passed, by the clock."""
    from nlproar_jax.runtime import progress

    clock = {"t": 1000.0}
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setenv("NLPROAR_PROGRESS", "log")
    with captured_lines() as lines:
        with Progress(20, "epoch 1/3") as bar:  # interval: progress.LOG_INTERVAL
            for _ in range(20):
                clock["t"] += 10.0  # one update every 10 s: a line at 30, 60, 90, ... s
                bar.update(1)
    assert progress.LOG_INTERVAL == 30.0
    assert [line.split()[3] for line in lines] == [f"{i}/20" for i in (3, 6, 9, 12, 15, 18)]
