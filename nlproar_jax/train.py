"""Train one ROAR run: ``python -m nlproar_jax.train --config=configs/imdb.py --config.k=30``.

Every config field can be overridden (``--config.seed=2``,
``--config.importance_measure=integrated-gradient``, ...). A finished run is
skipped; an interrupted one resumes from its last finished epoch.
"""
from __future__ import annotations

import logging
import sys

from absl import app

from nlproar_jax.runtime.commandline import config_from_flags, run_command, setup_logging


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    from nlproar_jax.roar.run import MissingReferenceError, run_experiment

    try:
        run_experiment(config_from_flags())
    except (MissingReferenceError, ValueError) as e:
        logging.getLogger("nlproar_jax").error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main)
