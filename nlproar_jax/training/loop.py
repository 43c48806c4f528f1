"""Training and evaluation: pure jitted steps and the epoch loop around them.

``train_step(graphdef, tx, state, batch) -> (state, loss)`` and
``predict_logits(graphdef, params, batch) -> logits`` are top-level and jitted
once per (model structure, optimiser, batch shape). :func:`fit` runs the
original's schedule: every epoch trains, validates on the whole validation
split, keeps the parameters of the best epoch by the monitored metric (strictly
better replaces, like Lightning's ModelCheckpoint), and checkpoints so a killed
run resumes at its last finished epoch with identical results.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nlproar_jax.training.checkpointing import EpochCheckpoints
from nlproar_jax.data.batching import Batch, eval_batches, train_batches
from nlproar_jax.data.dataset import Split
from nlproar_jax.training.metrics import classification_metrics
from nlproar_jax.training.optim import original_optimizer

log = logging.getLogger("nlproar_jax")


class TrainState(NamedTuple):
    params: nnx.State
    opt_state: optax.OptState


def loss_fn(params, graphdef, batch: Batch) -> jax.Array:
    """Weighted mean cross-entropy (filler rows have weight 0)."""
    logits, _ = nnx.merge(graphdef, params)(batch.tokens, batch.aux_tokens)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
    return jnp.sum(ce * batch.weight) / jnp.maximum(jnp.sum(batch.weight), 1.0)


def _train_step(graphdef, tx, state: TrainState, batch: Batch) -> tuple[TrainState, jax.Array]:
    loss, grads = jax.value_and_grad(loss_fn)(state.params, graphdef, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss


train_step = jax.jit(_train_step, static_argnums=(0, 1), donate_argnums=(2,))
"""One optimiser step: ``(graphdef, tx, state, batch) -> (state, loss)``; the state is donated."""


@functools.partial(jax.jit, static_argnums=(0,))
def predict_logits(graphdef, params, batch: Batch) -> jax.Array:
    """``<f32>[batch, num_classes]``."""
    logits, _ = nnx.merge(graphdef, params)(batch.tokens, batch.aux_tokens)
    return logits


def predict_split(graphdef, params, split: Split, batch_size: int) -> np.ndarray:
    """``<f32>[len(split), num_classes]`` logits in split order (batched by length)."""
    out = None
    for batch in eval_batches(split, batch_size):
        logits = np.asarray(predict_logits(graphdef, params, batch))
        if out is None:
            out = np.zeros((len(split), logits.shape[1]), np.float32)
        real = batch.weight > 0
        out[batch.index[real]] = logits[real]
    return out


def evaluate(graphdef, params, split: Split, batch_size: int) -> dict[str, float]:
    return classification_metrics(predict_split(graphdef, params, split, batch_size), split.labels)


class DataParallel:
    """Data parallelism over every local device with ``jax.sharding``: batches are split along
    their batch axis, parameters and optimiser state replicated; jit propagates the rest. With one
    device the placements are no-ops, so single-device runs pay nothing."""

    def __init__(self, batch_size: int, devices=None):
        devices = list(devices or jax.local_devices())
        n = len(devices)
        while n > 1 and batch_size % n:  # use the most devices that divide the batch
            n -= 1
        self.mesh = jax.sharding.Mesh(np.array(devices[:n]), ("data",),
                                      axis_types=(jax.sharding.AxisType.Auto,))
        self.batch = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("data"))
        self.replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def put_batch(self, batch: Batch) -> Batch:
        if self.num_devices == 1:
            return batch
        return jax.tree.map(lambda x: jax.device_put(x, self.batch), batch)

    def put_replicated(self, tree):
        if self.num_devices == 1:
            return tree
        return jax.device_put(tree, self.replicated)


def _write_jsonl(path: str, records: list) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


@dataclasses.dataclass
class FitResult:
    best_params: nnx.State
    best_epoch: int  # 1-based
    history: list  # one dict per epoch: epoch, train_loss, val metrics, seconds, examples_per_s
    train_seconds: float


def fit(graphdef, params, train: Split, val: Split, *, seed: int, epochs: int, batch_size: int,
        monitor: str, no_decay: tuple[str, ...], learning_rate: float = 1e-3, weight_decay: float = 1e-5,
        pool_batches: int = 50, checkpoint_dir: Optional[str] = None,
        metrics_path: Optional[str] = None, on_epoch: Optional[Callable[[dict], None]] = None) -> FitResult:
    """Train for ``epochs`` epochs, keeping the best epoch's parameters by ``val[monitor]``.

    With ``checkpoint_dir``, the state after every epoch is saved there and a
    rerun resumes after the last saved epoch; the result equals an uninterrupted run.
    """
    tx = original_optimizer(tuple(no_decay), float(learning_rate), float(weight_decay))
    # A private copy: the train step donates its state, and the caller keeps ``params``.
    state = TrainState(jax.tree.map(jnp.copy, params), tx.init(params))
    parallel = DataParallel(batch_size)
    best_params, best_value, best_epoch, history, start = params, -np.inf, 0, [], 0
    ckpt = EpochCheckpoints(checkpoint_dir) if checkpoint_dir else None
    try:
        if ckpt is not None and (step := ckpt.latest_step()) is not None:
            (state, best_params), meta = ckpt.restore(step, (state, best_params))
            best_value, best_epoch, history, start = meta["best_value"], meta["best_epoch"], meta["history"], step
            log.info("resumed after epoch %d of %d from %s", step, epochs, checkpoint_dir)
        state = parallel.put_replicated(state)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            losses, n_examples = [], 0
            for batch in train_batches(train, batch_size, seed, epoch, pool_batches):
                state, loss = train_step(graphdef, tx, state, parallel.put_batch(batch))
                losses.append(loss)
                n_examples += int(batch.weight.sum())
            train_loss = float(np.mean(jax.device_get(losses))) if losses else float("nan")
            seconds = time.perf_counter() - t0
            val_metrics = evaluate(graphdef, state.params, val, batch_size)
            record = {"epoch": epoch + 1, "train_loss": train_loss, "train_seconds": seconds,
                      "examples_per_s": n_examples / seconds,
                      **{f"val_{k}": v for k, v in val_metrics.items()}}
            history.append(record)
            if val_metrics[monitor] > best_value:
                best_value, best_epoch = val_metrics[monitor], epoch + 1
                best_params = jax.tree.map(jnp.copy, state.params)
            log.info("epoch %d/%d  loss %.4f  val %s %.4f  (best %.4f @ %d)  %.0f examples/s",
                     epoch + 1, epochs, train_loss, monitor, val_metrics[monitor], best_value, best_epoch,
                     record["examples_per_s"])
            if ckpt is not None:
                ckpt.save(epoch + 1, (state, best_params),
                          {"best_value": best_value, "best_epoch": best_epoch, "history": history})
            if metrics_path:  # rewritten whole from the history, so a resumed run never duplicates lines
                _write_jsonl(metrics_path, history)
            if on_epoch:
                on_epoch(record)
    finally:
        if ckpt is not None:
            ckpt.close()
    return FitResult(best_params, best_epoch, history, float(sum(h["train_seconds"] for h in history)))
