"""Train one ROAR run: ``python -m nlproar_jax.train --config=configs/imdb.py --config.k=30``.

Every config field can be overridden (``--config.seed=2``,
``--config.importance_measure=integrated-gradient``, ...). A finished run is
skipped; an interrupted one resumes from its last finished epoch.
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

    directory = config.compilation_cache_dir or os.path.join(config.persistent_dir, "cache", "xla")
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
        from nlproar_jax.malloc import reexec_with_hugetlb

        reexec_with_hugetlb()
    config.config_file = flags.FLAGS["config"].config_filename
    enable_compilation_cache(config)
    return config


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    from nlproar_jax.roar import MissingReferenceError, run_experiment

    try:
        run_experiment(config_from_flags())
    except (MissingReferenceError, ValueError) as e:
        logging.getLogger("nlproar_jax").error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
