"""What a ROAR run needs from its reference run: the trained model, its importance, its data.

Classic ROAR's reference is the seed's k = 0 model on unmasked data; recursive ROAR's is the run at
k - step on its masked data (:meth:`~nlproar_jax.names.Experiment.reference`). The reference's
importance over train/val/test is computed once and cached (``Paths.importance``), shared by every
run with the same reference and measure.
"""
from __future__ import annotations

import logging
import os
import shlex
import time
from typing import Optional

import jax
import numpy as np
from flax import nnx

from nlproar_jax.data.dataset import TaskData, atomic_save_npz

from nlproar_jax import importance
from nlproar_jax.importance import mutual_information_table
from nlproar_jax.models import build_from_config, split as split_model
from nlproar_jax.names import LEARNED, MODEL_FREE, Experiment, Paths, format_option_value
from nlproar_jax.roar.scores import importance_over_split, mask_split
from nlproar_jax.runtime.runlock import waiting_lock
from nlproar_jax.training import checkpointing

log = logging.getLogger("nlproar_jax")


class MissingReferenceError(RuntimeError):
    """A ROAR run's reference model (or masked data) has not been trained yet."""


def init_model(config, data: TaskData, seed: int):
    """The task's freshly initialised model for ``seed`` (``config.model``): ``(model, graphdef, params)``."""
    model = build_from_config(config, data, seed)
    graphdef, params = split_model(model)
    return model, graphdef, params


def train_command(exp: Experiment, config_file: str) -> str:
    """The command line that creates ``exp``."""
    parts = [f"python -m nlproar_jax.train --config={config_file}", f"--config.seed={exp.seed}",
             f"--config.k={exp.k}"]
    if exp.model != "rnn":  # the run ids' model; its other settings (e.g. bert_dir) stay the user's
        parts.insert(1, f"--config.model={exp.model}")
    if exp.k > 0:
        parts += [f"--config.importance_measure={exp.measure}", f"--config.roar_strategy={exp.strategy}"]
        if exp.keep:
            parts.append(f"--config.roar_mode={exp.mode}")
        if exp.recursive:
            parts += ["--config.recursive=True", f"--config.recursive_step_size={exp.step}"]
        if exp.measure == "integrated_gradient":
            parts += [f"--config.ig_steps={exp.ig_steps}", f"--config.ig_variant={exp.ig_variant}"]
        if exp.options:
            value = ",".join(f"{k}={format_option_value(v)}" for k, v in exp.options)
            parts.append(f"--config.measure_options={shlex.quote(value)}")
    if exp.faithfulness is not None:  # a regularised run: its objective is part of its id
        f = exp.faithfulness
        parts += [f"--config.faithfulness_loss.{name}={getattr(f, name)}" for name in
                  ("measure", "k", "comprehensiveness_weight", "sufficiency_weight", "comprehensiveness_margin",
                   "sufficiency_margin")]
        if f.measure == "integrated_gradient" and not (exp.k > 0 and exp.measure == "integrated_gradient"):
            options = dict(f.options)
            parts += [f"--config.ig_steps={options['steps']}", f"--config.ig_variant={options['variant']}"]
    return " ".join(parts)


def _missing(what: str, exp: Experiment, ref: Experiment, config) -> MissingReferenceError:
    return MissingReferenceError(
        f"{exp.id} needs the {what} of {ref.id}, which has not been trained yet. Create it with:\n  "
        f"{train_command(ref, config.get('config_file', '') or f'configs/{exp.task}.py')}"
        f" --config.persistent_dir={config.persistent_dir}")


def token_rules(config, data: TaskData):
    """``(maskable, mask_token)`` of the task's model: which positions ROAR may mask and the id it
    writes. Read off an abstract model (shapes only: no parameter is initialised)."""
    model = nnx.eval_shape(lambda: build_from_config(config, data, 0))
    return model.maskable, model.mask_token


def load_trained(paths: Paths, ref: Experiment, config, data: TaskData):
    """The trained model of a finished run."""
    _, graphdef, template = init_model(config, data, ref.seed)
    params, _ = checkpointing.load_params(paths.model(ref), template)
    return nnx.merge(graphdef, params)


def experiment_measure(exp: Experiment, config, ref_data: TaskData):
    """The importance measure ``exp`` masks by (:func:`nlproar_jax.importance.get`) with its options
    (``config.measure_options``; integrated gradients' from ``ig_steps``/``ig_variant``/``ig_chunk_size``);
    mutual information gets its table from the reference data's training split."""
    options = dict(exp.options)
    if exp.measure == "mutual_information":
        train = ref_data.splits["train"]
        options["table"] = mutual_information_table(train.main, train.labels, len(ref_data.vocab),
                                                    ref_data.num_classes)
    if exp.measure == "integrated_gradient":
        options.update(steps=exp.ig_steps, variant=exp.ig_variant, chunk_size=int(config.ig_chunk_size))
    return importance.get(exp.measure, **options)


