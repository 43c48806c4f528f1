"""The soft-attention head of zero-shot token labelling (Bujel et al. 2021, after Rei & Søgaard 2018),
and the from-scratch transformer with it as its classifier (``config.model =
"transformer-soft-attention"``).

Over encoder states ``h_t`` at the main sequence's maskable positions (words, [MASK], [UNK]; never
[CLS], [EOS] nor padding), the head computes (Rei & Søgaard 2018, eqs. 5-9, which Bujel et al. use
on a transformer's last layer)::

    e_t = tanh(W_e h_t + b_e)                 evidence         (W_e: dim -> evidence)
    a_t = sigmoid(w . e_t + b)                token score in (0, 1)
    alpha_t = a_t / sum_s a_s                 normalised weights
    c = sum_t alpha_t h_t                     sentence representation
    logits = W_o tanh(W_h c + b_h) + b_o      (W_h: dim -> hidden)

and two auxiliary losses per document, weighted by ``gamma``: ``(min_t a_t)^2`` (some token of
every sentence scores 0) and ``(max_t a_t - y)^2`` (some token scores the sentence label ``y``).
``max_target="label"`` is Bujel et al.'s binary form (label 1 is the class whose evidence the scores
find; label-0 sentences are pulled to all-0 scores); ``"one"`` pulls the maximum to 1 in every
sentence (each carries evidence for its own class: any number of classes, and the token scores
find the evidence of both classes of a binary task).

Sizes and settings from Bujel et al.'s released configurations (``seq_class_soft_attention``):
evidence 100, hidden 300, dropout 0.1 on the encoder states, Glorot-normal weights and zero
biases, ``gamma`` 0.1, sigmoid scores.

**[ours]** Their released code omits the ``tanh`` of ``e_t`` (two stacked linear maps), puts a
sigmoid on the logits before the cross-entropy, scores [CLS] (its logit fixed at 0) and [EOS]
inside the normalisation, and takes the minimum without [CLS] but the maximum with it. Here the
equations above hold as written (the paper's form), only maskable positions are scored, and the
loss is the pipeline's softmax cross-entropy on the logits plus the auxiliary terms. A document
with no maskable position gets a zero representation and no auxiliary loss.

What the model offers beyond the classifier protocol:

``token_scores(tokens, aux_tokens=None) -> <f32>[B, T]``
    ``a_t`` (0 where not maskable): what the ``soft_attention`` importance measure returns
    (:mod:`nlproar_jax.importance.soft_attention`).
``logits_and_auxiliary_loss(tokens, aux_tokens, labels) -> (logits <f32>[B, C], <f32>[B])``
    The logits and the weighted auxiliary losses per document from one forward pass: the training
    loop adds the latter to the cross-entropy (:func:`nlproar_jax.training.loop.loss_fn`).
    ``auxiliary_loss`` returns them alone.

Its ``attention`` output (the ``attention`` measure) is the normalised weights ``alpha_t``: the
model's own token weighting. Everything else (the encoder, embeddings, pairs, dropout keys,
vocabulary rules) is :class:`~nlproar_jax.models.transformer.SmallTransformer`'s.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from nlproar_jax.models.bert import _split, dropout
from nlproar_jax.models.transformer import SmallTransformer
from nlproar_jax.models.transformer import options as transformer_options

MAX_TARGETS = ("label", "one")
# Bujel et al.'s released settings (configs/final/seq_class_soft_attention); configs/base.py's
# ``soft_attention`` fields override them.
DEFAULTS = dict(evidence=100, hidden=300, dropout=0.1, gamma=0.1, max_target="label")


def _glorot(n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, kernel_init=nnx.initializers.glorot_normal(), bias_init=nnx.initializers.zeros,
                      rngs=rngs)


class SoftAttentionHead(nnx.Module):
    """Token scores, the sentence representation they weight and its logits (the module docstring),
    over any encoder's states ``<f32>[B, T, dim]`` and a mask of the positions to score."""

    def __init__(self, dim: int, num_classes: int, *, evidence: int = 100, hidden: int = 300,
                 dropout: float = 0.1, rngs: nnx.Rngs):
        self.evidence = _glorot(dim, evidence, rngs)
        self.score = _glorot(evidence, 1, rngs)
        self.hidden = _glorot(dim, hidden, rngs)
        self.out = _glorot(hidden, num_classes, rngs)
        self.dropout = float(dropout)

    def scores(self, states: jax.Array, mask: jax.Array) -> jax.Array:
        """``a_t <f32>[B, T]`` of (already dropped-out) ``states``; 0 where ``mask`` is False."""
        a = jax.nn.sigmoid(self.score(jnp.tanh(self.evidence(states)))[..., 0])
        return jnp.where(mask, a, 0.0)

    def __call__(self, states: jax.Array, mask: jax.Array, *, dropout_key: Optional[jax.Array] = None):
        """``states <f32>[B, T, dim]``, ``mask <bool>[B, T]`` -> ``(logits <f32>[B, C], a <f32>[B, T],
        alpha <f32>[B, T])``."""
        states = dropout(states, self.dropout, dropout_key)
        a = self.scores(states, mask)
        alpha = a / jnp.maximum(a.sum(axis=1, keepdims=True), jnp.finfo(a.dtype).tiny)
        context = jnp.einsum("bt,btd->bd", alpha, states)
        return self.out(jnp.tanh(self.hidden(context))), a, alpha


