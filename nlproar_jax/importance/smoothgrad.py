"""SmoothGrad and SmoothGrad x input: gradient measures averaged over noisy copies of the embeddings.

Both explain the target class's logit ``f_c`` of the main sequence (one score per position, as every
measure; see :mod:`nlproar_jax.importance.base`) at ``samples`` noisy copies ``e + eps_s`` of the
token embeddings ``e = model.embed(tokens)`` (Smilkov et al. 2017, "SmoothGrad: removing noise by
adding noise"):

* **noise**: ``eps_s[t] ~ N(0, sigma_row^2 I_D)`` at the row's maskable positions
  (``model.maskable(tokens)``; specials and padding get none), with
  ``sigma_row = sigma * (max - min)`` of the row's embedding values over its maskable positions
  (all ``D`` dimensions): ``sigma`` is the paper's noise level ``sigma / (x_max - x_min)``. A row
  without maskable positions gets no noise. The auxiliary sequence is never perturbed.
* **keys**: sample ``s`` at position ``t`` of a row draws from ``fold_in(fold_in(fold_in(row key, s),
  NOISE), t)`` (:func:`gaussian_noise`), with the row keys of :func:`~nlproar_jax.importance.base.row_keys`.
  So a score never depends on padding, nor on batch mates when each row has its own key (the
  pipeline's ``score_batch`` derives them from the example ids). :class:`~nlproar_jax.importance.gradient_shap.GradientShap`
  draws its input noise from the same stream.
* **samples**: evaluated through ``jax.lax.map(..., batch_size=chunk_size)`` (0 = all at once), each
  exactly once: ``samples`` forward + backward passes of the model per call, whatever the chunk.

Two paths compute the same scores (``tests/test_smoothgrad.py`` checks it for both BiLSTM families
and kernels): the **generic** path differentiates ``model.logits_from_embeddings(e + eps_s)``; the
BiLSTM's **linear-input fast path** (:mod:`nlproar_jax.importance.gradients`) uses
``(e + eps) @ W = P + eps @ W``: the noise, drawn in embedding space with the same keys (time-major,
so nothing is transposed), is projected once per sample, and ``(e + eps) . g = (P + eps W) . G``
never leaves the projected space.

Captum: ``SmoothGradTimesInput(samples=n, sigma=s, signed=True)`` is
``NoiseTunnel(InputXGradient(f)).attribute(x, nt_type="smoothgrad", nt_samples=n,
stdevs=s * (x.max() - x.min()), nt_samples_batch_size=chunk_size or None).sum(-1)`` with ``x`` the
embeddings of the maskable positions (the forward function puts them back among the fixed specials),
the noise's law being the same; ``SmoothGrad`` averages ``||E g||``, a statistic Captum's
``NoiseTunnel(Saliency)`` (elementwise ``|g|``) does not compute.
"""
from __future__ import annotations

import numbers
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from nlproar_jax.importance.base import (
    DEFAULT_PRECISION,
    measure_dataclass,
    precision_scope,
    require_model,
    resolve_target,
    row_keys,
)
from nlproar_jax.importance.gradients import _ExplainsModel, _use_fast_path, embedding_gradient, projected_gradient

# Independent random streams of one (row, sample): each folds its id into fold_in(row key, sample).
NOISE, ALPHA, BASELINE = 0, 1, 2


# -- the random draws (shared with gradient SHAP) ----------------------------------------------
def sample_stream(keys: jax.Array, sample, stream: int) -> jax.Array:
    """``[B]`` keys of ``stream`` (:data:`NOISE`, :data:`ALPHA`, :data:`BASELINE`) for sample
    ``sample`` (an int, traced or not) of each row: ``fold_in(fold_in(row key, sample), stream)``."""
    return jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, sample), stream))(keys)


def per_position(keys: jax.Array, length: int, draw, *, time_major: bool = False) -> jax.Array:
    """``draw(fold_in(keys[b], t))`` for every row ``b`` and position ``t < length``, stacked
    ``[B, T, ...]`` (or ``[T, B, ...]`` with ``time_major``): the same values in either layout."""
    positions = jnp.arange(length)
    if time_major:
        return jax.vmap(lambda t: jax.vmap(lambda k: draw(jax.random.fold_in(k, t)))(keys))(positions)
    return jax.vmap(lambda k: jax.vmap(lambda t: draw(jax.random.fold_in(k, t)))(positions))(keys)


