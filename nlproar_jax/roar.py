"""The ROAR chain: importance over a dataset, masking a dataset, and one whole run.

:func:`run_experiment` is what ``python -m nlproar_jax.train`` does: load (or
reuse) the encoded task; for k > 0 load the reference model, compute its
importance over train/val/test once (cached on disk and shared by every k that
uses the same reference), mask with :func:`~nlproar_jax.masking.roar_mask`;
train with per-epoch checkpoints (resume by default); evaluate the selected
epoch on val and test; write ``results/<experiment_id>.json``. A finished run is
skipped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from nlproar_jax import checkpointing
from nlproar_jax.data.batching import eval_batches
from nlproar_jax.data.dataset import Ragged, Split, TaskData, atomic_save_npz
from nlproar_jax.data.registry import dataset_key, load_task, task_spec
from nlproar_jax.experiment import Experiment, Paths, write_json_atomic
from nlproar_jax.importance import ImportanceOptions, compute_importance, mutual_information_table
from nlproar_jax.masking import roar_mask
from nlproar_jax.models import build_model, split as split_model
from nlproar_jax.training import evaluate, fit

log = logging.getLogger("nlproar_jax")

# Bytes of autodiff residuals one IG interpolation point keeps per (row, position, hidden unit).
_IG_BYTES_PER_ROW_POS_UNIT = 4 * 32


class MissingReferenceError(RuntimeError):
    """A ROAR run's reference model (or masked data) has not been trained yet."""


