"""LIME and KernelSHAP: a weighted linear model of the masked forward passes, fitted in closed form.

Both measures sample keep-masks ``z`` over a row's **features**, its maskable positions (a removed
token is replaced by ``model.mask_token``, as ROAR does; padding and specials are never features and
score 0), evaluate the explained class's output on each perturbation with the masked forward pass
(:mod:`.perturbation`: chunked, one batch of ``chunk * B`` rows per chunk, the BiLSTM's
projection-select fast path), and fit ``y(z) ~ b + sum_t phi_t z_t`` by weighted least squares.
The fit is solved on the device per row from accumulated sufficient statistics (``sum w z z^T``
etc., ``[B, T, T]``), so memory is bounded by the chunk; non-features are pinned to 0, so padding
never changes a score. The coefficients ``phi`` are the scores (``|phi|`` unless ``signed``).

Random draws: row ``b``'s sample ``s`` uses ``fold_in(key_b, s)`` and position ``t`` within it
``fold_in(., t)`` (:func:`~nlproar_jax.importance.perturbation.ranked_order`), so a row's scores
depend on its key only: never on padding or batch mates. ``exhaustive=True`` enumerates every
coalition instead (tests; sequence length at most 16) and needs no key.
"""
from __future__ import annotations

from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import jax.scipy.linalg
from jax.scipy.special import digamma, gammaln

from nlproar_jax.importance.base import DEFAULT_PRECISION, measure_dataclass
from nlproar_jax.importance.perturbation import (
    PerturbationMeasure,
    all_keep_masks,
    check_chunk_size,
    check_exhaustive_length,
    check_output,
    keep_first,
    masked_evaluator,
    ranked_order,
    resolve_chunk,
    sample_bits,
    scan_chunks,
    unit_float,
)

LIME_KERNELS = ("exponential", "none")
# The minimum-norm solves (KernelSHAP; LIME with alpha=0): iterated Tikhonov with this ridge,
# relative to the system's mean eigenvalue, and this many refinements of one Cholesky factorisation.
# (LAPACK's eigh, the textbook route to a pseudo-inverse, takes seconds on [32, 250, 250] here;
# Cholesky takes milliseconds.)
MIN_NORM_RIDGE = 1e-3
MIN_NORM_ITERATIONS = 3


# -- closed-form solves ----------------------------------------------------------------------
def spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``<f32>[B, T]``: ``a^-1 b`` for symmetric positive definite ``a <f32>[B, T, T]`` (Cholesky)."""
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), b[..., None])[..., 0]


def min_norm_solve(a: jax.Array, b: jax.Array, ridge: float = MIN_NORM_RIDGE,
                   iterations: int = MIN_NORM_ITERATIONS) -> jax.Array:
    """``<f32>[B, T]``: the minimum-norm solution of consistent symmetric PSD systems ``a x = b``
    (``b`` in the range of ``a``, as normal equations are), singular or not.

    Iterated Tikhonov: ``x_0 = 0``, ``x_{k+1} = x_k + (a + lam I)^-1 (b - a x_k)`` for
    ``iterations + 1`` steps, ``lam = ridge * trace(a) / T``, one Cholesky factorisation. Along an
    eigenvalue ``l`` of ``a`` the error shrinks by ``lam / (l + lam)`` per step (after 4 steps
    ``(ridge * mean / l)^4``: 1e-8 where ``l`` is a tenth of the mean eigenvalue); along ``a``'s null
    space only float32 rounding is added, about ``1e-7 * |a| / lam`` of ``|x|`` per step, so the
    result is the minimum-norm solution to about 1e-3 when the system is singular."""
    length = a.shape[-1]
    lam = ridge * jnp.trace(a, axis1=-2, axis2=-1) / length
    lam = jnp.where(lam > 0, lam, 1.0)
    factor = jax.scipy.linalg.cho_factor(a + lam[:, None, None] * jnp.eye(length, dtype=a.dtype))
    x = jnp.zeros_like(b)
    for _ in range(iterations + 1):
        residual = b - jnp.einsum("bij,bj->bi", a, x)
        x = x + jax.scipy.linalg.cho_solve(factor, residual[..., None])[..., 0]
    return x


def _features(keep, maskable):
    """``<f32>[n, B, T]``: the regression's binary features (1 = kept feature; 0 at non-features)."""
    return (keep & maskable[None]).astype(jnp.float32)


