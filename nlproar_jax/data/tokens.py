"""Special tokens and the vocabulary, with the original's fixed ids.

The original (``nlproar/dataset/_vocab_tokenizer.py``) reserves ids 0-4 for
[PAD], [CLS], [EOS], [MASK], [UNK], then lists every training-split token whose
document frequency is at least ``min_df``. The original's order of the remaining
ids depends on Python's string hashing; **ours is sorted**, so ids are
deterministic across runs and machines.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Sequence

import numpy as np

PAD, CLS, EOS, MASK, UNK = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[EOS]", "[MASK]", "[UNK]")
# Positions with id >= FIRST_ELIGIBLE are attended and may be ROAR-masked:
# [MASK], [UNK] and words; never [PAD], [CLS], [EOS].
FIRST_ELIGIBLE = MASK


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Maps tokens to ids. ``words[i]`` is the token with id ``i``."""

    words: tuple[str, ...]

    def __post_init__(self):
        if tuple(self.words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {self.words[:5]}")

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], min_df: int = 1) -> "Vocabulary":
        """Specials, then every token in at least ``min_df`` documents, sorted."""
        if min_df < 1:
            raise ValueError(f"min_df must be >= 1, got {min_df}")
        df: collections.Counter = collections.Counter()
        for doc in documents:
            df.update(set(doc))
        words = sorted(w for w, n in df.items() if n >= min_df and w not in SPECIAL_TOKENS)
        return cls(SPECIAL_TOKENS + tuple(words))

    @property
    def index(self) -> dict[str, int]:
        # Built on demand and cached on the instance (frozen dataclass: bypass setattr).
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {w: i for i, w in enumerate(self.words)}
            object.__setattr__(self, "_index", cached)
        return cached

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """``<int32>[len(tokens) + 2]``: [CLS] ids [EOS], unknown words as [UNK]."""
        index = self.index
        ids = [CLS] + [index.get(t, UNK) for t in tokens] + [EOS]
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]


@dataclasses.dataclass(frozen=True)
class PretrainedVocabulary(Vocabulary):
    """A pretrained tokenizer's vocabulary: ``words[i]`` is the word piece with (data) id ``i``.

    Tasks encoded for a pretrained transformer (:mod:`nlproar_jax.data.pretrained`) use the
    tokenizer's ids, not the fixed specials above: which ids are padding, [CLS]/[SEP] and the mask
    belongs to the model (``maskable``, ``mask_token``). ``source`` identifies the tokenizer (and the
    encoding rules): :func:`nlproar_jax.data.pretrained.tokenizer_identity`.
    """

    source: str = ""

    def __post_init__(self):
        if not self.source:
            raise ValueError("a PretrainedVocabulary needs its tokenizer's identity (source)")

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        raise TypeError(f"a pretrained vocabulary ({self.source}) encodes with its tokenizer "
                        "(nlproar_jax.data.pretrained.encode_task), not word by word")
