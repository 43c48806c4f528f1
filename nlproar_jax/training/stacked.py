"""Several models trained at once: one jitted program vmapped over stacked parameters.

Model ``m`` starts from its own initial parameters and sees exactly the batches
a single-model run with its seed sees (:func:`~nlproar_jax.data.batching.train_batch_rows`
with its seed, its own data); the per-model batches of a step are padded to a
common length and stacked, which changes nothing (padding is never processed).
So each model's results equal its single run's up to float reassociation, and
the models share every matmul launch. Used for ``--config.num_seeds=N``.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nlproar_jax.training.checkpointing import EpochCheckpoints
from nlproar_jax.data.batching import Batch, eval_batches, make_batch, train_batch_rows, length_key
from nlproar_jax.data.dataset import Split
from nlproar_jax.training.metrics import classification_metrics
from nlproar_jax.training.optim import original_optimizer
from nlproar_jax.training.loop import FitResult, TrainState, _train_step, _write_jsonl, predict_logits

log = logging.getLogger("nlproar_jax")


def stack(trees: Sequence):
    """Stack pytrees of equal structure along a new leading model axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> list:
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """``[models, batch, max_len]`` from per-model batches, right-padding each to the longest."""
    def pad_stack(arrays):
        length = max(a.shape[1] for a in arrays)
        return np.stack([np.pad(a, ((0, 0), (0, length - a.shape[1]))) for a in arrays])

    aux = None if batches[0].aux_tokens is None else pad_stack([b.aux_tokens for b in batches])
    return Batch(pad_stack([b.tokens for b in batches]), np.stack([b.labels for b in batches]),
                 np.stack([b.index for b in batches]), np.stack([b.weight for b in batches]), aux)


def _stacked_train_step(graphdef, tx, state, batch):
    return jax.vmap(lambda s, b: _train_step(graphdef, tx, s, b))(state, batch)


stacked_train_step = jax.jit(_stacked_train_step, static_argnums=(0, 1), donate_argnums=(2,))
"""``(graphdef, tx, state[models], batch[models]) -> (state, loss[models])``."""


@functools.partial(jax.jit, static_argnums=(0,))
def stacked_predict_logits(graphdef, params, batch: Batch) -> jax.Array:
    """``<f32>[models, batch, classes]`` for stacked params and per-model batches."""
    return jax.vmap(lambda p, b: predict_logits(graphdef, p, b))(params, batch)


def stacked_evaluate(graphdef, params, splits: Sequence[Split], batch_size: int) -> list[dict]:
    """Whole-split metrics of each model on its own split (splits share row count and lengths)."""
    n_models, n = len(splits), len(splits[0])
    out = np.zeros((n_models, n, 0), np.float32)
    for per_model in zip(*(eval_batches(s, batch_size) for s in splits)):
        logits = np.asarray(stacked_predict_logits(graphdef, params, stack_batches(per_model)))
        if out.shape[2] == 0:
            out = np.zeros((n_models, n, logits.shape[2]), np.float32)
        real = per_model[0].weight > 0
        out[:, per_model[0].index[real]] = logits[:, real]
    return [classification_metrics(out[m], s.labels) for m, s in enumerate(splits)]


def fit_stacked(graphdef, params: Sequence, trains: Sequence[Split], vals: Sequence[Split], seeds: Sequence[int], *,
                epochs: int, batch_size: int, monitor: str, no_decay: tuple[str, ...], learning_rate: float = 1e-3,
                weight_decay: float = 1e-5, pool_batches: int = 50, checkpoint_dir: Optional[str] = None,
                metrics_paths: Optional[Sequence[str]] = None) -> list[FitResult]:
    """:func:`~nlproar_jax.training.fit` for ``len(params)`` models at once (one per seed / dataset).

    Every train split must have the same rows' lengths (masking keeps lengths), so all
    models take the same number of steps. Resumes from ``checkpoint_dir`` like ``fit``.
    """
    n_models = len(params)
    if not (len(trains) == len(vals) == len(seeds) == n_models):
        raise ValueError(f"need one train split, val split and seed per model: got {len(trains)}, {len(vals)}, "
                         f"{len(seeds)} for {n_models} models")
    lengths = [length_key(t) for t in trains]
    if any(not np.array_equal(lengths[0], x) for x in lengths[1:]):
        raise ValueError("stacked training needs train splits with equal row lengths (the same task data)")
    tx = original_optimizer(tuple(no_decay), float(learning_rate), float(weight_decay))
    params = stack(params)
    state = TrainState(jax.tree.map(jnp.copy, params), jax.vmap(tx.init)(params))
    best_params = params
    best_value = np.full(n_models, -np.inf)
    best_epoch = np.zeros(n_models, int)
    histories: list[list] = [[] for _ in range(n_models)]
    start = 0
    ckpt = EpochCheckpoints(checkpoint_dir) if checkpoint_dir else None
    try:
        if ckpt is not None and (step := ckpt.latest_step()) is not None:
            (state, best_params), meta = ckpt.restore(step, (state, best_params))
            best_value, best_epoch = np.array(meta["best_value"]), np.array(meta["best_epoch"])
            histories, start = meta["histories"], step
            log.info("resumed %d stacked models after epoch %d of %d", n_models, step, epochs)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            rows = [train_batch_rows(len(t), lengths[0], batch_size, s, epoch, pool_batches)
                    for t, s in zip(trains, seeds)]
            losses, n_examples = [], 0
            for step_rows in zip(*rows):
                batch = stack_batches([make_batch(t, r, batch_size) for t, r in zip(trains, step_rows)])
                state, loss = stacked_train_step(graphdef, tx, state, batch)
                losses.append(loss)
                n_examples += int(batch.weight.sum())
            train_loss = np.mean(np.stack(jax.device_get(losses)), axis=0)
            seconds = time.perf_counter() - t0
            val_metrics = stacked_evaluate(graphdef, state.params, vals, batch_size)
            improved = np.array([m[monitor] > b for m, b in zip(val_metrics, best_value)])
            if improved.any():
                sel = jnp.asarray(improved)
                best_params = jax.tree.map(
                    lambda new, old: jnp.where(sel.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                    state.params, best_params)
            for m in range(n_models):
                if improved[m]:
                    best_value[m], best_epoch[m] = val_metrics[m][monitor], epoch + 1
                histories[m].append({"epoch": epoch + 1, "train_loss": float(train_loss[m]),
                                     "train_seconds": seconds, "examples_per_s": n_examples / seconds,
                                     "models_in_program": n_models,
                                     **{f"val_{k}": v for k, v in val_metrics[m].items()}})
            log.info("epoch %d/%d  %d models  val %s %s  %.0f examples/s (all models)", epoch + 1, epochs,
                     n_models, monitor, " ".join(f"{m[monitor]:.4f}" for m in val_metrics), n_examples / seconds)
            if ckpt is not None:
                ckpt.save(epoch + 1, (state, best_params), {"best_value": best_value.tolist(),
                                                            "best_epoch": best_epoch.tolist(),
                                                            "histories": histories})
            for path, history in zip(metrics_paths or (), histories):
                _write_jsonl(path, history)
    finally:
        if ckpt is not None:
            ckpt.close()
    return [FitResult(p, int(e), h, float(sum(r["train_seconds"] for r in h)))
            for p, e, h in zip(unstack(best_params, n_models), best_epoch, histories)]