def importance_file(paths: Paths, ref, measure_tag: str, only: Optional[str] = None) -> str:
    """The file :func:`reference_importance` reads or writes: ROAR's every-split file, or with ``only``
    (a split name) and no such file, that split's own (``<file>.<split>.npz``)."""
    path = paths.importance(ref, measure_tag)
    if only is not None and not os.path.exists(path):
        path = f"{path[:-len('.npz')]}.{only}.npz"
    return path


def reference_importance(paths: Paths, exp: Experiment, ref: Experiment, ref_data: TaskData, config,
                         only: Optional[str] = None) -> dict[str, np.ndarray]:
    """Per split, the reference's importance aligned with ``main.values``; computed once, cached on disk.
    One process computes it: another that needs it meanwhile (a parallel sweep's other worker, another
    Slurm job on the same ``persistent_dir``) waits on the file's lock and then reads what was written.

    ``only`` (a split name; the erasure evaluation's): when the every-split file ROAR uses is not there,
    compute that split alone, with the random key it has in the full computation (so its scores are the
    full file's), and cache it in a file of its own (``<file>.<split>.npz``); returns ``{only: scores}``."""
    path = importance_file(paths, ref, exp.measure_tag, only)
    names = list(ref_data.splits) if only is None else [only]
    if not os.path.exists(path):
        lock = os.path.join(os.path.dirname(paths.lock(ref)), "importance__" + os.path.basename(path) + ".lock")
        with waiting_lock(lock, what=f"importance {exp.measure_tag} of {ref.id}"):
            if not os.path.exists(path):  # not written while this process waited
                return _compute_importance(paths, exp, ref, ref_data, config, path, names)
    with np.load(path) as z:
        return {name: z[name] for name in names}


def _compute_importance(paths: Paths, exp: Experiment, ref: Experiment, ref_data: TaskData, config, path: str,
                        names: list[str]) -> dict[str, np.ndarray]:
    model = None  # model-free measures need only the data
    if exp.measure not in MODEL_FREE:
        if not checkpointing.params_exist(paths.model(ref)):
            raise _missing("trained model", exp, ref, config)
        model = load_trained(paths, ref, config, ref_data)
    measure = experiment_measure(exp, config, ref_data)
    if exp.measure in LEARNED:  # DiffMask: trained on the reference model's training split (validation
        t0 = time.perf_counter()  # selects the epoch), deterministically in the reference's seed
        measure = measure.fit(model, ref_data.splits["train"], key=jax.random.fold_in(jax.random.key(ref.seed), 99),
                              batch_size=int(config.batch_size), val=ref_data.splits.get("val"))
        log.info("importance %s on %s: fitted on %d training examples in %.1fs", exp.measure_tag, ref.id,
                 len(ref_data.splits["train"]), time.perf_counter() - t0)
    scores = {}
    for i, (name, split) in enumerate(ref_data.splits.items()):  # i: the split's key, whichever are computed
        if name not in names:
            continue
        t0 = time.perf_counter()
        key = jax.random.fold_in(jax.random.key(ref.seed), i)
        scores[name] = importance_over_split(model, split, measure, key=key, batch_size=int(config.batch_size),
                                             hidden_size=int(config.hidden_size),
                                             desc=f"importance {exp.measure_tag} {name}")
        log.info("importance %s on %s/%s: %d examples in %.1fs", exp.measure_tag, ref.id, name, len(split),
                 time.perf_counter() - t0)
    atomic_save_npz(path, scores)
    return scores


def masked_data(paths: Paths, exp: Experiment, base_data: TaskData, config) -> TaskData:
    """The dataset run ``exp`` trains on: its reference's data with k' more tokens per row masked (a keep
    run: every maskable token but the top k' masked), by the task model's rules (``maskable``,
    ``mask_token``). Keep and remove runs of one reference and measure share its importance file."""
    ref = exp.reference()
    if ref.is_base:
        ref_data = base_data
    elif os.path.exists(paths.masked_dataset(ref)):
        ref_data = TaskData.load(paths.masked_dataset(ref))
    else:
        raise _missing("masked dataset", exp, ref, config)
    scores = reference_importance(paths, exp, ref, ref_data, config)
    maskable, mask_token = token_rules(config, ref_data)
    splits = {name: mask_split(split, scores[name], exp.k, exp.strategy, int(config.batch_size),
                               maskable=maskable, mask_token=mask_token, mode=exp.mode)
              for name, split in ref_data.splits.items()}
    return ref_data.replace_splits(splits)
