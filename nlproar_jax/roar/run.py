"""The ROAR chain: importance over a dataset, masking a dataset, and one whole run.

:func:`run_experiment` is what ``python -m nlproar_jax.train`` does: load (or
reuse) the encoded task; for k > 0 load the reference model, compute its
importance over train/val/test once (cached on disk and shared by every k that
uses the same reference), mask with :func:`~nlproar_jax.roar.masking.roar_mask`;
train with per-epoch checkpoints (resume by default); evaluate the selected
epoch on val and test; write ``results/<experiment_id>.json``. A finished run is
skipped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from typing import Optional

import jax
import numpy as np

from nlproar_jax.data.dataset import TaskData
from nlproar_jax.data.registry import dataset_key, load_task, task_spec
from nlproar_jax.names import SEEDS_TOGETHER, Experiment, Paths, write_json_atomic
from nlproar_jax.roar.references import MissingReferenceError, init_model, masked_data  # noqa: F401
from nlproar_jax.training import checkpointing
from nlproar_jax.training.loop import evaluate, fit

log = logging.getLogger("nlproar_jax")

# -- one run -------------------------------------------------------------------------------
# Fields that do not change what one run computes: how and where it runs, and which grid it is part of.
_NOT_IDENTITY = ("persistent_dir", "data_dir", "config_file", "compilation_cache_dir", "seeds_together",
                 "malloc_hugetlb", "k_together", "grid")


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
    stacked parameters (:func:`~nlproar_jax.training.stacked.fit_stacked`); "loop" trains them one
    after another, sharing start-up, data and compiled steps (on a CPU, already compute-bound on
    one model, this is the faster); "auto" picks vmap on accelerators and loop on the CPU. Their
    datasets must have the same shapes when vmapped: seeds and classic-ROAR k values of one task do."""
    from nlproar_jax.training.stacked import fit_stacked

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