# -- LIME ------------------------------------------------------------------------------------
@measure_dataclass
class Lime(PerturbationMeasure):
    """LIME for text, as ``lime``'s ``LimeTextExplainer(bow=False, mask_string=[MASK])``.

    Sampling (``lime_text.LimeTextExplainer.__data_labels_distances``): sample 0 is the input
    itself; every other sample draws how many features to remove uniformly from ``1 .. d`` (``d``:
    the row's maskable count; lime's ``randint(1, d + 1)``, so all may go) and removes that many
    distinct maskable tokens, uniformly. Features are positions (``bow=False``), not word types.

    Weights: ``distance = 100 * cosine distance(z, 1) = 100 (1 - sqrt(|z| / d))``, kernel
    ``sqrt(exp(-distance^2 / kernel_width^2))`` with ``kernel_width=25`` (lime's text defaults);
    ``kernel="none"``: every sample weight 1.

    Fit: weighted ridge with an unpenalised intercept, ``alpha=1`` (lime's default regressor,
    ``Ridge(alpha=1, fit_intercept=True)``), on **all** features (lime's ``num_features`` set to
    ``d``: ROAR needs a score per token, lime's default 10 would leave the rest 0), solved in closed
    form per row: ``(Z_c^T W Z_c + alpha I) phi = Z_c^T W y_c`` with ``Z_c, y_c`` centred on their
    weighted means. ``alpha=0`` gives the minimum-norm least-squares fit.

    Output: the explained class's softmax **probability** (``output="probability"``, the default:
    lime explains ``predict_proba``), or its logit. Scores ``|phi_t|`` (``signed=True``: ``phi_t``,
    positive = keeping the token raises the output).

    ``samples=5000``: lime's ``num_samples`` default (Captum's ``Lime`` defaults to 50 with a
    different kernel, width 1 on the cosine distance, and a Lasso; we follow the lime package,
    which defines LIME for text). Exactly ``samples`` model evaluations per row.
    ``exhaustive=True``: every coalition once (``2**T`` evaluations, ``T <= 16``; ``samples`` is
    ignored), each weighted by the kernel.
    """

    name: ClassVar[str] = "lime"
    samples: int = 5000
    kernel: str = "exponential"
    kernel_width: float = 25.0
    alpha: float = 1.0
    output: str = "probability"
    signed: bool = False
    exhaustive: bool = False
    chunk_size: Optional[int] = None
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        if not isinstance(self.samples, int) or self.samples < 2:
            raise ValueError(f"lime needs samples >= 2 (the input itself and one perturbation), got {self.samples!r}")
        if self.kernel not in LIME_KERNELS:
            raise ValueError(f"unknown lime kernel {self.kernel!r}; valid: {list(LIME_KERNELS)}")
        if not float(self.kernel_width) > 0:
            raise ValueError(f"lime needs kernel_width > 0, got {self.kernel_width!r}")
        if not float(self.alpha) >= 0:
            raise ValueError(f"lime needs alpha >= 0 (ridge penalty), got {self.alpha!r}")
        check_output(self.output)
        check_chunk_size(self.chunk_size)

    @property
    def needs_key(self) -> bool:
        return not self.exhaustive

    @staticmethod
    def keep_masks(keys: jax.Array, maskable: jax.Array, sample_index: jax.Array) -> jax.Array:
        """``<bool>[n, B, T]``: lime's samples ``sample_index <int32>[n]`` of each row (``keys <key>[B]``)."""
        per_sample, per_position = sample_bits(keys, sample_index, maskable.shape[1])
        d = maskable.sum(axis=1)[None]
        removed = 1 + jnp.minimum(jnp.floor(unit_float(per_sample) * d).astype(jnp.int32), d - 1)  # 1 .. d
        maskable = jnp.broadcast_to(maskable[None], per_position.shape)
        keep = keep_first(ranked_order(per_position, maskable), maskable, d - removed)
        return keep | (sample_index == 0)[:, None, None]

    def weights(self, z: jax.Array, d: jax.Array) -> jax.Array:
        """``<f32>[n, B]``: the kernel weight of each sample's features ``z <f32>[n, B, T]``."""
        if self.kernel == "none":
            return jnp.ones(z.shape[:2], jnp.float32)
        frac = z.sum(-1) / jnp.maximum(d, 1)[None]
        distance = 100.0 * (1.0 - jnp.sqrt(frac))
        return jnp.sqrt(jnp.exp(-distance ** 2 / float(self.kernel_width) ** 2))

    def scores(self, model, tokens, target, aux_tokens=None, keys=None) -> jax.Array:
        """``<f32>[B, T]``; ``target <int32>[B]``, ``keys <key>[B]`` (None when exhaustive)."""
        batch, length = tokens.shape
        maskable = model.maskable(tokens)
        d = maskable.sum(axis=1)
        if self.exhaustive:
            check_exhaustive_length(length, self.name)
            samples = 2 ** length
            multiplicity = jnp.exp2((d - length).astype(jnp.float32))  # each coalition once in total
        else:
            samples = self.samples
        evaluate = masked_evaluator(model, tokens, target, aux_tokens, output=self.output, fast_path=self.fast_path)

        def chunk(idx):
            keep = all_keep_masks(idx, maskable) if self.exhaustive else self.keep_masks(keys, maskable, idx)
            y = evaluate(keep)
            z = _features(keep, maskable)
            w = self.weights(z, d)
            if self.exhaustive:
                w = w * multiplicity[None]
            wz = w[..., None] * z
            return (w.sum(0), wz.sum(0), (w * y).sum(0), jnp.einsum("nbt,nbu->btu", wz, z),
                    jnp.einsum("nbt,nb->bt", wz, y)), None

        f32 = jnp.float32
        init = (jnp.zeros((batch,), f32), jnp.zeros((batch, length), f32), jnp.zeros((batch,), f32),
                jnp.zeros((batch, length, length), f32), jnp.zeros((batch, length), f32))
        (sw, swz, swy, swzz, swzy), _ = scan_chunks(chunk, samples, resolve_chunk(self.chunk_size, samples, batch, length),
                                                    init)
        mean_z, mean_y = swz / sw[:, None], swy / sw
        gram = swzz - swz[:, :, None] * mean_z[:, None, :]   # Z_c^T W Z_c
        rhs = swzy - swz * mean_y[:, None]                     # Z_c^T W y_c
        feature = maskable.astype(f32)
        pin = feature[:, :, None] * feature[:, None, :]       # non-features: identity rows, zero rhs
        eye = jnp.eye(length, dtype=f32)
        a = gram * pin + eye * (float(self.alpha) * feature + (1 - feature))[:, None, :]
        rhs = rhs * feature
        phi = spd_solve(a, rhs) if self.alpha > 0 else min_norm_solve(a, rhs)  # alpha > 0: positive definite
        phi = phi * feature
        return phi if self.signed else jnp.abs(phi)


