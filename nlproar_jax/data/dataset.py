"""Dataset containers: raw token lists from a loader, and encoded ragged splits.

A loader returns a :class:`RawTask` (tokenised text, labels). :func:`encode_task`
builds the vocabulary on the training split and turns it into a
:class:`TaskData` of three :class:`Split` objects. A split stores its sequences
ragged (one flat ``int32`` array plus offsets), never padded to the global
maximum; batches are padded per batch (see :mod:`nlproar_jax.data.batching`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Optional, Sequence

import numpy as np

from nlproar_jax.data.tokens import PretrainedVocabulary, Vocabulary

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class RawSplit:
    """Tokenised examples. ``aux`` is the auxiliary sequence (SNLI hypothesis, bAbI question) or None."""

    main: list[list[str]]
    labels: list[int]
    aux: Optional[list[list[str]]] = None

    def __post_init__(self):
        if len(self.main) != len(self.labels):
            raise ValueError(f"{len(self.main)} texts but {len(self.labels)} labels")
        if self.aux is not None and len(self.aux) != len(self.main):
            raise ValueError(f"{len(self.main)} main texts but {len(self.aux)} auxiliary texts")


@dataclasses.dataclass
class RawTask:
    """What a task loader returns."""

    name: str
    label_names: tuple[str, ...]
    splits: dict[str, RawSplit]  # keys: train, val, test
    notes: tuple[str, ...] = ()  # e.g. "SNLI fallback: train/val carved from dev"

    def __post_init__(self):
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"task {self.name!r} is missing splits {missing}; expected {SPLITS}")


@dataclasses.dataclass
class Ragged:
    """Variable-length sequences: row ``i`` is ``values[offsets[i]:offsets[i+1]]``.

    Token ids are ``int32``; per-token scores use the same layout with ``float32`` values."""

    values: np.ndarray  # <int32>[total] (or <float32>[total] for scores)
    offsets: np.ndarray  # <int64>[n + 1]

    @classmethod
    def from_list(cls, rows: Sequence[np.ndarray]) -> "Ragged":
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def pad(self, rows: np.ndarray, length: int) -> np.ndarray:
        """``[len(rows), length]`` (the values' dtype): the given rows right-padded with 0 ([PAD])."""
        out = np.zeros((len(rows), length), dtype=self.values.dtype)
        starts, lens = self.offsets[rows], self.lengths[rows]
        if len(rows) and lens.max() > length:
            raise ValueError(f"row of length {lens.max()} does not fit padded length {length}")
        col = np.arange(length)
        valid = col[None, :] < lens[:, None]
        out[valid] = self.values[(starts[:, None] + col[None, :])[valid]]
        return out

    def set_rows(self, rows: np.ndarray, padded: np.ndarray) -> None:
        """In place: row ``rows[j]`` takes the first ``len`` entries of ``padded[j]`` (lengths unchanged)."""
        starts, lens = self.offsets[rows], self.lengths[rows]
        col = np.arange(padded.shape[1])
        valid = col[None, :] < lens[:, None]
        self.values[(starts[:, None] + col[None, :])[valid]] = padded[valid]

    def copy(self) -> "Ragged":
        return Ragged(self.values.copy(), self.offsets)


@dataclasses.dataclass
class Split:
    """One encoded split: main sequences, optional auxiliary sequences, labels."""

    main: Ragged
    labels: np.ndarray  # <int32>[n]
    aux: Optional[Ragged] = None

    def __len__(self) -> int:
        return len(self.labels)

    def replace_main(self, main: Ragged) -> "Split":
        return dataclasses.replace(self, main=main)


@dataclasses.dataclass
class TaskData:
    """An encoded task: vocabulary, label names and the three splits."""

    name: str
    vocab: Vocabulary
    label_names: tuple[str, ...]
    splits: dict[str, Split]
    notes: tuple[str, ...] = ()

    @property
    def paired(self) -> bool:
        return self.splits["train"].aux is not None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def replace_splits(self, splits: dict[str, Split]) -> "TaskData":
        return dataclasses.replace(self, splits=splits)

    # -- persistence: one .npz per task, written atomically --------------------------------
    def save(self, path: str) -> None:
        arrays = {}
        for name, split in self.splits.items():
            arrays[f"{name}/main/values"] = split.main.values
            arrays[f"{name}/main/offsets"] = split.main.offsets
            arrays[f"{name}/labels"] = split.labels
            if split.aux is not None:
                arrays[f"{name}/aux/values"] = split.aux.values
                arrays[f"{name}/aux/offsets"] = split.aux.offsets
        meta = {"name": self.name, "words": list(self.vocab.words),
                "label_names": list(self.label_names), "notes": list(self.notes)}
        if isinstance(self.vocab, PretrainedVocabulary):
            meta["tokenizer"] = self.vocab.source
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        atomic_save_npz(path, arrays)

    @classmethod
    def load(cls, path: str) -> "TaskData":
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            splits = {}
            for name in SPLITS:
                aux = None
                if f"{name}/aux/values" in z:
                    aux = Ragged(z[f"{name}/aux/values"], z[f"{name}/aux/offsets"])
                splits[name] = Split(Ragged(z[f"{name}/main/values"], z[f"{name}/main/offsets"]),
                                     z[f"{name}/labels"], aux)
        words = tuple(meta["words"])
        vocab = PretrainedVocabulary(words, meta["tokenizer"]) if "tokenizer" in meta else Vocabulary(words)
        return cls(meta["name"], vocab, tuple(meta["label_names"]), splits, tuple(meta["notes"]))


def atomic_save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` via a temporary file and rename, so no half-written file is ever seen."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def encode_task(raw: RawTask, min_df: int = 1) -> TaskData:
    """Build the vocabulary on the training split and encode every split.

    For paired tasks the vocabulary counts main and auxiliary sequences (as the
    original does for SNLI premises + hypotheses). Every sequence becomes
    ``[CLS] ids [EOS]``.
    """
    train = raw.splits["train"]
    docs = list(train.main) + (list(train.aux) if train.aux is not None else [])
    vocab = Vocabulary.build(docs, min_df=min_df)
    splits = {}
    for name in SPLITS:
        rs = raw.splits[name]
        main = Ragged.from_list([vocab.encode(t) for t in rs.main])
        aux = Ragged.from_list([vocab.encode(t) for t in rs.aux]) if rs.aux is not None else None
        splits[name] = Split(main, np.asarray(rs.labels, dtype=np.int32), aux)
    return TaskData(raw.name, vocab, tuple(raw.label_names), splits, tuple(raw.notes))
