"""The ROAR chain: importance over a dataset, masking a dataset, and one whole run.

:func:`run_experiment` is what ``python -m nlproar_jax.train`` does: load (or
reuse) the encoded task; for k > 0 load the reference model, compute its
importance over train/val/test once (cached on disk and shared by every k that
uses the same reference, keep runs included), mask with
:func:`~nlproar_jax.roar.masking.roar_mask` (``config.roar_mode``: remove or keep the top k');
train with per-epoch checkpoints (resume by default); evaluate the selected
epoch on val and test; write ``results/<experiment_id>.json``. A finished run is
skipped. ``runs/<id>/`` (``config.json`` first) is written only once the run's data
and model are ready, so a run that fails before training leaves nothing behind.
Several runs trained together (:func:`run_together`) go through the same
:func:`~nlproar_jax.training.loop.fit` as one run: a single run is a stack of one.
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
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from nlproar_jax.data.dataset import TaskData
from nlproar_jax.data.registry import dataset_key, load_task, task_spec
from nlproar_jax.models import task_tokenizer
from nlproar_jax.names import SEEDS_TOGETHER, Experiment, Paths, device_data_setting, write_json_atomic
from nlproar_jax.roar.references import MissingReferenceError, init_model, masked_data
from nlproar_jax.runtime.runlock import RunBusyError, run_locks
from nlproar_jax.training import checkpointing
from nlproar_jax.training.loop import evaluate, fit

__all__ = ["MissingReferenceError", "RunBusyError", "environment", "load_base_data", "run_experiment",
           "run_together", "together_configs"]

log = logging.getLogger("nlproar_jax")

# -- one run -------------------------------------------------------------------------------
# Fields that do not change what one run computes: how and where it runs, and which grid it is part of.
# (lstm_impl: every BiLSTM kernel computes the same function and gradients, tests/test_models.py;
# device_data: the same batches built on the device or the host, tests/test_device_batches.py.)
_NOT_IDENTITY = ("persistent_dir", "data_dir", "config_file", "compilation_cache_dir", "seeds_together",
                 "malloc_hugetlb", "k_together", "grid", "lstm_impl", "evaluation", "reuse_classic_twin",
                 "device_data")


def _check_config(paths: Paths, exp: Experiment, config) -> None:
    """Refuse to continue a run started with different settings (reads ``config.json``, writes nothing)."""
    path = paths.config(exp)
    if not os.path.exists(path):
        return
    current = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    with open(path) as f:
        previous = {k: v for k, v in json.load(f).items() if k not in _NOT_IDENTITY}
    # Fields only one side has were added to (or removed from) the configs since the run started: a new
    # field's default is what the run used, so only the fields both sides have are compared.
    diff = {k: (previous[k], current[k]) for k in set(previous) & set(current)
            if json.dumps(previous[k], sort_keys=True) != json.dumps(current[k], sort_keys=True)}
    if diff:
        raise ValueError(f"{paths.run_dir(exp)} was started with different settings {diff} (before, now); "
                         "use another --config.persistent_dir or delete that run directory")


def environment() -> dict:
    import flax
    import optax
    import orbax.checkpoint

    device = jax.devices()[0]
    return {"device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "device_count": jax.device_count(),
            "hostname": platform.node(), "python": platform.python_version(),
            # XLA:CPU splits large reductions by its thread pool, so float results depend on the cores a
            # process may use (a parallel sweep's worker: its own; the serial sweep: all); recorded
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                         "orbax-checkpoint": orbax.checkpoint.__version__, "numpy": np.__version__}}


def load_base_data(config) -> TaskData:
    """The config's encoded task, unmasked (through the dataset cache under ``persistent_dir``): with the
    word vocabulary, or the tokenizer of a pretrained ``config.model`` (``bert``)."""
    return load_task(config.task, data_dir=config.data_dir, min_df=int(config.min_df),
                     options=config.dataset.to_dict(), cache_dir=Paths(config.persistent_dir).dataset_cache,
                     tokenizer=task_tokenizer(config))


def base_dataset_key(config) -> str:
    """The cache key of :func:`load_base_data`'s dataset (``Paths.dataset``)."""
    tokenizer = task_tokenizer(config)
    return dataset_key(config.task, int(config.min_df), config.dataset.to_dict(),
                       None if tokenizer is None else tokenizer.identity())


