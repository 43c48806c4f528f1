"""One self-contained HTML report of a persistent dir: plots, summary, highlighted examples.

  python -m nlproar_jax.results --persistent-dir runs/synthetic --report   # -> <persistent-dir>/export/report.html

:func:`write_report` is the library call behind ``--report``. The file needs
nothing else to open offline: the PNG plots are embedded as base64 data URIs
and the styles are inline. It shows the ROAR plots, the faithfulness summary,
ROAR beside the erasure metrics and plausibility (:mod:`nlproar_jax.analysis.side_by_side`: a table,
the rank agreement and a plot per task), the mean test metric per k, and a few test examples (deterministic sample) with
each token coloured by each measure's importance under the base model (the
importance file each run records, :meth:`nlproar_jax.names.Paths.importance`,
key ``test``). Where recursive runs kept their masked data
(:meth:`nlproar_jax.names.Paths.masked_dataset`) the first example is also
shown as masked at a few k. Every token and label goes through :func:`html.escape`.
"""
from __future__ import annotations

import base64
import html
import os
import tempfile
from typing import Optional, Sequence

import numpy as np

from nlproar_jax.data.tokens import CLS, EOS, FIRST_ELIGIBLE, MASK, PAD, UNK, PretrainedVocabulary, piece_convention
from nlproar_jax.analysis.tables import (format_roar_table, load_erasure, load_results, measure_tag, study_labels,
                                         study_of, summarize)
from nlproar_jax.names import Paths, display_names, settings_note