def auxiliary_losses(a: jax.Array, mask: jax.Array, target: jax.Array) -> jax.Array:
    """``(min_t a_t)^2 + (max_t a_t - target)^2`` over the ``mask``ed positions, ``<f32>[B]`` (0 for a
    row with none)."""
    any_ = mask.any(axis=1)
    low = jnp.where(any_, jnp.min(jnp.where(mask, a, jnp.inf), axis=1), 0.0)
    high = jnp.where(any_, jnp.max(jnp.where(mask, a, -jnp.inf), axis=1), 0.0)
    return jnp.where(any_, low ** 2 + (high - target) ** 2, 0.0)


class SoftAttentionTransformer(SmallTransformer):
    """:class:`SmallTransformer` whose classifier is the :class:`SoftAttentionHead` over the last
    layer's states of the main sequence (instead of the linear layer on [CLS])."""

    def __init__(self, vocab_size: int, num_classes: int, *, evidence: int = 100, hidden: int = 300,
                 head_dropout: float = 0.1, gamma: float = 0.1, max_target: str = "label", rngs: nnx.Rngs,
                 **transformer):
        if max_target not in MAX_TARGETS:
            raise ValueError(f"max_target {max_target!r} is not one of {MAX_TARGETS}")
        if max_target == "label" and num_classes != 2:
            raise ValueError(f"max_target='label' (max token score = the label) needs a binary task, this one has "
                             f"{num_classes} classes: use --config.soft_attention.max_target=one")
        super().__init__(vocab_size, num_classes, rngs=rngs, **transformer)
        self.head = SoftAttentionHead(self.config.hidden_size, num_classes, evidence=evidence, hidden=hidden,
                                      dropout=head_dropout, rngs=rngs)  # replaces the linear head on [CLS]
        self.gamma = float(gamma)
        self.max_target = max_target

    def _head(self, emb, tokens, aux_tokens, dropout_key):
        k_enc, k_head = _split(dropout_key, 2)
        states = self.encode(emb, tokens, aux_tokens, dropout_key=k_enc).hidden_states[-1][:, :tokens.shape[1]]
        return self.head(states, self.maskable(tokens), dropout_key=k_head)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None, *, dropout_key=None):
        """``emb <f32>[B, T, H]``, ``tokens <int32>[B, T]``, aux ``<int32>[B, Ta]`` -> ``(logits <f32>[B, C],
        alpha <f32>[B, T])``: the normalised soft-attention weights are the model's attention."""
        logits, _, alpha = self._head(emb, tokens, aux_tokens, dropout_key)
        return logits, alpha

    def token_scores(self, tokens: jax.Array, aux_tokens: Optional[jax.Array] = None, *,
                     dropout_key: Optional[jax.Array] = None) -> jax.Array:
        """``a_t <f32>[B, T]``: the sigmoid token scores (0 where not maskable)."""
        return self._head(self.embed(tokens), tokens, aux_tokens, dropout_key)[1]

    def logits_and_auxiliary_loss(self, tokens: jax.Array, aux_tokens: Optional[jax.Array], labels: jax.Array, *,
                                  dropout_key: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
        """The training loop's hook, one forward pass: ``(logits <f32>[B, C], gamma * ((min a)^2 +
        (max a - target)^2) <f32>[B])``; target: the label or 1 (``max_target``)."""
        logits, a, _ = self._head(self.embed(tokens), tokens, aux_tokens, dropout_key)
        target = labels.astype(a.dtype) if self.max_target == "label" else jnp.ones(a.shape[:1], a.dtype)
        return logits, self.gamma * auxiliary_losses(a, self.maskable(tokens), target)

    def auxiliary_loss(self, tokens: jax.Array, aux_tokens: Optional[jax.Array], labels: jax.Array, *,
                       dropout_key: Optional[jax.Array] = None) -> jax.Array:
        """The weighted auxiliary losses alone, ``<f32>[B]``."""
        return self.logits_and_auxiliary_loss(tokens, aux_tokens, labels, dropout_key=dropout_key)[1]


def options(config) -> dict:
    """The head's settings from ``config.soft_attention`` (fields it lacks take :data:`DEFAULTS`)."""
    given = config.get("soft_attention", None)
    given = given.to_dict() if hasattr(given, "to_dict") else dict(given or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config.soft_attention field(s) {unknown}; valid: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **given}
    return dict(evidence=int(out["evidence"]), hidden=int(out["hidden"]), head_dropout=float(out["dropout"]),
                gamma=float(out["gamma"]), max_target=str(out["max_target"]))


def from_config(config, data, seed: int) -> SoftAttentionTransformer:
    """The ``transformer-soft-attention`` model of a task: ``config.transformer`` and
    ``config.soft_attention``, parameters from ``seed``."""
    return SoftAttentionTransformer(len(data.vocab), data.num_classes, **options(config),
                                    **transformer_options(config), rngs=nnx.Rngs(params=seed))
