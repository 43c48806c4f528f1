"""ROAR beside the cheap metrics: per task, model, strategy and measure, the area between ROAR curves next
to the erasure metrics (no retraining) and plausibility, and how well their rankings agree.

:func:`side_by_side` joins, per (task, model, strategy, measure tag), over seeds:

- ``roar_classic``, ``roar_recursive``: the faithfulness summary's area between the measure's remove
  curve and random's (:func:`~nlproar_jax.analysis.tables.summarize`, the whole curve), mean over seeds;
- ``roar_keep``: the same for keep-and-retrain curves, oriented so that higher is more faithful too:
  ``absolute = integral of (measure(x) - random(x)) dx`` over the tokens kept (x = k/100; the curves
  meet at k = 100, the base model, where nothing is masked), ``maximum = integral of (random(100) -
  random(x)) dx``, ``relative = clip(absolute / maximum, -1, 1)`` (:func:`keep_areas`);
- ``area``: which of the two the ROAR columns hold: ``relative`` for quantile masking, ``absolute`` for
  count masking (which has no all-masked level, so no relative area);
- the erasure headline of ``python -m nlproar_jax.evaluate`` (:func:`~nlproar_jax.analysis.tables.
  erasure_metrics`): ``aopc_comprehensiveness``, ``aopc_sufficiency`` (lower = better), ``flip_top1``,
  and plausibility ``auprc``, ``map``, ``topk_f1`` where the task has gold rationales; mean over the
  seeds evaluated (``erasure_seeds``) under one set of settings (``erasure_settings``: the default
  split, removal, target and bins where evaluated, else the most common).

Random's ROAR areas are 0 by definition (its curve against itself) wherever its curves exist; it is a
row like the others, so the rankings include it. Whatever is missing (no erasure files, no keep runs, a
measure evaluated but not swept) is NaN (an empty CSV cell), never an error.

:func:`rank_agreement` gives Spearman's rho between each ROAR column and each cheap metric across the
measures of a (task, model, strategy), and ``agreement`` = rho with sufficiency's sign flipped, so that +1
means the cheap metric ranks the measures exactly as ROAR does. Needs numpy, scipy (p-values) and
matplotlib (:func:`plot_side_by_side`); not JAX.
"""
from __future__ import annotations

import collections
import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from nlproar_jax.analysis.faithfulness import faithfulness
from nlproar_jax.analysis.tables import (BASELINE, END_K, MODE_ORDER, STRATEGY_ORDER, X_SCALE, _measure_order,
                                         _name_rows, erasure_metrics, seed_curves, study_file_stem, study_labels,
                                         summarize)

ROAR_COLUMNS = ("roar_classic", "roar_recursive", "roar_keep")
# (erasure_metrics key, short label, direction: +1 higher = more faithful/plausible, -1 lower = better)
CHEAP_METRICS = (("aopc_comprehensiveness", "comp AOPC", 1), ("aopc_sufficiency", "suff AOPC", -1),
                 ("flip_top1", "flip rate", 1), ("auprc", "AUPRC", 1), ("map", "MAP", 1), ("topk_f1", "F1@gold", 1))
SIDE_BY_SIDE_COLUMNS = (("task", "model", "study", "strategy", "measure", "measure_tag", "measure_name", "area")
                        + ROAR_COLUMNS + ("roar_seeds",) + tuple(m for m, _, _ in CHEAP_METRICS)
                        + ("erasure_seeds", "erasure_settings"))
AGREEMENT_COLUMNS = ("task", "model", "study", "strategy", "roar", "metric", "n", "rho", "p_value", "agreement",
                     "n_without_random", "rho_without_random", "agreement_without_random")
NAN = float("nan")


