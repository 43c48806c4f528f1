"""Orbax checkpoints (the V1 API). The only module that knows Orbax.

* :class:`EpochCheckpoints`: the training state after each epoch, keeping the
  latest only, so an interrupted run resumes at its last finished epoch.
* :func:`save_params` / :func:`load_params`: a finished run's selected model,
  which later ROAR runs load as their reference.

A tree is stored as a flat dict keyed by each leaf's path name
(:func:`leaf_names`: ``jax.tree_util.keystr``, e.g. ``['encoder']['w_ih'].value``; Orbax keeps
such keys as they are) beside its JSON ``meta``. Loading goes into a template: the stored names,
shapes and dtypes must be the template's, so a renamed, missing, extra or reshaped parameter is
refused with a one-line ``ValueError`` naming the first mismatch, and two same-shaped weights can
never load into each other.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from orbax.checkpoint import v1 as ocp

FORMAT = "named-leaves-1"


def leaf_names(tree) -> list[str]:
    """Each leaf's path name in ``tree``'s flattening order, e.g. ``['encoder']['w_ih'].value``."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _encode(tree, meta: dict) -> dict:
    named = dict(zip(leaf_names(tree), (np.asarray(x) for x in jax.tree.leaves(tree))))
    blob = json.dumps({"format": FORMAT, "meta": meta}).encode()
    return {"arrays": named, "meta": np.frombuffer(blob, np.uint8)}


def _listing(names: list[str], limit: int = 3) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _decode(raw: dict, template, source: str) -> tuple[Any, dict]:
    """``(tree, meta)``: ``raw`` (what Orbax loaded) in ``template``'s structure, names and shapes checked."""
    if "arrays" not in raw or "meta" not in raw:
        raise ValueError(f"checkpoint {source} has no named parameters (written by an older nlproar_jax, which "
                         "stored unnamed arrays): delete it and train again")
    stored_meta = json.loads(np.asarray(raw["meta"]).tobytes().decode())
    if stored_meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {source} has format {stored_meta.get('format')!r}, this version reads "
                         f"{FORMAT!r}: delete it and train again")
    stored = raw["arrays"]
    names = leaf_names(template)
    wanted = set(names)
    missing = [n for n in names if n not in stored]
    extra = sorted(n for n in stored if n not in wanted)
    if missing:
        raise ValueError(f"checkpoint {source} has no parameter {missing[0]} (first mismatch; {len(missing)} "
                         f"missing); it holds {_listing(extra) or 'no other names'} that the model does not have")
    if extra:
        raise ValueError(f"checkpoint {source} holds {extra[0]}, which the model does not have (first mismatch; "
                         f"{len(extra)} unexpected: {_listing(extra)})")
    leaves = []
    for name, want in zip(names, jax.tree.leaves(template)):
        got = np.asarray(stored[name])
        if got.shape != np.shape(want):
            raise ValueError(f"checkpoint {source}: {name} has shape {got.shape}, the model expects "
                             f"{np.shape(want)} (first mismatch)")
        want_dtype = np.dtype(getattr(want, "dtype", np.asarray(want).dtype))
        if got.dtype != want_dtype:
            raise ValueError(f"checkpoint {source}: {name} has dtype {got.dtype}, the model expects "
                             f"{want_dtype} (first mismatch)")
        leaves.append(jnp.asarray(got))
    return jax.tree.unflatten(jax.tree.structure(template), leaves), stored_meta["meta"]


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
        return _decode(self._ckpt.load(step), template, os.path.join(self.directory, str(step)))

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
    """Load what :func:`save_params` wrote into ``template``'s structure (names and shapes checked)."""
    path = os.path.abspath(path)
    return _decode(ocp.load(path), template, path)


def params_exist(path: str) -> bool:
    return os.path.isdir(path) and ocp.is_orbax_checkpoint(path)
