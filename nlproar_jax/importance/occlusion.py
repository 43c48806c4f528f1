"""Occlusion (leave-one-out): what the explained class loses when one token alone is removed."""
from __future__ import annotations

from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from nlproar_jax.importance.base import DEFAULT_PRECISION, measure_dataclass
from nlproar_jax.importance.perturbation import (
    PerturbationMeasure,
    check_chunk_size,
    check_output,
    mask_projection,
    masked_evaluator,
    resolve_chunk,
    scan_chunks,
    target_output,
)
from nlproar_jax.importance.gradients import projection
from nlproar_jax.models.protocol import has_fast_path


@measure_dataclass
class Occlusion(PerturbationMeasure):
    """``f(x) - f(x with token t alone replaced by model.mask_token)``, at every maskable position
    (0 at the others: padding, specials), ``|.|`` unless ``signed=True`` (like the repository's other
    measures: ROAR ranks by magnitude; ``signed`` keeps Captum's sign, positive = the token supports
    the class).

    ``f`` is the explained class's logit (``output="logit"``, the default: the original's measures
    explain the logit ``f_c``) or its softmax probability (``output="probability"``). The main
    sequence only; the auxiliary one is never occluded.

    One batched program for all positions: the ``T + 1`` keep-masks (the clean input, then position
    ``t`` removed for each ``t``) are the samples of the masked forward pass
    (:mod:`.perturbation`), so each row costs exactly ``T + 1`` model evaluations (non-maskable
    positions included: static shapes), in chunks of ``chunk_size`` samples (None = auto,
    0 = all). On the BiLSTMs the perturbed projection is a select (``fast_path``), and with
    ``reuse_states`` (the default) the models that offer ``logits_leave_one_out`` (the chunked
    BiLSTM kernel) reuse the clean run's states around each removed position: the same ``T + 1``
    outputs from about half the recurrence steps (:func:`nlproar_jax.models.bilstm.leave_one_out_recurrence`;
    ``chunk_size`` then counts pairs of removals). Equals Captum's ``Occlusion`` with a window of
    one token, stride one and the [MASK] id as baseline, restricted to maskable positions.
    Deterministic: ``key`` is not used.
    """

    name: ClassVar[str] = "occlusion"
    output: str = "logit"
    signed: bool = False
    chunk_size: Optional[int] = None
    fast_path: bool = True
    reuse_states: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        check_output(self.output)
        check_chunk_size(self.chunk_size)

    @staticmethod
    def keep_masks(sample_index: jax.Array, maskable: jax.Array) -> jax.Array:
        """``<bool>[n, B, T]``: sample 0 keeps everything, sample ``t + 1`` removes position ``t``
        (when maskable)."""
        length = maskable.shape[1]
        removed = sample_index[:, None] - 1 == jnp.arange(length)[None]  # [n, T]
        return ~(removed[:, None, :] & maskable[None])

    def scores(self, model, tokens, target, aux_tokens=None, keys=None) -> jax.Array:
        """``<f32>[B, T]``; ``target <int32>[B]``."""
        del keys
        batch, length = tokens.shape
        maskable = model.maskable(tokens)
        if self.fast_path and self.reuse_states and has_fast_path(model) and hasattr(model, "logits_leave_one_out"):
            clean, removed = self._leave_one_out(model, tokens, target, aux_tokens)
            s = jnp.where(maskable, clean[:, None] - removed.T, 0.0)
            return s if self.signed else jnp.abs(s)
        evaluate = masked_evaluator(model, tokens, target, aux_tokens, output=self.output, fast_path=self.fast_path)
        samples = length + 1
        chunk = resolve_chunk(self.chunk_size, samples, batch, length)
        _, out = scan_chunks(lambda idx: ((), evaluate(self.keep_masks(idx, maskable))), samples, chunk, ())
        s = jnp.where(maskable, out[0][:, None] - out[1:].T, 0.0)
        return s if self.signed else jnp.abs(s)

    def _leave_one_out(self, model, tokens, target, aux_tokens):
        """``(clean <f32>[B], removed <f32>[T, B])`` through ``model.logits_leave_one_out``: pairs
        ``(g, T-1-g)`` of removals, ``ceil(T / 2)`` pairs in chunks of ``chunk_size`` pairs."""
        batch, length = tokens.shape
        tokens_tm, proj, context = projection(model, tokens, aux_tokens)
        proj_mask = mask_projection(model, tokens.dtype)
        clean_run = model.clean_states(proj, tokens_tm)
        clean = target_output(model.logits_from_projection(proj, tokens_tm, context)[0], target, self.output)
        pairs = (length + 1) // 2
        chunk = resolve_chunk(self.chunk_size, pairs, batch, length)

        def fn(groups):
            lg = model.logits_leave_one_out(proj, proj_mask, tokens_tm, context, clean_run, groups)  # [2, G, B, C]
            return (), jnp.swapaxes(target_output(lg, target, self.output), 0, 1)  # [G, 2, B]

        _, out = scan_chunks(fn, pairs, chunk, ())  # [pairs, 2, B]
        # Removal t < pairs is out[t, 0]; t >= pairs is out[T-1-t, 1] (the middle one, odd T, is both).
        removed = jnp.concatenate([out[:, 0], out[::-1, 1][2 * pairs - length:]])
        return clean, removed
