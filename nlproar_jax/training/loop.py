"""Training and evaluation: pure jitted steps and the one epoch loop around them.

``train_step(graphdef, tx, state, batch, dropout_key=None) -> (state, loss)`` (one model) and
``predict_logits(graphdef, params, batch) -> logits`` are top-level and jitted
once per (model structure, optimiser, batch shape); ``stacked_train_step`` is the
same step vmapped over models stacked along a leading axis. Any model meeting the
classifier protocol (:mod:`nlproar_jax.models.protocol`) trains: the forward pass
is :func:`~nlproar_jax.models.protocol.forward`.

:func:`fit` trains a stack of n >= 1 models (a single run is a stack of one) with the
original's schedule: every epoch trains, validates on the whole validation split,
keeps each model's parameters of its best epoch by the monitored metric (strictly
better replaces, like Lightning's ModelCheckpoint), and checkpoints so a killed run
resumes at its last finished epoch with identical results. The loop is written once;
only the programs differ: one model runs ``train_step`` itself, several run
``stacked_train_step``. Model ``m`` sees exactly the batches a single run with its
seed and data sees; in a stack its per-step batches are right-padded to the longest
and stacked, which changes nothing (padding is never processed), so each model's
results equal its single run's up to float reassociation in the batched matmuls.

Where a step's batch comes from: by default on an accelerator (``fit(device_data=None)``, "auto"),
each split is uploaded once and every training batch is gathered on the device
(:class:`~nlproar_jax.data.batching.DeviceEpoch`: per step only the step index crosses from host to device);
on the CPU, or with ``device_data=False``, the host pads each batch with numpy
(:func:`~nlproar_jax.data.batching.make_batch`) and the step copies it over. Both give the step the
same batch (same dtypes, shapes and values), and the gather is a program of its own, so the two paths
run the same step program on the same inputs: bit for bit the same training. Validation batches are
always built on the host.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nlproar_jax.data.batching import (Batch, DeviceEpoch, DeviceSplit, eval_batches, length_key, make_batch,
                                        stack_to_device, to_device, train_batch_rows)
from nlproar_jax.data.dataset import Split
from nlproar_jax.models.protocol import forward
from nlproar_jax.runtime.progress import Progress
from nlproar_jax.training.checkpointing import EpochCheckpoints
from nlproar_jax.training.faithfulness_loss import FaithfulnessLoss, penalty as faithfulness_penalty
from nlproar_jax.training.metrics import classification_metrics
from nlproar_jax.training.optim import make_optimizer

log = logging.getLogger("nlproar_jax")


class TrainState(NamedTuple):
    params: nnx.State
    opt_state: optax.OptState


# -- steps -----------------------------------------------------------------------------------
def loss_fn(params, graphdef, batch: Batch, dropout_key: Optional[jax.Array] = None,
            faithfulness: Optional[FaithfulnessLoss] = None) -> jax.Array:
    """Weighted mean cross-entropy (filler rows have weight 0), plus the model's own per-row auxiliary
    loss when it has one: ``logits_and_auxiliary_loss(tokens, aux_tokens, labels) -> (logits, <f32>[B])``
    (one forward pass; the soft-attention head's). With ``dropout_key`` (a typed key) the model's
    ``__call__`` gets it: dropout on (models whose ``train_dropout`` is True; see :func:`fit`).
    With ``faithfulness`` (static) plus its comprehensiveness and sufficiency losses on the batch's own
    rationale (:mod:`nlproar_jax.training.faithfulness_loss`); None (the default) traces nothing more."""
    model = nnx.merge(graphdef, params)
    if hasattr(model, "logits_and_auxiliary_loss"):
        logits, extra = model.logits_and_auxiliary_loss(batch.tokens, batch.aux_tokens, batch.labels)
    elif dropout_key is not None:
        (logits, _), extra = model(batch.tokens, batch.aux_tokens, dropout_key=dropout_key), 0.0
    else:
        (logits, _), extra = forward(model, batch.tokens, batch.aux_tokens), 0.0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels) + extra
    loss = jnp.sum(ce * batch.weight) / jnp.maximum(jnp.sum(batch.weight), 1.0)
    if faithfulness is None:
        return loss
    # the task's logits are the deterministic full-input pass unless dropout or an auxiliary head made them
    plain = dropout_key is None and not hasattr(model, "logits_and_auxiliary_loss")
    return loss + faithfulness_penalty(faithfulness, graphdef, params, batch, logits if plain else None)


def _train_step(graphdef, tx, state: TrainState, batch: Batch, dropout_key: Optional[jax.Array] = None,
                faithfulness: Optional[FaithfulnessLoss] = None) -> tuple[TrainState, jax.Array]:
    loss, grads = jax.value_and_grad(loss_fn)(state.params, graphdef, batch, dropout_key, faithfulness)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss


train_step = jax.jit(_train_step, static_argnums=(0, 1, 5), donate_argnums=(2,))
"""One optimiser step: ``(graphdef, tx, state, batch, dropout_key=None, faithfulness=None) -> (state,
loss)``; the state is donated. ``dropout_key``: None (no dropout) or a typed key. ``faithfulness``
(static): a :class:`~nlproar_jax.training.faithfulness_loss.FaithfulnessLoss` to add to the loss."""


def _stacked_train_step(graphdef, tx, state: TrainState, batch: Batch, dropout_key: Optional[jax.Array] = None,
                        faithfulness: Optional[FaithfulnessLoss] = None) -> tuple[TrainState, jax.Array]:
    return jax.vmap(functools.partial(_train_step, graphdef, tx, faithfulness=faithfulness))(state, batch, dropout_key)


stacked_train_step = jax.jit(_stacked_train_step, static_argnums=(0, 1, 5), donate_argnums=(2,))
"""``(graphdef, tx, state[models], batch[models], dropout_key[models] | None, faithfulness=None) -> (state,
loss[models])``."""


@functools.partial(jax.jit, static_argnums=(0,))
def predict_logits(graphdef, params, batch: Batch) -> jax.Array:
    """``<f32>[batch, num_classes]``."""
    logits, _ = forward(nnx.merge(graphdef, params), batch.tokens, batch.aux_tokens)
    return logits


@functools.partial(jax.jit, static_argnums=(0,))
def stacked_predict_logits(graphdef, params, batch: Batch) -> jax.Array:
    """``<f32>[models, batch, classes]`` for stacked params and per-model batches."""
    return jax.vmap(lambda p, b: forward(nnx.merge(graphdef, p), b.tokens, b.aux_tokens)[0])(params, batch)


# -- stacks of models ------------------------------------------------------------------------
def stack(trees: Sequence):
    """Stack pytrees of equal structure along a new leading model axis (a fresh copy)."""
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


# -- evaluation ------------------------------------------------------------------------------
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


def stacked_evaluate(graphdef, params, splits: Sequence[Split], batch_size: int) -> list[dict]:
    """Whole-split metrics of each stacked model on its own split (the splits have equal sizes)."""
    out = None
    for per_model in zip(*(eval_batches(s, batch_size) for s in splits)):
        logits = np.asarray(stacked_predict_logits(graphdef, params, stack_batches(per_model)))
        if out is None:
            out = np.zeros((len(splits), len(splits[0]), logits.shape[2]), np.float32)
        for m, batch in enumerate(per_model):
            real = batch.weight > 0
            out[m, batch.index[real]] = logits[m, real]
    return [classification_metrics(out[m], s.labels) for m, s in enumerate(splits)]


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
        self.stacked_batch = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(None, "data"))
        self.replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def put_batch(self, batch: Batch, stacked: bool = False) -> Batch:
        """Split ``batch`` (``[batch, ...]``, or ``[models, batch, ...]`` when ``stacked``) along its batch axis."""
        if self.num_devices == 1:
            return batch
        sharding = self.stacked_batch if stacked else self.batch
        return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)

    def put_replicated(self, tree):
        if self.num_devices == 1:
            return tree
        return jax.device_put(tree, self.replicated)


# -- the loop --------------------------------------------------------------------------------
def _write_jsonl(path: str, records: list) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


class _Models:
    """How :func:`fit` holds its ``n`` models. Several are stacked along a leading model axis and run
    the vmapped programs. One is held as it is and runs the plain programs: a single run's
    arithmetic is then exactly the single-model step's (a squeezed stack of one compiles to
    slightly different float code on XLA:CPU, ~1e-7 after two steps), at no extra cost."""

    def __init__(self, n: int):
        self.n, self.single = n, n == 1

    def stack(self, trees: Sequence):
        """A fresh copy (the train step donates its state; the caller keeps ``trees``)."""
        return jax.tree.map(jnp.copy, trees[0]) if self.single else stack(trees)

    def unstack(self, tree) -> list:
        return [tree] if self.single else unstack(tree, self.n)

    def init_optimizer(self, tx, params):
        return tx.init(params) if self.single else jax.vmap(tx.init)(params)

    def host_batch(self, trains: Sequence[Split], step_rows: Sequence[np.ndarray], batch_size: int,
                   parallel: DataParallel) -> Batch:
        """The step's batch built on the host (``[B, L]``, or ``[models, B, L]`` stacked), placed by ``parallel``."""
        batches = [make_batch(t, r, batch_size) for t, r in zip(trains, step_rows)]
        if self.single:
            return parallel.put_batch(batches[0])
        return parallel.put_batch(stack_batches(batches), stacked=True)

    def to_device(self, trains: Sequence[Split]) -> DeviceSplit:
        """The train splits on the device, once per :func:`fit` (stacked along a model axis for several)."""
        return to_device(trains[0]) if self.single else stack_to_device(trains)

    def step(self, graphdef, tx, state: TrainState, batch: Batch, keys: Optional[Sequence] = None,
             faithfulness: Optional[FaithfulnessLoss] = None):
        """One step of every model on ``batch`` (:meth:`host_batch`'s or a device gather's); ``keys``: one
        dropout key per model, or None (no dropout)."""
        extra = {} if faithfulness is None else {"faithfulness": faithfulness}  # off: the calls as they were
        if self.single:
            return train_step(graphdef, tx, state, batch, None if keys is None else keys[0], **extra)
        return stacked_train_step(graphdef, tx, state, batch, None if keys is None else jnp.stack(keys), **extra)

    def losses(self, losses: list) -> np.ndarray:
        """``<f32>[steps, models]`` from the steps' losses."""
        return np.stack(jax.device_get(losses)).reshape(len(losses), self.n)

    def evaluate(self, graphdef, params, vals: Sequence[Split], batch_size: int) -> list[dict]:
        if self.single:
            return [evaluate(graphdef, params, vals[0], batch_size)]
        return stacked_evaluate(graphdef, params, vals, batch_size)

    def select(self, improved: np.ndarray, new, old):
        """``new`` for the models that ``improved``, ``old`` for the others (fresh arrays)."""
        if self.single:
            return jax.tree.map(jnp.copy, new) if improved[0] else old
        sel = jnp.asarray(improved)
        return jax.tree.map(lambda a, b: jnp.where(sel.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


@dataclasses.dataclass
class FitResult:
    best_params: nnx.State
    best_epoch: int  # 1-based
    history: list  # one dict per epoch: epoch, train_loss, val metrics, seconds, examples_per_s
    train_seconds: float


def fit(graphdef, params: Sequence, trains: Sequence[Split], vals: Sequence[Split], seeds: Sequence[int], *,
        epochs: int, batch_size: int, monitor: str, no_decay: Optional[tuple[str, ...]] = None,
        learning_rate: float = 1e-3, weight_decay: float = 1e-5, pool_batches: int = 50,
        optimizer: str = "amsgrad", optimizer_options: Optional[dict] = None, dropout: Optional[bool] = None,
        checkpoint_dir: Optional[str] = None, metrics_paths: Optional[Sequence[str]] = None,
        names: Optional[Sequence[str]] = None, faithfulness: Optional[FaithfulnessLoss] = None,
        on_epoch: Optional[Callable[[list[dict]], None]] = None, device_data: Optional[bool] = None
        ) -> list[FitResult]:
    """Train ``len(params)`` models of one structure (``graphdef``) for ``epochs`` epochs; model ``m``
    starts from ``params[m]`` and trains on ``trains[m]`` shuffled by ``seeds[m]``. Returns one
    :class:`FitResult` per model: the parameters of its best epoch by ``vals[m][monitor]``.

    One model runs the plain train step, several one vmapped program (their train splits, and
    their val splits, must have equal sizes: seeds or classic-ROAR k values of one task do).
    ``no_decay``: parameter groups without weight decay (default: the model's ``no_weight_decay``, if it
    has one): top-level groups for "amsgrad", path elements at any depth for "adamw". ``optimizer``: "amsgrad" (the original's BiLSTM optimiser) or
    "adamw" (section 9's, scheduled over ``epochs * ceil(len(train) / batch_size)`` updates;
    ``optimizer_options``: its ``warmup``, ``b1``, ``b2``, ``eps``), see
    :func:`~nlproar_jax.training.optim.make_optimizer`. ``dropout`` (default: the model's
    ``train_dropout``, else False): pass each training step a dropout key, ``fold_in(fold_in(key(seed),
    epoch), step)``, so a resumed run draws the same masks. With ``checkpoint_dir`` the state after every epoch is
    saved there and a rerun resumes after the last saved epoch; the result equals an uninterrupted
    run. ``metrics_paths``: each model's ``metrics.jsonl``, rewritten every epoch. ``names`` name
    the models in logs and errors. ``on_epoch`` receives each epoch's per-model records. ``faithfulness``:
    add its comprehensiveness and sufficiency losses to every step's loss
    (:mod:`nlproar_jax.training.faithfulness_loss`; ``train_loss`` is then the total).

    ``device_data``: where the training batches are built. True: the train splits are uploaded once
    and each step's batch is gathered on the device (:class:`~nlproar_jax.data.batching.DeviceEpoch`; per epoch
    the rows and weights cross once, per step only the step index); False: the host pads each batch
    with numpy and the step copies it over; None (the default): True unless the default backend is the
    CPU. Both give the same batches, so the same results bit for bit, resumed runs included. With data
    parallelism over several devices the batches are always the host's (they are split over the
    devices as they are placed). Validation batches are always the host's.

    Raises ``FloatingPointError`` when a model's train loss is not finite (it diverged: stopped
    before that state is checkpointed), or when its monitored metric was NaN at every epoch (no
    epoch to select), instead of returning its initial parameters.
    """
    n = len(params)
    names = list(names) if names is not None else [f"model {m}" for m in range(n)]
    if n < 1 or not (len(trains) == len(vals) == len(seeds) == len(names) == n):
        raise ValueError(f"need one train split, val split, seed and name per model: got {len(trains)}, "
                         f"{len(vals)}, {len(seeds)}, {len(names)} for {n} models")
    if metrics_paths is not None and len(metrics_paths) != n:
        raise ValueError(f"need one metrics path per model: got {len(metrics_paths)} for {n} models")
    for what, splits in (("train", trains), ("val", vals)):
        if len({len(s) for s in splits}) > 1:
            raise ValueError(f"models trained together need {what} splits of equal size, got "
                             f"{[len(s) for s in splits]}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if no_decay is None or dropout is None:
        model = nnx.merge(graphdef, params[0])
        no_decay = getattr(model, "no_weight_decay", ()) if no_decay is None else no_decay
        dropout = bool(getattr(model, "train_dropout", False)) if dropout is None else dropout
    total_steps = epochs * -(-len(trains[0]) // batch_size)
    tx = make_optimizer(optimizer, tuple(no_decay), float(learning_rate), float(weight_decay),
                        total_steps=max(1, total_steps), **(optimizer_options or {}))
    models = _Models(n)
    initial = models.stack(params)
    state = TrainState(initial, models.init_optimizer(tx, initial))
    best_params = models.stack(params)
    best_value, best_epoch = np.full(n, -np.inf), np.zeros(n, int)
    histories: list[list] = [[] for _ in range(n)]
    start = 0
    lengths = [length_key(t) for t in trains]
    parallel = DataParallel(batch_size)
    if device_data is None:
        device_data = jax.default_backend() != "cpu"
    if device_data and parallel.num_devices > 1:  # the host path places each batch split over the devices
        log.info("device_data: %d devices in data parallel; training batches are built on the host",
                 parallel.num_devices)
        device_data = False
    ckpt = EpochCheckpoints(checkpoint_dir) if checkpoint_dir else None
    try:
        if ckpt is not None and (done := ckpt.latest_step()) is not None:
            (state, best_params), meta = ckpt.restore(done, (state, best_params))
            best_value, best_epoch = np.array(meta["best_value"], float), np.array(meta["best_epoch"], int)
            histories, start = meta["histories"], done
            log.info("resumed %s after epoch %d of %d from %s", ", ".join(names), done, epochs, checkpoint_dir)
        state, best_params = parallel.put_replicated((state, best_params))
        on_device = models.to_device(trains) if device_data and start < epochs else None
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            rows = [train_batch_rows(len(t), key, batch_size, s, epoch, pool_batches)
                    for t, key, s in zip(trains, lengths, seeds)]
            losses = []
            if epoch == start:
                log.info("compiling the training step (the first batch waits for it; a cached program loads "
                         "in seconds)")
            epoch_keys = [jax.random.fold_in(jax.random.key(s), epoch) for s in seeds] if dropout else None
            feed = None if on_device is None else DeviceEpoch(on_device, trains, rows, batch_size)
            with Progress(sum(len(r) for model_rows in rows for r in model_rows), f"epoch {epoch + 1}/{epochs}") as bar:
                for i, step_rows in enumerate(zip(*rows)):
                    batch = (models.host_batch(trains, step_rows, batch_size, parallel) if feed is None
                             else feed.batch(i))
                    keys = None if epoch_keys is None else [jax.random.fold_in(k, i) for k in epoch_keys]
                    state, loss = models.step(graphdef, tx, state, batch, keys, faithfulness)
                    losses.append(loss)
                    bar.update(sum(len(r) for r in step_rows))
            losses = models.losses(losses) if losses else np.full((1, n), np.nan, np.float32)
            train_loss = [float(np.mean(np.ascontiguousarray(losses[:, m]))) for m in range(n)]
            seconds = time.perf_counter() - t0
            n_examples = sum(len(t) for t in trains)  # every row once per epoch
            for m in range(n):
                if not np.isfinite(train_loss[m]):
                    raise FloatingPointError(
                        f"{names[m]}: the mean train loss of epoch {epoch + 1} is {train_loss[m]}: the model "
                        f"diverged (learning_rate={learning_rate}); stopped before checkpointing that epoch")
            val_metrics = models.evaluate(graphdef, state.params, vals, batch_size)
            improved = np.array([v[monitor] > b for v, b in zip(val_metrics, best_value)])
            if improved.any():
                best_params = models.select(improved, state.params, best_params)
            records = []
            for m in range(n):
                if improved[m]:
                    best_value[m], best_epoch[m] = val_metrics[m][monitor], epoch + 1
                record = {"epoch": epoch + 1, "train_loss": train_loss[m], "train_seconds": seconds,
                          "examples_per_s": n_examples / seconds, **({"models_in_program": n} if n > 1 else {}),
                          **{f"val_{k}": v for k, v in val_metrics[m].items()}}
                histories[m].append(record)
                records.append(record)
            log.info("epoch %d/%d%s  loss %s  val %s %s  (best %s)  %.0f examples/s", epoch + 1, epochs,
                     f"  {n} models" if n > 1 else "", " ".join(f"{x:.4f}" for x in train_loss), monitor,
                     " ".join(f"{v[monitor]:.4f}" for v in val_metrics),
                     " ".join(f"{v:.4f} @ {e}" for v, e in zip(best_value, best_epoch)), n_examples / seconds)
            if ckpt is not None:
                ckpt.save(epoch + 1, (state, best_params), {"best_value": best_value.tolist(),
                                                            "best_epoch": best_epoch.tolist(),
                                                            "histories": histories})
            for path, history in zip(metrics_paths or (), histories):
                _write_jsonl(path, history)  # rewritten whole, so a resumed run never duplicates lines
            if on_epoch:
                on_epoch(records)
    finally:
        if ckpt is not None:
            ckpt.close()
    for m in range(n):
        if best_epoch[m] == 0:
            raise FloatingPointError(
                f"{names[m]}: the monitored validation metric {monitor} was NaN in every epoch (1..{epochs}; "
                f"last train loss {histories[m][-1]['train_loss']:.6g}), so no epoch can be selected "
                f"(AUROC is NaN when the validation split has one class only)")
    return [FitResult(p, int(e), h, float(sum(r["train_seconds"] for r in h)))
            for p, e, h in zip(models.unstack(best_params), best_epoch, histories)]
