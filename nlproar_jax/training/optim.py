"""The original's optimiser: PyTorch ``Adam(amsgrad=True)`` with coupled L2 weight decay.

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
