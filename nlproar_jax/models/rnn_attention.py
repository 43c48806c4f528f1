"""The original's BiLSTM + additive-attention classifiers, in ``flax.nnx``.

Two models share one interface, the seam attribution needs:

* :meth:`embed` ``tokens -> e``: the differentiation point of the gradient measures;
* :meth:`query` ``aux_tokens -> q`` (None for single-sequence models);
* :meth:`logits_from_projected` ``(P, tokens, q) -> (logits, attention)`` where
  ``P = encoder.project(e)`` is the LSTM input projection (linear in ``e``);
* :meth:`logits_from_embeddings` ``(e, tokens, aux) -> (logits, attention)``.

Inside, everything runs time-major (``[seq_len, batch, ...]``, what the recurrence
scans over): :meth:`__call__`, the training path, gathers the embeddings with
``tokens.T`` so no activation or gradient is ever transposed, and runs the
projection and recurrence in time chunks (``BiLSTM.encode``); the batch-major
seam above transposes once at its boundary.

[PAD], [CLS] and [EOS] are never attended (``id >= [MASK]`` only), and padding is
never processed by the LSTM. No dropout (the original has none).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlproar_jax.models.bilstm import BiLSTM
from nlproar_jax.models.layers import attention_mask, lstm_mask, masked_softmax, torch_linear


def _embedding_param(vocab_size: int, dim: int, init: Optional[np.ndarray], rngs: nnx.Rngs) -> nnx.Param:
    if init is None:
        table = jax.random.normal(rngs.params(), (vocab_size, dim), jnp.float32)
    else:
        table = jnp.asarray(init, jnp.float32)
        if table.shape != (vocab_size, dim):
            raise ValueError(f"embedding matrix has shape {table.shape}, expected {(vocab_size, dim)}")
    return nnx.Param(table)


class _Base(nnx.Module):
    paired: bool = False
    # Top-level parameter groups that get no L2 weight decay (the original: attention, single only).
    no_weight_decay: tuple[str, ...] = ()

    def embed(self, tokens: jax.Array) -> jax.Array:
        """``<int32>[batch, seq_len]`` -> ``<f32>[batch, seq_len, embedding_dim]`` (any index shape)."""
        return jnp.take(self.embedding[...], tokens, axis=0)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        """``<f32>[B, T, D]``, ``<int32>[B, T]``, aux ``<int32>[B, Ta]`` -> ``(<f32>[B, C], <f32>[B, T])``."""
        return self.logits_from_projected(self.encoder.project(emb), tokens, self.query(aux_tokens))

    def logits_from_projected(self, proj, tokens, query=None):
        """``P <f32>[B, T, 8H]``, ``<int32>[B, T]``, query ``<f32>[B, 2H]`` or None
        -> ``(logits <f32>[B, C], attention <f32>[B, T])``."""
        return self.logits_time_major(jnp.swapaxes(proj, 0, 1), jnp.swapaxes(tokens, 0, 1), query)

    def logits_time_major(self, proj, tokens, query=None):
        """:meth:`logits_from_projected` for ``P <f32>[T, B, 8H]`` and ``tokens <int32>[T, B]``."""
        hs, _ = self.encoder.recur_time_major(proj, lstm_mask(tokens))  # [T, B, 2H]
        return self.logits_from_hidden(hs, tokens, query)

    def logits_from_hidden(self, hs, tokens, query=None):
        """BiLSTM outputs ``hs <f32>[T, B, 2H]``, ``tokens <int32>[T, B]`` -> ``(logits, attention <f32>[B, T])``."""
        scores = self.attention_scores(hs, query)  # [T, B]
        alpha = masked_softmax(scores, attention_mask(tokens), axis=0)
        context = jnp.einsum("tb,tbd->bd", alpha, hs)
        return self.decode(context, query), alpha.T

    def __call__(self, tokens, aux_tokens=None):
        """``<int32>[B, T]``, aux ``<int32>[B, Ta]`` -> ``(logits <f32>[B, C], attention <f32>[B, T])``.

        The training path: embeddings gathered time-major, projection and recurrence in time
        chunks (``BiLSTM.encode``); the same function as the attribution seam above."""
        tokens_tm = jnp.swapaxes(tokens, 0, 1)
        hs, _ = self.encoder.encode(self.embed(tokens_tm), lstm_mask(tokens_tm))
        return self.logits_from_hidden(hs, tokens_tm, self.query(aux_tokens))


class SingleSequenceModel(_Base):
    """Embedding -> BiLSTM -> additive tanh attention -> linear decoder (SST, IMDB, MIMIC)."""

    paired = False
    no_weight_decay = ("attention",)

    def __init__(self, vocab_size: int, num_classes: int, *, embedding_dim: int = 300, hidden_size: int = 128,
                 embedding: Optional[np.ndarray] = None, rngs: nnx.Rngs):
        h = hidden_size
        self.embedding = _embedding_param(vocab_size, embedding_dim, embedding, rngs)
        self.encoder = BiLSTM(embedding_dim, h, rngs=rngs)
        self.attention = nnx.Dict(hidden=torch_linear(2 * h, h, rngs=rngs),
                                  score=torch_linear(h, 1, rngs=rngs, use_bias=False))
        self.decoder = torch_linear(2 * h, num_classes, rngs=rngs)

    def query(self, aux_tokens=None):
        if aux_tokens is not None:
            raise ValueError("a single-sequence model takes no auxiliary sequence")
        return None

    def attention_scores(self, hs, query=None):
        """``hs <f32>[T, B, 2H]`` -> ``<f32>[T, B]``."""
        return self.attention["score"](jnp.tanh(self.attention["hidden"](hs)))[..., 0]

    def decode(self, context, query=None):
        """``<f32>[B, 2H]`` -> ``<f32>[B, C]``."""
        return self.decoder(context)


class PairedSequenceModel(_Base):
    """Two encoders; the auxiliary sequence's final state queries attention over the main one (SNLI, bAbI)."""

    paired = True
    no_weight_decay = ()

    def __init__(self, vocab_size: int, num_classes: int, *, embedding_dim: int = 300, hidden_size: int = 128,
                 embedding: Optional[np.ndarray] = None, rngs: nnx.Rngs):
        h = hidden_size
        self.embedding = _embedding_param(vocab_size, embedding_dim, embedding, rngs)
        # Own table, initialised from the same matrix as the main one (the original).
        self.aux_embedding = nnx.Param(jnp.array(self.embedding[...]))
        self.encoder = BiLSTM(embedding_dim, h, rngs=rngs)
        self.aux_encoder = BiLSTM(embedding_dim, h, rngs=rngs)
        self.attention = nnx.Dict(main=torch_linear(2 * h, h, rngs=rngs), aux=torch_linear(2 * h, h, rngs=rngs),
                                  score=torch_linear(h, 1, rngs=rngs, use_bias=False))
        self.decoder = nnx.Dict(main=torch_linear(2 * h, h, rngs=rngs), aux=torch_linear(2 * h, h, rngs=rngs),
                                output=torch_linear(h, num_classes, rngs=rngs))

    def query(self, aux_tokens):
        """``<int32>[B, Ta]`` -> ``<f32>[B, 2H]``: final forward ⊕ backward states of the auxiliary encoder."""
        if aux_tokens is None:
            raise ValueError("a paired-sequence model needs the auxiliary sequence (aux_tokens)")
        aux_tm = jnp.swapaxes(aux_tokens, 0, 1)
        _, final = self.aux_encoder.encode(jnp.take(self.aux_embedding[...], aux_tm, axis=0), lstm_mask(aux_tm))
        return final

    def attention_scores(self, hs, query):
        """``hs <f32>[T, B, 2H]``, ``query <f32>[B, 2H]`` -> ``<f32>[T, B]``."""
        a = self.attention
        return a["score"](jnp.tanh(a["main"](hs) + a["aux"](query)[None]))[..., 0]

    def decode(self, context, query):
        """``<f32>[B, 2H]``, ``query <f32>[B, 2H]`` -> ``<f32>[B, C]``."""
        d = self.decoder
        return d["output"](jnp.tanh(d["main"](context) + d["aux"](query)))


def build_model(*, paired: bool, vocab_size: int, num_classes: int, embedding_dim: int, hidden_size: int,
                seed: int, embedding: Optional[np.ndarray] = None) -> _Base:
    """The task's model with parameters drawn from ``seed`` (deterministic)."""
    cls = PairedSequenceModel if paired else SingleSequenceModel
    return cls(vocab_size, num_classes, embedding_dim=embedding_dim, hidden_size=hidden_size,
               embedding=embedding, rngs=nnx.Rngs(params=seed))
