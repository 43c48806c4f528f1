"""Special tokens and the vocabulary, with the original's fixed ids.

The original (``nlproar/dataset/_vocab_tokenizer.py``) reserves ids 0-4 for
[PAD], [CLS], [EOS], [MASK], [UNK], then lists every training-split token whose
document frequency is at least ``min_df``. The original's order of the remaining
ids depends on Python's string hashing; **ours is sorted**, so ids are
deterministic across runs and machines.

A pretrained tokenizer's vocabulary (:class:`PretrainedVocabulary`) holds word pieces; for display,
:func:`merge_word_pieces` joins a row's pieces back into words (BERT's "##" continuations, RoBERTa's
"Ġ" word starts: :func:`piece_convention`), a word's score being the sum of its pieces'.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Optional, Sequence

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


# -- word pieces back into words (for display) ---------------------------------------------------
# A pretrained tokenizer's tokens are word pieces; ROAR scores and masks pieces, and the report shows
# them merged back into words. Two conventions mark how pieces join:
#   "wordpiece" (BERT): a piece starting with "##" continues the word before it ("play", "##ing");
#   "bpe" (RoBERTa / GPT-2 byte-level BPE; SentencePiece likewise): a piece starting with "Ġ" ("▁")
#     starts a word after a space; any other piece continues the word before it, except the first
#     piece after a special token or at the start of the text, which starts one.
# "word": every token is a word (the project's own vocabulary): nothing to merge.
PIECE_CONVENTIONS = ("wordpiece", "bpe", "word")
WORDPIECE_CONTINUATION = "##"
BPE_WORD_STARTS = ("Ġ", "▁")  # byte-level BPE's encoded space; SentencePiece's
SPECIAL_NAMES = {"pad": ("[PAD]", "<pad>"), "cls": ("[CLS]", "<s>"), "sep": ("[SEP]", "</s>"),
                 "mask": ("[MASK]", "<mask>"), "unk": ("[UNK]", "<unk>")}


def piece_convention(words: Sequence[str]) -> str:
    """The joining convention of a vocabulary's ``words`` (see :data:`PIECE_CONVENTIONS`): "wordpiece"
    where more pieces start with "##" than with "Ġ"/"▁", "bpe" where the opposite holds, "word" where no
    piece has either mark."""
    continuation = sum(1 for w in words if len(w) > 2 and w.startswith(WORDPIECE_CONTINUATION))
    starts = sum(1 for w in words if len(w) > 1 and w[0] in BPE_WORD_STARTS)
    if continuation == starts == 0:
        return "word"
    return "wordpiece" if continuation >= starts else "bpe"


def special_ids(vocab: Vocabulary) -> dict[str, Optional[int]]:
    """``{"pad", "cls", "sep", "mask", "unk": id or None}`` of ``vocab``: the fixed ids of the project's
    vocabulary ("sep" is [EOS]); for a :class:`PretrainedVocabulary` the id of the first of the usual
    names (BERT's ``[CLS]``, RoBERTa's ``<s>``, ...: :data:`SPECIAL_NAMES`), padding always 0 (the data's
    pad id, :func:`nlproar_jax.data.pretrained.pad_swap`). For display: the model's own
    ``maskable``/``mask_token`` decide what ROAR masks."""
    if not isinstance(vocab, PretrainedVocabulary):
        return {"pad": PAD, "cls": CLS, "sep": EOS, "mask": MASK, "unk": UNK}
    index = vocab.index
    out = {role: next((index[n] for n in names if n in index), None) for role, names in SPECIAL_NAMES.items()}
    out["pad"] = 0
    return out


@dataclasses.dataclass(frozen=True)
class MergedWord:
    """One displayed word: pieces ``start:stop`` of the row, its ``text`` (marks removed), ``alone``
    (a special token, never merged), ``score`` (the sum of its pieces' scores; NaN without scores) and
    ``masked`` (how many of its pieces are masked)."""

    text: str
    start: int
    stop: int
    alone: bool
    score: float
    masked: int

    @property
    def pieces(self) -> int:
        return self.stop - self.start


def merge_word_pieces(pieces: Sequence[str], convention: str, *, scores: Optional[Sequence[float]] = None,
                      masked: Optional[Sequence[bool]] = None, alone: Optional[Sequence[bool]] = None
                      ) -> list[MergedWord]:
    """Word pieces merged into words, in order, for display.

    Args:
      pieces: ``[n]`` the row's pieces as the tokenizer wrote them (the unmasked row: a masked piece
        no longer shows whether it continued a word).
      convention: "wordpiece", "bpe" or "word" (:func:`piece_convention`).
      scores: ``<float>[n]`` importance per piece or None. **A word's score is the sum of its pieces'**:
        for additive attributions (integrated gradients, SHAP, LIME, input x gradient) the word's share
        of the prediction, for attention the mass on the word; NaN pieces count as 0, a word of NaN
        pieces only is NaN.
      masked: ``<bool>[n]`` pieces masked (e.g. a ROAR step's row holds the mask id where the unmasked
        row does not) or None.
      alone: ``<bool>[n]`` pieces that are words by themselves and never join a neighbour (special
        tokens: [CLS], [SEP], [MASK], [UNK], padding) or None.
    """
    if convention not in PIECE_CONVENTIONS:
        raise ValueError(f"unknown word-piece convention {convention!r}; valid: {list(PIECE_CONVENTIONS)}")
    n = len(pieces)
    for name, arr in (("scores", scores), ("masked", masked), ("alone", alone)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries for {n} pieces")
    s = None if scores is None else np.asarray(scores, np.float64)
    m = np.zeros(n, bool) if masked is None else np.asarray(masked, bool)
    a = np.zeros(n, bool) if alone is None else np.asarray(alone, bool)
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if a[i] or not groups or a[groups[-1][0]]:
            starts = True
        elif convention == "wordpiece":
            starts = not piece.startswith(WORDPIECE_CONTINUATION)
        elif convention == "bpe":
            starts = piece[:1] in BPE_WORD_STARTS
        else:
            starts = True
        if starts:
            groups.append([i])
        else:
            groups[-1].append(i)
    out = []
    for g in groups:
        score = float("nan")
        if s is not None and not np.all(np.isnan(s[g])):
            score = float(np.nansum(s[g]))
        out.append(MergedWord(_word_text([pieces[i] for i in g], convention, bool(a[g[0]])), g[0], g[-1] + 1,
                              bool(a[g[0]]), score, int(m[g].sum())))
    return out


def _word_text(pieces: list[str], convention: str, alone: bool) -> str:
    if alone or convention == "word":
        return "".join(pieces)
    if convention == "wordpiece":
        return pieces[0] + "".join(p[len(WORDPIECE_CONTINUATION):] if p.startswith(WORDPIECE_CONTINUATION) else p
                                   for p in pieces[1:])
    text = "".join(pieces)
    if text[:1] in BPE_WORD_STARTS:
        text = text[1:]
    return _byte_level_decode(text).replace("▁", " ")


def _byte_level_decode(text: str) -> str:
    """GPT-2 / RoBERTa byte-level BPE text (each byte shown as one printable character) as UTF-8 text;
    ``text`` unchanged where a character is not in the byte alphabet."""
    table = _byte_decoder()
    if not all(c in table for c in text):
        return text
    return bytes(table[c] for c in text).decode("utf-8", errors="replace")


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's ``bytes_to_unicode``: printable bytes stand for themselves, the others
    (controls, space, ...) for ``chr(256 + i)`` in byte order."""
    cached = globals().get("_BYTE_DECODER")
    if cached is None:
        printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                     + list(range(ord("®"), ord("ÿ") + 1)))
        chars, extra = {}, 0
        for b in range(256):
            if b in printable:
                chars[chr(b)] = b
            else:
                chars[chr(256 + extra)] = b
                extra += 1
        cached = globals()["_BYTE_DECODER"] = chars
    return cached
