"""MIMIC-III diabetes and anemia (the original's ``nlproar/dataset/mimic.py``).

MIMIC-III is credentialed-access data (PhysioNet), so nothing is downloaded: place the
user's own files in ``data_dir/mimic/`` (or pass ``mimic_dir``):

* ``DIAGNOSES_ICD.csv.gz`` and ``NOTEEVENTS.csv.gz`` (MIMIC-III v1.4);
* for diabetes, Jain & Wallace's admission lists ``{train,dev,test}_50_hadm_ids.csv``
  (``successar/AttentionExplanation``, ``preprocess/MIMIC/``; ``python -m
  nlproar_jax.download --task mimic`` fetches them).

Preprocessing, as the original (which used pandas; this module uses ``csv`` + ``gzip``
and reproduces pandas' semantics where they matter):

1. ICD9 codes per (SUBJECT_ID, HADM_ID), rows with a missing field dropped (pandas'
   default missing-value strings), each code written with a dot after 3 characters.
2. Notes: rows with any missing field among SUBJECT_ID, HADM_ID, CATEGORY, CHARTDATE,
   DESCRIPTION, TEXT dropped; only CATEGORY "Discharge summary"; stable-sorted by
   (DESCRIPTION: Report before Addendum, CHARTDATE); per (SUBJECT_ID, HADM_ID) the texts
   joined by a space and stripped; admissions ordered by (SUBJECT_ID, HADM_ID).
3. Inner join of 1 and 2 on (SUBJECT_ID, HADM_ID).
4. Text: ``[** ... **]`` -> `` <DE> ``; a run of a repeated non-alphanumeric character
   (spaces allowed in between) -> that character and a space; collapse whitespace;
   spaCy English tokenizer; lowercase; tokens containing a digit -> ``[DIGITS]``.
5. Diabetes: admissions in the three lists; label 1 iff any code starts with
   ``250.00``; splits = the lists (train / dev -> val / test), rows in step-2 order. The
   original's length filter (``6 > n > 4000``) can never fire and is not applied.
   Anemia: admissions with exactly one of the code prefixes ``285.1`` / ``285.2`` (label
   1 = ``285.1``); stratified 20% test (``random_state=12939``), then 15% of the rest as
   val (``random_state=13448``), both reproducing scikit-learn's ``train_test_split``
   exactly; then documents with more than 4,000 tokens dropped from every split.

Differences from the original: spaCy is the built-in pure-Python port
(``spacy_backend="spacy"`` uses the real one); the original builds the anemia
vocabulary on *all* training documents, before dropping those over 4,000 tokens, while
here the vocabulary is built (by :func:`~nlproar_jax.data.dataset.encode_task`) on the
kept ones; only the documents of the requested task are tokenized. Word vectors: the
original trains word2vec (gensim, 300d, window 10, min_count 2, CBOW, 5 epochs) on all
joined notes; do that yourself on the corpus written by
``python -m nlproar_jax.data.mimic --data-dir DIR --corpus-out notes.txt`` (one
normalised admission per line) and point the config's ``embedding`` at the saved
``.txt``/``.vec`` file (see ``configs/mimic_diabetes.py``).
"""
from __future__ import annotations

import argparse
import csv
import functools
import gzip
import io
import os
import re
import sys
import zlib
from typing import Iterator, Optional

import numpy as np

from nlproar_jax.data.dataset import RawSplit, RawTask
from nlproar_jax.data.loader_utils import (DataFileError, iter_lines, missing_file_error, resolve_data_dir,
                                           stratified_split)
from nlproar_jax.data.tokenize import replace_digits, spacy_tokenizer

LABEL_NAMES = ("negative", "positive")
# pandas.read_csv's default missing-value strings (a field equal to one of these is NaN).
NA_VALUES = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                       "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
DESCRIPTION_ORDER = {"Report": 0, "Addendum": 1}
DIAGNOSES_FILE = "DIAGNOSES_ICD.csv.gz"
NOTES_FILE = "NOTEEVENTS.csv.gz"
HADM_LIST_FILES = {"train": "train_50_hadm_ids.csv", "val": "dev_50_hadm_ids.csv", "test": "test_50_hadm_ids.csv"}


# ----------------------------------------------------------------------------------------
# CSV reading
# ----------------------------------------------------------------------------------------
def _iter_csv(path: str, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """``(line_number, [values of columns])`` per data row of a (gzipped) CSV file with a header."""
    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))
    reader = None
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.reader(text)
            try:
                header = next(reader)
            except StopIteration:
                raise DataFileError(path, 1, "empty file (no CSV header)") from None
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataFileError(path, 1, f"missing column(s) {missing}; header has {header}")
            index = [header.index(c) for c in columns]
            for row in reader:
                if len(row) != len(header):
                    raise DataFileError(path, reader.line_num, f"{len(row)} fields, the header has {len(header)}")
                yield reader.line_num, [row[i] for i in index]
    except UnicodeDecodeError as e:
        line = reader.line_num + 1 if reader is not None else 1
        raise DataFileError(path, line, f"not valid UTF-8 ({e.reason}) near this line") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        line = reader.line_num + 1 if reader is not None else 1
        raise DataFileError(path, line, f"truncated or corrupt gzip data ({e}); copy the file again") from None
    except csv.Error as e:
        raise DataFileError(path, reader.line_num if reader is not None else None, f"malformed CSV ({e})") from None


