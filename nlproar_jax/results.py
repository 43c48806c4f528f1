"""Gather finished runs into tables, the faithfulness summary and the ROAR plots.

  python -m nlproar_jax.results --persistent-dir runs/synthetic [--out DIR] [--report]

Reads every ``results/*.json`` under the persistent dir and writes to ``--out``
(default ``<persistent-dir>/export``):

- ``results.csv``: one row per run (ids, task, seed, measure, strategy, mode, k, roar
  kind: base, classic, recursive or keep; val/test metrics, seconds, device, notes);
- ``summary.csv`` / ``summary.json``: per (task, measure, strategy,
  classic|recursive) the area between the measure's curve and random's (removal only)
  (:mod:`nlproar_jax.analysis.faithfulness`), mean and 95% bootstrap CI over seeds;
- ``erasure.csv``: where ``python -m nlproar_jax.evaluate`` has run, one row per (seed, measure):
  erasure faithfulness without retraining and plausibility (``erasure/*.json``);
- ``side_by_side.csv``: per (task, model, strategy, measure) the ROAR areas (classic, recursive, keep)
  beside comprehensiveness, sufficiency, flip rate and plausibility (empty where not evaluated), and
  ``rank_agreement.csv``: Spearman's rho between each ROAR area and each of those across measures
  (:mod:`nlproar_jax.analysis.side_by_side`; the rank agreement is also printed);
- ``plots/roar_<task>_<strategy>.png``: test metric vs k, classic and recursive panels (and a
  keep-and-retrain panel where there are keep runs); ``plots/side_by_side_<task>_<strategy>.png``:
  ROAR area against each cheap metric, a point per measure (where both exist);
- ``report.html`` with ``--report`` (:mod:`nlproar_jax.analysis.report`).

Needs numpy, scipy and matplotlib; not JAX.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from nlproar_jax.analysis.tables import export, format_summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlproar_jax.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--persistent-dir", required=True, help="the runs' persistent_dir (holds results/*.json)")
    parser.add_argument("--out", default=None, help="output directory (default: <persistent-dir>/export)")
    parser.add_argument("--upto", type=int, nargs="*", default=[],
                        help="also summarise the curves up to these k (the original reports 20); "
                             "the whole curve is always summarised")
    parser.add_argument("--report", action="store_true", help="also write report.html (self-contained)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    try:
        written = export(args.persistent_dir, args.out, upto=[None] + list(args.upto), report=args.report,
                         plots=not args.no_plots)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from nlproar_jax.analysis.side_by_side import format_rank_agreement

    print(format_summary(written.pop("summary")))
    agreement = written.pop("rank_agreement")
    print()
    print(format_rank_agreement(agreement))
    for name, path in written.items():
        for p in (path if isinstance(path, list) else [path]):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
