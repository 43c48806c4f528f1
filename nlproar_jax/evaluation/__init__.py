"""Faithfulness and plausibility of importance scores without retraining (complements ROAR).

* :mod:`.erasure` (JAX): ERASER/UNIREX comprehensiveness, sufficiency, AOPC and decision flips of
  any classifier on any precomputed scores, per batch (:func:`.erasure.erasure_batch`) and over a
  split (:func:`.erasure.erasure_over_split`).
* :mod:`.plausibility` (numpy only): agreement of scores with gold token rationales (top-k and
  threshold precision/recall/F1, AUPRC, mean average precision, Spearman), and the synthetic task's
  gold rationales (:func:`.plausibility.synthetic_rationales`).

This package imports neither submodule, so ``nlproar_jax.evaluation.plausibility`` stays JAX-free.
"""
