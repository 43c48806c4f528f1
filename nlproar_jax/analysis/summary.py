"""Reading finished runs back: ``results/*.json`` and the ROAR table a sweep prints."""
from __future__ import annotations

import collections
import glob
import json
import os

import numpy as np


def load_results(persistent_dir: str) -> list[dict]:
    """Every finished run's result under ``persistent_dir/results``, sorted by experiment id."""
    out = []
    for path in sorted(glob.glob(os.path.join(persistent_dir, "results", "*.json"))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def roar_curves(results: list[dict]) -> dict:
    """``{(task, measure, strategy, recursive): {k: [test metric per seed]}}``, with each task's k=0 runs
    entered as k=0 of every curve of that task."""
    base = collections.defaultdict(list)
    curves: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in results:
        value = r["test"][r["reported_metric"]]
        if r["k"] == 0:
            base[r["task"]].append(value)
        else:
            curves[(r["task"], r["measure"], r["strategy"], r["recursive"])][r["k"]].append(value)
    for key, curve in curves.items():
        if base[key[0]]:
            curve[0] = list(base[key[0]])
    return curves


def format_roar_table(results: list[dict]) -> str:
    """A text table: one row per (task, measure, strategy, classic/recursive), test metric (mean over seeds) per k."""
    curves = roar_curves(results)
    if not curves:
        return "(no ROAR runs finished yet)"
    lines = []
    for task in sorted({key[0] for key in curves}):
        metric = next(r["reported_metric"] for r in results if r["task"] == task)
        for strategy in ("quantile", "count"):
            keys = sorted(key for key in curves if key[0] == task and key[2] == strategy)
            if not keys:
                continue
            ks = sorted({k for key in keys for k in curves[key]})
            unit = "%" if strategy == "quantile" else ""
            head = f"{'measure':<22}{'roar':<10}" + "".join(f"{f'k={k}{unit}':>9}" for k in ks)
            lines += [f"{task}: test {metric} (mean over seeds), {strategy} masking", head, "-" * len(head)]
            for key in sorted(keys, key=lambda x: (x[3], x[1])):
                row = f"{key[1]:<22}{'recursive' if key[3] else 'classic':<10}"
                for k in ks:
                    vals = curves[key].get(k)
                    row += f"{np.mean(vals):>9.3f}" if vals else f"{'':>9}"
                lines.append(row)
            lines.append("")
    return "\n".join(lines).rstrip()
