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
    masked_evaluator,
    resolve_chunk,
    scan_chunks,
)


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
    0 = all). On the BiLSTMs the perturbed projection is a select (``fast_path``). Equals Captum's
    ``Occlusion`` with a window of one token, stride one and the [MASK] id as baseline, restricted to
    maskable positions. Deterministic: ``key`` is not used.
    """

    name: ClassVar[str] = "occlusion"
    output: str = "logit"
    signed: bool = False
    chunk_size: Optional[int] = None
    fast_path: bool = True
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
        evaluate = masked_evaluator(model, tokens, target, aux_tokens, output=self.output, fast_path=self.fast_path)
        samples = length + 1
        chunk = resolve_chunk(self.chunk_size, samples, batch, length)
        _, out = scan_chunks(lambda idx: ((), evaluate(self.keep_masks(idx, maskable))), samples, chunk, ())
        s = jnp.where(maskable, out[0][:, None] - out[1:].T, 0.0)
        return s if self.signed else jnp.abs(s)
