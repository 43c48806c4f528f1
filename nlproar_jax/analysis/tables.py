"""Finished runs as tables: one row per run, ROAR curves per seed, the ROAR table, the faithfulness summary.

Everything that reads runs back lives here once: :func:`load_results` reads ``results/*.json``,
:func:`seed_curves` is the one curve builder (keyed by the full measure tag, so IG variants and
step counts stay apart) behind the summary, the plots, the report and the table
:func:`format_roar_table` that ``python -m nlproar_jax.sweep`` prints; :func:`export` writes
everything for ``python -m nlproar_jax.results`` (with ROAR beside the cheap metrics:
:mod:`nlproar_jax.analysis.side_by_side`). :func:`load_erasure`, :func:`erasure_table` and
:func:`format_erasure_table` do the same for the erasure/plausibility files of ``python -m
nlproar_jax.evaluate`` (``erasure.csv``). Needs numpy, scipy and matplotlib; not JAX.

Keep-and-retrain runs (``mode: "keep"``; results that predate ``mode`` are remove runs) are curves of
their own: ``seed_curves(..., mode="keep")``, a ``keep`` block per study and strategy in the ROAR table
(k = tokens kept), a third panel in the plots; they never enter the remove curves nor the summary,
whose area between curves is removal's.
"""
from __future__ import annotations

import collections
import csv
import glob
import json
import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from nlproar_jax.names import MEASURES, Paths
from nlproar_jax.names import display_names, settings_note
from nlproar_jax.names import measure_tag as experiment_measure_tag
from nlproar_jax.analysis.faithfulness import FULL_MASK_K, MeanCI, faithfulness, mean_ci

STRATEGY_ORDER = ("quantile", "count")  # the order tables and plots show the strategies (names.STRATEGIES)
MODE_ORDER = ("remove", "keep")  # and the modes (names.ROAR_MODES)
BASELINE = "random"
# How each strategy's k maps to the x axis of the area, and the level where all curves meet.
X_SCALE = {"quantile": 100.0, "count": 1.0}
END_K = {"quantile": FULL_MASK_K, "count": None}

ID_COLUMNS = ("experiment_id", "reference_id", "dataset_key", "task", "model", "seed", "measure", "measure_tag",
              "measure_name", "strategy", "mode", "k", "recursive", "roar", "step", "ig_steps", "ig_variant",
              "measure_options")
RUN_COLUMNS = ("reported_metric", "test_reported", "val_reported", "monitor", "best_epoch", "epochs", "train_size")
TAIL_COLUMNS = ("device", "device_count", "hostname", "notes")


