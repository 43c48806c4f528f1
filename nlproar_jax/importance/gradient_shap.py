"""Gradient SHAP (expected gradients): integrated gradients with a random baseline and a random point.

Per row and sample ``s``: a baseline ``b_s``, ``alpha_s ~ U[0, 1)`` and, with ``stdevs > 0``, a noisy
input ``x_s = e + eps_s``; the sample's attribution at position ``t`` is
``(x_s - b_s)_t . grad f_c(b_s + alpha_s (x_s - b_s))_t`` (summed over the embedding dimension);
the score is the mean over ``samples``, ``|.|`` unless ``signed`` (as integrated gradients). For a
fixed baseline and ``stdevs = 0`` its expectation over ``alpha`` is exactly textbook integrated
gradients from that baseline, ``int_0^1 (x - b) . grad f_c(b + a (x - b)) da`` (so summed over
positions, ``f_c(x) - f_c(b)``); with random baselines it is Erion et al.'s expected gradients, the
expectation over the baseline distribution (Lundberg & Lee's GradientExplainer; Captum's
``GradientShap``).

Baselines (``baseline=``), main sequence only (the auxiliary sequence is never touched):

* ``"zero"``: ``b = 0`` at **every** main-sequence position, specials included: integrated
  gradients' baseline (:class:`~nlproar_jax.importance.gradients.IntegratedGradients`), so its
  expectation is textbook IG exactly.
* ``"mask"``: ``b_t = embed([MASK])`` (``model.mask_token``) at maskable positions, ``b_t = e_t``
  elsewhere: the input ROAR would produce by masking everything; a single baseline.
* ``"random_tokens"`` (default): at each maskable position the embedding of a token drawn uniformly
  from the whole vocabulary (every row of ``model.embedding_table()``, specials included: a handful
  among thousands in a real vocabulary), independently per (row, sample, position); ``b_t = e_t``
  elsewhere. A data-free stand-in for expected gradients' "baselines drawn from the data".

With ``"mask"`` and ``"random_tokens"`` non-maskable positions (specials, padding) have
``x - b = 0``: they are never perturbed and score 0. Input noise (``stdevs``, an absolute standard
deviation, as Captum's) lands on maskable positions only, from the same stream as SmoothGrad's
(:func:`~nlproar_jax.importance.smoothgrad.gaussian_noise`).

Defaults follow Captum's ``GradientShap.attribute``: ``samples=5`` (``n_samples``), ``stdevs=0.0``;
``alpha`` per (row, sample) as Captum's ``rand_coefficient``, the noisy input multiplying the
gradient as Captum's (``multiply_by_inputs=True``). Five samples are a cheap, noisy estimate: the
estimator is unbiased, its error falls as ``1 / sqrt(samples)`` (50 samples cost what integrated
gradients' 50 steps cost). Keys, chunks and paths as SmoothGrad's (see
:mod:`nlproar_jax.importance.smoothgrad`): sample ``s`` draws ``alpha`` from stream ``ALPHA``, the
baseline tokens at position ``t`` from ``fold_in(stream BASELINE, t)``, the noise from stream
``NOISE``, so a score never depends on padding or (with per-row keys) batch mates; each sample is one
forward + backward pass. The fast path works in the projected space ``P = e W``:
``P(b + alpha (x - b)) = P_b + alpha (P_x - P_b)`` and ``(x - b) . g = (P_x - P_b) . G``; a zero or
[MASK] baseline without noise costs no projection per sample, a random baseline or noise one each.

Captum: ``GradientShap(samples=n, baseline=..., stdevs=0, signed=True)`` is
``captum.attr.GradientShap(f).attribute(e, baselines=B, n_samples=n, stdevs=0.0).sum(-1)`` with
``B = zeros_like(e)`` ("zero"), ``e`` with its maskable rows replaced by ``E[MASK]`` ("mask"), or a
stack of many copies of ``e`` with its maskable rows replaced by uniformly random rows of ``E``
("random_tokens": Captum picks one per sample with replacement, ours draws a fresh one). With
``stdevs > 0`` Captum also perturbs the specials, ours does not.
"""
from __future__ import annotations

from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from nlproar_jax.importance.base import DEFAULT_PRECISION, measure_dataclass
from nlproar_jax.importance.gradients import _use_fast_path, embedding_gradient, projected_gradient
from nlproar_jax.importance.smoothgrad import (
    ALPHA,
    BASELINE,
    _check_options,
    _Sampled,
    gaussian_noise,
    per_position,
    sample_stream,
)

BASELINES = ("zero", "mask", "random_tokens")