def embedding_range(emb: jax.Array, allowed: jax.Array, *, time_major: bool = False) -> jax.Array:
    """``<f32>[B]``: ``max - min`` of each row's embedding values over its maskable positions and
    all dimensions (0 for a row without any). ``emb <f32>[B, T, D]``, ``allowed <bool>[B, T]`` (or
    ``[T, B, D]``, ``[T, B]`` with ``time_major``)."""
    keep = allowed[..., None]
    axes = (0, 2) if time_major else (1, 2)
    hi = jnp.max(jnp.where(keep, emb, -jnp.inf), axis=axes)
    lo = jnp.min(jnp.where(keep, emb, jnp.inf), axis=axes)
    return jnp.where(jnp.any(allowed, axis=axes[0]), hi - lo, 0.0)


def gaussian_noise(keys: jax.Array, sample, allowed: jax.Array, stdev: jax.Array, dim: int, *,
                   time_major: bool = False) -> jax.Array:
    """``<f32>[B, T, D]`` (``[T, B, D]`` with ``time_major``): ``N(0, stdev[b]^2)`` per (row, sample,
    position, dimension) at the positions ``allowed <bool>[B, T]`` (``[T, B]``), 0 elsewhere.
    ``keys``: one key per row; position ``t`` of sample ``s`` draws from
    ``fold_in(sample_stream(keys, s, NOISE)[b], t)``, so the noise at a position never depends on the
    sequence length (padding), the batch or the layout."""
    length = allowed.shape[0 if time_major else 1]
    z = per_position(sample_stream(keys, sample, NOISE), length, lambda k: jax.random.normal(k, (dim,)),
                     time_major=time_major)
    scale = stdev[None, :, None] if time_major else stdev[:, None, None]
    return jnp.where(allowed[..., None], z * scale, 0.0)


def model_gram(model, measure: str) -> jax.Array:
    """``E^T E <f32>[D, D]`` for the ``||E g||`` statistic; a clear error without ``embedding_table``."""
    if not hasattr(model, "embedding_table"):
        raise ValueError(f"the {measure} measure ||E g|| needs {type(model).__name__}.embedding_table() "
                         "(the matrix embed() looks up); see nlproar_jax.models.protocol")
    table = model.embedding_table()
    return table.T @ table


def _check_options(measure, **extra) -> None:
    samples, chunk = measure.samples, measure.chunk_size
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
        raise ValueError(f"{measure.name} needs samples >= 1 (an int), got {samples!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 0:
        raise ValueError(f"chunk_size must be an int >= 0 (0 = all samples at once), got {chunk!r}")
    for option, value in extra.items():
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) and 0 <= float(value) < float("inf")):
            raise ValueError(f"{measure.name} needs {option} >= 0 (a finite number), got {value!r}")


class _Sampled(_ExplainsModel):
    """What the sampled gradient measures share: the calling convention with ``key`` (one per row),
    the ``lax.map`` over samples, and the average. Subclasses define :meth:`terms`."""

    def __call__(self, model, tokens, *, target=None, aux_tokens=None, key=None) -> jax.Array:
        """``<f32>[B, T]`` (see :mod:`nlproar_jax.importance.base`); ``key``: one typed key, or one per
        row (``[B]``; a single key is split by row index), required."""
        require_model(model, self.name)
        with precision_scope(self.precision):
            tokens = jnp.asarray(tokens)
            keys = row_keys(key, tokens.shape[0])
            return self.scores(model, tokens, resolve_target(model, tokens, target, aux_tokens), aux_tokens, keys)

    def _map_samples(self, point) -> jax.Array:
        """``point(s)`` for ``s = 0 .. samples - 1``, stacked: each sample evaluated exactly once,
        ``chunk_size`` at a time (vmapped)."""
        samples = int(self.samples)
        chunk = min(int(self.chunk_size) or samples, samples)
        return jax.lax.map(point, jnp.arange(samples), batch_size=chunk)

    def scores(self, model, tokens, target, aux_tokens, keys) -> jax.Array:
        """``<f32>[B, T]``: the mean over samples of :meth:`terms` (``|.|`` unless signed or
        non-negative by construction); ``target <int32>[B]``, ``keys`` one per row."""
        s = jnp.mean(self.terms(model, tokens, target, aux_tokens, keys), axis=0)
        return s if getattr(self, "signed", True) else jnp.abs(s)  # SmoothGrad's norms have no sign


