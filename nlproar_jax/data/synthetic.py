"""The embedded default task: generated text whose important tokens are known.

Each document is a run of distractor words (drawn Zipf-like from a fixed list)
with 1-3 *signal* words of its class inserted at random positions: class 0
documents carry words ``neg0..negK``, class 1 documents ``pos0..posK``. The label
depends on the signal words alone, so a faithful importance measure ranks them
first, and masking the top 10% of tokens should destroy accuracy while random
masking barely moves it. Deterministic in ``seed``; needs no files.
"""
from __future__ import annotations

import numpy as np

from nlproar_jax.data.dataset import RawSplit, RawTask

LABEL_NAMES = ("negative", "positive")


def generate_split(seed: int, size: int, *, num_distractors: int = 400, num_signal_words: int = 8,
                   min_length: int = 8, max_length: int = 30, max_signals: int = 3):
    """``(documents, labels, signal_positions)`` for ``size`` examples.

    ``signal_positions[i]`` lists the (0-based, before [CLS]) token positions of
    the signal words in document ``i``: the ground truth for importance.
    """
    rng = np.random.default_rng(seed)
    distractors = np.array([f"w{i:03d}" for i in range(num_distractors)])
    zipf = 1.0 / np.arange(1, num_distractors + 1)
    zipf /= zipf.sum()
    docs, labels, positions = [], [], []
    for _ in range(size):
        label = int(rng.integers(2))
        length = int(rng.integers(min_length, max_length + 1))
        words = list(distractors[rng.choice(num_distractors, size=length, p=zipf)])
        n_sig = int(rng.integers(1, max_signals + 1))
        where = np.sort(rng.choice(length, size=n_sig, replace=False))
        prefix = "pos" if label == 1 else "neg"
        for p in where:
            words[p] = f"{prefix}{int(rng.integers(num_signal_words))}"
        docs.append([str(w) for w in words])
        labels.append(label)
        positions.append([int(p) for p in where])
    return docs, labels, positions


def load(data_dir: str | None = None, *, seed: int = 0, train_size: int = 2000, val_size: int = 400,
         test_size: int = 400, **generator_options) -> RawTask:
    """The synthetic task. ``data_dir`` is ignored (nothing is read)."""
    del data_dir
    splits = {}
    for offset, (name, size) in enumerate((("train", train_size), ("val", val_size), ("test", test_size))):
        docs, labels, _ = generate_split(seed * 1000 + offset, size, **generator_options)
        splits[name] = RawSplit(docs, labels)
    return RawTask("synthetic", LABEL_NAMES, splits)