def _fit_settings(config, exp: Experiment, model) -> dict:
    """The original's schedule from ``config``: ``fit``'s keyword arguments (``optimizer="adamw"``: section
    9's AdamW with its warm-up and betas; dropout in training as the model asks, ``train_dropout``; the
    faithfulness losses of ``config.faithfulness_loss`` when it is on; training batches gathered on the
    device or built on the host as ``config.device_data`` says)."""
    optimizer = str(config.get("optimizer", "amsgrad"))
    options = {}
    if optimizer == "adamw":
        options = dict(warmup=float(config.warmup), b1=float(config.adam_b1), b2=float(config.adam_b2),
                       eps=float(config.adam_eps))
    settings = dict(epochs=int(config.max_epochs), batch_size=int(config.batch_size),
                    monitor=task_spec(exp.task).monitor, no_decay=tuple(getattr(model, "no_weight_decay", ())),
                    learning_rate=float(config.learning_rate), weight_decay=float(config.weight_decay),
                    pool_batches=int(config.pool_batches), optimizer=optimizer, optimizer_options=options,
                    dropout=bool(getattr(model, "train_dropout", False)), device_data=device_data_setting(config))
    if exp.faithfulness is not None:  # faithfulness-regularised training (config.faithfulness_loss)
        from nlproar_jax.training.faithfulness_loss import FaithfulnessLoss

        settings["faithfulness"] = FaithfulnessLoss.from_settings(exp.faithfulness)
    return settings


def _load_data(config, exp: Experiment, paths: Paths, base_data: Optional[TaskData]):
    """``(base_data, data, seconds)``: the task and the (masked) dataset ``exp`` trains on. Writes
    nothing under the run's directory, so a run that fails here leaves no trace of having started."""
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
    return base_data, data, seconds


def _start(config, exp: Experiment, paths: Paths, data: TaskData) -> None:
    """Mark the run started, once its data and model are ready: ``config.json`` (kept if it is there:
    :func:`_check_config` has compared it) and, for a recursive step, the masked data the next step
    starts from."""
    if not os.path.exists(paths.config(exp)):
        write_json_atomic(paths.config(exp), config.to_dict())
    if exp.recursive:
        data.save(paths.masked_dataset(exp))


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
              "dataset_key": base_dataset_key(config),
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


def classic_twin(exp: Experiment) -> Optional[Experiment]:
    """The classic run that trains exactly what ``exp`` trains, if ``exp`` is a first recursive step
    (k = step): same task, model, seed, measure, strategy and k, so the same reference (the base model),
    importance, masked data and seed. None for every other run."""
    if not exp.recursive or exp.k != exp.step:
        return None
    return dataclasses.replace(exp, recursive=False)


def _reuse_twin(config, exp: Experiment, twin: Experiment, paths: Paths, base_data: Optional[TaskData]):
    """Record the finished classic ``twin``'s model and result as ``exp``'s (a first recursive step),
    with the masked data the next step starts from; ``(base_data, result)``. The result says
    ``"same_as": twin id``; its metrics and history are the twin's."""
    t0 = time.perf_counter()
    base_data, data, seconds = _load_data(config, exp, paths, base_data)  # the importance is cached
    _start(config, exp, paths, data)
    model, tmp = paths.model(exp), paths.model(exp) + f".{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(paths.model(twin), tmp)
    if os.path.exists(model):
        shutil.rmtree(model)
    os.replace(tmp, model)
    if os.path.exists(paths.metrics(twin)):
        shutil.copyfile(paths.metrics(twin), paths.metrics(exp))
    result = {**_load_result(paths.result(twin)), **exp.fields(), "same_as": twin.id,
              "seconds": {**seconds, "reuse_classic_twin": time.perf_counter() - t0}, **environment()}
    write_json_atomic(paths.result(exp), result)
    log.info("%s: the same training as the finished classic run %s; its model and result reused -> %s",
             exp.id, twin.id, paths.result(exp))
    return base_data, result


class _Prepared(NamedTuple):
    """A run ready to train: its (masked) data, start-up seconds and freshly initialised model."""
    data: TaskData
    seconds: dict
    model: Any
    graphdef: Any
    params: Any