HIGHLIGHT_RGB = (230, 85, 13)  # importance colour; alpha carries the score
TOP_QUANTILE = 10  # tokens in the top 10% are bold: what classic ROAR masks first

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1150px;color:#222;
line-height:1.45;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img.plot{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:.7em;overflow-x:auto;font-size:.85em}
.tok{padding:1px 2px;margin:0 1px;border-radius:3px;display:inline-block;line-height:1.6}
.tok.top{font-weight:bold;outline:1px solid rgba(120,40,0,.55)}
.tok.special{color:#999;font-size:.8em}
.tok.mask{background:#333!important;color:#fff;font-family:monospace;font-size:.85em;border:1px dashed #000}
.tok.unk{font-style:italic;color:#666}
.measure{white-space:nowrap;font-weight:600;width:11em}
.legend{display:flex;gap:1.5em;align-items:center;flex-wrap:wrap;margin:.7em 0;font-size:.9em}
.bar{width:220px;height:14px;border:1px solid #ccc;display:inline-block;vertical-align:middle}
.note{color:#666;font-size:.9em}
"""


def _score_style(alpha: float) -> str:
    r, g, b = HIGHLIGHT_RGB
    return f"background:rgba({r},{g},{b},{alpha:.3f})"


def normalise_scores(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """``<float>[n]`` in [0, 1]: min-max over the eligible positions of one example (0 elsewhere;
    all 0.5 when every eligible score is equal; NaN scores count as 0)."""
    out = np.zeros(len(scores), np.float64)
    s = np.nan_to_num(np.asarray(scores, np.float64)[eligible], nan=0.0, posinf=0.0, neginf=0.0)
    if len(s):
        lo, hi = s.min(), s.max()
        out[eligible] = (s - lo) / (hi - lo) if hi > lo else 0.5
    return out


def tokens_html(words: Sequence[str], ids: np.ndarray, scores: Optional[np.ndarray] = None) -> str:
    """One example's tokens as HTML spans. ``ids``: ``<int>[n]`` token ids; ``scores``: ``<float>[n]``
    importance aligned with ``ids`` (None: no colouring, e.g. a masked example). [MASK] tokens get the
    ``mask`` style, [CLS]/[EOS] the ``special`` style, [PAD] is dropped; every word is escaped."""
    ids = np.asarray(ids)
    eligible = ids >= FIRST_ELIGIBLE
    alpha = normalise_scores(scores, eligible) if scores is not None else None
    top = np.zeros(len(ids), bool)
    if scores is not None and eligible.any():
        n_top = int(eligible.sum()) * TOP_QUANTILE // 100  # the quantile strategy's k' at k = 10
        s = np.where(eligible, np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf), -np.inf)
        top[np.argsort(-s, kind="stable")[:n_top]] = True
    spans = []
    for i, tid in enumerate(ids):
        tid = int(tid)
        if tid == PAD:
            continue
        word = html.escape(words[tid], quote=True)
        classes = ["tok"]
        style = ""
        title = ""
        if tid in (CLS, EOS):
            classes.append("special")
        elif tid == MASK:
            classes.append("mask")
        elif tid == UNK:
            classes.append("unk")
        if alpha is not None and eligible[i]:
            style = f' style="{_score_style(alpha[i])}"'
            title = f' title="{html.escape(f"importance {float(scores[i]):.4g}", quote=True)}"'
        if top[i]:
            classes.append("top")
        spans.append(f'<span class="{" ".join(classes)}"{style}{title}>{word}</span>')
    return " ".join(spans)


def pieces_html(vocab, ids: np.ndarray, scores: Optional[np.ndarray] = None, *,
                masked_ids: Optional[np.ndarray] = None, convention: Optional[str] = None) -> str:
    """One example of a pretrained tokenizer's word pieces as HTML spans, **merged back into words**
    (:func:`nlproar_jax.data.tokens.merge_word_pieces`; ``convention`` detected from ``vocab`` if None).

    ``ids``: ``<int>[n]`` the unmasked row (it tells which pieces join); ``scores``: ``<float>[n]`` per
    piece, or None; ``masked_ids``: ``<int>[n]`` the same row as a ROAR step masked it, or None. A word's
    colour is the sum of its pieces' scores (min-max over the example's eligible words), bold where any
    of its pieces is in the top 10% of pieces (what quantile ROAR masks first at k = 10), dark where any
    piece is masked, with ``masked/pieces`` beside it when only some are. Padding is dropped, [CLS]/[SEP]
    greyed; hover shows the pieces."""
    from nlproar_jax.data.tokens import merge_word_pieces, piece_convention, special_ids

    ids = np.asarray(ids)
    sp = special_ids(vocab)
    convention = convention or piece_convention(vocab.words)
    not_eligible = [sp[r] for r in ("pad", "cls", "sep") if sp[r] is not None]
    eligible = ~np.isin(ids, not_eligible)
    alone = np.isin(ids, [v for v in sp.values() if v is not None])
    masked = None
    if masked_ids is not None and sp["mask"] is not None:
        masked_ids = np.asarray(masked_ids)
        if masked_ids.shape != ids.shape:
            raise ValueError(f"masked row of {masked_ids.shape} ids for an unmasked row of {ids.shape}")
        masked = (masked_ids == sp["mask"]) & (ids != sp["mask"])
    piece_scores = None if scores is None else np.where(eligible, np.asarray(scores, np.float64), np.nan)
    words = merge_word_pieces(vocab.decode(ids), convention, scores=piece_scores, masked=masked, alone=alone)
    top = np.zeros(len(ids), bool)
    if scores is not None and eligible.any():
        n_top = int(eligible.sum()) * TOP_QUANTILE // 100
        ranked = np.where(eligible, np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf), -np.inf)
        top[np.argsort(-ranked, kind="stable")[:n_top]] = True
    word_eligible = np.array([bool(eligible[w.start]) for w in words])
    alpha = (normalise_scores(np.array([w.score for w in words]), word_eligible)
             if scores is not None and len(words) else None)
    spans = []
    for j, w in enumerate(words):
        first = int(ids[w.start])
        if first == sp["pad"]:
            continue
        classes, notes = ["tok"], []
        if first in (sp["cls"], sp["sep"]):
            classes.append("special")
        elif first == sp["mask"] or w.masked:
            classes.append("mask")
        elif first == sp["unk"]:
            classes.append("unk")
        if w.pieces > 1:
            notes.append("pieces: " + " ".join(vocab.words[int(i)] for i in ids[w.start:w.stop]))
        if w.masked:
            notes.append(f"{w.masked} of {w.pieces} word piece{'s' if w.pieces > 1 else ''} masked")
        style = ""
        if alpha is not None and word_eligible[j]:
            style = f' style="{_score_style(alpha[j])}"'
            what = f"sum of {w.pieces} pieces" if w.pieces > 1 else "one piece"
            notes.insert(0, f"importance {w.score:.4g} ({what})")
        if top[w.start:w.stop].any():
            classes.append("top")
        title = f' title="{html.escape("; ".join(notes), quote=True)}"' if notes else ""
        count = f"<sup>{w.masked}/{w.pieces}</sup>" if 0 < w.masked < w.pieces else ""
        spans.append(f'<span class="{" ".join(classes)}"{style}{title}>{html.escape(w.text, quote=True)}{count}</span>')
    return " ".join(spans)


def legend_html() -> str:
    r, g, b = HIGHLIGHT_RGB
    bar = f"background:linear-gradient(to right,rgba({r},{g},{b},0),rgba({r},{g},{b},1))"
    return ('<div class="legend"><span>least important</span>'
            f'<span class="bar" style="{bar}"></span><span>most important</span>'
            '<span class="note">(min&ndash;max within each example and measure; hover a token for its score)</span>'
            f'<span><span class="tok top" style="{_score_style(0.9)}">bold</span> top {TOP_QUANTILE}%: '
            'masked first by quantile ROAR</span>'
            '<span><span class="tok mask">[MASK]</span> masked token</span>'
            '<span><span class="tok special">[CLS]</span> not maskable</span></div>')


WORD_PIECES_NOTE = ('<p class="note">This model reads word pieces: ROAR scores and masks pieces, shown here merged '
                    "back into words. A word&rsquo;s importance is the sum of its pieces&rsquo; (for additive "
                    "attributions, its share of the prediction), bold where any piece is in the top "
                    f"{TOP_QUANTILE}%, dark where any piece is masked "
                    '(<span class="tok mask">word<sup>1/2</sup></span>: 1 of its 2 pieces); hover a word for '
                    "its pieces.</p>")


def _image_data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _fmt(x) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return html.escape(str(x))
    return "n/a" if np.isnan(x) else f"{x:+.3f}"


def summary_html(summary: Sequence[dict]) -> str:
    if not summary:
        return '<p class="note">No measure has both its curve and random&rsquo;s: nothing to summarise.</p>'
    head = ("<tr><th>task</th><th>measure</th><th>strategy</th><th>ROAR</th><th>k &le;</th><th>seeds</th>"
            "<th>relative</th><th>95% CI</th><th>absolute</th><th>95% CI</th></tr>")
    rows = []
    for r in summary:
        cells = [html.escape(str(r[c])) for c in ("study", "measure_name", "strategy", "roar", "upto", "n_seeds")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                    + f'<td class="num">{_fmt(r["relative_mean"])}</td>'
                    + f'<td class="num">[{_fmt(r["relative_low"])}, {_fmt(r["relative_high"])}]</td>'
                    + f'<td class="num">{_fmt(r["absolute_mean"])}</td>'
                    + f'<td class="num">[{_fmt(r["absolute_low"])}, {_fmt(r["absolute_high"])}]</td></tr>')
    notes = [f"{study}: {settings_note(sorted({r['measure_tag'] for r in summary if r['study'] == study}))}"
             for study in sorted({r["study"] for r in summary})]
    notes = [n for n in notes if not n.endswith(": ")]
    settings = (f'<p class="note">Settings: {html.escape("; ".join(notes))}.</p>' if notes else "")
    return f"<table>{head}{''.join(rows)}</table>{settings}"


# -- ROAR beside the cheap metrics -------------------------------------------------------------
def side_by_side_html(rows: Sequence[dict], agreement: Sequence[dict], plot_paths: Sequence[str] = ()) -> str:
    """The side-by-side section: per (study, strategy) a table of the ROAR areas beside the erasure and
    plausibility headline (:func:`nlproar_jax.analysis.side_by_side.side_by_side` rows), the rank
    agreement table (:func:`~nlproar_jax.analysis.side_by_side.rank_agreement`) and the plots."""
    from nlproar_jax.analysis.side_by_side import CHEAP_METRICS, ROAR_COLUMNS

    if not rows:
        return '<p class="note">No ROAR summary and no erasure results: nothing to put side by side.</p>'
    parts = []
    if all(all(np.isnan(r[m]) for m, _, _ in CHEAP_METRICS) for r in rows):
        parts.append('<p class="note">No erasure results yet (run <code>python -m nlproar_jax.evaluate</code> on '
                     "the same persistent dir, then <code>results</code> again): the cheap metrics are empty.</p>")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["study"], r["strategy"]), []).append(r)
    for (study, strategy), group in groups.items():
        roars = [c for c in ROAR_COLUMNS if any(not np.isnan(r[c]) for r in group)]
        metrics = [m for m in CHEAP_METRICS if any(not np.isnan(r[m[0]]) for r in group)]
        area = group[0]["area"] or "area"
        title = f"{study}" + (f", {strategy} masking" if strategy else "")
        head = ("<tr><th>measure</th>" + "".join(f"<th>ROAR {c.removeprefix('roar_')} ({html.escape(area)})</th>"
                                                  for c in roars)
                + "".join(f"<th>{html.escape(label)}{' &darr;' if d < 0 else ''}</th>" for _, label, d in metrics)
                + "<th>seeds (ROAR / erasure)</th></tr>")
        body = []
        for r in group:
            cells = [f'<td class="measure">{html.escape(r["measure_name"])}</td>']
            cells += [f'<td class="num">{_fmt(r[c])}</td>' for c in roars]
            cells += [f'<td class="num">{_fmt_plain(r[m])}</td>' for m, _, _ in metrics]
            cells.append(f'<td class="num">{r["roar_seeds"]} / {r["erasure_seeds"]}</td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f"<h3>{html.escape(title)}</h3><table>{head}{''.join(body)}</table>")
        settings = sorted({r["erasure_settings"] for r in group if r["erasure_settings"]})
        if settings:
            parts.append(f'<p class="note">Erasure settings: {html.escape("; ".join(settings))}.</p>')
        mine = [a for a in agreement if a["study"] == study and a["strategy"] == strategy]
        if mine:
            labels = [(m, label) for m, label, _ in CHEAP_METRICS if any(a["metric"] == m for a in mine)]
            head = "<tr><th>ROAR</th>" + "".join(f"<th>{html.escape(label)}</th>" for _, label in labels) + "</tr>"
            lines = []
            for roar in ("classic", "recursive", "keep"):
                cells = {a["metric"]: a for a in mine if a["roar"] == roar}
                if cells:
                    lines.append(f"<tr><td>{roar}</td>" + "".join(
                        f'<td class="num">{_agreement_cell(cells.get(m))}</td>' for m, _ in labels) + "</tr>")
            n = max(a["n"] for a in mine)
            parts.append(f'<p class="note">Rank agreement across the {n} measures: Spearman&rsquo;s &rho; between '
                         "the ROAR area and each metric, sign flipped for sufficiency (lower is better), so +1 "
                         "means the cheap metric ranks the measures exactly as ROAR does; in parentheses the same "
                         "without random (last on both sides wherever the measures beat it, which lifts &rho;). "
                         f"Hover for &rho;, its p-value and n.</p><table>{head}{''.join(lines)}</table>")
    for p in plot_paths or ():
        parts.append(f'<figure><img class="plot" alt="{html.escape(os.path.basename(p))}" '
                     f'src="{_image_data_uri(p)}"></figure>')
    return "\n".join(parts)


def _fmt_plain(x) -> str:
    """A metric in [0, 1] without a sign: ``0.226``, or ``n/a``."""
    x = float(x)
    return "n/a" if np.isnan(x) else f"{x:.3f}"


def _agreement_cell(a: Optional[dict]) -> str:
    if a is None:
        return ""
    fmt = lambda v: "n/a" if np.isnan(v) else f"{v:+.2f}"  # noqa: E731
    hover = html.escape(f"rho {a['rho']:+.3f}, p = {a['p_value']:.3g}, n = {a['n']}; without random: "
                        f"rho {a['rho_without_random']:+.3f}, n = {a['n_without_random']}", quote=True)
    return f'<span title="{hover}">{fmt(a["agreement"])} ({fmt(a["agreement_without_random"])})</span>'


# -- examples ----------------------------------------------------------------------------------
def sample_examples(lengths: np.ndarray, n: int, *, seed: int = 0, max_tokens: int = 60) -> list[int]:
    """``n`` test rows, deterministic in ``seed``; rows of at most ``max_tokens`` tokens when enough exist
    (long documents do not read well), sorted."""
    lengths = np.asarray(lengths)
    candidates = np.flatnonzero(lengths <= max_tokens)
    if len(candidates) < n:
        candidates = np.arange(len(lengths))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(candidates, size=min(n, len(candidates)), replace=False))


def _base_runs(results: Sequence[dict]) -> dict:
    """``{study: (base result, {measure_tag: importance path relative to persistent_dir})}`` for the lowest
    seed of each study (task, or task and model: :func:`~nlproar_jax.analysis.tables.study_labels`)
    whose base run finished."""
    labels = study_labels(results)
    out = {}
    for base in sorted((r for r in results if r["k"] == 0), key=lambda r: (study_of(r, labels), r["seed"])):
        if study_of(base, labels) in out:
            continue
        files = {}
        for r in results:
            if r.get("reference_id") == base["experiment_id"] and r.get("importance_file"):
                files.setdefault(measure_tag(r), r["importance_file"])
        out[study_of(base, labels)] = (base, files)
    return out


def _masked_runs(results: Sequence[dict], base: dict, root: str, per_measure: int = 4) -> dict:
    """``{measure_tag: [(k, masked dataset path)]}``: a few recursive quantile steps of ``base``'s seed
    whose masked data exists, spread over the chain."""
    chains: dict = {}
    paths = Paths(root)
    for r in results:
        if (r["task"] == base["task"] and r.get("model") == base.get("model") and r["seed"] == base["seed"]
                and r.get("recursive")
                and r["strategy"] == "quantile"):
            path = paths.masked_dataset(r["experiment_id"])
            if os.path.exists(path):
                chains.setdefault(measure_tag(r), []).append((r["k"], path))
    out = {}
    for tag, steps in chains.items():
        steps.sort()
        pick = np.unique(np.linspace(0, len(steps) - 1, min(per_measure, len(steps))).round().astype(int))
        out[tag] = [steps[i] for i in pick]
    return out


def examples_html(persistent_dir: str, results: Sequence[dict], *, n_examples: int = 5, seed: int = 0) -> str:
    """The highlighted-examples section: per task, ``n_examples`` test rows, a line per measure."""
    from nlproar_jax.data.dataset import TaskData
    from nlproar_jax.analysis.plots import _sort_key

    parts = []
    for task, (base, files) in sorted(_base_runs(results).items()):
        parts.append(f"<h3>{html.escape(task)} &mdash; importance under base model "
                     f"<code>{html.escape(base['experiment_id'])}</code></h3>")
        data_path = Paths(persistent_dir).dataset(str(base.get("dataset_key")))
        if not os.path.exists(data_path):
            parts.append(f'<p class="note">Encoded dataset {html.escape(data_path)} not found: no examples.</p>')
            continue
        data = TaskData.load(data_path)
        test = data.splits["test"]
        words = data.vocab.words
        if isinstance(data.vocab, PretrainedVocabulary):  # word pieces: shown merged into words
            convention = piece_convention(words)
            parts.append(WORD_PIECES_NOTE)
            render = lambda row, s=None, masked=None: pieces_html(  # noqa: E731
                data.vocab, row, s, masked_ids=masked, convention=convention)
        else:
            render = lambda row, s=None, masked=None: tokens_html(  # noqa: E731
                words, row if masked is None else masked, s)
        scores = {}
        for tag, rel in sorted(files.items(), key=lambda kv: _sort_key(kv[0])):
            path = os.path.join(persistent_dir, rel)
            if not os.path.exists(path):
                continue
            with np.load(path) as z:
                if "test" not in z:
                    continue
                values = np.asarray(z["test"])
            if len(values) != len(test.main.values):
                parts.append(f'<p class="note">{html.escape(rel)}: {len(values)} scores for '
                             f'{len(test.main.values)} test tokens; skipped.</p>')
                continue
            scores[tag] = values
        if not scores:
            parts.append('<p class="note">No cached importance for this base model (run a ROAR k &gt; 0 first).</p>')
            continue
        rows = sample_examples(test.main.lengths, n_examples, seed=seed)
        masked = _masked_runs(results, base, persistent_dir)
        for j, i in enumerate(rows):
            ids = test.main.row(i)
            label = data.label_names[int(test.labels[i])] if int(test.labels[i]) < len(data.label_names) else "?"
            parts.append(f"<h4>test example {i} &mdash; label <code>{html.escape(str(label))}</code></h4>")
            if test.aux is not None:
                aux = render(test.aux.row(i))
                parts.append(f'<p><span class="note">auxiliary sequence (not masked):</span> {aux}</p>')
            table = []
            names = display_names(list(scores))
            for tag, values in scores.items():
                s = values[test.main.offsets[i]:test.main.offsets[i + 1]]
                table.append(f'<tr><td class="measure">{html.escape(names[tag])}</td>'
                             f"<td>{render(ids, s)}</td></tr>")
            parts.append("<table>" + "".join(table) + "</table>")
            if j == 0 and masked:
                parts.append(_masked_example_html(render, ids, i, masked))
    if not parts:
        return '<p class="note">No finished base model: no examples.</p>'
    return "\n".join(parts)


def _masked_example_html(render, ids: np.ndarray, row: int, masked: dict) -> str:
    """The first example as each recursive step masked it: ``render(unmasked ids, None, masked ids)``
    gives one row's HTML (the unmasked ``ids`` say which word pieces join)."""
    from nlproar_jax.data.dataset import TaskData
    from nlproar_jax.analysis.plots import _sort_key

    lines = []
    names = display_names(list(masked))
    for tag in sorted(masked, key=_sort_key):
        for k, path in masked[tag]:
            masked_ids = TaskData.load(path).splits["test"].main.row(row)
            lines.append(f'<tr><td class="measure">{html.escape(names[tag])}, k = {int(k)}%</td>'
                         f"<td>{render(ids, None, masked_ids)}</td></tr>")
    return ("<p class=\"note\">The same example as recursive quantile ROAR masked it (the data each step "
            "trained on):</p><table>" + "".join(lines) + "</table>")


# -- the page ----------------------------------------------------------------------------------
def render_report(persistent_dir: str, *, results: Sequence[dict], summary: Sequence[dict],
                  plot_paths: Sequence[str], n_examples: int = 5, seed: int = 0,
                  side_by_side: Optional[tuple] = None) -> str:
    """The whole report as one HTML string (no external references). ``side_by_side``: ``(rows,
    agreement, plot paths)`` of :mod:`nlproar_jax.analysis.side_by_side` (None: no such section)."""
    tasks = sorted({r["task"] for r in results})
    devices = sorted({str(r.get("device")) for r in results})
    hours = sum(sum(r.get("seconds", {}).values()) for r in results) / 3600
    plots = "".join(f'<figure><img class="plot" alt="{html.escape(os.path.basename(p))}" '
                    f'src="{_image_data_uri(p)}"></figure>' for p in plot_paths)
    title = f"NLP-ROAR results: {', '.join(tasks)}"
    band = ("with a 95% bootstrap band over seeds" if any(r["n_seeds"] > 1 for r in summary)
            else "one seed, so no confidence band (no CI with one seed)")
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(results)} finished runs under <code>{html.escape(os.path.abspath(persistent_dir))}'
        f"</code>; devices: {html.escape(', '.join(devices))}; {hours:.2f} run-hours in total.</p>",
        "<h2>ROAR curves</h2>",
        '<p class="note">Reported test metric against the share (or number) of tokens masked; mean over seeds, '
        f"{band}. Dotted: a measure's curve closed at random's k = 100 value.</p>",
        plots or '<p class="note">No plots.</p>',
        "<h2>Faithfulness summary (area between curves)</h2>",
        '<p class="note">Per seed: absolute = &int;(random &minus; measure) dx with x = k/100; '
        "maximum = &int;(random &minus; random at 100%) dx; relative = clip(absolute / maximum, &minus;1, 1). "
        "1: as faithful as the data allows; 0: no better than random; &lt; 0: worse. Mean and 95% bootstrap CI "
        "over seeds (one seed: the CI is the point). Count masking has no 100% level: absolute only, x in "
        "tokens.</p>",
        summary_html(summary),
    ]
    if side_by_side is not None:
        body += [
            "<h2>ROAR beside the cheap metrics</h2>",
            '<p class="note">Per measure, the area between ROAR curves (above; keep-and-retrain oriented the '
            "same way: &int;(measure &minus; random) over the tokens kept, relative to &int;(random at 100% "
            "&minus; random)) beside what <code>python -m nlproar_jax.evaluate</code> measures on the base model "
            "without retraining: comprehensiveness and sufficiency AOPC (&darr;: lower is better), the decision "
            "flip rate (top-1 token removed) and, where the task has gold rationales, plausibility (AUPRC, MAP, "
            "F1 at the gold size). Means over seeds; random&rsquo;s ROAR area is 0 by definition. Empty where "
            "not run.</p>",
            side_by_side_html(*side_by_side),
        ]
    body += [
        "<h2>Test metric per k (mean over seeds)</h2>",
        f"<pre>{html.escape(format_roar_table(list(results)))}</pre>",
        "<h2>Examples: tokens by importance</h2>",
        legend_html(),
        examples_html(persistent_dir, results, n_examples=n_examples, seed=seed),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(persistent_dir: str, path: str, *, results: Optional[Sequence[dict]] = None,
                 summary: Optional[Sequence[dict]] = None, plot_paths: Optional[Sequence[str]] = None,
                 n_examples: int = 5, seed: int = 0, side_by_side: Optional[tuple] = None) -> str:
    """Write the report for ``persistent_dir`` to ``path``; computes whatever is not passed in
    (``side_by_side``: ``(rows, agreement, plot paths or None)``, from the erasure files if None)."""
    from nlproar_jax.analysis import side_by_side as sbs

    results = list(results) if results is not None else load_results(persistent_dir)
    if not results:
        raise FileNotFoundError(f"no results/*.json under {persistent_dir!r}: nothing to report")
    summary = summary if summary is not None else summarize(results)
    if side_by_side is None:
        rows = sbs.side_by_side(results, load_erasure(persistent_dir), summary=summary)
        side_by_side = (rows, sbs.rank_agreement(rows), None)
    with tempfile.TemporaryDirectory() as tmp:
        if plot_paths is None:
            from nlproar_jax.analysis.plots import plot_all

            plot_paths = plot_all(results, tmp)
        rows, agreement, side_plots = side_by_side
        if side_plots is None:
            side_plots = sbs.plot_all_side_by_side(rows, agreement, tmp)
        page = render_report(persistent_dir, results=results, summary=summary, plot_paths=plot_paths,
                             n_examples=n_examples, seed=seed, side_by_side=(rows, agreement, side_plots))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path

