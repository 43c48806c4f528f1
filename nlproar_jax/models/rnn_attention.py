"""The original's BiLSTM + additive-attention classifiers, in ``flax.nnx``.

Both models meet the classifier protocol (:mod:`nlproar_jax.models.protocol`): ``embed``,
``logits_from_embeddings``, ``maskable`` (``id >= [MASK]``: never [PAD], [CLS], [EOS]),
``mask_token`` ([MASK]), ``embedding_table``, and the training path ``__call__``. They also offer
the linear-input fast path, since the LSTM input projection ``P = e @ W_ih`` is linear in ``e``:
``input_weights`` (``W_ih``), ``aux_context`` (the query from the auxiliary sequence, None for
single-sequence models) and ``logits_from_projection`` (time-major ``P`` and tokens).

Inside, everything runs time-major (``[seq_len, batch, ...]``, what the recurrence scans over):
:meth:`__call__` gathers the embeddings with ``tokens.T`` so no activation or gradient is ever
transposed, and runs the encoder's training path (``BiLSTM.encode``); the batch-major
``logits_from_embeddings`` transposes once at its boundary.

[PAD], [CLS] and [EOS] are never attended, and padding is never processed by the LSTM. No dropout
(the original has none). ``lstm_impl`` picks the BiLSTM kernel of every encoder (``scan``, the
reference and :func:`build_model`'s default; ``chunked``, tuned for XLA:CPU; ``auto``), see
:mod:`nlproar_jax.models.bilstm`; :func:`from_config` builds the ``rnn`` model of a task config.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlproar_jax.models.bilstm import BiLSTM
from nlproar_jax.data.tokens import MASK
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
    mask_token: int = MASK

    def embed(self, tokens: jax.Array) -> jax.Array:
        """``<int32>[batch, seq_len]`` -> ``<f32>[batch, seq_len, embedding_dim]`` (any index shape)."""
        return jnp.take(self.embedding[...], tokens, axis=0)

    def embedding_table(self) -> jax.Array:
        """``<f32>[vocab, embedding_dim]``."""
        return self.embedding[...]

    def maskable(self, tokens: jax.Array) -> jax.Array:
        """``<bool>[B, T]``: [MASK], [UNK] and words (``id >= [MASK]``), as the original."""
        return attention_mask(tokens)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        """``<f32>[B, T, D]``, ``<int32>[B, T]``, aux ``<int32>[B, Ta]`` -> ``(<f32>[B, C], <f32>[B, T])``."""
        proj = jnp.swapaxes(emb, 0, 1) @ self.input_weights()
        return self.logits_from_projection(proj, jnp.swapaxes(tokens, 0, 1), self.aux_context(aux_tokens))

    # -- the linear-input fast path (nlproar_jax.models.protocol) ---------------------------
    def input_weights(self) -> jax.Array:
        """``W_ih <f32>[D, 8H]``: the LSTM input projection, both directions' gates."""
        return self.encoder.w_ih[...]

    def logits_from_projection(self, proj, tokens, context=None):
        """``P <f32>[T, B, 8H]`` (time-major; any linear rescaling of ``e @ W_ih``), ``<int32>[T, B]``,
        the :meth:`aux_context` -> ``(logits <f32>[B, C], attention <f32>[B, T])``."""
        hs, _ = self.encoder.recur_time_major(proj, lstm_mask(tokens))  # [T, B, 2H]
        return self.logits_from_hidden(hs, tokens, context)

    def logits_from_selection(self, proj, proj_mask, keep, tokens, context=None):
        """The fast path on ``n`` perturbed copies of a batch, without building their projections
        (:meth:`BiLSTM.recur_selected`): ``proj <f32>[T, B, 8H]``, ``proj_mask <f32>[8H]``, ``keep
        <bool>[T, n, B]``, the copies' ``tokens <int32>[T, n * B]`` and their (tiled) context ->
        ``(logits <f32>[n * B, C], attention <f32>[n * B, T])``; equals :meth:`logits_from_projection`
        on ``where(keep, proj, proj_mask)``."""
        hs, _ = self.encoder.recur_selected(proj, proj_mask, keep, lstm_mask(tokens))
        return self.logits_from_hidden(hs, tokens, context)

    def clean_states(self, proj, tokens):
        """What :meth:`logits_leave_one_out` reuses of the clean run on ``proj <f32>[T, B, 8H]``,
        ``tokens <int32>[T, B]`` (:meth:`BiLSTM.clean_states`)."""
        return self.encoder.clean_states(proj, lstm_mask(tokens))

    def logits_leave_one_out(self, proj, proj_mask, tokens, context, clean, groups):
        """The fast path on the copies of a batch with one maskable position replaced by the mask
        token (:meth:`BiLSTM.recur_leave_one_out`, about half the recurrence of
        :meth:`logits_from_selection`): ``proj <f32>[T, B, 8H]``, ``proj_mask <f32>[8H]``,
        ``tokens <int32>[T, B]``, the :meth:`aux_context` (untiled), :meth:`clean_states`,
        ``groups <int32>[G]`` -> ``logits <f32>[2, G, B, C]``: ``[0, j]`` with position
        ``groups[j]`` removed, ``[1, j]`` with ``T - 1 - groups[j]`` (a position that is not
        maskable is left as it is)."""
        steps, batch = tokens.shape
        removable = self.maskable(tokens)
        hs = self.encoder.recur_leave_one_out(proj, proj_mask, removable, lstm_mask(tokens), clean, groups)
        removed = jnp.stack([groups, steps - 1 - groups])  # [2, G]
        at = (jnp.arange(steps)[:, None, None, None] == removed[None, ..., None]) & removable[:, None, None]
        copies = jnp.where(at, jnp.asarray(self.mask_token, tokens.dtype), tokens[:, None, None]).reshape(steps, -1)
        n = 2 * groups.shape[0]
        if context is not None:
            context = jnp.tile(context, (n, 1))
        logits, _ = self.logits_from_hidden(hs.reshape(steps, n * batch, -1), copies, context)
        return logits.reshape(2, groups.shape[0], batch, -1)

    def logits_from_hidden(self, hs, tokens, query=None):
        """BiLSTM outputs ``hs <f32>[T, B, 2H]``, ``tokens <int32>[T, B]`` -> ``(logits, attention <f32>[B, T])``."""
        scores = self.attention_scores(hs, query)  # [T, B]
        alpha = masked_softmax(scores, attention_mask(tokens), axis=0)
        context = jnp.einsum("tb,tbd->bd", alpha, hs)
        return self.decode(context, query), alpha.T

    def __call__(self, tokens, aux_tokens=None):
        """``<int32>[B, T]``, aux ``<int32>[B, Ta]`` -> ``(logits <f32>[B, C], attention <f32>[B, T])``.

        The training path: embeddings gathered time-major, then the encoder's training path
        (``BiLSTM.encode``); the same function as :meth:`logits_from_embeddings`."""
        tokens_tm = jnp.swapaxes(tokens, 0, 1)
        hs, _ = self.encoder.encode(self.embed(tokens_tm), lstm_mask(tokens_tm))
        return self.logits_from_hidden(hs, tokens_tm, self.aux_context(aux_tokens))