@measure_dataclass
class GradientShap(_Sampled):
    """Gradient SHAP / expected gradients: ``|mean_s (x_s - b_s)_t . grad f_c(b_s + alpha_s (x_s - b_s))_t|``
    (``signed=True``: without ``|.|``). See :mod:`nlproar_jax.importance.gradient_shap` for the
    baselines, noise, keys, defaults (Captum's) and the fast path.

    Options: ``samples`` (default 5), ``baseline`` (:data:`BASELINES`; default ``"random_tokens"``),
    ``stdevs`` (absolute noise standard deviation at maskable positions; default 0), ``signed``,
    ``chunk_size`` (samples evaluated at once; 0 = all), ``fast_path``, ``precision``.
    """

    name: ClassVar[str] = "gradient_shap"
    samples: int = 5
    baseline: str = "random_tokens"
    stdevs: float = 0.0
    signed: bool = False
    chunk_size: int = 0
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        _check_options(self, stdevs=self.stdevs)
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown gradient_shap baseline {self.baseline!r}; valid: {list(BASELINES)}")

    # -- the draws ----------------------------------------------------------------------------
    def alphas(self, keys, sample) -> jax.Array:
        """``<f32>[B]``: ``alpha ~ U[0, 1)`` of sample ``sample`` for each row."""
        return jax.vmap(jax.random.uniform)(sample_stream(keys, sample, ALPHA))

    def _noise(self, keys, sample, allowed, dim, time_major):
        stdev = jnp.full((allowed.shape[1 if time_major else 0],), self.stdevs, jnp.float32)
        return gaussian_noise(keys, sample, allowed, stdev, dim, time_major=time_major)

    def _table(self, model):
        if not hasattr(model, "embedding_table"):
            raise ValueError(f"gradient_shap baseline='random_tokens' needs {type(model).__name__}.embedding_table() "
                             "(see nlproar_jax.models.protocol); use baseline='zero' or 'mask'")
        return model.embedding_table()

    def _random_tokens(self, keys, sample, length, vocab, time_major):
        return per_position(sample_stream(keys, sample, BASELINE), length,
                            lambda k: jax.random.randint(k, (), 0, vocab), time_major=time_major)

    def _mask_embedding(self, model):
        return model.embed(jnp.full((1, 1), model.mask_token, jnp.int32))[0, 0]  # [D]

    def sample_inputs(self, model, tokens, keys, sample) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(alpha <f32>[B], x <f32>[B, T, D], b <f32>[B, T, D])`` of sample ``sample``: the generic
        path evaluates ``grad f_c`` at ``b + alpha (x - b)`` and multiplies by ``x - b``."""
        emb = model.embed(tokens)
        return self._draw(model, emb, model.maskable(tokens), keys, sample)

    def _draw(self, model, emb, allowed, keys, sample):
        x = emb + self._noise(keys, sample, allowed, emb.shape[-1], False) if self.stdevs else emb
        keep = allowed[..., None]
        if self.baseline == "zero":
            b = jnp.zeros_like(emb)
        elif self.baseline == "mask":
            b = jnp.where(keep, self._mask_embedding(model), emb)
        else:
            table = self._table(model)
            ids = self._random_tokens(keys, sample, emb.shape[1], table.shape[0], False)
            b = jnp.where(keep, jnp.take(table, ids, axis=0), emb)
        return self.alphas(keys, sample), x, b

    # -- the attributions ------------------------------------------------------------------------
    def terms(self, model, tokens, target, aux_tokens, keys) -> jax.Array:
        """``<f32>[samples, B, T]``: each sample's signed attribution ``(x - b) . grad f_c(b + alpha (x - b))``."""
        if _use_fast_path(self, model):
            return self._fast_terms(model, tokens, target, aux_tokens, keys)
        emb, allowed = model.embed(tokens), model.maskable(tokens)

        def point(s):
            alpha, x, b = self._draw(model, emb, allowed, keys, s)
            d = x - b
            g = embedding_gradient(model, b + alpha[:, None, None] * d, tokens, aux_tokens, target)
            return jnp.sum(d * g, axis=-1)
        return self._map_samples(point)

    def _fast_terms(self, model, tokens, target, aux_tokens, keys):
        w = model.input_weights()
        tokens_tm = jnp.swapaxes(tokens, 0, 1)
        emb = model.embed(tokens_tm)  # [T, B, D]
        proj, context = emb @ w, model.aux_context(aux_tokens)
        allowed = model.maskable(tokens).T
        keep = allowed[..., None]
        if self.baseline == "mask":
            proj_mask = jnp.where(keep, self._mask_embedding(model) @ w, proj)
        if self.baseline == "random_tokens":
            table = self._table(model)

        def point(s):
            px = proj + self._noise(keys, s, allowed, emb.shape[-1], True) @ w if self.stdevs else proj
            alpha = self.alphas(keys, s)[None, :, None]
            if self.baseline == "zero":
                d, at = px, alpha * px
            else:
                if self.baseline == "mask":
                    pb = proj_mask
                else:
                    ids = self._random_tokens(keys, s, emb.shape[0], table.shape[0], True)
                    pb = jnp.where(keep, jnp.take(table, ids, axis=0) @ w, proj)  # x - b exactly 0 off-mask
                d = px - pb
                at = pb + alpha * d
            return jnp.sum(d * projected_gradient(model, at, tokens_tm, context, target), axis=-1)
        return jnp.swapaxes(self._map_samples(point), 1, 2)
