"""The original's optimisers: PyTorch ``Adam(amsgrad=True)`` with coupled L2 weight decay (the BiLSTM,
``optimizer="amsgrad"``), and AdamW with a linear warm-up and decay (RoBERTa fine-tuning,
``optimizer="adamw"``: :func:`finetune_optimizer`). :func:`make_optimizer` picks one by name.

PyTorch's AMSGrad keeps the running max of the *uncorrected* second moment and
bias-corrects afterwards; ``optax.amsgrad`` takes the max after correction, so
the two differ in early steps. :func:`torch_amsgrad` matches PyTorch. Weight
decay is coupled (``g + wd * p``, before Adam, dense over every embedding row),
applied only where ``decay_mask`` is True.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class TorchAmsgradState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def torch_amsgrad(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                  ) -> optax.GradientTransformation:
    """``torch.optim.Adam(lr, betas=(b1, b2), eps, amsgrad=True)`` without weight decay."""

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return TorchAmsgradState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros())

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        t = count.astype(jnp.float32)
        bc1 = 1 - b1**t
        sqrt_bc2 = jnp.sqrt(1 - b2**t)
        updates = jax.tree.map(
            lambda m, v: -(learning_rate / bc1) * m / (jnp.sqrt(v) / sqrt_bc2 + eps), mu, nu_max)
        return updates, TorchAmsgradState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def weight_decay_mask(params, no_decay: tuple[str, ...]):
    """A pytree of bools like ``params``: False under the top-level groups in ``no_decay``."""

    def keep(path, _):
        top = getattr(path[0], "key", getattr(path[0], "name", None))
        return top not in no_decay

    return jax.tree_util.tree_map_with_path(keep, params)


@functools.lru_cache(maxsize=None)
def original_optimizer(no_decay: tuple[str, ...], learning_rate: float = 1e-3,
                       weight_decay: float = 1e-5) -> optax.GradientTransformation:
    """Coupled L2 (masked) followed by PyTorch-style AMSGrad: the original's training optimiser.

    Cached, so every run in a process shares one optimiser object and hence one
    compiled train step per batch shape.
    """
    mask = functools.partial(weight_decay_mask, no_decay=no_decay)
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=mask), torch_amsgrad(learning_rate))


OPTIMIZERS = ("amsgrad", "adamw")


def warmup_steps(total_steps: int, warmup: float) -> int:
    """``int(total_steps * warmup)``, as the original's ``int(num_training_steps * 0.06)``."""
    return int(total_steps * warmup)


def linear_warmup_schedule(learning_rate: float, total_steps: int, warmup: float) -> optax.Schedule:
    """HF ``get_linear_schedule_with_warmup`` (what the original's RoBERTa uses): with ``W =``
    :func:`warmup_steps`, the rate at update ``t`` (0-based) is ``lr * t / max(1, W)`` for ``t < W``,
    then ``lr * max(0, (total - t) / max(1, total - W))``: 0 at the first update, ``lr`` at ``t = W``,
    0 at ``t = total``. (A torch scheduler steps after the optimiser, so its first update uses the
    value at 0, as optax's count does.)"""
    w = warmup_steps(total_steps, warmup)

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        up = t / max(1, w)
        down = jnp.maximum(0.0, (total_steps - t) / max(1, total_steps - w))
        return learning_rate * jnp.where(t < w, up, down)

    return schedule


def any_depth_decay_mask(params, no_decay: tuple[str, ...]):
    """A pytree of bools like ``params``: False where any element of the path is in ``no_decay``
    (biases and LayerNorm scales at every depth, :func:`nlproar_jax.models.bert.decay_mask`)."""
    skip = set(no_decay)

    def keep(path, _):
        return not ({getattr(p, "key", getattr(p, "name", None)) for p in path} & skip)

    return jax.tree_util.tree_map_with_path(keep, params)


@functools.lru_cache(maxsize=None)
def finetune_optimizer(no_decay: tuple[str, ...], learning_rate: float = 2e-5, weight_decay: float = 0.01,
                       total_steps: int = 1, warmup: float = 0.06, b1: float = 0.9, b2: float = 0.98,
                       eps: float = 1e-8) -> optax.GradientTransformation:
    """``torch.optim.AdamW(lr, betas=(b1, b2), eps, weight_decay)`` (decoupled decay, multiplied by the
    scheduled rate, on every parameter whose path has no element in ``no_decay``) under
    :func:`linear_warmup_schedule`: the original's RoBERTa fine-tuning (section 9). Cached like
    :func:`original_optimizer`."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup}")
    mask = functools.partial(any_depth_decay_mask, no_decay=no_decay)
    return optax.adamw(linear_warmup_schedule(learning_rate, total_steps, warmup), b1=b1, b2=b2, eps=eps,
                       weight_decay=weight_decay, mask=mask)


def make_optimizer(name: str, no_decay: tuple[str, ...], learning_rate: float, weight_decay: float, *,
                   total_steps: int, warmup: float = 0.06, b1: float = 0.9, b2: float = 0.98,
                   eps: float = 1e-8) -> optax.GradientTransformation:
    """The optimiser ``name`` (:data:`OPTIMIZERS`): "amsgrad" (:func:`original_optimizer`; ``total_steps``,
    ``warmup``, ``b1``, ``b2``, ``eps`` do not apply) or "adamw" (:func:`finetune_optimizer`)."""
    if name == "amsgrad":
        return original_optimizer(tuple(no_decay), float(learning_rate), float(weight_decay))
    if name == "adamw":
        return finetune_optimizer(tuple(no_decay), float(learning_rate), float(weight_decay), int(total_steps),
                                  float(warmup), float(b1), float(b2), float(eps))
    raise ValueError(f"unknown optimizer {name!r}; valid: {OPTIMIZERS}")
