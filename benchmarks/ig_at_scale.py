"""Integrated gradients over a whole SNLI-sized split, the way a ROAR run computes it.

  python benchmarks/ig_at_scale.py --pairs 570000 --out ig_snli.jsonl     # SNLI's size (GPU)
  python benchmarks/ig_at_scale.py --pairs 200 --smoke                     # seconds, on a CPU

The paired BiLSTM-attention model (SNLI's shape: 300-d embeddings, H = 128, 3 classes) with random
weights, and ``--pairs`` synthetic premise / hypothesis pairs whose lengths follow SNLI's (premise 14
tokens on average, hypothesis 8, both long-tailed; [CLS] / [EOS] added). The measure runs through
:func:`nlproar_jax.roar.scores.importance_over_split` (length buckets, the device-memory chunking
of the interpolation points, the host copy of every score), as in a run's importance step. A
warm-up over ``--warmup`` pairs of the same length distribution compiles every bucket first; the
JSON line has the seconds for the whole split and pairs/s. The original computes these scores with
one Captum call per batch of 64 (ORIGINAL.md), which ``benchmarks/throughput.py --torch`` compares.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def snli_like_lengths(rng: np.random.Generator, n: int, mean: float, low: int, high: int) -> np.ndarray:
    """Word counts with SNLI's shape: a shifted negative binomial clipped to ``[low, high]``."""
    return np.clip(low + rng.negative_binomial(4, 4 / (4 + mean - low), n), low, high)


def synthetic_split(n: int, vocab: int, seed: int):
    from nlproar_jax.data.dataset import Ragged, Split
    from nlproar_jax.data.tokens import CLS, EOS, MASK

    rng = np.random.default_rng(seed)

    def ragged(mean, low, high):
        lengths = snli_like_lengths(rng, n, mean, low, high) + 2  # [CLS] ... [EOS]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        values = rng.integers(MASK + 1, vocab, offsets[-1]).astype(np.int32)
        values[offsets[:-1]] = CLS
        values[offsets[1:] - 1] = EOS
        return Ragged(values, offsets)

    return Split(main=ragged(14, 2, 80), labels=rng.integers(0, 3, n).astype(np.int32), aux=ragged(8, 1, 55))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=570_000)
    p.add_argument("--warmup", type=int, default=5_000)
    p.add_argument("--batch", type=int, default=64, help="the run's batch size (the original's importance batch: 64)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--vocab", type=int, default=20_000)
    p.add_argument("--embedding", type=int, default=300)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--smoke", action="store_true", help="a tiny model (for a CPU check of the script)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.smoke:
        a.vocab, a.embedding, a.hidden, a.warmup = 200, 16, 8, min(a.warmup, a.pairs)

    import jax

    from nlproar_jax import importance
    from nlproar_jax.models import build_model
    from nlproar_jax.roar.scores import importance_over_split

    model = build_model(paired=True, vocab_size=a.vocab, num_classes=3, embedding_dim=a.embedding,
                        hidden_size=a.hidden, seed=0, lstm_impl="auto")
    measure = importance.get("integrated_gradient", steps=a.steps)

    def run(split):
        t0 = time.perf_counter()
        scores = importance_over_split(model, split, measure, key=jax.random.key(0), batch_size=a.batch,
                                       hidden_size=a.hidden, desc="integrated_gradient")
        return time.perf_counter() - t0, scores

    warm, _ = run(synthetic_split(a.warmup, a.vocab, seed=0 if a.warmup >= a.pairs else 1))
    seconds, scores = run(synthetic_split(a.pairs, a.vocab, seed=0))
    device = jax.devices()[0]
    row = {"figure": "integrated_gradient_split", "pairs": a.pairs, "steps": a.steps, "batch": a.batch,
           "seconds": seconds, "pairs_per_s": a.pairs / seconds, "warmup_pairs": a.warmup, "warmup_seconds": warm,
           "finite": bool(np.all(np.isfinite(scores))), "vocab": a.vocab, "embedding": a.embedding,
           "hidden": a.hidden, "lstm_impl_used": model.encoder.impl,
           "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "jax": jax.__version__,
           "hostname": platform.node()}
    line = json.dumps(row)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