# -- Spearman ----------------------------------------------------------------------------------
def average_ranks(x: Sequence[float]) -> np.ndarray:
    """``<float>[n]`` ranks 1..n of ``x`` (``[n]``), ties sharing their average rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """``(rho, p_value, n)``: Spearman's rank correlation of the pairs where both ``x`` and ``y`` (``[n]``
    each) are finite: Pearson's correlation of their average ranks; the two-sided p-value from the t
    distribution with n - 2 degrees of freedom (as ``scipy.stats.spearmanr``). NaN with fewer than 3
    pairs or where either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    both = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[both], y[both], int(both.sum())
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return NAN, NAN, n
    rx, ry = average_ranks(x) - (n + 1) / 2, average_ranks(y) - (n + 1) / 2
    rho = float(np.clip(np.sum(rx * ry) / math.sqrt(np.sum(rx * rx) * np.sum(ry * ry)), -1.0, 1.0))
    if abs(rho) == 1.0:
        return rho, 0.0, n
    import scipy.stats  # lazy: p-values only

    t = rho * math.sqrt((n - 2) / (1 - rho * rho))
    return rho, float(2 * scipy.stats.t.sf(abs(t), n - 2)), n


# -- the ROAR side -----------------------------------------------------------------------------
def keep_areas(results: Iterable[dict]) -> dict[tuple, dict[int, float]]:
    """``{(study, measure_tag, strategy): {seed: area}}`` of the keep-and-retrain curves against random's
    keep curve (see the module docstring): relative for quantile, absolute (x in tokens) for count.
    Random itself and seeds without random's keep curve are left out."""
    curves = seed_curves(results, mode="keep")
    out = {}
    for (study, tag, strategy, _), per_seed in curves.items():
        baseline = curves.get((study, BASELINE, strategy, False), {})
        if tag == BASELINE or not baseline:
            continue
        per = {}
        for seed, curve in per_seed.items():
            if seed not in baseline:
                continue
            try:  # higher = better for keep curves: the remove summary's area on the negated curves
                f = faithfulness({k: -v for k, v in curve.items()}, {k: -v for k, v in baseline[seed].items()},
                                 x_scale=X_SCALE[strategy], end=END_K[strategy])
            except ValueError:
                continue
            per[seed] = f.relative if strategy == "quantile" else f.absolute
        if per:
            out[(study, tag, strategy)] = per
    return out


def _whole_curve_rows(summary: Sequence[dict]) -> dict[tuple, dict]:
    """``{(task, model, strategy, measure_tag, roar): row}``: the summary row of the widest ``upto``."""
    best: dict = {}
    for r in summary:
        key = (r["task"], r["model"], r["strategy"], r["measure_tag"], r["roar"])
        if key not in best or float(r["upto"]) > float(best[key]["upto"]):
            best[key] = r
    return best


def _roar_values(results: list[dict], summary: Sequence[dict]) -> tuple[dict, dict]:
    """``({(task, model, strategy, tag): {roar column: value}}, {same key: seeds of the classic area})``."""
    values: dict = collections.defaultdict(dict)
    seeds: dict = {}
    for (task, model, strategy, tag, roar), r in _whole_curve_rows(summary).items():
        field = "relative_mean" if strategy == "quantile" else "absolute_mean"
        values[(task, model, strategy, tag)][f"roar_{roar}"] = r[field]
        if roar == "classic" or (task, model, strategy, tag) not in seeds:
            seeds[(task, model, strategy, tag)] = r["n_seeds"]
    labels = study_labels(results)
    pair = {label: tm for tm, label in labels.items()}
    for (study, tag, strategy), per_seed in keep_areas(results).items():
        values[(*pair[study], strategy, tag)]["roar_keep"] = float(np.mean(list(per_seed.values())))
    # random against itself: 0 wherever its curves exist (its classic curve stands in for recursive)
    for mode in MODE_ORDER:
        curves = seed_curves(results, mode=mode)
        for (study, tag, strategy, recursive) in curves:
            if tag == BASELINE:
                column = "roar_keep" if mode == "keep" else ("roar_recursive" if recursive else "roar_classic")
                values[(*pair[study], strategy, tag)][column] = 0.0
                if mode == "remove" and not recursive:
                    seeds[(*pair[study], strategy, tag)] = len(curves[(study, tag, strategy, recursive)])
    return dict(values), seeds


# -- the erasure side --------------------------------------------------------------------------
def _settings(evaluation: dict) -> tuple:
    s = evaluation["settings"]
    return (evaluation.get("split"), s["removal"], s["target"], tuple(s["bins"]))