def ig_chunk_size(batch: int, seq_len: int, hidden: int, steps: int, budget_bytes: Optional[int] = None) -> int:
    """Interpolation points to vmap at once so one chunk stays under ``budget_bytes``
    (default: a quarter of the device's memory limit when known, else 1 GiB)."""
    if budget_bytes is None:
        budget_bytes = 1 << 30
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            budget_bytes = stats["bytes_limit"] // 4
    per_point = batch * seq_len * hidden * _IG_BYTES_PER_ROW_POS_UNIT
    return int(max(1, min(steps, budget_bytes // max(per_point, 1))))


def importance_over_split(graphdef, params, split: Split, measure: str, *, key, options: ImportanceOptions,
                          batch_size: int, hidden_size: int, table=None) -> np.ndarray:
    """``<float32>[total tokens]``: a score per main-sequence position, aligned with ``split.main.values``."""
    scores = Ragged(np.zeros(len(split.main.values), np.float32), split.main.offsets)
    for batch in eval_batches(split, batch_size):
        opts = options
        if measure == "integrated_gradient" and options.ig_chunk_size == 0:
            chunk = ig_chunk_size(batch.tokens.shape[0], batch.tokens.shape[1], hidden_size, options.ig_steps)
            opts = dataclasses.replace(options, ig_chunk_size=chunk)
        s = np.asarray(compute_importance(measure, graphdef, params, batch, key, opts, table))
        real = batch.weight > 0
        scores.set_rows(batch.index[real].astype(np.int64), s[real])
    return scores.values


def mask_split(split: Split, scores: np.ndarray, k: int, strategy: str, batch_size: int) -> Split:
    """``split`` with each row's top-k' tokens by ``scores`` (aligned with ``main.values``) set to [MASK]."""
    score_rows = Ragged(scores, split.main.offsets)
    main = split.main.copy()
    for batch in eval_batches(split, batch_size):
        s = score_rows.pad(batch.index.astype(np.int64), batch.tokens.shape[1])
        masked = np.asarray(roar_mask(batch.tokens, s, jnp.int32(k), strategy))
        real = batch.weight > 0
        main.set_rows(batch.index[real].astype(np.int64), masked[real])
    return split.replace_main(main)


# -- models --------------------------------------------------------------------------------
def init_model(config, data: TaskData, seed: int):
    """The task's freshly initialised model for ``seed``: ``(model, graphdef, params)``."""
    from nlproar_jax.data.embeddings import embedding_matrix  # optional vectors packages load lazily

    matrix = embedding_matrix(data.vocab, config.embedding, dim=int(config.embedding_dim),
                              oov=config.embedding_oov, seed=seed)
    model = build_model(paired=data.paired, vocab_size=len(data.vocab), num_classes=data.num_classes,
                        embedding_dim=int(matrix.shape[1]), hidden_size=int(config.hidden_size), seed=seed,
                        embedding=matrix)
    graphdef, params = split_model(model)
    return model, graphdef, params


def train_command(exp: Experiment, config_file: str) -> str:
    """The command line that creates ``exp``."""
    parts = [f"python -m nlproar_jax.train --config={config_file}", f"--config.seed={exp.seed}",
             f"--config.k={exp.k}"]
    if exp.k > 0:
        parts += [f"--config.importance_measure={exp.measure}", f"--config.roar_strategy={exp.strategy}"]
        if exp.recursive:
            parts += ["--config.recursive=True", f"--config.recursive_step_size={exp.step}"]
        if exp.measure == "integrated_gradient":
            parts += [f"--config.ig_steps={exp.ig_steps}", f"--config.ig_variant={exp.ig_variant}"]
    return " ".join(parts)


def _missing(what: str, exp: Experiment, ref: Experiment, config) -> MissingReferenceError:
    return MissingReferenceError(
        f"{exp.id} needs the {what} of {ref.id}, which has not been trained yet. Create it with:\n  "
        f"{train_command(ref, config.get('config_file', '') or f'configs/{exp.task}.py')}"
        f" --config.persistent_dir={config.persistent_dir}")


def load_trained(paths: Paths, ref: Experiment, config, data: TaskData):
    """``(graphdef, params)`` of a finished run."""
    _, graphdef, template = init_model(config, data, ref.seed)
    params, _ = checkpointing.load_params(paths.model(ref), template)
    return graphdef, params


# -- importance and masked data ------------------------------------------------------------
def importance_options(config, exp: Experiment) -> ImportanceOptions:
    return ImportanceOptions(ig_steps=exp.ig_steps, ig_variant=exp.ig_variant,
                             ig_chunk_size=int(config.ig_chunk_size))


def reference_importance(paths: Paths, exp: Experiment, ref: Experiment, ref_data: TaskData, config
                         ) -> dict[str, np.ndarray]:
    """Per split, the reference's importance aligned with ``main.values``; computed once, cached on disk."""
    path = paths.importance(ref, exp.measure_tag)
    if os.path.exists(path):
        with np.load(path) as z:
            return {name: z[name] for name in ref_data.splits}
    graphdef = params = table = None
    if exp.measure in ("random", "mutual_information"):  # model-free: only the data is needed
        _, graphdef, params = init_model(config, ref_data, ref.seed)
    elif not checkpointing.params_exist(paths.model(ref)):
        raise _missing("trained model", exp, ref, config)
    else:
        graphdef, params = load_trained(paths, ref, config, ref_data)
    if exp.measure == "mutual_information":
        train = ref_data.splits["train"]
        table = mutual_information_table(train.main, train.labels, len(ref_data.vocab), ref_data.num_classes)
    options = importance_options(config, exp)
    scores = {}
    for i, (name, split) in enumerate(ref_data.splits.items()):
        t0 = time.perf_counter()
        key = jax.random.fold_in(jax.random.key(ref.seed), i)
        scores[name] = importance_over_split(graphdef, params, split, exp.measure, key=key, options=options,
                                             batch_size=int(config.batch_size),
                                             hidden_size=int(config.hidden_size), table=table)
        log.info("importance %s on %s/%s: %d examples in %.1fs", exp.measure_tag, ref.id, name, len(split),
                 time.perf_counter() - t0)
    atomic_save_npz(path, scores)
    return scores


def masked_data(paths: Paths, exp: Experiment, base_data: TaskData, config) -> TaskData:
    """The dataset run ``exp`` trains on: its reference's data with k' more tokens per row masked."""
    ref = exp.reference()
    if ref.is_base:
        ref_data = base_data
    elif os.path.exists(paths.masked_dataset(ref)):
        ref_data = TaskData.load(paths.masked_dataset(ref))
    else:
        raise _missing("masked dataset", exp, ref, config)
    scores = reference_importance(paths, exp, ref, ref_data, config)
    splits = {name: mask_split(split, scores[name], exp.k, exp.strategy, int(config.batch_size))
              for name, split in ref_data.splits.items()}
    return ref_data.replace_splits(splits)


# -- one run -------------------------------------------------------------------------------
# Fields that do not change what one run computes: how and where it runs, and which grid it is part of.
_NOT_IDENTITY = ("persistent_dir", "data_dir", "config_file", "compilation_cache_dir", "seeds_together",
                 "malloc_hugetlb", "k_together", "grid")
SEEDS_TOGETHER = ("auto", "vmap", "loop")


def _check_config(run_dir: str, config) -> None:
    """Write ``config.json``; refuse to continue a run started with different settings."""
    path = os.path.join(run_dir, "config.json")
    current = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    if os.path.exists(path):
        with open(path) as f:
            previous = {k: v for k, v in json.load(f).items() if k not in _NOT_IDENTITY}
        diff = {k: (previous.get(k), current.get(k)) for k in set(previous) | set(current)
                if json.dumps(previous.get(k), sort_keys=True) != json.dumps(current.get(k), sort_keys=True)}
        if diff:
            raise ValueError(f"{run_dir} was started with different settings {diff} (before, now); "
                             "use another --config.persistent_dir or delete that run directory")
    else:
        write_json_atomic(path, config.to_dict())


def environment() -> dict:
    import flax
    import optax
    import orbax.checkpoint

    device = jax.devices()[0]
    return {"device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "device_count": jax.device_count(),
            "hostname": platform.node(), "python": platform.python_version(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                         "orbax-checkpoint": orbax.checkpoint.__version__, "numpy": np.__version__}}


def load_base_data(config) -> TaskData:
    """The config's encoded task, unmasked (through the dataset cache under ``persistent_dir``)."""
    return load_task(config.task, data_dir=config.data_dir, min_df=int(config.min_df),
                     options=config.dataset.to_dict(), cache_dir=Paths(config.persistent_dir).dataset_cache)


def _fit_settings(config, exp: Experiment, model) -> dict:
    """The keyword arguments ``fit`` and ``fit_stacked`` share: the original's schedule from ``config``."""
    return dict(epochs=int(config.max_epochs), batch_size=int(config.batch_size), monitor=task_spec(exp.task).monitor,
                no_decay=model.no_weight_decay, learning_rate=float(config.learning_rate),
                weight_decay=float(config.weight_decay), pool_batches=int(config.pool_batches))


def _prepare(config, exp: Experiment, paths: Paths, base_data: Optional[TaskData]):
    """``(base_data, data, seconds)``: the task and the (masked) dataset ``exp`` trains on."""
    run_dir = paths.run_dir(exp)
    os.makedirs(run_dir, exist_ok=True)
    _check_config(run_dir, config)
    seconds = {}
    t0 = time.perf_counter()
    if base_data is None:
        base_data = load_base_data(config)
    seconds["load_data"] = time.perf_counter() - t0
    data = base_data
    if not exp.is_base:
        t0 = time.perf_counter()
        data = masked_data(paths, exp, base_data, config)
        seconds["importance_and_masking"] = time.perf_counter() - t0
        if exp.recursive:  # the next recursive step starts from this run's data
            data.save(paths.masked_dataset(exp))
    return base_data, data, seconds


def _finish(config, exp: Experiment, paths: Paths, data: TaskData, graphdef, fitted, seconds: dict) -> dict:
    """Save the selected model, evaluate it on val and test, write the result; return it."""
    spec = task_spec(exp.task)
    checkpointing.save_params(paths.model(exp), fitted.best_params, {"experiment_id": exp.id,
                                                                      "best_epoch": fitted.best_epoch})
    t0 = time.perf_counter()
    bs = int(config.batch_size)
    val = evaluate(graphdef, fitted.best_params, data.splits["val"], bs)
    test = evaluate(graphdef, fitted.best_params, data.splits["test"], bs)
    seconds = {**seconds, "train": fitted.train_seconds, "evaluate": time.perf_counter() - t0}
    ref = exp.reference()
    result = {**exp.fields(), "reference_id": ref.id if ref else None, "monitor": spec.monitor,
              "dataset_key": dataset_key(exp.task, int(config.min_df), config.dataset.to_dict()),
              "importance_file": (os.path.relpath(paths.importance(ref, exp.measure_tag), paths.root)
                                  if ref else None),
              "reported_metric": spec.reported, "best_epoch": fitted.best_epoch, "epochs": int(config.max_epochs),
              "train_size": len(data.splits["train"]), "notes": list(data.notes), "val": val, "test": test,
              "history": fitted.history, "seconds": seconds, **environment()}
    write_json_atomic(paths.result(exp), result)
    shutil.rmtree(paths.checkpoints(exp), ignore_errors=True)  # finished: the result and model are kept
    log.info("%s: test %s %.4f (best epoch %d) -> %s", exp.id, spec.reported, test[spec.reported],
             fitted.best_epoch, paths.result(exp))
    return result


def _load_result(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def run_experiment(config, *, base_data: Optional[TaskData] = None) -> dict:
    """Run (or resume, or skip if finished) the experiment ``config`` describes; return its results.

    With ``config.num_seeds > 1`` or ``config.k_together`` this trains every (seed, k) of
    :func:`together_configs` together (:func:`run_together`) and returns the first one's result."""
    if int(config.num_seeds) > 1 or tuple(config.k_together):
        return run_together(together_configs(config), base_data=base_data)[0]
    exp = Experiment.from_config(config)
    paths = Paths(config.persistent_dir)
    if os.path.exists(paths.result(exp)):
        log.info("%s already finished: %s", exp.id, paths.result(exp))
        return _load_result(paths.result(exp))
    _, data, seconds = _prepare(config, exp, paths, base_data)
    model, graphdef, params = init_model(config, data, exp.seed)
    log.info("%s: training %d epochs on %d examples", exp.id, config.max_epochs, len(data.splits["train"]))
    fitted = fit(graphdef, params, data.splits["train"], data.splits["val"], seed=exp.seed,
                 checkpoint_dir=paths.checkpoints(exp), metrics_path=os.path.join(paths.run_dir(exp), "metrics.jsonl"),
                 **_fit_settings(config, exp, model))
    return _finish(config, exp, paths, data, graphdef, fitted, seconds)


def together_configs(config) -> list:
    """One single-run config per (seed, k) that ``config`` asks to train together: seeds ``seed ..
    seed + num_seeds - 1``, and k in ``(k,) + k_together`` (classic ROAR only: every such run's
    reference is the seed's k = 0 model, and its masked data has the unmasked data's shapes)."""
    ks = (int(config.k),) + tuple(int(k) for k in config.k_together)
    if len(ks) > 1:
        if bool(config.recursive):
            raise ValueError(f"k_together={tuple(config.k_together)} trains classic ROAR runs together; a "
                             "recursive run needs the previous step's model first: run recursive steps one by one")
        if min(ks) <= 0:
            raise ValueError(f"k_together trains classic ROAR runs (k > 0) after their k=0 base model; "
                             f"got k values {ks}")
        if len(set(ks)) < len(ks):
            raise ValueError(f"k={config.k} with k_together={tuple(config.k_together)} repeats a k value")
    configs = []
    for i in range(int(config.num_seeds)):
        for k in ks:
            c = config.copy_and_resolve_references()
            c.seed, c.num_seeds, c.k, c.k_together = int(config.seed) + i, 1, k, ()
            Experiment.from_config(c)  # validates each run
            configs.append(c)
    return configs


def run_together(configs: list, *, base_data: Optional[TaskData] = None) -> list[dict]:
    """Several single-run configs of one task (e.g. :func:`together_configs`) in this process; each
    writes the same files a single run would, and finished ones are skipped.

    ``seeds_together`` (of the first config): "vmap" trains them in one vmapped program over
    stacked parameters (:func:`~nlproar_jax.stacked_training.fit_stacked`); "loop" trains them one
    after another, sharing start-up, data and compiled steps (on a CPU, already compute-bound on
    one model, this is the faster); "auto" picks vmap on accelerators and loop on the CPU. Their
    datasets must have the same shapes when vmapped: seeds and classic-ROAR k values of one task do."""
    from nlproar_jax.stacked_training import fit_stacked

    config = configs[0]
    mode = config.seeds_together
    if mode not in SEEDS_TOGETHER:
        raise ValueError(f"unknown seeds_together {mode!r}; valid: {list(SEEDS_TOGETHER)}")
    if mode == "auto":
        mode = "loop" if jax.default_backend() == "cpu" else "vmap"
    if mode == "loop":  # the task is loaded once for all runs
        base_data = base_data if base_data is not None else load_base_data(config)
        return [run_experiment(c, base_data=base_data) for c in configs]
    paths = Paths(config.persistent_dir)
    exps = [Experiment.from_config(c) for c in configs]
    todo = [i for i, e in enumerate(exps) if not os.path.exists(paths.result(e))]
    results = {i: _load_result(paths.result(e)) for i, e in enumerate(exps) if i not in todo}
    if todo:
        prepared = []
        for i in todo:
            base_data, data, seconds = _prepare(configs[i], exps[i], paths, base_data)
            model, graphdef, params = init_model(configs[i], data, exps[i].seed)
            prepared.append((data, seconds, params))
        first = exps[todo[0]]
        # One checkpoint directory per set of runs, so a resumed group never restores another's state.
        group = hashlib.sha1(",".join(exps[i].id for i in todo).encode()).hexdigest()[:12]
        stacked_dir = os.path.join(paths.run_dir(first), f"stacked-checkpoints-{group}")
        log.info("%s: training %s together, %d epochs", first.id,
                 ", ".join(f"seed {exps[i].seed} k={exps[i].k}" for i in todo), config.max_epochs)
        fitted = fit_stacked(
            graphdef, [p for _, _, p in prepared], [d.splits["train"] for d, _, _ in prepared],
            [d.splits["val"] for d, _, _ in prepared], [exps[i].seed for i in todo],
            **_fit_settings(config, first, model), checkpoint_dir=stacked_dir,
            metrics_paths=[os.path.join(paths.run_dir(exps[i]), "metrics.jsonl") for i in todo])
        for i, (data, seconds, _), fit_result in zip(todo, prepared, fitted):
            results[i] = _finish(configs[i], exps[i], paths, data, graphdef, fit_result, seconds)
        shutil.rmtree(stacked_dir, ignore_errors=True)
    return [results[i] for i in range(len(exps))]