class _NoisyGradient(_Sampled):
    """SmoothGrad's sampling. Subclasses' ``_statistic(model)`` returns ``stat(x, grad, w)``: the
    per-position statistic of one sample from the model's input ``x`` and ``grad = d f_c / d x``, in
    embedding space (``w`` None) or, on the fast path, in projected space (``x = P + eps W``,
    ``grad = G``, ``w = W``)."""

    def _noise_setup(self, model, tokens):
        """``(e <f32>[B, T, D], maskable <bool>[B, T], stdev <f32>[B])``."""
        emb, allowed = model.embed(tokens), model.maskable(tokens)
        return emb, allowed, self.sigma * embedding_range(emb, allowed)

    def noisy_embeddings(self, model, tokens, keys, sample) -> jax.Array:
        """``<f32>[B, T, D]``: ``e + eps_s``, the input the model sees in sample ``sample`` (generic
        path; the fast path projects the same noise)."""
        emb, allowed, stdev = self._noise_setup(model, tokens)
        return emb + gaussian_noise(keys, sample, allowed, stdev, emb.shape[-1])

    def terms(self, model, tokens, target, aux_tokens, keys) -> jax.Array:
        """``<f32>[samples, B, T]``: the per-sample statistic at ``e + eps_s``."""
        stat = self._statistic(model)
        if _use_fast_path(self, model):
            w = model.input_weights()
            tokens_tm = jnp.swapaxes(tokens, 0, 1)
            emb = model.embed(tokens_tm)  # [T, B, D]
            proj, context = emb @ w, model.aux_context(aux_tokens)
            allowed = model.maskable(tokens).T
            stdev = self.sigma * embedding_range(emb, allowed, time_major=True)

            def point(s):
                p = proj + gaussian_noise(keys, s, allowed, stdev, emb.shape[-1], time_major=True) @ w
                return stat(p, projected_gradient(model, p, tokens_tm, context, target), w)
            return jnp.swapaxes(self._map_samples(point), 1, 2)

        emb, allowed, stdev = self._noise_setup(model, tokens)

        def point(s):
            x = emb + gaussian_noise(keys, s, allowed, stdev, emb.shape[-1])
            return stat(x, embedding_gradient(model, x, tokens, aux_tokens, target), None)
        return self._map_samples(point)


@measure_dataclass
class SmoothGrad(_NoisyGradient):
    """SmoothGrad of the gradient measure: ``mean_s ||E g_t(e + eps_s)||_2``, where
    ``g_t(x) = d f_c / d e_t`` at ``x`` and ``||E g||`` is :class:`~nlproar_jax.importance.gradients.Gradient`'s
    (the original's) norm over the vocabulary of the gradient w.r.t. the one-hot input, computed as
    ``sqrt(g^T (E^T E) g)``. ``sigma = 0`` gives :class:`Gradient` (the noise is exactly 0; up to the
    rounding of the average of identical values).
    Noise, keys and paths: see :mod:`nlproar_jax.importance.smoothgrad`.

    Options: ``samples`` (``n``; default 50, the paper's choice: "diminishing returns" above it, and
    the model-evaluation budget of integrated gradients' 50 steps), ``sigma`` (noise level as a
    fraction of the row's embedding range; default 0.15, in the paper's recommended 10-20%),
    ``chunk_size`` (samples evaluated at once; 0 = all), ``fast_path``, ``precision``.
    """

    name: ClassVar[str] = "smoothgrad"
    samples: int = 50
    sigma: float = 0.15
    chunk_size: int = 0
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        _check_options(self, sigma=self.sigma)

    def _statistic(self, model):
        gram = model_gram(model, self.name)

        def stat(x, grad, w):
            g = grad if w is None else grad @ w.T  # the fast path maps G = df/dP back: g = G W^T
            return jnp.sqrt(jnp.maximum(jnp.einsum("...d,de,...e->...", g, gram, g), 0.0))
        return stat


@measure_dataclass
class SmoothGradTimesInput(_NoisyGradient):
    """SmoothGrad of input x gradient: ``|mean_s (e_t + eps_s,t) . g_t(e + eps_s)|``, the mean over
    the noisy copies of the **signed** dot product of each noisy input with its gradient (summed over
    the embedding dimension), then the absolute value (``signed=True``: without it), as
    :class:`~nlproar_jax.importance.gradients.InputTimesGradient` and integrated gradients do.
    ``sigma = 0`` gives :class:`InputTimesGradient` (up to rounding). Options and defaults as
    :class:`SmoothGrad`, plus ``signed``."""

    name: ClassVar[str] = "smoothgrad_times_input"
    samples: int = 50
    sigma: float = 0.15
    signed: bool = False
    chunk_size: int = 0
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        _check_options(self, sigma=self.sigma)

    def _statistic(self, model):
        def stat(x, grad, w):  # fast path: x = P + eps W, grad = G, and (e + eps) . g = x . G
            return jnp.sum(x * grad, axis=-1)
        return stat