def _settings_text(key: tuple) -> str:
    split, removal, target, bins = key
    return f"split={split} removal={removal} target={target} bins={','.join(str(b) for b in bins)}"


def _erasure_values(evaluations: Iterable[dict], aopc: Optional[str]) -> dict[tuple, dict]:
    """``{(task, model, tag): {metric: mean over seeds, erasure_seeds, erasure_settings}}``: per (task,
    model) the default settings' files (no ``_ev-`` suffix in the id) if any, else the most common
    settings'."""
    groups: dict = collections.defaultdict(list)
    for ev in evaluations:
        groups[(ev["task"], ev.get("model") or "rnn")].append(ev)
    out = {}
    for (task, model), evs in groups.items():
        default = [ev for ev in evs if "_ev-" not in str(ev.get("evaluation_id", ""))]
        counts = collections.Counter(_settings(ev) for ev in (default or evs))
        chosen = sorted(counts, key=lambda k: (-counts[k], str(k)))[0]
        per_tag: dict = collections.defaultdict(list)
        for ev in evs:
            if _settings(ev) == chosen:
                per_tag[ev["measure_tag"]].append(erasure_metrics(ev, aopc))
        for tag, metrics in per_tag.items():
            row = {}
            for name, _, _ in CHEAP_METRICS:
                vals = [m[name] for m in metrics if not math.isnan(m[name])]
                row[name] = float(np.mean(vals)) if vals else NAN
            row.update(erasure_seeds=len(metrics), erasure_settings=_settings_text(chosen))
            out[(task, model, tag)] = row
    return out


# -- the join ----------------------------------------------------------------------------------
def side_by_side(results: Iterable[dict], evaluations: Iterable[dict] = (), *,
                 summary: Optional[Sequence[dict]] = None, aopc: Optional[str] = None) -> list[dict]:
    """One row per (task, model, strategy, measure tag): the ROAR areas beside the erasure headline
    (:data:`SIDE_BY_SIDE_COLUMNS`; see the module docstring). ``results``: ``results/*.json`` dicts;
    ``evaluations``: ``erasure/*.json`` dicts (:func:`~nlproar_jax.analysis.tables.load_erasure`);
    ``summary``: :func:`~nlproar_jax.analysis.tables.summarize` of ``results`` (computed if None; the
    widest ``upto`` is used); ``aopc``: the AOPC normalisation ("mean" | "unirex"; None = the files').
    A (task, model) without ROAR runs gets rows with an empty strategy. Missing values are NaN."""
    results, evaluations = list(results), list(evaluations)
    summary = summarize(results) if summary is None else summary
    roar, roar_seeds = _roar_values(results, summary) if results else ({}, {})
    erasure = _erasure_values(evaluations, aopc)
    pairs = ({(t, m) for t, m, _, _ in roar} | {(t, m) for t, m, _ in erasure})
    labels = study_labels([{"task": t, "model": m} for t, m in pairs])
    rows = []
    for task, model in pairs:
        strategies = sorted({s for t, m, s, _ in roar if (t, m) == (task, model)},
                            key=lambda s: (STRATEGY_ORDER.index(s) if s in STRATEGY_ORDER else 9, s)) or [""]
        tags = ({g for t, m, _, g in roar if (t, m) == (task, model)}
                | {g for t, m, g in erasure if (t, m) == (task, model)})
        for strategy in strategies:
            for tag in tags:
                r_vals = roar.get((task, model, strategy, tag), {})
                e_vals = erasure.get((task, model, tag), {})
                if not r_vals and not e_vals:
                    continue
                row = {"task": task, "model": model, "study": labels[(task, model)], "strategy": strategy,
                       "measure": tag.split("-")[0], "measure_tag": tag,
                       "area": {"quantile": "relative", "count": "absolute"}.get(strategy, "")}
                row.update({c: r_vals.get(c, NAN) for c in ROAR_COLUMNS})
                row["roar_seeds"] = roar_seeds.get((task, model, strategy, tag), 0)
                row.update({name: e_vals.get(name, NAN) for name, _, _ in CHEAP_METRICS})
                row.update(erasure_seeds=e_vals.get("erasure_seeds", 0),
                           erasure_settings=e_vals.get("erasure_settings", ""))
                rows.append(row)
    _name_rows(rows)
    rows.sort(key=lambda r: (r["study"], STRATEGY_ORDER.index(r["strategy"]) if r["strategy"] in STRATEGY_ORDER
                             else 9, _measure_order(r["measure_tag"])))
    return rows


