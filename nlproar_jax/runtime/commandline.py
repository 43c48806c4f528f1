"""What every command does first: the ``--config`` flag, logging, the compilation cache, malloc.

Shared by ``python -m nlproar_jax.train``, ``python -m nlproar_jax.sweep`` and ``launch/grid.py``.
"""
from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Task config file, e.g. configs/sst.py.", lock_config=True)


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
    """The parsed config with ``config_file`` filled in. With ``config.malloc_hugetlb`` (the
    default) this first re-runs the command under ``glibc.malloc.hugetlb=1`` where that applies."""
    config = flags.FLAGS.config
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/synthetic.py")
    if config.get("malloc_hugetlb", False):
        from nlproar_jax.runtime.malloc import reexec_with_hugetlb

        reexec_with_hugetlb()
    config.config_file = flags.FLAGS["config"].config_filename
    enable_compilation_cache(config)
    return config
