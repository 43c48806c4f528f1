"""Faithfulness without retraining, and plausibility, of every measure of a grid on its base models.

  python -m nlproar_jax.evaluate --config=configs/synthetic.py [--config.persistent_dir=runs/synthetic]

ROAR (``python -m nlproar_jax.sweep``) retrains a model per measure and k; this asks each seed's
k = 0 base model itself, on ``config.evaluation.split`` (the test split by default):

* erasure faithfulness (:mod:`nlproar_jax.evaluation.erasure`): comprehensiveness and sufficiency
  per bin and their AOPC, decision flips, under ``config.evaluation``'s removal, target and bins;
* plausibility (:mod:`nlproar_jax.evaluation.plausibility`) where the task has gold rationales
  (:data:`GOLD_RATIONALES`: the synthetic task's signal words; SST's words whose treebank label is
  polar in the sentence's direction; bAbI's supporting statements, both read from the data files under
  ``config.data_dir``): AUPRC, MAP, top-k precision, recall and F1 with k = each row's number of gold
  tokens, Spearman. Other tasks get the erasure metrics only.

The grid is ``config.grid.seeds`` x ``config.grid.measures``. The scores are the importance files
ROAR's classic runs mask by (:func:`~nlproar_jax.roar.references.reference_importance`: computed and
cached here where the sweep has not, DiffMask fitted first), so both benchmarks judge the same
scores; ``evaluation.importance_splits="evaluated"`` computes an uncached measure on the evaluated
split alone (cached apart, the same scores), for measures too slow to score every split. One JSON per (base run, measure) goes to ``<persistent_dir>/erasure/<base id>_y-<measure
tag>.json`` (:meth:`~nlproar_jax.names.Paths.erasure`; non-default split, removal, target or bins add
a suffix, so settings never overwrite each other). A file already there is skipped: a rerun is
instant and an interrupted one resumes (a file without plausibility, for a task that has gold rationales
now, is evaluated again). Then the table (one row per measure, mean over seeds:
:func:`~nlproar_jax.analysis.tables.format_erasure_table`) is printed and ``export/erasure.csv``
written (one row per file; ``python -m nlproar_jax.results`` writes it too).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Optional

from absl import app

from nlproar_jax.runtime.commandline import config_from_flags, run_command, setup_logging

log = logging.getLogger("nlproar_jax")

DEFAULT_SPLIT = "test"
DEFAULT_REMOVAL = "mask"
DEFAULT_TARGET = "gold"
# Which splits a measure's importance is computed on when ROAR has not cached it: "all" (the file every
# ROAR run of that measure reuses) or "evaluated" (only the split evaluated; cached apart, for measures
# too slow to score every split just for an evaluation). The scores are the same either way.
IMPORTANCE_SPLITS = ("all", "evaluated")


# -- settings --------------------------------------------------------------------------------
def evaluation_settings(config) -> dict:
    """``config.evaluation`` checked: ``split``, ``removal``, ``target``, ``bins``, ``aopc_normalisation``."""
    from nlproar_jax.data.dataset import SPLITS
    from nlproar_jax.evaluation.erasure import AOPC_NORMALISATIONS, REMOVALS, TARGETS, check_bins

    ev = config.evaluation
    settings = {"split": ev.split, "removal": ev.removal, "target": ev.target, "bins": list(check_bins(ev.bins)),
                "aopc_normalisation": ev.aopc, "importance_splits": ev.get("importance_splits", "all")}
    if settings["importance_splits"] not in IMPORTANCE_SPLITS:
        raise ValueError(f"unknown evaluation.importance_splits {settings['importance_splits']!r}; valid: "
                         f"{list(IMPORTANCE_SPLITS)}")
    for field, value, valid in (("split", ev.split, SPLITS), ("removal", ev.removal, REMOVALS),
                                ("target", ev.target, TARGETS), ("aopc", ev.aopc, AOPC_NORMALISATIONS)):
        if value not in valid:
            raise ValueError(f"unknown evaluation.{field} {value!r}; valid: {list(valid)}")
    return settings


def settings_tag(settings: dict) -> str:
    """The file-name suffix of non-default settings (``""`` for the defaults; the AOPC normalisation
    is no part of it: every file holds both)."""
    from nlproar_jax.evaluation.erasure import BINS

    parts = []
    if settings["split"] != DEFAULT_SPLIT:
        parts.append(f"split={settings['split']}")
    if settings["removal"] != DEFAULT_REMOVAL:
        parts.append(f"removal={settings['removal']}")
    if settings["target"] != DEFAULT_TARGET:
        parts.append(f"target={settings['target']}")
    if tuple(settings["bins"]) != BINS:
        parts.append("bins=" + ",".join(str(b) for b in settings["bins"]))
    return "_ev-" + ",".join(parts) if parts else ""


def grid_experiments(config) -> list[tuple]:
    """``[(base, exp)]`` per seed of ``config.grid.seeds`` and measure of ``config.grid.measures``
    (random included; duplicates by measure tag dropped): ``exp`` is the measure's classic run at k = 10,
    whose reference is ``base`` and whose ``measure_tag`` names the importance file."""
    from nlproar_jax.names import Experiment, canonical_measure

    out, seen = [], set()
    for seed in config.grid.seeds:
        for measure in config.grid.measures:
            c = config.copy_and_resolve_references()
            with c.unlocked():
                c.seed, c.k, c.importance_measure = int(seed), 10, canonical_measure(measure)
                c.roar_strategy, c.recursive, c.num_seeds, c.k_together = "quantile", False, 1, ()
            exp = Experiment.from_config(c)
            if (exp.seed, exp.measure_tag) not in seen:
                seen.add((exp.seed, exp.measure_tag))
                out.append((exp.base(), exp))
    return out


# -- gold rationales -------------------------------------------------------------------------
def synthetic_gold(config, data, split_name: str):
    """The synthetic task's gold rationales (its signal words) of ``split_name``, checked against the
    encoded split: same rows and lengths, and every gold token is a signal word (or [UNK])."""
    import numpy as np

    from nlproar_jax.data.tokens import UNK
    from nlproar_jax.evaluation.plausibility import synthetic_rationales

    split = data.splits[split_name]
    gold = synthetic_rationales(split_name, encoded=split, **config.dataset.to_dict())
    words = np.asarray(data.vocab.words, dtype=object)[split.main.values[gold.values]]
    wrong = sorted({w for w in words if not (w.startswith(("pos", "neg")) or w == data.vocab.words[UNK])})
    if wrong:
        raise ValueError(f"the synthetic gold rationales of the {split_name} split mark non-signal words "
                         f"{wrong[:5]}: the encoded data and the generator disagree (dataset options?)")
    return gold


def _file_gold(config, data, split_name: str):
    from nlproar_jax.evaluation.plausibility import file_rationales

    return file_rationales(config.task, split_name, config.data_dir, encoded=data.splits[split_name],
                           vocab=data.vocab, **config.dataset.to_dict())


def sst_gold(config, data, split_name: str):
    """SST's gold rationales of ``split_name`` (the words whose treebank label is polar in the sentence's
    direction: :func:`nlproar_jax.data.sst.gold_rationales`), read from the tree files under
    ``config.data_dir`` and checked against the encoded split: same rows, same tokens."""
    return _file_gold(config, data, split_name)


def babi_gold(config, data, split_name: str):
    """bAbI's gold rationales of ``split_name`` (every word of the supporting statements:
    :func:`nlproar_jax.data.babi.gold_rationales`), read from the task files under ``config.data_dir``
    and checked against the encoded split: same rows, same tokens."""
    return _file_gold(config, data, split_name)


# task -> (config, TaskData, split name) -> gold rationales (Ragged bool aligned with split.main)
GOLD_RATIONALES: dict[str, Callable] = {"synthetic": synthetic_gold, "sst": sst_gold, "babi-1": babi_gold,
                                        "babi-2": babi_gold, "babi-3": babi_gold}


def eligible_positions(model, split):
    """``Ragged`` bool per main-sequence token: ``model.maskable`` (what erasure and ROAR may remove)."""
    import jax.numpy as jnp
    import numpy as np

    from nlproar_jax.data.dataset import Ragged

    lengths = split.main.lengths
    padded = split.main.pad(np.arange(len(split)), int(lengths.max()) if len(lengths) else 0)
    maskable = np.asarray(model.maskable(jnp.asarray(padded)))
    valid = np.arange(padded.shape[1])[None, :] < lengths[:, None]
    return Ragged(maskable[valid], split.main.offsets)


# -- one (base run, measure) -----------------------------------------------------------------
def evaluate_measure(paths, config, settings: dict, base, exp, data, model, gold=None, eligible=None) -> dict:
    """Erasure (and, with ``gold``, plausibility) of ``exp``'s measure on the trained ``model`` of
    ``base``; writes and returns the evaluation (:meth:`~nlproar_jax.names.Paths.erasure`)."""
    from nlproar_jax.data.dataset import Ragged
    from nlproar_jax.evaluation.erasure import erasure_over_split
    from nlproar_jax.evaluation.plausibility import plausibility
    from nlproar_jax.names import write_json_atomic
    from nlproar_jax.roar.references import importance_file, reference_importance
    from nlproar_jax.roar.run import environment

    split = data.splits[settings["split"]]
    only = settings["split"] if settings.get("importance_splits") == "evaluated" else None
    importance_path = importance_file(paths, base, exp.measure_tag, only)
    cached = os.path.exists(importance_path)
    seconds = {}
    t0 = time.perf_counter()
    scores = reference_importance(paths, exp, base, data, config, only=only)[settings["split"]]
    seconds["importance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    erasure = erasure_over_split(model, split, scores, batch_size=int(config.batch_size), bins=settings["bins"],
                                 removal=settings["removal"], target=settings["target"])
    seconds["erasure"] = time.perf_counter() - t0
    plaus = None
    if gold is not None:
        t0 = time.perf_counter()
        plaus = plausibility(Ragged(scores, split.main.offsets), gold, eligible)
        seconds["plausibility"] = time.perf_counter() - t0
    norm = "" if settings["aopc_normalisation"] == "mean" else "_" + settings["aopc_normalisation"]
    metrics = {"aopc_comprehensiveness": erasure[f"aopc_comprehensiveness{norm}"],
               "aopc_sufficiency": erasure[f"aopc_sufficiency{norm}"], "flip_top1": erasure["flip_top1"]}
    if plaus is not None:
        metrics.update({name: plaus[name] for name in ("auprc", "map", "topk_f1")})
    fields = exp.fields()
    result = {
        "evaluation_id": os.path.basename(paths.erasure(base, exp.measure_tag, settings_tag(settings)))[:-5],
        "base_id": base.id, "task": base.task, "model": base.model, "seed": base.seed, "measure": exp.measure,
        "measure_tag": exp.measure_tag, "measure_options": fields["measure_options"],
        "ig_steps": exp.ig_steps if exp.measure == "integrated_gradient" else None,
        "ig_variant": exp.ig_variant if exp.measure == "integrated_gradient" else None,
        "importance_file": os.path.relpath(importance_path, paths.root), "importance_cached": cached,
        "split": settings["split"], "rows": len(split), "settings": {**{k: v for k, v in settings.items() if k != "importance_splits"}, "plausibility_k": "gold"},
        "metrics": metrics, "erasure": erasure, "plausibility": plaus,
        "gold_rationales": None if gold is None else f"{base.task}: {GOLD_RATIONALES[base.task].__name__}",
        "seconds": seconds, **environment()}
    from nlproar_jax.analysis.tables import json_safe  # JAX-free; NaN -> null

    result = json_safe(result)
    write_json_atomic(paths.erasure(base, exp.measure_tag, settings_tag(settings)), result)
    return result


# -- the grid ---------------------------------------------------------------------------------
def _load(path: str) -> dict:
    import json

    with open(path) as f:
        return json.load(f)


def evaluate_grid(config, *, base_data=None) -> list[dict]:
    """Every (seed, measure) of the grid (:func:`grid_experiments`): evaluated, or read back where its
    file exists. Raises :class:`~nlproar_jax.roar.references.MissingReferenceError` (naming the
    commands that make them) before any work if a needed base model has not been trained."""
    from nlproar_jax.names import Paths
    from nlproar_jax.roar.references import MissingReferenceError, load_trained, train_command
    from nlproar_jax.roar.run import load_base_data
    from nlproar_jax.runtime.progress import eta
    from nlproar_jax.training import checkpointing

    settings = evaluation_settings(config)
    tag = settings_tag(settings)
    paths = Paths(config.persistent_dir)
    jobs = grid_experiments(config)
    out = {}
    for i, (base, exp) in enumerate(jobs):
        path = paths.erasure(base, exp.measure_tag, tag)
        if os.path.exists(path):
            done = _load(path)
            # written before the task had gold rationales (SST, bAbI): evaluated again, plausibility added
            if done.get("plausibility") is not None or base.task not in GOLD_RATIONALES:
                out[i] = done
    todo = [i for i in range(len(jobs)) if i not in out]
    if len(out):
        log.info("%d of %d evaluations already done (%s)", len(out), len(jobs), paths.erasure_dir)
    if not todo:
        return [out[i] for i in range(len(jobs))]
    bases = list(dict.fromkeys(jobs[i][0] for i in todo))
    missing = [b for b in bases if not checkpointing.params_exist(paths.model(b))]
    if missing:
        config_file = config.get("config_file", "") or f"configs/{missing[0].task}.py"
        commands = "\n  ".join(f"{train_command(b, config_file)} --config.persistent_dir={config.persistent_dir}"
                               for b in missing)
        raise MissingReferenceError(f"the erasure evaluation needs the trained base model of "
                                    f"{', '.join(b.id for b in missing)}, which has not been trained yet. "
                                    f"Create it with:\n  {commands}")
    data = base_data if base_data is not None else load_base_data(config)
    split = data.splits[settings["split"]]
    task = bases[0].task
    gold = GOLD_RATIONALES[task](config, data, settings["split"]) if task in GOLD_RATIONALES else None
    if gold is None:
        log.info("task %s has no gold rationales: erasure metrics only, no plausibility", task)
    t_start = time.perf_counter()
    done = 0
    for base in bases:
        model = load_trained(paths, base, config, data)
        eligible = eligible_positions(model, split) if gold is not None else None
        for i in (i for i in todo if jobs[i][0] == base):
            exp = jobs[i][1]
            t0 = time.perf_counter()
            result = out[i] = evaluate_measure(paths, config, settings, base, exp, data, model, gold, eligible)
            done += 1
            m = result["metrics"]
            plaus = (f", auprc {m['auprc']:.3f} map {m['map']:.3f} f1@gold {m['topk_f1']:.3f}"
                     if result["plausibility"] else "")
            when = eta(done, len(todo), time.perf_counter() - t_start)
            log.info("[%d/%d] %s %s: comp_aopc %.3f suff_aopc %.3f flip_top1 %.3f%s (%.1fs%s)", done, len(todo),
                     base.id, exp.measure_tag, m["aopc_comprehensiveness"], m["aopc_sufficiency"], m["flip_top1"],
                     plaus, time.perf_counter() - t0, f", {when}" if when else "")
    log.info("%d evaluations done in %.0fs -> %s", len(todo), time.perf_counter() - t_start, paths.erasure_dir)
    return [out[i] for i in range(len(jobs))]


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    from nlproar_jax.analysis.tables import export_erasure, format_erasure_table
    from nlproar_jax.roar.references import MissingReferenceError

    config = config_from_flags()
    try:
        evaluations = evaluate_grid(config)
    except (MissingReferenceError, ValueError, FileNotFoundError) as e:
        log.error("%s", e)
        sys.exit(2)
    print(format_erasure_table(evaluations, config.evaluation.aopc))
    path: Optional[str] = export_erasure(config.persistent_dir)
    if path:
        print(f"wrote {path}")


if __name__ == "__main__":
    run_command(main)