def _groups(rows: Sequence[dict]) -> list[tuple[str, str, list[dict]]]:
    """``[(study, strategy, rows)]`` in the rows' order."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["study"], r["strategy"]), []).append(r)
    return [(study, strategy, group) for (study, strategy), group in out.items()]


def rank_agreement(rows: Sequence[dict]) -> list[dict]:
    """One row per (study, strategy, ROAR column, cheap metric) with at least 3 measures valued on both
    sides (:data:`AGREEMENT_COLUMNS`): Spearman's ``rho`` across the measures (:func:`spearman`), its
    ``p_value``, ``n`` measures with both values, and ``agreement`` = rho x the metric's direction
    (+1: the cheap metric ranks the measures as ROAR does; sufficiency is better when lower). Random
    is last on both sides wherever the measures beat it, which lifts rho with few measures, so the
    same without random is there too (``*_without_random``)."""
    out = []
    for study, strategy, group in _groups(rows):
        for roar in ROAR_COLUMNS:
            x = [r[roar] for r in group]
            if all(math.isnan(v) for v in x):
                continue
            for metric, _, direction in CHEAP_METRICS:
                y = [r[metric] for r in group]
                if all(math.isnan(v) for v in y):
                    continue
                rho, p, n = spearman(x, y)
                if n < 3:  # no ranking to compare (e.g. random alone in a panel)
                    continue
                others = [r["measure"] != BASELINE for r in group]
                rho_other, _, n_other = spearman(np.asarray(x)[others], np.asarray(y)[others])
                out.append({"task": group[0]["task"], "model": group[0]["model"], "study": study,
                            "strategy": strategy, "roar": roar.removeprefix("roar_"), "metric": metric, "n": n,
                            "rho": rho, "p_value": p, "agreement": rho * direction, "n_without_random": n_other,
                            "rho_without_random": rho_other, "agreement_without_random": rho_other * direction})
    return out


def format_rank_agreement(agreement: Sequence[dict]) -> str:
    """A text table per (study, strategy): a row per ROAR kind, a column per cheap metric, the oriented
    Spearman ``agreement`` with its n."""
    if not agreement:
        return "(ROAR beside the cheap metrics: nothing to compare; run python -m nlproar_jax.evaluate for them)"
    lines = []
    groups: dict = {}
    for a in agreement:
        groups.setdefault((a["study"], a["strategy"]), []).append(a)
    for (study, strategy), group in groups.items():
        metrics = [(m, label) for m, label, _ in CHEAP_METRICS if any(a["metric"] == m for a in group)]
        n, n_other = max(a["n"] for a in group), max(a["n_without_random"] for a in group)
        lines += [f"{study}: rank agreement of ROAR ({strategy} masking) with the cheap metrics across "
                  f"{n} measures",
                  "  Spearman's rho, sign flipped for suff AOPC: +1 = the same ranking as ROAR; "
                  f"in parentheses: without random ({n_other} measures)"]
        head = f"{'ROAR':<12}" + "".join(f"{label:>16}" for _, label in metrics)
        lines += [head, "-" * len(head)]
        for roar in ("classic", "recursive", "keep"):
            cells = {a["metric"]: a for a in group if a["roar"] == roar}
            if not cells:
                continue
            row = f"{roar:<12}"
            for m, _ in metrics:
                row += f"{_agreement_text(cells.get(m)):>16}"
            lines.append(row)
        lines.append("")
    return "\n".join(lines).rstrip()


def _agreement_text(a: Optional[dict]) -> str:
    """``+0.62 (+0.48)`` (all measures, without random), ``n/a (n/a)`` or ``""`` (no such pair)."""
    if a is None:
        return ""
    fmt = lambda v: "n/a" if math.isnan(v) else f"{v:+.2f}"  # noqa: E731
    return f"{fmt(a['agreement'])} ({fmt(a['agreement_without_random'])})"


# -- the plot ----------------------------------------------------------------------------------
def plot_side_by_side(rows: Sequence[dict], agreement: Sequence[dict], path: str) -> Optional[str]:
    """One figure for one (study, strategy)'s ``rows``: a panel per (ROAR column with values, cheap metric
    with values), ROAR area on x, the metric on y (sufficiency's axis inverted so that up is better
    everywhere), a point per measure in its colour and marker (:mod:`~nlproar_jax.analysis.plots`), the
    oriented Spearman agreement in each panel's title. Saved as PNG at ``path``; None (nothing drawn)
    where either side has no value."""
    from nlproar_jax.analysis.plots import COLORS, MARKERS, plt
    from matplotlib.lines import Line2D

    rows = list(rows)
    roars = [c for c in ROAR_COLUMNS if any(not math.isnan(r[c]) for r in rows)]
    metrics = [m for m in CHEAP_METRICS if any(not math.isnan(r[m[0]]) for r in rows)]
    if not rows or not roars or not metrics:
        return None
    study, strategy, area = rows[0]["study"], rows[0]["strategy"], rows[0]["area"]
    agree = {(a["roar"], a["metric"]): a for a in agreement if a["study"] == study and a["strategy"] == strategy}
    fig, axes = plt.subplots(len(roars), len(metrics), figsize=(2.5 * len(metrics), 2.4 * len(roars) + 1.1),
                             squeeze=False, sharex="row")
    handles: dict = {}  # display name -> measure, in order of appearance
    for i, roar in enumerate(roars):
        for j, (metric, label, direction) in enumerate(metrics):
            ax = axes[i][j]
            for r in rows:
                x, y = r[roar], r[metric]
                if math.isnan(x) or math.isnan(y):
                    continue
                ax.scatter([x], [y], color=COLORS.get(r["measure"], "#777777"), marker=MARKERS.get(r["measure"], "o"),
                           s=34, edgecolors="black", linewidths=0.4)
                handles.setdefault(r["measure_name"], r["measure"])
            if direction < 0:
                ax.invert_yaxis()
            a = agree.get((roar.removeprefix("roar_"), metric))
            rho = "n/a" if a is None or math.isnan(a["agreement"]) else f"{a['agreement']:+.2f}"
            ax.set_title(f"{label}: ρ = {rho} (n={a['n'] if a else 0})", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
            ax.set_xlabel(f"ROAR {roar.removeprefix('roar_')}: {area} area", fontsize=8)
    fig.suptitle(f"{study} ({strategy} masking): ROAR area (x, right = more faithful) against the cheap metrics "
                 "(y, up = better; suff AOPC axis inverted)", fontsize=10)
    ncol = min(len(handles), 7) or 1
    legend_rows = -(-len(handles) // ncol)
    fig.legend([Line2D([], [], linestyle="", marker=MARKERS.get(measure, "o"), markersize=7,
                       markerfacecolor=COLORS.get(measure, "#777777"), markeredgecolor="black")
                for measure in handles.values()], list(handles), loc="lower center", ncol=ncol, frameon=False,
               fontsize=8)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0.02, (0.3 * legend_rows + 0.1) / height, 1, 1 - 0.35 / height))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all_side_by_side(rows: Sequence[dict], agreement: Sequence[dict], out_dir: str) -> list[str]:
    """``side_by_side_<study>_<strategy>.png`` in ``out_dir`` per (study, strategy) with values on both
    sides (:func:`plot_side_by_side`); the paths written."""
    paths = []
    for study, strategy, group in _groups(rows):
        name = f"side_by_side_{study_file_stem(study)}" + (f"_{strategy}" if strategy else "") + ".png"
        path = plot_side_by_side(group, agreement, os.path.join(out_dir, name))
        if path:
            paths.append(path)
    return paths
