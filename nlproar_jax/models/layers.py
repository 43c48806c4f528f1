"""Layers with PyTorch's default initialisation, which the original relies on.

PyTorch's ``nn.Linear`` draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
and ``nn.LSTM`` draws every weight and both biases from U(-1/sqrt(H), 1/sqrt(H)).
Flax's defaults differ, so these layers set the initialisers explicitly.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from nlproar_jax.data.tokens import FIRST_ELIGIBLE, PAD


def uniform(key, shape, bound: float, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_linear(in_features: int, out_features: int, *, rngs: nnx.Rngs, use_bias: bool = True) -> nnx.Linear:
    """``nnx.Linear`` initialised like ``torch.nn.Linear``: weight and bias U(+-1/sqrt(in_features))."""
    bound = 1.0 / math.sqrt(in_features)
    init = lambda key, shape, dtype=jnp.float32: uniform(key, shape, bound, dtype)  # noqa: E731
    return nnx.Linear(in_features, out_features, use_bias=use_bias, kernel_init=init, bias_init=init, rngs=rngs)


def lstm_mask(tokens: jax.Array) -> jax.Array:
    """``<bool>[batch, seq_len]``: positions the LSTM processes (everything but [PAD])."""
    return tokens != PAD


def attention_mask(tokens: jax.Array) -> jax.Array:
    """``<bool>[batch, seq_len]``: attended and maskable positions (id >= [MASK]: [MASK], [UNK], words)."""
    return tokens >= FIRST_ELIGIBLE


def masked_softmax(scores: jax.Array, mask: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax over ``axis`` restricted to ``mask``; exactly 0 where masked.

    **[ours]** Masked scores are set to -1e30, not -inf as in the original. The two agree wherever a
    row attends to at least one position. A row with nothing to attend (a document that is only
    [CLS] [EOS]) gets NaN attention, and so NaN logits and loss, in the original; here its
    attention is all zeros (the uniform softmax of equal scores times an all-False mask), so its
    context vector is 0 and the decoder's bias alone gives its logits.
    """
    scores = jnp.where(mask, scores, -1e30)
    return jax.nn.softmax(scores, axis=axis) * mask
