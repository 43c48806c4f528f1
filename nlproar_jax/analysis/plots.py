"""The paper's ROAR plots as PNG (matplotlib, Agg backend: no display needed).

One figure per (task, masking strategy): the reported test metric against k,
a line per importance measure (mean over seeds) with its 95% bootstrap band,
classic ROAR on the left and recursive ROAR on the right (random's classic
curve is the baseline in both). Quantile curves of the measures end at k = 90;
a dotted segment joins them to random's k = 100 value, where every measure
masks every token, which is how the summary's area closes the curve.
Keep-and-retrain runs, where there are any, get a third panel beside the two
(k = tokens kept; dashed lines, the legend's dashed key; the base model is
quantile k = 100, where nothing is masked).
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from nlproar_jax.analysis.faithfulness import FULL_MASK_K  # noqa: E402
from nlproar_jax.names import MEASURE_NAMES, display_names, settings_note, tag_measure  # noqa: E402

PRETTY = MEASURE_NAMES  # kept for code that imported it from here
# Fixed per measure so every figure (and the report) uses the same colour for the same measure.
COLORS = {"random": "#555555", "attention": "#F8766D", "gradient": "#A3A500", "integrated_gradient": "#00BF7D",
          "mutual_information": "#00B0F6", "input_times_gradient": "#E76BF3", "smoothgrad": "#8C564B",
          "smoothgrad_times_input": "#D4A017", "gradient_shap": "#1F77B4", "occlusion": "#9467BD",
          "lime": "#2CA02C", "kernel_shap": "#D62728", "diffmask": "#000080",
          "soft_attention": "#FF7F0E"}
MARKERS = {"random": "v", "attention": "o", "gradient": "^", "integrated_gradient": "s",
           "mutual_information": "D", "input_times_gradient": "P", "smoothgrad": "<",
           "smoothgrad_times_input": ">", "gradient_shap": "X", "occlusion": "h", "lime": "*",
           "kernel_shap": "p", "diffmask": "d", "soft_attention": "8"}
ORDER = ("attention", "soft_attention", "gradient", "input_times_gradient", "integrated_gradient", "smoothgrad",
         "smoothgrad_times_input", "gradient_shap", "occlusion", "lime", "kernel_shap", "diffmask",
         "mutual_information", "random")


LEGEND_COLUMNS = 4  # legend entries per row below the two panels (labels up to ~2.4 inches wide)
LEGEND_ROW_INCHES = 0.28
KEEP_STYLE = "--"  # keep-and-retrain curves; remove curves are solid
PANEL_INCHES = 5.0


base_measure = tag_measure


def pretty_measure(tag: str) -> str:
    """The display name of one tag (:func:`nlproar_jax.names.display_names`; alone, without settings)."""
    return display_names([tag])[tag]


def _sort_key(tag: str):
    name = base_measure(tag)
    return (ORDER.index(name) if name in ORDER else len(ORDER), tag)


def plot_roar(curves: dict, *, task: str, strategy: str, metric: str, path: str,
              keep: Optional[dict] = None) -> str:
    """Draw one task's ROAR figure for ``strategy`` and save it as PNG at ``path``.

    Args:
      curves: ``{(measure_tag, recursive): {seed: {k: test metric}}}`` for this task and strategy
        (see :func:`nlproar_jax.analysis.tables.seed_curves`; random's classic curve under both recursive
        values).
      metric: the reported metric's name, for the y label.
      keep: ``{measure_tag: {seed: {k: test metric}}}``, the keep-and-retrain curves
        (``seed_curves(..., mode="keep")``); non-empty adds a third panel, dashed.
    """
    keep = dict(keep or {})
    panels = [("classic ROAR", False), ("recursive ROAR", True)] + ([("keep-and-retrain", None)] if keep else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), 4.2), sharey=True)
    all_tags = sorted({tag for tag, _ in curves} | set(keep), key=_sort_key)
    names, note = display_names(all_tags), settings_note(all_tags)
    handles: dict = {}
    seeds: set = set()
    for ax, (title, recursive) in zip(axes, panels):
        if recursive is None:
            panel = {tag: per_seed for tag, per_seed in keep.items()}
        else:
            panel = {tag: per_seed for (tag, rec), per_seed in curves.items() if rec == recursive}
        random_end = None
        if recursive is not None and strategy == "quantile" and "random" in panel:
            end = _mean_curve(panel["random"]).get(FULL_MASK_K)
            random_end = end.mean if end is not None else None
        for tag in sorted(panel, key=_sort_key):
            seeds |= set(panel[tag])
            ks, mean = _draw_curve(ax, panel[tag], tag, linestyle=KEEP_STYLE if recursive is None else "-",
                                   handles=handles)
            if random_end is not None and base_measure(tag) != "random" and ks and ks[-1] < FULL_MASK_K:
                ax.plot([ks[-1], FULL_MASK_K], [mean[-1], random_end], linestyle=":", color=handles[tag].get_color(),
                        linewidth=1.2)
        ax.set_title(title)
        verb = "kept" if recursive is None else "masked"
        ax.set_xlabel(f"% tokens {verb}" if strategy == "quantile" else f"tokens {verb}")
        if strategy == "quantile":
            ax.set_xlim(-2, 102)
            ax.set_xticks(range(0, 101, 10))
        ax.grid(True, alpha=0.3)
        if not panel:
            ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center", color="#888888")
    axes[0].set_ylabel(f"test {metric}")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    n = len(seeds)
    fig.suptitle(f"{task}: {strategy} masking — mean over {n} seed{'s' if n != 1 else ''}"
                 + (", 95% bootstrap CI" if n > 1 else " (no CI with one seed)"))
    ordered = sorted(handles, key=_sort_key)
    entries = [(handles[t], names[t]) for t in ordered]
    if keep:  # one key for the line styles, not a second entry per measure
        entries += [(Line2D([], [], color="#555555", linestyle="-", linewidth=1.6), "remove (ROAR)"),
                    (Line2D([], [], color="#555555", linestyle=KEEP_STYLE, linewidth=1.6), "keep (KAR)")]
    ncol = max(min(len(entries), LEGEND_COLUMNS + (1 if keep else 0)), 1)
    rows = max(-(-len(entries) // ncol), 1) + (1 if note else 0)
    width = PANEL_INCHES * len(panels)
    height = 4.2 + LEGEND_ROW_INCHES * rows  # the axes keep their height; the legend gets its rows
    fig.set_size_inches(width, height)
    fig.legend([h for h, _ in entries], [label for _, label in entries], loc="lower center",
               ncol=ncol, frameon=False, bbox_to_anchor=(0.5, (LEGEND_ROW_INCHES if note else 0) / height))
    if note:  # the settings the names leave out, once
        fig.text(0.5, 0.06 / height, note, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, (LEGEND_ROW_INCHES * rows + 0.15) / height, 1, 1 - 0.2 / height))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mean_curve(per_seed: dict):
    from nlproar_jax.analysis.tables import mean_curve

    return mean_curve(per_seed)


def _draw_curve(ax, per_seed: dict, tag: str, *, linestyle: str, handles: dict) -> tuple[list, list]:
    """One measure's mean curve and 95% band on ``ax``; its legend handle (solid, in the measure's colour
    and marker) into ``handles`` the first time the tag is drawn. Returns ``(ks, means)``."""
    stats = _mean_curve(per_seed)
    ks = list(stats)
    mean = [stats[k].mean for k in ks]
    name = base_measure(tag)
    color = handles[tag].get_color() if tag in handles else COLORS.get(name, None)
    (line,) = ax.plot(ks, mean, marker=MARKERS.get(name, "o"), markersize=4, color=color, linestyle=linestyle,
                      linewidth=1.6)
    ax.fill_between(ks, [stats[k].low for k in ks], [stats[k].high for k in ks], color=line.get_color(), alpha=0.2,
                    linewidth=0)
    if tag not in handles:
        handles[tag] = Line2D([], [], color=line.get_color(), marker=line.get_marker(), markersize=4, linewidth=1.6)
    return ks, mean


def plot_all(results: Iterable[dict], out_dir: str, *, tasks: Optional[Iterable[str]] = None) -> list[str]:
    """``roar_<study>_<strategy>.png`` (keep-and-retrain curves in a third panel) in ``out_dir`` for every study (task, or ``<task>_<model>`` where
    the runs hold several models of a task: :func:`~nlproar_jax.analysis.tables.study_labels`) and
    strategy with runs, restricted to ``tasks`` if given; the paths."""
    from nlproar_jax.analysis.tables import STRATEGY_ORDER, seed_curves, study_file_stem, study_labels, study_of

    results = list(results)
    labels = study_labels(results)
    if tasks is not None:
        tasks = set(tasks)
        results = [r for r in results if r["task"] in tasks]
    metric = {study_of(r, labels): r["reported_metric"] for r in results}
    curves = seed_curves(results)
    keep_curves = seed_curves(results, mode="keep")
    paths = []
    for study in sorted({key[0] for key in curves} | {key[0] for key in keep_curves}):
        for strategy in STRATEGY_ORDER:
            sub = {(tag, rec): per_seed for (t, tag, s, rec), per_seed in curves.items()
                   if t == study and s == strategy}
            keep = {tag: per_seed for (t, tag, s, _), per_seed in keep_curves.items() if t == study and s == strategy}
            if not sub and not keep:
                continue
            path = os.path.join(out_dir, f"roar_{study_file_stem(study)}_{strategy}.png")
            paths.append(plot_roar(sub, task=study, strategy=strategy, metric=metric[study], path=path, keep=keep))
    return paths