def load_results(persistent_dir: str) -> list[dict]:
    """Every finished run's result under ``persistent_dir`` (:attr:`Paths.results_dir`), sorted by experiment id."""
    out = []
    for path in sorted(glob.glob(os.path.join(Paths(persistent_dir).results_dir, "*.json"))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def measure_tag(result: dict) -> str:
    """The measure with its settings where they matter (``integrated_gradient-50a``, ``lime-samples=500``),
    as in run ids: the result's own ``measure_tag``, or, for results that predate it, derived."""
    if result.get("measure_tag"):
        return result["measure_tag"]
    if result.get("measure") != "integrated_gradient" or "ig_steps" not in result:
        return result.get("measure", "")
    return experiment_measure_tag(result["measure"], result["ig_steps"], result.get("ig_variant"))


def roar_mode(result: dict) -> str:
    """``remove`` or ``keep`` (keep-and-retrain); results that predate the field are ``remove``."""
    return result.get("mode") or "remove"


def roar_kind(result: dict) -> str:
    """``base`` (k = 0), ``classic``, ``recursive`` or ``keep`` (keep-and-retrain, classic only)."""
    if result["k"] == 0:
        return "base"
    if roar_mode(result) == "keep":
        return "keep"
    return "recursive" if result.get("recursive") else "classic"


def reported(result: dict, split: str = "test") -> float:
    """The paper's metric for the task (macro-F1, micro-F1 or accuracy) on ``split``."""
    return float(result[split][result["reported_metric"]])


# -- one row per run -------------------------------------------------------------------------
def result_row(result: dict) -> dict:
    """A flat dict of one run's result: ids, metrics as ``val_<name>``/``test_<name>``, ``seconds_<part>``."""
    row = {name: result.get(name) for name in ID_COLUMNS}
    row.update(measure_tag=measure_tag(result), roar=roar_kind(result), mode=roar_mode(result))
    row.update({name: result.get(name) for name in RUN_COLUMNS})
    row.update(test_reported=reported(result, "test"), val_reported=reported(result, "val"))
    for split in ("val", "test"):
        for name, value in sorted(result.get(split, {}).items()):
            row[f"{split}_{name}"] = value
    seconds = result.get("seconds", {})
    for part, value in sorted(seconds.items()):
        row[f"seconds_{part}"] = value
    row["seconds_total"] = float(sum(seconds.values()))
    row.update({name: result.get(name) for name in TAIL_COLUMNS})
    row["notes"] = "; ".join(result.get("notes") or ())
    return row


def results_table(results: Iterable[dict]) -> tuple[list[str], list[dict]]:
    """``(columns, rows)``: one row per run, sorted by (task, seed, measure, strategy, roar, k); the
    columns are the union over runs (metric names differ between tasks), in a stable order."""
    rows = [result_row(r) for r in results]
    rows.sort(key=lambda r: (r["task"], r["seed"], r["roar"] != "base", r["measure_tag"], r["strategy"],
                             r["roar"], r["k"]))
    _name_rows(rows)
    fixed = list(ID_COLUMNS) + list(RUN_COLUMNS)
    metric = sorted({c for r in rows for c in r if c.startswith(("val_", "test_")) and c not in fixed})
    seconds = sorted({c for r in rows for c in r if c.startswith("seconds_")})
    return fixed + metric + seconds + list(TAIL_COLUMNS), rows


def write_csv(path: str, columns: Sequence[str], rows: Sequence[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_value(row.get(c)) for c in columns})


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value


# -- curves ----------------------------------------------------------------------------------
CurveKey = tuple  # (study, measure_tag, strategy, recursive: bool)


def study_labels(results: Iterable[dict]) -> dict[tuple, str]:
    """``{(task, model): label}``: what tables, plots and the report group runs by. A task trained with
    one model is labelled by the task alone (``synthetic``); a task with runs of several models in the
    same directory gets one label per model (``synthetic (rnn)``, ``synthetic (transformer)``), so curves
    of different models never share a row, a line or an area."""
    pairs = {_task_model(r) for r in results}
    models: dict = collections.defaultdict(set)
    for task, model in pairs:
        models[task].add(model)
    return {(task, model): task if len(models[task]) == 1 else f"{task} ({model})" for task, model in pairs}


def study_of(result: dict, labels: dict[tuple, str]) -> str:
    """The :func:`study_labels` label of one result."""
    return labels[_task_model(result)]


def _task_model(result: dict) -> tuple[str, str]:
    """``(task, model)``; results that predate ``model`` were the BiLSTM's (``rnn``)."""
    return result["task"], result.get("model") or "rnn"


def study_file_stem(label: str) -> str:
    """A label as a file-name part: ``synthetic (transformer)`` -> ``synthetic_transformer``."""
    return label.replace(" (", "_").replace(")", "").replace(" ", "_")


def seed_curves(results: Iterable[dict], *, random_as_recursive: bool = True, mode: str = "remove"
                ) -> dict[CurveKey, dict[int, dict[int, float]]]:
    """``{(study, measure_tag, strategy, recursive): {seed: {k: test metric}}}`` of the runs of ``mode``
    ("remove": ROAR; "keep": keep-and-retrain, where k counts the tokens kept and ``recursive`` is
    always False); ``study`` is the task, or the task and model where one directory holds several
    models of it (:func:`study_labels`).

    Each seed's k = 0 base run is entered as k = 0 of every remove curve of its study and seed, and as
    k = 100 of every quantile keep curve (keeping 100% masks nothing: the base model's training; a
    count keep curve has no such level). With ``random_as_recursive`` random's classic curve also
    stands in as its recursive curve (random importance ignores the model), so recursive panels and
    summaries compare against it, as in the original.
    """
    if mode not in MODE_ORDER:
        raise ValueError(f"unknown ROAR mode {mode!r}; valid: {list(MODE_ORDER)}")
    results = list(results)
    labels = study_labels(results)
    base = {(study_of(r, labels), r["seed"]): reported(r) for r in results if r["k"] == 0}
    curves: dict = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in results:
        if r["k"] == 0 or roar_mode(r) != mode:
            continue
        curves[(study_of(r, labels), measure_tag(r), r["strategy"], bool(r["recursive"]))][r["seed"]][r["k"]] = reported(r)
    for (task, tag, strategy, recursive), per_seed in list(curves.items()):
        if (random_as_recursive and mode == "remove" and tag == BASELINE and not recursive
                and (task, tag, strategy, True) not in curves):
            curves[(task, tag, strategy, True)] = per_seed
    out = {}
    for key, per_seed in curves.items():
        out[key] = {}
        base_k = 0 if mode == "remove" else (FULL_MASK_K if key[2] == "quantile" else None)
        for seed, curve in per_seed.items():
            curve = dict(curve)
            if (key[0], seed) in base and base_k is not None and base_k not in curve:
                curve[base_k] = base[(key[0], seed)]
            out[key][seed] = dict(sorted(curve.items()))
    return dict(sorted(out.items()))


def mean_curve(per_seed: dict[int, dict[int, float]]) -> dict[int, MeanCI]:
    """``{k: MeanCI}`` over the seeds that have each k."""
    ks = sorted({k for curve in per_seed.values() for k in curve})
    return {k: mean_ci([curve[k] for curve in per_seed.values() if k in curve]) for k in ks}


def format_roar_table(results: Iterable[dict]) -> str:
    """A text table per study (task, or task and model: :func:`study_labels`), strategy and mode: one row
    per (measure tag, classic|recursive|keep), the reported test metric per k, mean over the seeds that
    have it (from :func:`seed_curves`). Keep-and-retrain runs get a block of their own after the
    strategy's remove block (k = tokens kept, not masked)."""
    results = list(results)
    by_mode = {mode: seed_curves(results, random_as_recursive=False, mode=mode) for mode in MODE_ORDER}
    if not any(by_mode.values()):
        return "(no ROAR runs finished yet)"
    labels = study_labels(results)
    metric = {study_of(r, labels): r["reported_metric"] for r in results}
    lines = []
    for task in sorted({key[0] for curves in by_mode.values() for key in curves}):
        for strategy in STRATEGY_ORDER:
            for mode in MODE_ORDER:
                curves = by_mode[mode]
                keys = sorted((key for key in curves if key[0] == task and key[2] == strategy),
                              key=lambda key: (key[3], key[1]))
                if keys:
                    what = f"{strategy} masking"
                    if mode == "keep":
                        kept = "% of tokens" if strategy == "quantile" else "tokens"
                        what = f"{strategy} keep-and-retrain (k: {kept} kept, the others masked)"
                    title = f"{task}: test {metric[task]} (mean over seeds), {what}"
                    lines += _roar_block(curves, keys, title, strategy, mode)
    return "\n".join(lines).rstrip()


def _roar_block(curves: dict, keys: list, title: str, strategy: str, mode: str) -> list[str]:
    """The lines of one :func:`format_roar_table` block: ``keys`` of ``curves``, a column per k."""
    ks = sorted({k for key in keys for curve in curves[key].values() for k in curve})
    unit = "%" if strategy == "quantile" else ""
    names = display_names(sorted({key[1] for key in keys}))
    w = max(26, *(len(n) + 2 for n in names.values()))
    head = f"{'measure':<{w}}{'roar':<10}" + "".join(f"{f'k={k}{unit}':>9}" for k in ks)
    lines = [title, head, "-" * len(head)]
    for key in keys:
        kind = "keep" if mode == "keep" else ("recursive" if key[3] else "classic")
        row = f"{names[key[1]]:<{w}}{kind:<10}"
        for k in ks:
            vals = [curve[k] for curve in curves[key].values() if k in curve]
            row += f"{np.mean(vals):>9.3f}" if vals else f"{'':>9}"
        lines.append(row.rstrip())
    note = settings_note(names)
    lines += [f"settings: {note}"] if note else []
    lines.append("")
    return lines


# -- the faithfulness summary ---------------------------------------------------------------
def summarize(results: Iterable[dict], *, upto: Sequence[Optional[int]] = (None,)) -> list[dict]:
    """One row per (task, measure, strategy, classic|recursive, upto): the area between random's
    classic curve and the measure's, per seed, then mean and 95% bootstrap CI over seeds.

    ``upto``: integrate k <= this (None = the whole curve; the original also reports 20).
    Quantile: x = k/100, the measure meets random at k = 100, ``relative`` = clip(absolute/maximum).
    Count: x = k in tokens; there is no all-masked level, so ``maximum`` and ``relative`` are NaN.
    A seed without random's curve is left out (its ``n_seeds`` shows it). With a single seed the CI is
    the point itself (low = mean = high), see :func:`nlproar_jax.analysis.faithfulness.mean_ci`.
    Removal only: keep-and-retrain runs are left out (their curves rise with k; :func:`seed_curves`
    with ``mode="keep"`` has them).
    """
    results = list(results)
    labels = study_labels(results)
    metric = {study_of(r, labels): r["reported_metric"] for r in results}
    task_model = {label: pair for pair, label in labels.items()}
    curves = seed_curves(results, mode="remove")
    rows = []
    for (study, tag, strategy, recursive), per_seed in curves.items():
        if tag == BASELINE:
            continue
        baseline = curves.get((study, BASELINE, strategy, False), {})
        for limit in upto:
            per = {}
            for seed, curve in sorted(per_seed.items()):
                if seed not in baseline:
                    continue
                try:
                    per[seed] = faithfulness(curve, baseline[seed], upto=limit, x_scale=X_SCALE[strategy],
                                             end=END_K[strategy])
                except ValueError:
                    continue
            if not per:
                continue
            row = {"task": task_model[study][0], "model": task_model[study][1], "study": study,
                   "measure_tag": tag, "measure": tag.split("-")[0], "strategy": strategy,
                   "roar": "recursive" if recursive else "classic", "metric": metric[study],
                   "upto": _number(limit if limit is not None else max(max(f.k) for f in per.values())),
                   "x_unit": "fraction of tokens" if strategy == "quantile" else "tokens",
                   "n_seeds": len(per), "seeds": sorted(per),
                   "k": [_number(k) for k in sorted({k for f in per.values() for k in f.k})]}
            for field in ("absolute", "maximum", "relative"):
                ci = mean_ci([getattr(f, field) for f in per.values()])
                row.update({f"{field}_mean": ci.mean, f"{field}_low": ci.low, f"{field}_high": ci.high})
                row[f"{field}_per_seed"] = {int(s): getattr(f, field) for s, f in per.items()}
            rows.append(row)
    rows.sort(key=lambda r: (r["study"], r["strategy"] != "quantile", r["roar"] != "recursive", r["measure_tag"],
                             r["upto"]))
    _name_rows(rows)
    return rows


def _name_rows(rows: list[dict]) -> None:
    """Fill ``measure_name``: the display name of each row's tag among its study's (or task's) tags."""
    group = lambda r: r.get("study", r["task"])  # noqa: E731
    for g in {group(r) for r in rows}:
        names = display_names(sorted(r["measure_tag"] for r in rows if group(r) == g and r["measure_tag"]))
        for r in rows:
            if group(r) == g:
                r["measure_name"] = names.get(r["measure_tag"], "")


def _number(x):
    """``10.0`` -> ``10``; other values unchanged."""
    return int(x) if float(x).is_integer() else x


SUMMARY_COLUMNS = ("task", "model", "measure", "measure_tag", "measure_name", "strategy", "roar", "metric", "upto", "x_unit", "n_seeds",
                   "seeds", "k", "relative_mean", "relative_low", "relative_high", "absolute_mean", "absolute_low",
                   "absolute_high", "maximum_mean", "maximum_low", "maximum_high")


def format_summary(rows: Sequence[dict]) -> str:
    """A text table of :func:`summarize` rows: relative and absolute area with their CIs."""
    if not rows:
        return "(no measure has both its curve and random's: nothing to summarise)"
    w = max(26, *(len(r["measure_name"]) + 2 for r in rows))
    t = max(12, *(len(r["study"]) + 2 for r in rows))
    head = (f"{'task':<{t}}{'measure':<{w}}{'strategy':<10}{'roar':<11}{'upto':>5}{'seeds':>6}"
            f"{'relative [95% CI]':>28}{'absolute [95% CI]':>28}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rel = _ci_text(r["relative_mean"], r["relative_low"], r["relative_high"])
        ab = _ci_text(r["absolute_mean"], r["absolute_low"], r["absolute_high"])
        lines.append(f"{r['study']:<{t}}{r['measure_name']:<{w}}{r['strategy']:<10}{r['roar']:<11}{r['upto']:>5}"
                     f"{r['n_seeds']:>6}{rel:>28}{ab:>28}")
    for study in sorted({r["study"] for r in rows}):
        note = settings_note(sorted({r["measure_tag"] for r in rows if r["study"] == study}))
        if note:
            lines.append(f"settings ({study}): {note}")
    if all(r["n_seeds"] == 1 for r in rows):
        lines.append("one seed: no confidence interval (each [low, high] is the point itself)")
    return "\n".join(lines)


def _ci_text(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def json_safe(obj):
    """NaN -> None so the JSON is standard (``json.dump`` would write the non-standard ``NaN``)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# -- faithfulness without retraining (erasure) and plausibility -------------------------------
# The headline of ``python -m nlproar_jax.evaluate``: (table heading, ``metrics`` key of an erasure file).
ERASURE_HEADLINE = (("comp_aopc", "aopc_comprehensiveness"), ("suff_aopc", "aopc_sufficiency"),
                    ("flip_top1", "flip_top1"), ("auprc", "auprc"), ("map", "map"), ("f1@gold", "topk_f1"))
ERASURE_ID_COLUMNS = ("evaluation_id", "base_id", "task", "model", "seed", "measure", "measure_tag",
                      "measure_name", "measure_options", "split", "removal", "target", "bins", "aopc_normalisation", "rows")


def load_erasure(persistent_dir: str) -> list[dict]:
    """Every erasure/plausibility file under ``persistent_dir`` (:attr:`Paths.erasure_dir`, written by
    ``python -m nlproar_jax.evaluate``), sorted by file name."""
    out = []
    for path in sorted(glob.glob(os.path.join(Paths(persistent_dir).erasure_dir, "*.json"))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def erasure_metrics(evaluation: dict, aopc: Optional[str] = None) -> dict:
    """The headline metrics of one erasure file (:data:`ERASURE_HEADLINE` keys), the AOPCs under
    ``aopc`` normalisation ("mean" | "unirex"; None = the file's own). NaN where not computed (no gold
    rationales: no plausibility)."""
    aopc = aopc or evaluation["settings"]["aopc_normalisation"]
    suffix = "" if aopc == "mean" else f"_{aopc}"
    erasure, plaus = evaluation["erasure"], evaluation.get("plausibility") or {}
    out = {"aopc_comprehensiveness": erasure[f"aopc_comprehensiveness{suffix}"],
           "aopc_sufficiency": erasure[f"aopc_sufficiency{suffix}"], "flip_top1": erasure["flip_top1"]}
    for name in ("auprc", "map", "topk_f1"):
        value = plaus.get(name)
        out[name] = float("nan") if value is None else float(value)
    return out


def _settings_key(evaluation: dict) -> tuple:
    s = evaluation["settings"]
    return (evaluation["task"], evaluation["split"], s["removal"], s["target"], tuple(s["bins"]))


def erasure_table(evaluations: Iterable[dict]) -> tuple[list[str], list[dict]]:
    """``(columns, rows)``: one row per erasure file (seed x measure x settings): ids and settings, the
    headline metrics, then every erasure (``erasure_*``) and plausibility (``plausibility_*``) mean and
    the seconds."""
    rows = []
    for ev in evaluations:
        s = ev["settings"]
        row = {name: ev.get(name) for name in ERASURE_ID_COLUMNS}
        row.update(removal=s["removal"], target=s["target"], bins=list(s["bins"]),
                   aopc_normalisation=s["aopc_normalisation"])
        row.update(erasure_metrics(ev))
        for name, value in sorted(ev["erasure"].items()):
            row[f"erasure_{name}"] = value
        for name, value in sorted((ev.get("plausibility") or {}).items()):
            row[f"plausibility_{name}"] = value
        for part, value in sorted(ev.get("seconds", {}).items()):
            row[f"seconds_{part}"] = value
        row["device"] = ev.get("device")
        rows.append(row)
    _name_rows(rows)
    rows.sort(key=lambda r: (r["task"], r["split"], r["removal"], r["target"], str(r["bins"]), r["seed"],
                             _measure_order(r["measure_tag"])))
    headline = [key for _, key in ERASURE_HEADLINE]
    rest = sorted({c for r in rows for c in r if c.startswith(("erasure_", "plausibility_"))}, key=_bin_order)
    seconds = sorted({c for r in rows for c in r if c.startswith("seconds_")})
    return list(ERASURE_ID_COLUMNS) + headline + rest + seconds + ["device"], rows


def _bin_order(column: str) -> tuple:
    """``erasure_comprehensiveness@5`` before ``@10``: per-bin columns by their bin, others by name."""
    name, at, k = column.partition("@")
    return (name, int(k) if at and k.isdigit() else -1, column)


def _measure_order(tag: str) -> tuple:
    """Measures in the order of :data:`nlproar_jax.names.MEASURES` (the grid's), then by tag."""
    name = tag.split("-")[0]
    return (MEASURES.index(name) if name in MEASURES else len(MEASURES), tag)


def format_erasure_table(evaluations: Iterable[dict], aopc: Optional[str] = None) -> str:
    """A text table per (task, split, removal, target, bins): one row per measure tag, the headline
    metrics (:data:`ERASURE_HEADLINE`), mean over the seeds evaluated."""
    evaluations = list(evaluations)
    if not evaluations:
        return "(no erasure results yet: run python -m nlproar_jax.evaluate)"
    lines = []
    for key in sorted({_settings_key(ev) for ev in evaluations}, key=str):
        group = [ev for ev in evaluations if _settings_key(ev) == key]
        norm = aopc or group[0]["settings"]["aopc_normalisation"]
        task, split, removal, target, bins = key
        lines += [f"{task}: {split} split, removal={removal}, target={target}, bins={','.join(map(str, bins))}% "
                  f"of eligible tokens, AOPC={norm}; mean over seeds",
                  "  higher = better for every column but suff_aopc (lower = the top tokens suffice)"]
        tags = sorted({ev["measure_tag"] for ev in group}, key=_measure_order)
        names = display_names(tags)
        w = max(26, *(len(n) + 2 for n in names.values()))
        head = f"{'measure':<{w}}{'seeds':>6}" + "".join(f"{label:>11}" for label, _ in ERASURE_HEADLINE)
        lines += [head, "-" * len(head)]
        for tag in tags:
            per_seed = [erasure_metrics(ev, norm) for ev in group if ev["measure_tag"] == tag]
            row = f"{names[tag]:<{w}}{len(per_seed):>6}"
            for _, name in ERASURE_HEADLINE:
                vals = [m[name] for m in per_seed if not math.isnan(m[name])]
                row += f"{np.mean(vals):>11.3f}" if vals else f"{'n/a':>11}"
            lines.append(row)
        note = settings_note(tags)
        lines += [f"settings: {note}"] if note else []
        lines.append("")
    return "\n".join(lines).rstrip()


def export_erasure(persistent_dir: str, out_dir: Optional[str] = None) -> Optional[str]:
    """Write ``erasure.csv`` (:func:`erasure_table`) to ``out_dir`` (default ``<persistent_dir>/export``)
    if there is any erasure file; return its path, else None."""
    evaluations = load_erasure(persistent_dir)
    if not evaluations:
        return None
    path = os.path.join(out_dir or Paths(persistent_dir).export_dir, "erasure.csv")
    write_csv(path, *erasure_table(evaluations))
    return path


# -- everything at once ----------------------------------------------------------------------
def export(persistent_dir: str, out_dir: Optional[str] = None, *, upto: Sequence[Optional[int]] = (None,),
           report: bool = False, plots: bool = True) -> dict:
    """Write the CSVs (results, summary, erasure where evaluated, side by side and rank agreement), the
    summary JSON, the plots (and the HTML report); return the paths written, plus the ``summary`` and
    ``rank_agreement`` rows."""
    results = load_results(persistent_dir)
    if not results:
        raise FileNotFoundError(f"no results/*.json under {persistent_dir!r}: nothing to export "
                                "(run nlproar_jax.train or nlproar_jax.sweep with --config.persistent_dir first)")
    out_dir = out_dir or Paths(persistent_dir).export_dir
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    columns, rows = results_table(results)
    written["results_csv"] = os.path.join(out_dir, "results.csv")
    write_csv(written["results_csv"], columns, rows)
    summary = summarize(results, upto=upto)
    written["summary_csv"] = os.path.join(out_dir, "summary.csv")
    write_csv(written["summary_csv"], SUMMARY_COLUMNS, summary)
    written["summary_json"] = os.path.join(out_dir, "summary.json")
    with open(written["summary_json"], "w") as f:
        json.dump(json_safe({"persistent_dir": os.path.abspath(persistent_dir), "runs": len(results),
                              "ci": "95% bootstrap (scipy.stats.bootstrap, BCa) over seeds; "
                                    "a single seed gives low = mean = high",
                              "summary": summary}), f, indent=2)
    erasure_csv = export_erasure(persistent_dir, out_dir)
    if erasure_csv:
        written["erasure_csv"] = erasure_csv
    from nlproar_jax.analysis import side_by_side as sbs

    beside = sbs.side_by_side(results, load_erasure(persistent_dir), summary=summary)
    agreement = sbs.rank_agreement(beside)
    written["side_by_side_csv"] = os.path.join(out_dir, "side_by_side.csv")
    write_csv(written["side_by_side_csv"], sbs.SIDE_BY_SIDE_COLUMNS, json_safe(beside))  # missing: empty cells
    written["rank_agreement_csv"] = os.path.join(out_dir, "rank_agreement.csv")
    write_csv(written["rank_agreement_csv"], sbs.AGREEMENT_COLUMNS, json_safe(agreement))
    if plots:
        from nlproar_jax.analysis.plots import plot_all

        written["plots"] = plot_all(results, os.path.join(out_dir, "plots"))
        written["side_by_side_plots"] = sbs.plot_all_side_by_side(beside, agreement, os.path.join(out_dir, "plots"))
    if report:
        from nlproar_jax.analysis.report import write_report

        written["report"] = write_report(persistent_dir, os.path.join(out_dir, "report.html"), results=results,
                                         summary=summary, plot_paths=written.get("plots"),
                                         side_by_side=(beside, agreement, written.get("side_by_side_plots")))
    written["summary"] = summary
    written["rank_agreement"] = agreement
    return written