# -- KernelSHAP ------------------------------------------------------------------------------
def harmonic(n: jax.Array) -> jax.Array:
    """``H_n = sum_{k=1}^n 1/k`` for real ``n >= 0`` (``digamma(n + 1) + euler_gamma``)."""
    return digamma(n + 1.0) + 0.5772156649015329


def shapley_size_cdf(size: jax.Array, d: jax.Array) -> jax.Array:
    """``P(|z| <= size)`` for coalition sizes drawn with ``p(k) ~ (d-1) / (k (d-k))``, ``k = 1 .. d-1``
    (the Shapley kernel summed over the ``C(d, k)`` coalitions of size ``k``), in closed form:
    ``(H_k + H_{d-1} - H_{d-1-k}) / (2 H_{d-1})``, ``d >= 2``."""
    size, d = jnp.asarray(size, jnp.float32), jnp.asarray(d, jnp.float32)
    return (harmonic(size) + harmonic(d - 1) - harmonic(d - 1 - size)) / (2 * harmonic(d - 1))


def shapley_kernel(size: jax.Array, d: jax.Array) -> jax.Array:
    """``pi(z) = (d-1) / (C(d, |z|) |z| (d - |z|))`` for ``0 < |z| < d`` (0 elsewhere: the empty and full
    coalitions are constraints, not samples)."""
    size, d = jnp.asarray(size, jnp.float32), jnp.asarray(d, jnp.float32)
    inner = (size > 0) & (size < d)
    safe = jnp.where(inner, size, 1.0)
    log_binom = gammaln(d + 1) - gammaln(safe + 1) - gammaln(d - safe + 1)
    return jnp.where(inner, (d - 1) / (jnp.exp(log_binom) * safe * (d - safe)), 0.0)