class SingleSequenceModel(_Base):
    """Embedding -> BiLSTM -> additive tanh attention -> linear decoder (SST, IMDB, MIMIC)."""

    paired = False
    no_weight_decay = ("attention",)

    def __init__(self, vocab_size: int, num_classes: int, *, embedding_dim: int = 300, hidden_size: int = 128,
                 embedding: Optional[np.ndarray] = None, lstm_impl: str = "scan", rngs: nnx.Rngs):
        h = hidden_size
        self.embedding = _embedding_param(vocab_size, embedding_dim, embedding, rngs)
        self.encoder = BiLSTM(embedding_dim, h, impl=lstm_impl, rngs=rngs)
        self.attention = nnx.Dict(hidden=torch_linear(2 * h, h, rngs=rngs),
                                  score=torch_linear(h, 1, rngs=rngs, use_bias=False))
        self.decoder = torch_linear(2 * h, num_classes, rngs=rngs)

    def aux_context(self, aux_tokens=None):
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
                 embedding: Optional[np.ndarray] = None, lstm_impl: str = "scan", rngs: nnx.Rngs):
        h = hidden_size
        self.embedding = _embedding_param(vocab_size, embedding_dim, embedding, rngs)
        # Own table, initialised from the same matrix as the main one (the original).
        self.aux_embedding = nnx.Param(jnp.array(self.embedding[...]))
        self.encoder = BiLSTM(embedding_dim, h, impl=lstm_impl, rngs=rngs)
        self.aux_encoder = BiLSTM(embedding_dim, h, impl=lstm_impl, rngs=rngs)
        self.attention = nnx.Dict(main=torch_linear(2 * h, h, rngs=rngs), aux=torch_linear(2 * h, h, rngs=rngs),
                                  score=torch_linear(h, 1, rngs=rngs, use_bias=False))
        self.decoder = nnx.Dict(main=torch_linear(2 * h, h, rngs=rngs), aux=torch_linear(2 * h, h, rngs=rngs),
                                output=torch_linear(h, num_classes, rngs=rngs))

    def aux_context(self, aux_tokens):
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
                seed: int, embedding: Optional[np.ndarray] = None, lstm_impl: str = "scan") -> _Base:
    """The task's model with parameters drawn from ``seed`` (deterministic).

    ``lstm_impl`` (:data:`nlproar_jax.names.LSTM_IMPLS`) picks every BiLSTM's kernel, once, here:
    ``"scan"`` (the default: the plain reference, through which every JAX transform works,
    ``jax.jvp`` included), ``"chunked"`` (tuned for XLA:CPU; reverse mode only) or ``"auto"``
    (chunked on a CPU backend, else scan: what the pipeline's ``config.lstm_impl`` defaults to).
    The parameters are the same for every choice."""
    cls = PairedSequenceModel if paired else SingleSequenceModel
    return cls(vocab_size, num_classes, embedding_dim=embedding_dim, hidden_size=hidden_size,
               embedding=embedding, lstm_impl=lstm_impl, rngs=nnx.Rngs(params=seed))


def from_config(config, data, seed: int):
    """The ``rnn`` model of a task (``config.model = "rnn"``): single or paired by the task, the
    config's embedding (random or pretrained vectors, ``embedding_oov`` rows), hidden size and
    ``lstm_impl``."""
    from nlproar_jax.data.embeddings import embedding_matrix  # optional vectors packages load lazily

    matrix = embedding_matrix(data.vocab, config.embedding, dim=int(config.embedding_dim),
                              oov=config.embedding_oov, seed=seed)
    return build_model(paired=data.paired, vocab_size=len(data.vocab), num_classes=data.num_classes,
                       embedding_dim=int(matrix.shape[1]), hidden_size=int(config.hidden_size), seed=seed,
                       embedding=matrix, lstm_impl=config.lstm_impl)