def _load_result(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def run_experiment(config, *, base_data: Optional[TaskData] = None) -> dict:
    """Run (or resume, or skip if finished) the experiment ``config`` describes; return its results.

    With ``config.num_seeds > 1`` or ``config.k_together`` this trains every (seed, k) of
    :func:`together_configs` together (:func:`run_together`) and returns the first one's result."""
    if int(config.num_seeds) > 1 or tuple(config.k_together):
        return run_together(together_configs(config), base_data=base_data)[0]
    return _run([config], base_data)[0]


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
    stacked parameters (one :func:`~nlproar_jax.training.loop.fit` of the stack); "loop" trains
    them one after another, sharing start-up, data and compiled steps (on a CPU, already
    compute-bound on one model, this is the faster); "auto" picks vmap on accelerators and loop on
    the CPU. Their datasets must have the same sizes when vmapped: seeds and classic-ROAR k values
    of one task do."""
    config = configs[0]
    mode = config.seeds_together
    if mode not in SEEDS_TOGETHER:
        raise ValueError(f"unknown seeds_together {mode!r}; valid: {list(SEEDS_TOGETHER)}")
    if mode == "auto":
        mode = "loop" if jax.default_backend() == "cpu" else "vmap"
    if mode == "loop":  # the task is loaded once for all runs
        base_data = base_data if base_data is not None else load_base_data(config)
        return [run_experiment(c, base_data=base_data) for c in configs]
    return _run(configs, base_data)


def _run(configs: list, base_data: Optional[TaskData]) -> list[dict]:
    """Skip the finished runs of ``configs``, train the others as one stack (one :func:`fit`; a
    single run is a stack of one), and write each one's model and result; return every result.

    Each run is locked while it is worked on (:mod:`nlproar_jax.runtime.runlock`: a second process
    fails with :class:`RunBusyError`). Nothing is written under a run's directory until every run's
    data and model are ready."""
    paths = Paths(configs[0].persistent_dir)
    exps = [Experiment.from_config(c) for c in configs]
    results = {}
    for i, exp in enumerate(exps):
        if os.path.exists(paths.result(exp)):
            log.info("%s already finished: %s", exp.id, paths.result(exp))
            results[i] = _load_result(paths.result(exp))
    todo = [i for i in range(len(exps)) if i not in results]
    if not todo:
        return [results[i] for i in range(len(exps))]
    with run_locks([paths.lock(exps[i]) for i in todo]):  # RunBusyError: another process runs one
        for i in todo:  # another process finished it between the check above and the lock
            if os.path.exists(paths.result(exps[i])):
                results[i] = _load_result(paths.result(exps[i]))
        todo = [i for i in todo if i not in results]
        if todo:
            _train_and_finish(configs, exps, todo, paths, base_data, results)
    return [results[i] for i in range(len(exps))]


def _train_and_finish(configs: list, exps: list, todo: list, paths: Paths, base_data: Optional[TaskData],
                      results: dict) -> None:
    """The body of :func:`_run` for the runs ``todo`` (indices into ``configs``), under their locks;
    fills ``results``."""
    for i in todo:  # a changed setting fails before any work
        _check_config(paths, exps[i], configs[i])
    for i in list(todo):
        twin = classic_twin(exps[i])
        if twin is not None and configs[i].get("reuse_classic_twin", True) and os.path.exists(paths.result(twin)):
            base_data, results[i] = _reuse_twin(configs[i], exps[i], twin, paths, base_data)
            todo.remove(i)
    if not todo:
        return
    prepared = []
    for i in todo:
        base_data, data, seconds = _load_data(configs[i], exps[i], paths, base_data)
        prepared.append(_Prepared(data, seconds, *init_model(configs[i], data, exps[i].seed)))
    graphdef = prepared[0].graphdef
    if any(p.graphdef != graphdef for p in prepared[1:]):
        raise ValueError(f"{', '.join(exps[i].id for i in todo)} have different model structures and cannot "
                         "train together; use --config.seeds_together=loop")
    for i, p in zip(todo, prepared):
        _start(configs[i], exps[i], paths, p.data)
    first = exps[todo[0]]
    if len(todo) == 1:
        checkpoint_dir = paths.checkpoints(first)
        log.info("%s: training %d epochs on %d examples", first.id, configs[todo[0]].max_epochs,
                 len(prepared[0].data.splits["train"]))
    else:  # one checkpoint directory per set of runs, so a resumed group never restores another's state
        checkpoint_dir = paths.stacked_checkpoints(first, hashlib.sha1(",".join(exps[i].id for i in todo)
                                                                       .encode()).hexdigest()[:12])
        log.info("%s: training %s together, %d epochs", first.id,
                 ", ".join(f"seed {exps[i].seed} k={exps[i].k}" for i in todo), configs[todo[0]].max_epochs)
    fitted = fit(graphdef, [p.params for p in prepared], [p.data.splits["train"] for p in prepared],
                 [p.data.splits["val"] for p in prepared], [exps[i].seed for i in todo],
                 **_fit_settings(configs[todo[0]], first, prepared[0].model), checkpoint_dir=checkpoint_dir,
                 metrics_paths=[paths.metrics(exps[i]) for i in todo], names=[exps[i].id for i in todo])
    for i, p, fit_result in zip(todo, prepared, fitted):
        results[i] = _finish(configs[i], exps[i], paths, p.data, graphdef, fit_result, p.seconds)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # _finish already removed a single run's
