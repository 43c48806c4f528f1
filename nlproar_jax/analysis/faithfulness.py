"""The paper's faithfulness summary: the area between a measure's ROAR curve and random's.

Madsen et al. (2022) summarise a ROAR curve by how far it falls below the
random baseline (``export/roar_plot.py`` of the original, ORIGINAL.md section 7).
With ``x = k / 100`` (quantile masking) and per seed:

- ``absolute = integral of (random(x) - measure(x)) dx`` (trapezoid rule over the
  measured k, k = 0 being the shared unmasked base model);
- ``maximum = integral of (random(x) - random(1)) dx``: the area a measure would
  reach if removing its first tokens already hurt as much as removing all of them;
- ``relative = clip(absolute / maximum, -1, 1)``: 1 is as faithful as the data
  allows, 0 no better than random, negative worse than random.

A measure's curve is only measured up to k = 90; like the original, its value at
k = 100 (every token masked) is taken from random's, where every measure agrees.
Everything here is plain numpy/scipy on small arrays, no JAX.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Mapping, Optional, Sequence

import numpy as np

FULL_MASK_K = 100  # quantile k at which every eligible token is masked


def trapezoid(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoid-rule integral of ``y`` over ``x`` (both ``[n]``, ``x`` increasing); 0.0 for n < 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2:
        return 0.0
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"x must be strictly increasing, got {x.tolist()}")
    return float(np.sum((y[1:] + y[:-1]) * 0.5 * np.diff(x)))


def _upto(k: np.ndarray, upto: Optional[float]) -> np.ndarray:
    return np.ones(len(k), bool) if upto is None else k <= upto


def area_between_curves(k: Sequence[float], baseline: Sequence[float], measure: Sequence[float], *,
                        upto: Optional[float] = None, x_scale: float = 100.0) -> float:
    """``integral of (baseline - measure) dx`` with ``x = k / x_scale``, over the points with ``k <= upto``.

    Args:
      k: ``[n]`` increasing masking levels, normally starting at 0.
      baseline, measure: ``[n]`` the reported test metric of the two curves at each k.
      upto: integrate only up to this k (the original also reports k <= 20); None = all.
      x_scale: 100 for quantile k (x is the masked fraction); 1 for count k (x in tokens).
    """
    k, baseline, measure = (np.asarray(a, np.float64) for a in (k, baseline, measure))
    keep = _upto(k, upto)
    return trapezoid(k[keep] / x_scale, baseline[keep] - measure[keep])


def max_area(k: Sequence[float], baseline: Sequence[float], *, upto: Optional[float] = None,
             x_scale: float = 100.0) -> float:
    """``integral of (baseline - baseline[-1]) dx``: the area between the baseline and its value at the
    last (largest) k, normally k = 100, where every token is masked. ``upto`` limits the integral as in
    :func:`area_between_curves` but the reference value stays ``baseline[-1]``, as in the original."""
    baseline = np.asarray(baseline, np.float64)
    return area_between_curves(k, baseline, np.full_like(baseline, baseline[-1]), upto=upto, x_scale=x_scale)


def relative_area(absolute: float, maximum: float) -> float:
    """``clip(absolute / maximum, -1, 1)``; NaN where ``maximum`` is 0, negative or NaN (random never
    dropped, so nothing can be compared against it)."""
    if not (maximum > 0) or math.isnan(absolute):
        return float("nan")
    return float(np.clip(absolute / maximum, -1.0, 1.0))


@dataclasses.dataclass(frozen=True)
class Faithfulness:
    """The summary of one measure's curve for one seed. ``k``: the levels integrated over."""

    absolute: float
    maximum: float
    relative: float
    k: tuple[float, ...]


def paired_curves(measure: Mapping[float, float], baseline: Mapping[float, float], *,
                  end: Optional[float] = FULL_MASK_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align two ``{k: value}`` curves on their common k: ``(k, baseline, measure)``, each ``[n]``.

    Where ``end`` is given and the baseline has it but the measure does not, the measure takes the
    baseline's value there (at k = 100 every measure masks every token, so all curves meet). Raises if
    fewer than two common points remain.
    """
    measure = dict(measure)
    if end is not None and end in baseline and end not in measure:
        measure[end] = baseline[end]
    ks = sorted(set(measure) & set(baseline))
    if len(ks) < 2:
        raise ValueError(f"curves share fewer than 2 k values (measure: {sorted(measure)}, "
                         f"baseline: {sorted(baseline)}); an area needs at least 2")
    return (np.asarray(ks, np.float64), np.asarray([baseline[k] for k in ks], np.float64),
            np.asarray([measure[k] for k in ks], np.float64))


def faithfulness(measure: Mapping[float, float], baseline: Mapping[float, float], *, upto: Optional[float] = None,
                 x_scale: float = 100.0, end: Optional[float] = FULL_MASK_K) -> Faithfulness:
    """Absolute, maximum and relative area of one seed's ``{k: metric}`` curve against the baseline's.

    ``maximum`` (and so ``relative``) is NaN when ``end`` is None or the baseline lacks it (count
    masking has no all-masked level)."""
    k, base, meas = paired_curves(measure, baseline, end=end)
    absolute = area_between_curves(k, base, meas, upto=upto, x_scale=x_scale)
    if end is not None and k[-1] == end:
        maximum = max_area(k, base, upto=upto, x_scale=x_scale)
    else:
        maximum = float("nan")
    return Faithfulness(absolute, maximum, relative_area(absolute, maximum),
                        tuple(float(x) for x in k[_upto(k, upto)]))


@dataclasses.dataclass(frozen=True)
class MeanCI:
    """The mean of per-seed values and its 95% bootstrap confidence interval. ``n``: seeds used."""

    mean: float
    low: float
    high: float
    n: int


def mean_ci(values: Sequence[float], *, confidence: float = 0.95, seed: int = 0,
            n_resamples: int = 9999) -> MeanCI:
    """Mean and bootstrap CI over seeds, with ``scipy.stats.bootstrap`` (BCa) as the original does.

    NaN values are dropped first. With no values everything is NaN. With one value, or all values
    equal, the interval is the point itself (``low == mean == high``), as in the original's
    ``bootstrap_confint``: a single seed gives no spread to resample. Where BCa cannot form an
    interval (degenerate jackknife) the percentile interval is used.
    """
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], np.float64)
    if len(x) == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0)
    mean = float(np.mean(x))
    if np.all(x == x[0]):
        return MeanCI(mean, mean, mean, len(x))
    import scipy.stats  # lazy: only summaries need scipy

    low = high = float("nan")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                                        method=method, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            break
    return MeanCI(mean, low, high, len(x))
