"""A small transformer trained from scratch on the task's own word vocabulary (``config.model =
"transformer"``).

The architecture of nlp-lime-ig's ``TransformerModel`` (PyTorch ``nn.TransformerEncoder``): 128-wide,
2 heads, 2 layers, a 512-wide feed-forward, post-LN blocks (``nn.TransformerEncoderLayer``'s
default ``norm_first=False``), ReLU, LayerNorm epsilon 1e-5, dropout 0.1. The blocks are
:mod:`nlproar_jax.models.bert`'s (:class:`~nlproar_jax.models.bert.TransformerClassifier`, whose
encoder, padding-masked self-attention, positions, pair handling and attention output this class
inherits); only the configuration, the head and the vocabulary rules are set here.

**[ours]**, where nlp-lime-ig would not work as a classifier of these tasks: it has no position
information (its ``PositionalEncoding`` is defined but never used) and reads its prediction from
the last position (a padding position in right-padded batches); here, as in BERT, learned
position embeddings (``max_len`` of them: a longer input is an error naming
``--config.transformer.max_len``) and token-type embeddings are added to the word embeddings and
normalised (BERT's embedding LayerNorm), and a linear classifier reads the first position, the
task's ``[CLS]``. Its embeddings are not scaled by ``sqrt(vocab_size)``. Initialisation is BERT's
(normal(0, 0.02) weights, zero biases).

The classifier protocol (:mod:`nlproar_jax.models.protocol`):

* ``embed`` / ``embedding_table``: the word embeddings only (what gradients differentiate and
  integrated gradients scales); positions and types are added inside ``logits_from_embeddings``.
* ``attention``: the last layer's ``[CLS]`` attention row, averaged over heads, over the main
  sequence's positions (``<f32>[B, T]``, 0 at padding).
* ``maskable``: the project's vocabulary rule, ids >= [MASK] ([MASK], [UNK] and words; never
  [PAD], [CLS], [EOS]), as the BiLSTM models; ``mask_token`` is [MASK].
* Paired tasks (SNLI, bAbI): the main sequence ``[CLS] premise [EOS]`` and the auxiliary sequence
  ``[CLS] hypothesis [EOS]`` (as the data encodes it) are concatenated into one sequence, the
  auxiliary part with token type 1; positions count non-padding tokens, so the padding between the
  two parts changes nothing. Only the main part goes through ``emb`` (scaled, differentiated, masked).
* ``hidden_states(tokens, aux_tokens)``: every layer's states at the main positions (DiffMask's
  ``reads="hidden"``).
* ``no_weight_decay = ()``: the pipeline's optimiser (the original's AMSGrad with coupled L2 1e-5)
  decays every parameter, as it does the BiLSTM's.

Dropout is explicit (``dropout_key`` on every forward function, off without one). The pipeline's
training loop passes no key, so pipeline runs train without dropout, as the BiLSTM (which has none).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from nlproar_jax.data.tokens import CLS, EOS, MASK, PAD
from nlproar_jax.models.bert import SpecialTokens, TransformerClassifier, TransformerConfig, _linear, dropout
from nlproar_jax.models.layers import attention_mask

# nlp-lime-ig's sizes (the "128-d, 2 heads, 2 layers, 512 feed-forward") and PyTorch's
# TransformerEncoderLayer defaults; configs/base.py's ``transformer`` fields override them.
DEFAULTS = dict(dim=128, heads=2, layers=2, ff=512, dropout=0.1, max_len=512)
SPECIAL = SpecialTokens(pad=PAD, cls=CLS, sep=EOS, mask=MASK)


def small_config(vocab_size: int, num_classes: int, *, dim: int = 128, heads: int = 2, layers: int = 2,
                 ff: int = 512, dropout: float = 0.1, max_len: int = 512) -> TransformerConfig:
    """The :class:`TransformerConfig` of a from-scratch model on the project's vocabulary."""
    return TransformerConfig(vocab_size=vocab_size, hidden_size=dim, num_hidden_layers=layers,
                             num_attention_heads=heads, intermediate_size=ff, model_type="bert", hidden_act="relu",
                             hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                             max_position_embeddings=max_len, type_vocab_size=2, layer_norm_eps=1e-5,
                             pad_token_id=PAD, num_labels=num_classes)


class SmallTransformer(TransformerClassifier):
    """Word + position + type embeddings -> post-LN transformer blocks -> linear classifier on [CLS]."""

    no_weight_decay: tuple[str, ...] = ()
    train_dropout: bool = False  # the pipeline trains it without dropout (module docstring)

    def __init__(self, vocab_size: int, num_classes: int, *, dim: int = 128, heads: int = 2, layers: int = 2,
                 ff: int = 512, dropout: float = 0.1, max_len: int = 512, rngs: nnx.Rngs):
        cfg = small_config(vocab_size, num_classes, dim=dim, heads=heads, layers=layers, ff=ff, dropout=dropout,
                           max_len=max_len)
        super().__init__(cfg, SPECIAL, num_labels=num_classes, attention="last", rngs=rngs)
        self.head = nnx.Dict(out=_linear(cfg, dim, num_classes, rngs))  # replaces BERT's pooler + classifier

    def maskable(self, tokens: jax.Array) -> jax.Array:
        """``<bool>[B, T]``: ids >= [MASK] (the project's rule, as the BiLSTM models)."""
        return attention_mask(tokens)

    def encode(self, emb, tokens, aux_tokens=None, *, dropout_key=None):
        length = tokens.shape[1] + (0 if aux_tokens is None else aux_tokens.shape[1])
        if length > self.config.max_position_embeddings:
            raise ValueError(f"a batch of {length} positions{' (main + auxiliary)' if aux_tokens is not None else ''} "
                             f"is longer than the transformer's {self.config.max_position_embeddings} position "
                             "embeddings: raise --config.transformer.max_len")
        return super().encode(emb, tokens, aux_tokens, dropout_key=dropout_key)

    def hidden_states(self, tokens: jax.Array, aux_tokens: Optional[jax.Array] = None) -> jax.Array:
        """``<f32>[layers + 1, B, T, H]``: the embedding output and every block's, at the main sequence's
        positions (what DiffMask's ``reads="hidden"`` gates read)."""
        out = self.encode(self.embed(tokens), tokens, aux_tokens)
        return jnp.stack([h[:, :tokens.shape[1]] for h in out.hidden_states])

    def classify(self, hidden: jax.Array, *, dropout_key: Optional[jax.Array] = None) -> jax.Array:
        """Last hidden states ``<f32>[B, T', H]`` -> logits ``<f32>[B, C]``: linear on [CLS] (dropout before)."""
        return self.head["out"](dropout(hidden[:, 0], self.config.hidden_dropout_prob, dropout_key))


def options(config) -> dict:
    """The transformer's sizes from ``config.transformer`` (fields it lacks take :data:`DEFAULTS`)."""
    given = config.get("transformer", None)
    given = given.to_dict() if hasattr(given, "to_dict") else dict(given or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config.transformer field(s) {unknown}; valid: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **given}
    return {k: (float(v) if k == "dropout" else int(v)) for k, v in out.items()}


def from_config(config, data, seed: int) -> SmallTransformer:
    """The ``transformer`` model of a task: sizes from ``config.transformer``, parameters from ``seed``."""
    return SmallTransformer(len(data.vocab), data.num_classes, **options(config), rngs=nnx.Rngs(params=seed))