def _as_id(path: str, lineno: int, column: str, value: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise DataFileError(path, lineno, f"{column} must be a number, got {value!r}") from None
    if not number.is_integer():
        raise DataFileError(path, lineno, f"{column} must be an integer id, got {value!r}")
    return int(number)


def read_diagnoses(path: str) -> dict[tuple[int, int], list[str]]:
    """``{(subject_id, hadm_id): ["250.00", ...]}`` (codes in file order)."""
    codes: dict[tuple[int, int], list[str]] = {}
    for lineno, (subject, hadm, code) in _iter_csv(path, ("SUBJECT_ID", "HADM_ID", "ICD9_CODE")):
        if subject in NA_VALUES or hadm in NA_VALUES or code in NA_VALUES:
            continue
        key = (_as_id(path, lineno, "SUBJECT_ID", subject), _as_id(path, lineno, "HADM_ID", hadm))
        codes.setdefault(key, []).append(code[:3] + "." + code[3:])
    if not codes:
        raise DataFileError(path, None, "no diagnoses rows")
    return codes


def read_discharge_summaries(path: str) -> dict[tuple[int, int], str]:
    """``{(subject_id, hadm_id): text}``: reports before addenda, by chart date, joined."""
    notes: dict[tuple[int, int], list[tuple[int, str, int, str]]] = {}
    columns = ("SUBJECT_ID", "HADM_ID", "CATEGORY", "CHARTDATE", "DESCRIPTION", "TEXT")
    for lineno, (subject, hadm, category, chartdate, description, text) in _iter_csv(path, columns):
        if any(v in NA_VALUES for v in (subject, hadm, category, chartdate, description, text)):
            continue
        if category != "Discharge summary":
            continue
        if description not in DESCRIPTION_ORDER:
            raise DataFileError(path, lineno, f"unknown discharge-summary DESCRIPTION {description!r}; "
                                f"valid values: {tuple(DESCRIPTION_ORDER)}")
        key = (_as_id(path, lineno, "SUBJECT_ID", subject), _as_id(path, lineno, "HADM_ID", hadm))
        notes.setdefault(key, []).append((DESCRIPTION_ORDER[description], chartdate, lineno, text))
    if not notes:
        raise DataFileError(path, None, "no discharge summaries (CATEGORY 'Discharge summary')")
    # pandas' multi-column sort_values is stable: ties keep file order (lineno).
    return {key: " ".join(t for _, _, _, t in sorted(rows)).strip() for key, rows in notes.items()}


def read_hadm_ids(path: str) -> list[int]:
    out = []
    for lineno, line in iter_lines(path):
        value = line.split(",")[0].strip()
        if not value:
            continue
        out.append(_as_id(path, lineno, "HADM_ID", value))
    if not out:
        raise DataFileError(path, None, "no admission ids")
    return out


@functools.lru_cache(maxsize=2)
def _merged_cached(diag_path: str, notes_path: str, _stamp: tuple) -> tuple:
    codes = read_diagnoses(diag_path)
    notes = read_discharge_summaries(notes_path)
    return tuple((key, notes[key], tuple(codes[key])) for key in sorted(notes) if key in codes)


def merged_admissions(mimic_dir: str) -> tuple[tuple[tuple[int, int], str, tuple[str, ...]], ...]:
    """Step 1-3 of the module docstring: ``((subject_id, hadm_id), text, codes)`` per admission, in order."""
    paths = []
    for name in (DIAGNOSES_FILE, NOTES_FILE):
        path = os.path.join(mimic_dir, name)
        if not os.path.exists(path):
            raise missing_file_error(f"MIMIC-III file {name}", [path],
                                     "MIMIC-III is credentialed-access data (https://physionet.org/content/mimiciii/): "
                                     f"copy your {name} into {mimic_dir}.")
        paths.append(path)
    stamp = tuple((os.path.getsize(p), os.path.getmtime(p)) for p in paths)
    return _merged_cached(paths[0], paths[1], stamp)


# ----------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------
_DEID = re.compile(r"\[\s*\*\s*\*(.*?)\*\s*\*\s*\]")
_REPEATS = re.compile(r"([^a-zA-Z0-9])(\s*\1\s*)+")


def normalise(text: str, tokenize=None) -> list[str]:
    """Step 4 of the module docstring: the token list of one admission's text."""
    tokenize = tokenize or spacy_tokenizer("python")
    text = _DEID.sub(" <DE> ", text)
    text = _REPEATS.sub(r"\1 ", text)
    text = re.sub(r"\s+", " ", text.strip())
    tokens = replace_digits([t.lower() for t in tokenize(text)])
    # The original stores " ".join(tokens) and splits on " ".
    return " ".join(tokens).split(" ")


def _tokenize_all(texts: list[str], spacy_backend: str, workers: int) -> list[list[str]]:
    tokenize = spacy_tokenizer(spacy_backend)
    if workers <= 1 or len(texts) < 2:
        return [normalise(t, tokenize) for t in texts]
    import multiprocessing
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(functools.partial(_normalise_with_backend, spacy_backend=spacy_backend), texts, chunksize=64)


def _normalise_with_backend(text: str, spacy_backend: str) -> list[str]:
    return normalise(text, spacy_tokenizer(spacy_backend))


def _mimic_dir(data_dir: Optional[str], mimic_dir: Optional[str], task: str) -> str:
    if mimic_dir is not None:
        return os.path.abspath(os.path.expanduser(mimic_dir))
    return os.path.join(resolve_data_dir(data_dir, task), "mimic")


# ----------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------
def load_diabetes(data_dir: str | None, *, mimic_dir: str | None = None, spacy_backend: str = "python",
                  workers: int = 1) -> RawTask:
    """MIMIC-III diabetes (``mimic-d``): splits from Jain & Wallace's admission lists."""
    mdir = _mimic_dir(data_dir, mimic_dir, "mimic-d")
    lists = {}
    for split, name in HADM_LIST_FILES.items():
        path = os.path.join(mdir, name)
        if not os.path.exists(path):
            raise missing_file_error(f"diabetes admission list {name}", [path],
                                     "Get the lists with: python -m nlproar_jax.download --task mimic --data-dir DIR")
        lists[split] = set(read_hadm_ids(path))
    merged = merged_admissions(mdir)
    rows = {split: [(text, int(any(c.startswith("250.00") for c in codes)))
                    for (_, hadm), text, codes in merged if hadm in ids] for split, ids in lists.items()}
    splits = {}
    for split, items in rows.items():
        if not items:
            raise ValueError(f"no admission of {os.path.join(mdir, HADM_LIST_FILES[split])} has a discharge summary "
                             f"and diagnoses in {mdir}; are these the right MIMIC-III files?")
        splits[split] = RawSplit(_tokenize_all([t for t, _ in items], spacy_backend, workers), [y for _, y in items])
    return RawTask("mimic-d", LABEL_NAMES, splits)


def load_anemia(data_dir: str | None, *, mimic_dir: str | None = None, max_tokens: int = 4000,
                spacy_backend: str = "python", workers: int = 1) -> RawTask:
    """MIMIC-III anemia (``mimic-a``): 285.1 (label 1) vs 285.2 (label 0), stratified splits."""
    mdir = _mimic_dir(data_dir, mimic_dir, "mimic-a")
    texts, targets = [], []
    for _, text, codes in merged_admissions(mdir):
        c1 = any(c.startswith("285.1") for c in codes)
        c2 = any(c.startswith("285.2") for c in codes)
        if c1 != c2:
            texts.append(text)
            targets.append(int(c1))
    if len(set(targets)) < 2:
        raise ValueError(f"anemia needs admissions with code 285.1 and with 285.2 in {mdir}; "
                         f"found {len(targets)} admissions with labels {sorted(set(targets))}")
    targets_arr = np.asarray(targets)
    train_idx, test_idx = stratified_split(targets_arr, np.random.RandomState(12939), test_size=0.2)
    sub_train, sub_val = stratified_split(targets_arr[train_idx], np.random.RandomState(13448), test_size=0.15)
    parts = {"train": train_idx[sub_train], "val": train_idx[sub_val], "test": test_idx}
    splits = {}
    for split, idx in parts.items():
        docs = _tokenize_all([texts[i] for i in idx], spacy_backend, workers)
        keep = [j for j, d in enumerate(docs) if len(d) <= max_tokens]
        splits[split] = RawSplit([docs[j] for j in keep], [targets[idx[j]] for j in keep])
    return RawTask("mimic-a", LABEL_NAMES, splits)


def export_corpus(data_dir: str | None, out_path: str, *, mimic_dir: str | None = None,
                  spacy_backend: str = "python", workers: int = 1) -> int:
    """Write every merged admission's normalised tokens, one admission per line (word2vec corpus)."""
    mdir = _mimic_dir(data_dir, mimic_dir, "mimic")
    texts = [text for _, text, _ in merged_admissions(mdir)]
    with open(out_path, "w", encoding="utf-8") as f:
        for tokens in _tokenize_all(texts, spacy_backend, workers):
            f.write(" ".join(tokens) + "\n")
    return len(texts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the normalised MIMIC-III notes (word2vec corpus).")
    parser.add_argument("--data-dir", required=True, help="directory holding mimic/ with the MIMIC-III files")
    parser.add_argument("--corpus-out", required=True, help="output text file, one admission per line")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    n = export_corpus(args.data_dir, args.corpus_out, workers=args.workers)
    print(f"wrote {n} admissions to {args.corpus_out}\n"
          "Train 300d vectors as the original did, e.g. with gensim:\n"
          "  from gensim.models import Word2Vec\n"
          f"  m = Word2Vec(corpus_file='{args.corpus_out}', vector_size=300, window=10, min_count=2)\n"
          "  m.wv.save_word2vec_format('mimic_word2vec_300d.txt')")


if __name__ == "__main__":
    main()
