"""The classifier protocol: what training, every importance measure, ROAR masking and the pipeline
need from a model. Any ``flax.nnx.Module`` with these members works everywhere in nlproar_jax.

Required
--------
``embed(tokens <int32>[B, T]) -> <f32>[B, T, D]``
    The token embeddings: what the gradient measures differentiate and integrated gradients
    scales. Position ``t``'s embedding depends on ``tokens[:, t]`` only (a lookup); positions,
    segments and normalisation belong to ``logits_from_embeddings``.
``logits_from_embeddings(emb <f32>[B, T, D], tokens <int32>[B, T], aux_tokens <int32>[B, Ta] | None)
-> (logits <f32>[B, C], attention <f32>[B, T] | None)``
    Everything after the embeddings. ``tokens`` tells the model where padding and specials are;
    ``aux_tokens`` is the auxiliary sequence of paired tasks (SNLI hypothesis, bAbI question),
    never scaled, differentiated or masked. ``attention`` is the model's own token weighting,
    if it has one (the ``attention`` measure reads it).
``maskable(tokens <int32>[B, T]) -> <bool>[B, T]``
    The positions ROAR may mask: never padding nor the model's own special tokens.
``mask_token: int``
    The id ROAR writes at masked positions.

Optional
--------
``__call__(tokens, aux_tokens=None) -> (logits, attention)``
    The training path. It must equal ``logits_from_embeddings(embed(tokens), tokens, aux_tokens)``
    (a model may make it faster); without it :func:`forward` composes the two.
``embedding_table() -> <f32>[V, D]``
    The matrix ``embed`` looks up. The ``gradient`` measure, ``||E g||`` (the gradient with respect
    to the one-hot input, as the original defines it), needs it.
``no_weight_decay: tuple[str, ...]``
    Top-level parameter groups the original optimiser leaves undecayed.

The linear-input fast path (optional)
-------------------------------------
A model whose first operation on the embeddings is a per-token linear map ``P = e @ W`` (the
BiLSTM's input projection) may expose it, and the gradient measures then work in the projected
space: integrated gradients computes ``P`` once and scales it per interpolation point instead of
re-projecting, and ``e . g = P . G`` needs no map back to embedding space. Everything is
time-major here, as a recurrence wants it:

``input_weights() -> W <f32>[D, K]``
``aux_context(aux_tokens) -> context`` (anything the head needs from the auxiliary sequence; None
    for single-sequence models), computed once per batch, outside the differentiated function
``logits_from_projection(proj <f32>[T, B, K], tokens <int32>[T, B], context) -> (logits, attention)``
    with ``logits_from_projection(swap(embed(tokens) @ W), swap(tokens), aux_context(aux))`` equal to
    ``logits_from_embeddings(embed(tokens), tokens, aux)`` (``swap``: batch <-> time axes).

``logits_from_selection(proj, proj_mask <f32>[K], keep <bool>[T, n, B], tokens <int32>[T, n B],
    context) -> (logits <f32>[n B, C], attention)`` (optional; the perturbation measures use it when
    present) with the same result as ``logits_from_projection`` on the ``n`` copies
    ``where(keep, proj, proj_mask)``, made without writing those copies.

``clean_states(proj, tokens) -> clean`` and ``logits_leave_one_out(proj, proj_mask, tokens, context,
    clean, groups <int32>[G]) -> logits <f32>[2, G, B, C]`` (optional, occlusion uses them when
    present): the copies with the one position ``groups[j]`` (``[0, j]``) or ``T - 1 - groups[j]``
    (``[1, j]``) replaced by the mask token where maskable, equal to ``logits_from_selection`` on
    those copies; a recurrence reuses the clean run's states around the removed position.

The generic path is the definition; the fast path must give the same scores
(``tests/test_importance.py`` checks the BiLSTM models).
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

import jax

REQUIRED = ("embed", "logits_from_embeddings", "maskable", "mask_token")
FAST_PATH = ("input_weights", "aux_context", "logits_from_projection")


@runtime_checkable
class Classifier(Protocol):
    """Static description of the required members (see the module docstring)."""

    mask_token: int

    def embed(self, tokens: jax.Array) -> jax.Array: ...

    def logits_from_embeddings(self, emb: jax.Array, tokens: jax.Array,
                               aux_tokens: Optional[jax.Array] = None) -> tuple[jax.Array, Optional[jax.Array]]: ...

    def maskable(self, tokens: jax.Array) -> jax.Array: ...


def check_classifier(model: Any) -> None:
    """Raise ``TypeError`` naming what ``model`` lacks of the protocol."""
    missing = [name for name in REQUIRED if not hasattr(model, name)]
    if missing:
        raise TypeError(f"{type(model).__name__} is not an nlproar_jax classifier: it lacks {missing} "
                        f"(see nlproar_jax.models.protocol)")


def forward(model, tokens: jax.Array, aux_tokens: Optional[jax.Array] = None):
    """``(logits <f32>[B, C], attention <f32>[B, T] | None)``: the model's training path."""
    if callable(model):
        return model(tokens, aux_tokens)
    return model.logits_from_embeddings(model.embed(tokens), tokens, aux_tokens)


def has_fast_path(model: Any) -> bool:
    """Whether ``model`` offers the linear-input fast path (all of :data:`FAST_PATH`)."""
    return all(hasattr(model, name) for name in FAST_PATH)
