"""The paper's ROAR plots as PNG (matplotlib, Agg backend: no display needed).

One figure per (task, masking strategy): the reported test metric against k,
a line per importance measure (mean over seeds) with its 95% bootstrap band,
classic ROAR on the left and recursive ROAR on the right (random's classic
curve is the baseline in both). Quantile curves of the measures end at k = 90;
a dotted segment joins them to random's k = 100 value, where every measure
masks every token, which is how the summary's area closes the curve.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
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


base_measure = tag_measure


def pretty_measure(tag: str) -> str:
    """The display name of one tag (:func:`nlproar_jax.names.display_names`; alone, without settings)."""
    return display_names([tag])[tag]


def _sort_key(tag: str):
    name = base_measure(tag)
    return (ORDER.index(name) if name in ORDER else len(ORDER), tag)


def plot_roar(curves: dict, *, task: str, strategy: str, metric: str, path: str) -> str:
    """Draw one task's ROAR figure for ``strategy`` and save it as PNG at ``path``.

    Args:
      curves: ``{(measure_tag, recursive): {seed: {k: test metric}}}`` for this task and strategy
        (see :func:`nlproar_jax.analysis.tables.seed_curves`; random's classic curve under both recursive
        values).
      metric: the reported metric's name, for the y label.
    """
    from nlproar_jax.analysis.tables import mean_curve

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    all_tags = sorted({tag for tag, _ in curves}, key=_sort_key)
    names, note = display_names(all_tags), settings_note(all_tags)
    handles = {}
    seeds = set()
    for ax, recursive in zip(axes, (False, True)):
        tags = sorted((tag for tag, rec in curves if rec == recursive), key=_sort_key)
        random_end = None
        if strategy == "quantile" and ("random", recursive) in curves:
            end = mean_curve(curves[("random", recursive)]).get(FULL_MASK_K)
            random_end = end.mean if end is not None else None
        for tag in tags:
            per_seed = curves[(tag, recursive)]
            seeds |= set(per_seed)
            stats = mean_curve(per_seed)
            ks = list(stats)
            mean = [stats[k].mean for k in ks]
            low = [stats[k].low for k in ks]
            high = [stats[k].high for k in ks]
            name = base_measure(tag)
            color = COLORS.get(name, None)
            (line,) = ax.plot(ks, mean, marker=MARKERS.get(name, "o"), markersize=4, color=color,
                              label=names[tag], linewidth=1.6)
            ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            if random_end is not None and name != "random" and ks and ks[-1] < FULL_MASK_K:
                ax.plot([ks[-1], FULL_MASK_K], [mean[-1], random_end], linestyle=":", color=line.get_color(),
                        linewidth=1.2)
            handles.setdefault(tag, line)
        ax.set_title(f"{'recursive' if recursive else 'classic'} ROAR")
        ax.set_xlabel("% tokens masked" if strategy == "quantile" else "tokens masked")
        if strategy == "quantile":
            ax.set_xlim(-2, 102)
            ax.set_xticks(range(0, 101, 10))
        ax.grid(True, alpha=0.3)
        if not tags:
            ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center", color="#888888")
    axes[0].set_ylabel(f"test {metric}")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    n = len(seeds)
    fig.suptitle(f"{task}: {strategy} masking — mean over {n} seed{'s' if n != 1 else ''}"
                 + (", 95% bootstrap CI" if n > 1 else " (no CI with one seed)"))
    ordered = sorted(handles, key=_sort_key)
    ncol = max(min(len(ordered), LEGEND_COLUMNS), 1)
    rows = max(-(-len(ordered) // ncol), 1) + (1 if note else 0)
    height = 4.2 + LEGEND_ROW_INCHES * rows  # the axes keep their height; the legend gets its rows
    fig.set_size_inches(10, height)
    fig.legend([handles[t] for t in ordered], [names[t] for t in ordered], loc="lower center",
               ncol=ncol, frameon=False, bbox_to_anchor=(0.5, (LEGEND_ROW_INCHES if note else 0) / height))
    if note:  # the settings the names leave out, once
        fig.text(0.5, 0.06 / height, note, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, (LEGEND_ROW_INCHES * rows + 0.15) / height, 1, 1 - 0.2 / height))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(results: Iterable[dict], out_dir: str, *, tasks: Optional[Iterable[str]] = None) -> list[str]:
    """``roar_<study>_<strategy>.png`` in ``out_dir`` for every study (task, or ``<task>_<model>`` where
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
    paths = []
    for study in sorted({key[0] for key in curves}):
        for strategy in STRATEGY_ORDER:
            sub = {(tag, rec): per_seed for (t, tag, s, rec), per_seed in curves.items()
                   if t == study and s == strategy}
            if not sub:
                continue
            path = os.path.join(out_dir, f"roar_{study_file_stem(study)}_{strategy}.png")
            paths.append(plot_roar(sub, task=study, strategy=strategy, metric=metric[study], path=path))
    return paths
