"""Importance measures as composable pure functions of any classifier.

Build a measure with its options, then call it on a model (any ``nnx.Module`` meeting
:mod:`nlproar_jax.models.protocol`) and a batch of token ids::

    from nlproar_jax import importance

    ig = importance.integrated_gradients(steps=50, variant="textbook")
    scores = ig(model, tokens, target=labels)             # <f32>[B, T]
    scores, delta = ig.with_delta(model, tokens, target="predicted")
    grad = importance.get("gradient")                     # by name, as configs do
    rand = importance.get("random")(None, tokens, key=jax.random.key(0))   # model-free

Every measure is called as ``fn(model, tokens, *, target=None, aux_tokens=None, key=None)`` and
works inside ``jax.jit`` / ``nnx.jit`` and under ``jax.vmap`` (see :mod:`.base` for targets, keys
and precision). :func:`get` accepts the original's spellings (``integrated-gradient``,
``times-input-gradient``, ``mutual-information``) and the options of each measure by name.

======================  ====================================  =======================================
name                    factory                               options
======================  ====================================  =======================================
random                  :func:`random_baseline`               (key at call time)
mutual_information      :func:`mutual_information`            ``table`` (:func:`mutual_information_table`)
attention               :func:`attention`                     -
gradient                :func:`gradient`                      -
input_times_gradient    :func:`input_times_gradient`          ``signed``
integrated_gradient     :func:`integrated_gradients`          ``steps``, ``variant``, ``signed``, ``chunk_size``
smoothgrad              :func:`smoothgrad`                    ``samples``, ``sigma``, ``chunk_size``
smoothgrad_times_input  :func:`smoothgrad_times_input`        ``samples``, ``sigma``, ``signed``, ``chunk_size``
gradient_shap           :func:`gradient_shap`                 ``samples``, ``baseline``, ``stdevs``, ``signed``, ``chunk_size``
occlusion               :func:`occlusion`                     ``output``, ``signed``, ``chunk_size``
lime                    :func:`lime`                          ``samples``, ``kernel``, ``kernel_width``, ``alpha``, ``output``, ``signed``, ``exhaustive``, ``chunk_size``
kernel_shap             :func:`kernel_shap`                   ``samples``, ``output``, ``signed``, ``exhaustive``, ``chunk_size``
diffmask                :func:`diffmask`                      ``reads``, ``layer``, ``baseline``, ``epsilon``, ``epochs``, ... (``.fit`` first)
soft_attention          :func:`soft_attention`                - (needs a model with ``token_scores``)
======================  ====================================  =======================================

The sampled measures (:data:`STOCHASTIC`) need ``key`` (one per row, or one split by row index);
``diffmask`` is learned (:data:`LEARNED`): ``diffmask().fit(model, train_split, key=...)`` returns the
measure with its gate network, which the pipeline does on the explained model's training split.
``soft_attention`` is model-specific (:data:`MODEL_SPECIFIC`): the token scores of a model with a
soft-attention head (``config.model = "transformer-soft-attention"``); other models raise ValueError.

Model-based measures also take ``fast_path`` (use the model's linear-input fast path when it has one;
default True) and ``precision`` (matmul precision; default ``"highest"``).
"""
from __future__ import annotations

import dataclasses

from nlproar_jax.importance.attention import Attention
from nlproar_jax.importance.diffmask import DiffMask
from nlproar_jax.importance.gradient_shap import GradientShap
from nlproar_jax.importance.gradients import Gradient, InputTimesGradient, IntegratedGradients
from nlproar_jax.importance.linear_surrogates import KernelShap, Lime
from nlproar_jax.importance.mutual_information import MutualInformation, mutual_information_table
from nlproar_jax.importance.occlusion import Occlusion
from nlproar_jax.importance.random_baseline import Random
from nlproar_jax.importance.smoothgrad import SmoothGrad, SmoothGradTimesInput
from nlproar_jax.importance.soft_attention import SoftAttention
from nlproar_jax.names import (
    IG_VARIANTS,
    LEARNED,
    MEASURE_ALIASES,
    MEASURES,
    MODEL_FREE,
    MODEL_SPECIFIC,
    STOCHASTIC,
    canonical_measure,
)

# Factories, named as users call them (each is the measure's class: keyword options in, measure out).
random_baseline = Random
mutual_information = MutualInformation
attention = Attention
gradient = Gradient
input_times_gradient = InputTimesGradient
integrated_gradients = IntegratedGradients
smoothgrad = SmoothGrad
smoothgrad_times_input = SmoothGradTimesInput
gradient_shap = GradientShap
occlusion = Occlusion
lime = Lime
kernel_shap = KernelShap
diffmask = DiffMask
soft_attention = SoftAttention

REGISTRY = {cls.name: cls for cls in (Random, MutualInformation, Attention, Gradient, InputTimesGradient,
                                      IntegratedGradients, SmoothGrad, SmoothGradTimesInput, GradientShap,
                                      Occlusion, Lime, KernelShap, DiffMask, SoftAttention)}
assert tuple(REGISTRY) == tuple(sorted(REGISTRY, key=MEASURES.index)) and set(REGISTRY) == set(MEASURES)


def options_of(name: str) -> tuple[str, ...]:
    """The option names :func:`get` accepts for measure ``name`` (either spelling)."""
    return tuple(f.name for f in dataclasses.fields(REGISTRY[canonical_measure(name)]))


def get(name: str, **options):
    """The measure called ``name`` (canonical or the original's spelling) with ``options``.

    Raises ``ValueError`` naming the valid measures for an unknown name and the valid options for an
    unknown option; ``mutual_information`` needs ``table=``.
    """
    cls = REGISTRY[canonical_measure(name)]
    valid = options_of(cls.name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} {unknown} for measure {cls.name!r}; "
                         f"valid: {list(valid) or 'none'}")
    if cls is MutualInformation and "table" not in options:
        raise ValueError("mutual_information needs table=mutual_information_table(train_tokens, labels, "
                         "vocab_size, num_classes), built from a training split")
    return cls(**options)


__all__ = [
    "Attention", "DiffMask", "Gradient", "GradientShap", "IG_VARIANTS", "InputTimesGradient", "IntegratedGradients",
    "KernelShap", "LEARNED", "Lime", "MEASURES", "MEASURE_ALIASES", "MODEL_FREE", "MODEL_SPECIFIC", "MutualInformation",
    "Occlusion", "REGISTRY", "Random", "STOCHASTIC", "SmoothGrad", "SmoothGradTimesInput", "SoftAttention", "attention",
    "canonical_measure",
    "diffmask", "get", "gradient", "gradient_shap", "input_times_gradient", "integrated_gradients", "kernel_shap",
    "lime", "mutual_information", "mutual_information_table", "occlusion", "options_of", "random_baseline",
    "smoothgrad", "smoothgrad_times_input", "soft_attention",
]
