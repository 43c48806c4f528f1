"""Orbax checkpoints (the V1 API). The only module that knows Orbax.

* :class:`EpochCheckpoints`: the training state after each epoch, keeping the
  latest only, so an interrupted run resumes at its last finished epoch.
* :func:`save_params` / :func:`load_params`: a finished run's selected model,
  which later ROAR runs load as their reference.

Trees are stored as their list of leaves and restored into a template's
structure, so any pytree (``nnx.State``, optax states) round-trips exactly.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any, Optional

import jax
import numpy as np
from orbax.checkpoint import v1 as ocp


def _encode(tree, meta: dict) -> dict:
    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    return {"leaves": leaves, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}


def _decode(raw: dict, template) -> tuple[Any, dict]:
    treedef = jax.tree.structure(template)
    leaves = [np.asarray(x) for x in raw["leaves"]]
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"checkpoint has {len(leaves)} arrays, the model expects {treedef.num_leaves}: "
                         "was it written by a different configuration?")
    for got, want in zip(leaves, jax.tree.leaves(template)):
        if got.shape != np.shape(want):
            raise ValueError(f"checkpoint array of shape {got.shape} where the model expects {np.shape(want)}")
    meta = json.loads(np.asarray(raw["meta"]).tobytes().decode())
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves]), meta


class EpochCheckpoints:
    """Step-keyed (step = finished epochs) training-state checkpoints in ``directory``."""

    def __init__(self, directory: str, keep: int = 1):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._ckpt = ocp.training.Checkpointer(
                self.directory, preservation_policy=ocp.training.preservation_policies.LatestN(keep))

    def latest_step(self) -> Optional[int]:
        latest = self._ckpt.latest
        return None if latest is None else int(latest.step)

    def save(self, step: int, tree, meta: dict) -> None:
        self._ckpt.save(step, _encode(tree, meta), force=True)
        self._ckpt.wait()

    def restore(self, step: int, template) -> tuple[Any, dict]:
        return _decode(self._ckpt.load(step), template)

    def close(self) -> None:
        self._ckpt.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def save_params(path: str, params, meta: dict) -> None:
    """Write ``params`` (+ JSON ``meta``) to ``path`` atomically: written beside it, then renamed."""
    path = os.path.abspath(path)
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ocp.save(tmp, _encode(params, meta))
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def load_params(path: str, template) -> tuple[Any, dict]:
    """Load what :func:`save_params` wrote into ``template``'s structure."""
    return _decode(ocp.load(os.path.abspath(path)), template)


def params_exist(path: str) -> bool:
    return os.path.isdir(path) and ocp.is_orbax_checkpoint(path)
