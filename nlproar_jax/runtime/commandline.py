"""What every command does first: the ``--config`` flag, logging, the compilation cache, malloc.

Shared by ``python -m nlproar_jax.train``, ``python -m nlproar_jax.sweep`` and ``launch/grid.py``.
"""
from __future__ import annotations

import difflib
import glob
import importlib.util
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app, flags
from ml_collections import config_flags

from nlproar_jax.runtime.runlock import RunBusyError

config_flags.DEFINE_config_file("config", None, "Task config file, e.g. configs/sst.py.", lock_config=True)
flags.DEFINE_bool("traceback", False, "On an error, show Python's full traceback instead of one line.")

# Errors that describe the user's input (a config value, a missing file or reference run, a diverged
# run): one line without a traceback, exit code 2. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple = (ValueError, FileNotFoundError, FloatingPointError)
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
EXIT_BUSY = 75  # EX_TEMPFAIL: another live process is running one of the runs asked for


def _config_argument(argv: Sequence[str]) -> Optional[str]:
    """The ``--config`` file named on the command line (``--config=X`` or ``--config X``), if any."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _nearest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_config_arguments(argv: Sequence[str]) -> Optional[str]:
    """One line describing what is wrong with the command line's ``--config`` file or its
    ``--config.<field>`` overrides (a missing file, an unknown field, with the nearest valid name), or
    None. Values are left to the flag parser, which names the flag and the bad value itself."""
    path = _config_argument(argv)
    if path is None:
        return None
    spec_path = path.split(":", 1)[0]  # config_flags allows "file.py:argument"
    if not os.path.isfile(spec_path):
        folder = os.path.dirname(spec_path) or "."
        choices = sorted(glob.glob(os.path.join(folder, "*.py")))
        listed = ", ".join(os.path.basename(c) for c in choices) or "none"
        return (f"config file {spec_path!r} not found{_nearest(spec_path, choices)} "
                f"(config files in {folder}/: {listed})")
    try:
        module_spec = importlib.util.spec_from_file_location("_nlproar_checked_config", spec_path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        config = module.get_config()
    except Exception:  # noqa: BLE001 - the flag parser reports a broken config file itself
        return None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        dotted = arg[len("--config."):].split("=", 1)[0]
        node, walked = config, []
        for part in dotted.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                where = ".".join(walked) or "the config"
                return (f"unknown config field {'.'.join(walked + [part])!r} (in {arg.split('=', 1)[0]}){_nearest(part, keys)} "
                        f"(fields of {where}: {', '.join(sorted(keys))})")
            node, walked = node[part], walked + [part]
    return None


def run_command(main: Callable, argv: Optional[Sequence[str]] = None) -> None:
    """``absl.app.run(main)`` with the errors a user causes as one line and exit code 2 (an unknown
    config file or field before anything starts; :data:`USER_ERRORS` raised by ``main``; ``--traceback``
    shows Python's traceback instead), a run another live process holds (exit code 75), and Ctrl-C as "interrupted; rerun the same command to resume",
    exit code 130 (finished runs and epochs are on disk, so the rerun continues)."""
    argv = list(sys.argv if argv is None else argv)
    problem = check_config_arguments(argv)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def guarded(args):
        try:
            return main(args)
        except KeyboardInterrupt:
            print("\ninterrupted; rerun the same command to resume (finished runs and epochs are kept)",
                  file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except RunBusyError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_BUSY)
        except USER_ERRORS as e:
            if flags.FLAGS.traceback:
                raise
            print(f"error: {e} (--traceback shows where)", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    app.run(guarded, argv=argv)


def setup_logging() -> None:
    """Human log lines for our logger; Orbax's absl chatter only from warnings up."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logger = logging.getLogger("nlproar_jax")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def enable_compilation_cache(config) -> None:
    """Turn on XLA's persistent compilation cache (see ``config.compilation_cache_dir``)."""
    import os

    import jax

    from nlproar_jax.names import Paths

    directory = config.compilation_cache_dir or Paths(config.persistent_dir).xla_cache
    if directory == "none":
        return
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def config_from_flags():
    """The parsed config with ``config_file`` filled in, and, when the command line sets
    ``--config.model``, that model's training defaults for the fields it does not set
    (:func:`nlproar_jax.models.apply_model_defaults`). With ``config.malloc_hugetlb`` (the
    default) this first re-runs the command under ``glibc.malloc.hugetlb=1`` where that applies."""
    config = flags.FLAGS.config
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/synthetic.py")
    if config.get("malloc_hugetlb", False):
        from nlproar_jax.runtime.malloc import reexec_with_hugetlb

        reexec_with_hugetlb()
    config.config_file = flags.FLAGS["config"].config_filename
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    if "model" in overrides:  # --config.model=NAME brings NAME's training settings (bert: section 9's)
        from nlproar_jax.models import apply_model_defaults

        apply_model_defaults(config, keep=overrides)
    enable_compilation_cache(config)
    return config
