"""What every importance measure shares: the calling convention, targets, keys and precision.

A measure is a small frozen dataclass holding its options (registered as a JAX pytree: options are
static, arrays such as the mutual-information table are leaves), called as::

    scores = measure(model, tokens, *, target=None, aux_tokens=None, key=None)   # <f32>[B, T]

``model`` meets :mod:`nlproar_jax.models.protocol` (model-free measures accept None);
``tokens <int32>[B, T]`` is the main sequence; ``aux_tokens <int32>[B, Ta]`` the auxiliary one
(paired tasks; never explained). One score per main-sequence position; scores at positions the
model cannot mask (padding, specials) are whatever falls out, and ROAR ignores them. A row's scores
never depend on its batch mates or on padding. Measures are pure: call them inside or outside
``jax.jit`` / ``nnx.jit``, and under ``jax.vmap``.

``target`` says which class's logit is explained (the original explains the gold label's logit,
``f_c``): an ``<int>[B]`` array of class indices (the pipeline passes the gold labels), a single
class index for every row, or ``"predicted"`` (the model's argmax).

Precision: attributions are computed under ``jax.default_matmul_precision("highest")`` by default
(``precision=`` on every measure), so float32 matmuls are float32 on every backend: on recent NVIDIA
GPUs JAX would otherwise use TF32, and attributions would differ from the CPU's.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional, Union

import jax
import jax.numpy as jnp

from nlproar_jax.models.protocol import check_classifier, forward

Target = Union[jax.Array, int, str, None]
TARGETS = ("an <int>[batch] array of class indices (e.g. gold labels)", "a class index", '"predicted"')
DEFAULT_PRECISION = "highest"


def measure_dataclass(cls):
    """Freeze ``cls`` into a dataclass and register it as a pytree: fields declared with
    ``dataclasses.field(metadata={"leaf": True})`` are leaves (arrays), every other field is a
    static option (hashable, part of the compiled program)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if f.metadata.get("leaf")]
    meta = [f.name for f in fields if not f.metadata.get("leaf")]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def precision_scope(precision: Optional[str]):
    """``jax.default_matmul_precision(precision)``, or no change for None."""
    return jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()


def require_model(model, measure: str) -> None:
    if model is None:
        raise ValueError(f"the {measure} measure explains a model: pass one (only random and "
                         "mutual_information need none)")
    check_classifier(model)


def resolve_target(model, tokens: jax.Array, target: Target, aux_tokens=None) -> jax.Array:
    """``<int32>[B]``: the class each row's explanation is about."""
    batch = tokens.shape[0]
    if target is None:
        raise ValueError(f"target is required: {', '.join(TARGETS)}")
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
        logits, _ = forward(model, tokens, aux_tokens)
        return jax.lax.stop_gradient(jnp.argmax(logits, axis=-1)).astype(jnp.int32)
    target = jnp.asarray(target)
    if target.ndim == 0:
        return jnp.full((batch,), target, jnp.int32)
    if target.shape != (batch,):
        raise ValueError(f"target has shape {target.shape}; expected ({batch},) (one class per row) or a scalar")
    return target.astype(jnp.int32)


def target_logit_sum(logits: jax.Array, target: jax.Array) -> jax.Array:
    """The sum over rows of each row's target logit. Rows are independent, so its gradient is
    every row's own gradient."""
    return jnp.take_along_axis(logits, target[:, None], axis=1).sum()


def row_keys(key, batch: int) -> jax.Array:
    """``key`` as one typed key per row: a single key is split by row index (``fold_in(key, i)``),
    ``[B]`` keys are used as they are. Legacy ``uint32`` keys are wrapped."""
    if key is None:
        raise ValueError("this measure is random: pass key=jax.random.key(seed) (one key, or one per row)")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    if key.ndim == 0:
        return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))
    if key.shape != (batch,):
        raise ValueError(f"key has shape {key.shape}; expected one key or one per row ({batch},)")
    return key
