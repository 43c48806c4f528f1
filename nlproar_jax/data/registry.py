"""Loading a task by name (:data:`nlproar_jax.names.TASKS`), and the cached encoded dataset.

Loaders are imported lazily by dotted path so a task's optional dependencies
are only needed when that task is used. Every loader has the signature
``load(data_dir, **options) -> RawTask``.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from typing import Optional

from nlproar_jax.data import pretrained
from nlproar_jax.data.dataset import TaskData, encode_task
from nlproar_jax.data.pretrained import TokenizerSpec
from nlproar_jax.names import TASKS, TaskSpec, task_spec  # noqa: F401  (re-exported)


def _loader(name: str):
    module, func = task_spec(name).loader.split(":")
    return getattr(importlib.import_module(module), func)


def dataset_key(name: str, min_df: int, options: dict, tokenizer: Optional[str] = None) -> str:
    """A short stable id for (task, min_df, loader options): the encoded-dataset cache key. Encoded with
    a pretrained tokenizer (``tokenizer``: its :meth:`~nlproar_jax.data.pretrained.TokenizerSpec.identity`)
    the key is ``<task>-<tokenizer identity>-<hash>`` (min_df does not apply), so it never equals a
    word-vocabulary key."""
    if tokenizer is not None:
        blob = json.dumps({"task": name, "tokenizer": tokenizer, "options": options}, sort_keys=True)
        return f"{name}-{tokenizer}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    blob = json.dumps({"task": name, "min_df": min_df, "options": options}, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def load_task(name: str, *, data_dir: str | None, min_df: int, options: dict | None = None,
              cache_dir: str | None = None, tokenizer: Optional[TokenizerSpec] = None) -> TaskData:
    """Load and encode a task, reusing ``cache_dir/<dataset_key>.npz`` when present.

    ``tokenizer``: encode with that pretrained tokenizer (:mod:`nlproar_jax.data.pretrained`, word
    pieces as tokens) instead of building the word vocabulary.

    The cache file is written atomically, so an interrupted run never leaves a
    half-written dataset behind.
    """
    options = dict(options or {})
    path = None
    if cache_dir is not None:
        identity = None if tokenizer is None else tokenizer.identity()
        path = os.path.join(cache_dir, dataset_key(name, min_df, options, identity) + ".npz")
        if os.path.exists(path):
            return TaskData.load(path)
    if name != "synthetic" and data_dir is not None and not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"data directory {os.path.abspath(data_dir)!r} does not exist (task {name!r}): set --config.data_dir=DIR "
            f"or NLPROAR_DATA_DIR, or fetch the files with python -m nlproar_jax.download --task TASK --data-dir DIR")
    raw = _loader(name)(data_dir, **options)
    data = encode_task(raw, min_df=min_df) if tokenizer is None else pretrained.encode_task(raw, tokenizer)
    if path is not None:
        data.save(path)
    return data
