"""Task registry: name -> loader, and the cached encoded dataset.

Loaders are imported lazily by dotted path so a task's optional dependencies
are only needed when that task is used. Every loader has the signature
``load(data_dir, **options) -> RawTask``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os

from nlproar_jax.data.dataset import TaskData, encode_task


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    loader: str  # "module:function"
    paired: bool
    monitor: str  # validation metric used to pick the best epoch
    reported: str  # the test metric the paper reports


TASKS: dict[str, TaskSpec] = {
    "synthetic": TaskSpec("nlproar_jax.data.synthetic:load", False, "auroc", "macro_f1"),
    "sst": TaskSpec("nlproar_jax.data.sst:load", False, "auroc", "macro_f1"),
    "imdb": TaskSpec("nlproar_jax.data.imdb:load", False, "auroc", "macro_f1"),
    "snli": TaskSpec("nlproar_jax.data.snli:load", True, "accuracy", "micro_f1"),
    "mimic-d": TaskSpec("nlproar_jax.data.mimic:load_diabetes", False, "auroc", "macro_f1"),
    "mimic-a": TaskSpec("nlproar_jax.data.mimic:load_anemia", False, "auroc", "macro_f1"),
    "babi-1": TaskSpec("nlproar_jax.data.babi:load_task1", True, "accuracy", "accuracy"),
    "babi-2": TaskSpec("nlproar_jax.data.babi:load_task2", True, "accuracy", "accuracy"),
    "babi-3": TaskSpec("nlproar_jax.data.babi:load_task3", True, "accuracy", "accuracy"),
}


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name]


def _loader(name: str):
    module, func = task_spec(name).loader.split(":")
    return getattr(importlib.import_module(module), func)


def dataset_key(name: str, min_df: int, options: dict) -> str:
    """A short stable id for (task, min_df, loader options): the encoded-dataset cache key."""
    blob = json.dumps({"task": name, "min_df": min_df, "options": options}, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def load_task(name: str, *, data_dir: str | None, min_df: int, options: dict | None = None,
              cache_dir: str | None = None) -> TaskData:
    """Load and encode a task, reusing ``cache_dir/<dataset_key>.npz`` when present.

    The cache file is written atomically, so an interrupted run never leaves a
    half-written dataset behind.
    """
    options = dict(options or {})
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, dataset_key(name, min_df, options) + ".npz")
        if os.path.exists(path):
            return TaskData.load(path)
    raw = _loader(name)(data_dir, **options)
    data = encode_task(raw, min_df=min_df)
    if path is not None:
        data.save(path)
    return data