@measure_dataclass
class KernelShap(PerturbationMeasure):
    """KernelSHAP (Lundberg & Lee 2017) over a row's maskable tokens, with the [MASK] token as the
    absent value: the value of a coalition ``z`` is ``f(z)``, the explained class's output with the
    tokens outside ``z`` replaced by ``model.mask_token``.

    Sampling as Captum's ``KernelShap`` (and ``shap``'s kernel): sample 0 is the full coalition (the
    input), sample 1 the empty one (every maskable token removed); every other sample draws a size
    ``k`` in ``1 .. d-1`` with ``p(k) ~ (d-1) / (k (d-k))`` and keeps ``k`` distinct maskable tokens
    uniformly, so the Shapley kernel is realised by the sampling and each sample has regression
    weight 1. Fit: weighted least squares of ``f(z) - f(empty)`` on ``z`` with the efficiency
    constraint ``sum_t phi_t = f(x) - f(empty)`` imposed exactly (Captum approximates it with weight
    1e6 on the two; shap eliminates a variable), solved in closed form per row (minimum-norm when
    ``samples - 2`` is smaller than ``d - 1``). ``exhaustive=True``: every coalition once, weighted by
    ``pi(z) = (d-1) / (C(d,|z|) |z| (d-|z|))``: the exact Shapley values of ``f`` (``2**T``
    evaluations, ``T <= 16``; ``samples`` ignored).

    Output: the explained class's **logit** (``output="logit"``, the default: the repository's
    measures explain ``f_c``; Captum explains whatever the forward returns) or its softmax
    probability. Scores ``|phi_t|`` (``signed=True``: ``phi_t``).

    ``samples=2048``: shap's ``KernelExplainer`` default is ``2 d + 2048``, which depends on the
    row; a static count is needed (the samples are one batched program, and a count depending on
    the padded length would let padding change a score), so its fixed part. Captum's default,
    25, is fewer samples than a sentence has tokens (an underdetermined fit). Exactly ``samples``
    model evaluations per row (the full and empty coalitions included, as in Captum).
    """

    name: ClassVar[str] = "kernel_shap"
    samples: int = 2048
    output: str = "logit"
    signed: bool = False
    exhaustive: bool = False
    chunk_size: Optional[int] = None
    fast_path: bool = True
    precision: Optional[str] = DEFAULT_PRECISION

    def __post_init__(self):
        if not isinstance(self.samples, int) or self.samples < 3:
            raise ValueError(f"kernel_shap needs samples >= 3 (the full and empty coalitions and one more), "
                             f"got {self.samples!r}")
        check_output(self.output)
        check_chunk_size(self.chunk_size)

    @property
    def needs_key(self) -> bool:
        return not self.exhaustive

    @staticmethod
    def keep_masks(keys: jax.Array, maskable: jax.Array, sample_index: jax.Array) -> jax.Array:
        """``<bool>[n, B, T]``: the coalitions ``sample_index <int32>[n]`` of each row (``keys <key>[B]``)."""
        length = maskable.shape[1]
        per_sample, per_position = sample_bits(keys, sample_index, length)
        d = maskable.sum(axis=1)
        sizes = jnp.arange(1, max(length, 2), dtype=jnp.int32)  # candidate sizes 1 .. T-1
        cdf = jnp.where(sizes[None] <= d[:, None] - 2, shapley_size_cdf(sizes[None], jnp.maximum(d, 2)[:, None]),
                        jnp.inf)  # [B, T-1]; sizes beyond d-2 never "below"
        # the smallest k with cdf(k) >= u: 1 + #{1 <= K <= d-2 : cdf(K) < u}
        kept = 1 + (cdf[None] < unit_float(per_sample)[..., None]).sum(-1)
        s = sample_index[:, None]
        kept = jnp.where(s == 0, d[None], jnp.where(s == 1, 0, kept))
        maskable = jnp.broadcast_to(maskable[None], per_position.shape)
        return keep_first(ranked_order(per_position, maskable), maskable, kept)

    def scores(self, model, tokens, target, aux_tokens=None, keys=None) -> jax.Array:
        """``<f32>[B, T]``; ``target <int32>[B]``, ``keys <key>[B]`` (None when exhaustive)."""
        batch, length = tokens.shape
        maskable = model.maskable(tokens)
        d = maskable.sum(axis=1)
        if self.exhaustive:
            check_exhaustive_length(length, self.name)
            samples, full, empty = 2 ** length, 2 ** length - 1, 0
            multiplicity = jnp.exp2((d - length).astype(jnp.float32))
        else:
            samples, full, empty = self.samples, 0, 1
        evaluate = masked_evaluator(model, tokens, target, aux_tokens, output=self.output, fast_path=self.fast_path)

        def chunk(idx):
            keep = all_keep_masks(idx, maskable) if self.exhaustive else self.keep_masks(keys, maskable, idx)
            y = evaluate(keep)
            z = _features(keep, maskable)
            if self.exhaustive:
                w = shapley_kernel(z.sum(-1), d[None]) * multiplicity[None]
            else:
                w = jnp.broadcast_to((idx >= 2).astype(jnp.float32)[:, None], y.shape)
            wz = w[..., None] * z
            return (wz.sum(0), jnp.einsum("nbt,nbu->btu", wz, z), jnp.einsum("nbt,nb->bt", wz, y)), y

        f32 = jnp.float32
        init = (jnp.zeros((batch, length), f32), jnp.zeros((batch, length, length), f32),
                jnp.zeros((batch, length), f32))
        (swz, gram, swzy), y = scan_chunks(chunk, samples, resolve_chunk(self.chunk_size, samples, batch, length), init)
        f_empty = y[empty]
        delta = y[full] - f_empty                                 # sum_t phi_t, by efficiency
        b = swzy - swz * f_empty[:, None]                          # Z^T W (y - f(empty))
        return self._combine(self.constrained_fit(gram, b, delta, maskable))

    @staticmethod
    def constrained_fit(gram, b, delta, maskable) -> jax.Array:
        """``<f32>[B, T]``: ``argmin_phi phi^T G phi - 2 b^T phi`` subject to ``sum_t phi_t = delta`` over the
        features (``maskable``) and ``phi = 0`` elsewhere, minimum-norm when underdetermined.

        With ``m`` the feature indicator and ``P = diag(m) - m m^T / d`` the projector onto
        zero-sum feature vectors, ``phi = delta m / d + u`` with ``u = P u`` solving
        ``P G P u = P (b - G m delta / d)``; the directions outside ``P`` get eigenvalue
        ``trace(P G P) / (d - 1)`` so the system is well scaled, and they carry no right-hand side."""
        length = maskable.shape[1]
        m = maskable.astype(jnp.float32)
        d = m.sum(-1)
        safe_d = jnp.maximum(d, 1.0)
        proj = jnp.eye(length, dtype=jnp.float32) * m[:, None, :] - m[:, :, None] * m[:, None, :] / safe_d[:, None, None]
        pgp = proj @ gram @ proj
        scale = jnp.trace(pgp, axis1=1, axis2=2) / jnp.maximum(d - 1, 1.0)
        scale = jnp.where(scale > 0, scale, 1.0)
        a = pgp + scale[:, None, None] * (jnp.eye(length, dtype=jnp.float32) - proj)
        base = m * (delta / safe_d)[:, None]
        rhs = jnp.einsum("bij,bj->bi", proj, b - jnp.einsum("bij,bj->bi", gram, base))
        u = jnp.einsum("bij,bj->bi", proj, min_norm_solve(a, rhs))
        return base + u

    def _combine(self, phi):
        return phi if self.signed else jnp.abs(phi)
