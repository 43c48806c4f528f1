"""Helpers shared by the real-task loaders: file reading with precise errors, and splits.

**Reading.**
Every loader reads through these helpers so that bad input (invalid UTF-8, a truncated
or corrupt gzip file, malformed JSON, a missing file) fails with a :class:`DataFileError`
(a ``ValueError``) or ``FileNotFoundError`` that says which file, which line and what
was expected. Files ending in ``.gz`` are decompressed transparently.

**Splits.** :func:`shuffle_split` and :func:`stratified_split` reproduce scikit-learn's
``train_test_split`` (``ShuffleSplit`` / ``StratifiedShuffleSplit``, first split only)
exactly, given the same ``numpy.random.RandomState``, without depending on
scikit-learn. The original uses ``train_test_split`` for IMDB, bAbI and MIMIC anemia.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
import math
from typing import Iterator, Optional, Sequence

import numpy as np


class DataFileError(ValueError):
    """Bad content in a data file; ``path`` and ``line`` (1-based, or None) say where."""

    def __init__(self, path: str, line: Optional[int], message: str):
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


def _open_binary(path: str):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def iter_lines(path: str, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for every line of ``path``, without the line ending."""
    path = str(path)
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise DataFileError(path, lineno, f"not valid {encoding} ({e.reason} at byte {e.start} "
                                        f"of the line); re-encode the file as {encoding}") from None
                yield lineno, text.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataFileError(path, lineno + 1, f"truncated or corrupt gzip data ({e}); "
                            "download or copy the file again") from None


def read_text(path: str, *, encoding: str = "utf-8") -> str:
    """The whole file as text (for one-document-per-file layouts such as aclImdb)."""
    path = str(path)
    with _open_binary(path) as f:
        try:
            raw = f.read()
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataFileError(path, None, f"truncated or corrupt gzip data ({e})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFileError(path, line, f"not valid {encoding} ({e.reason}); re-encode the file as {encoding}") from None


def iter_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    """``(line_number, object)`` for every non-blank line of a JSON-lines file."""
    for lineno, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFileError(path, lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataFileError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def require_fields(path: str, lineno: int, obj: dict, fields: Sequence[str]) -> None:
    missing = [f for f in fields if f not in obj]
    if missing:
        raise DataFileError(path, lineno, f"missing field(s) {missing}; found {sorted(obj)}")


def require_text(path: str, lineno: Optional[int], value, field: str) -> str:
    """``value`` as a non-empty (after stripping) string, else a DataFileError."""
    if not isinstance(value, str):
        raise DataFileError(path, lineno, f"field {field!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataFileError(path, lineno, f"field {field!r} is empty")
    return value


def find_first(candidates: Sequence[str]) -> Optional[str]:
    """The first existing path among ``candidates``, or None."""
    for c in candidates:
        if os.path.exists(c):
            return c
    return None


def missing_file_error(what: str, candidates: Sequence[str], hint: str = "") -> FileNotFoundError:
    """One line: what is missing, every path looked at, the hint (e.g. the download command), and where
    the data directory is set."""
    listed = ", ".join(str(c) for c in candidates)
    msg = f"{what} not found (looked for {listed})"
    if hint:
        msg += f"; {hint.strip().rstrip('.')}"
    msg += "; the data directory is --config.data_dir=DIR or NLPROAR_DATA_DIR"
    return FileNotFoundError(msg)


def resolve_data_dir(data_dir: Optional[str], task: str) -> str:
    if data_dir is None:
        raise ValueError(f"task {task!r} reads files and needs a data_dir (e.g. ../shared/data); got None")
    return os.path.abspath(os.path.expanduser(str(data_dir)))


# ----------------------------------------------------------------------------------------
# scikit-learn compatible splits
# ----------------------------------------------------------------------------------------
def _split_sizes(n: int, *, train_size: Optional[float], test_size: Optional[float]) -> tuple[int, int]:
    """sklearn's ``_validate_shuffle_split`` for float sizes: ``(n_train, n_test)``."""
    if train_size is None and test_size is None:
        test_size = 0.25
    if test_size is not None and not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size}")
    if train_size is not None and not 0.0 < train_size < 1.0:
        raise ValueError(f"train_size must be a fraction in (0, 1), got {train_size}")
    n_test = math.ceil(test_size * n) if test_size is not None else None
    n_train = math.floor(train_size * n) if train_size is not None else None
    if n_train is None:
        n_train = n - n_test
    elif n_test is None:
        n_test = n - n_train
    if n_train + n_test > n or n_train == 0:
        raise ValueError(f"cannot split {n} items into {n_train} train and {n_test} test items")
    return n_train, n_test


def shuffle_split(n: int, rng: np.random.RandomState, *, train_size: Optional[float] = None,
                  test_size: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train_positions, test_positions)`` as ``train_test_split(range(n), ..., random_state=rng)``.

    Consumes exactly one ``rng.permutation(n)``, as scikit-learn does, so a shared
    ``RandomState`` advances the same way.
    """
    n_train, n_test = _split_sizes(n, train_size=train_size, test_size=test_size)
    permutation = rng.permutation(n)
    return permutation[n_test:n_test + n_train], permutation[:n_test]


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    # sklearn.utils._approximate_mode
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        values = np.sort(np.unique(remainder))[::-1]
        for value in values:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_split(labels: Sequence[int], rng: np.random.RandomState, *, train_size: Optional[float] = None,
                     test_size: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train_positions, test_positions)`` as ``train_test_split(range(n), stratify=labels, ...)``."""
    y = np.asarray(labels)
    n = len(y)
    n_train, n_test = _split_sizes(n, train_size=train_size, test_size=test_size)
    classes, y_indices = np.unique(y, return_inverse=True)
    class_counts = np.bincount(y_indices)
    if class_counts.min() < 2:
        raise ValueError(f"stratified split needs >= 2 members per class; counts {dict(zip(classes.tolist(), class_counts.tolist()))}")
    if n_train < len(classes) or n_test < len(classes):
        raise ValueError(f"stratified split of {n} items into {n_train}/{n_test} leaves a side smaller than "
                         f"the number of classes ({len(classes)})")
    class_indices = np.split(np.argsort(y_indices, kind="mergesort"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list = []
    test: list = []
    for i in range(len(classes)):
        permutation = rng.permutation(class_counts[i])
        perm_indices_class_i = class_indices[i].take(permutation, mode="clip")
        train.extend(perm_indices_class_i[: n_i[i]])
        test.extend(perm_indices_class_i[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)
