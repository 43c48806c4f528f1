"""Stanford Natural Language Inference 1.0 (the original's ``nlproar/dataset/snli.py``).

Main sequence = premise, auxiliary sequence = hypothesis. Labels, in the original's
order: ``entailment``, ``contradiction``, ``neutral``. Pairs with gold label ``-`` (no
annotator consensus) are dropped. Text: collapse whitespace, spaCy English tokenizer
(:func:`~nlproar_jax.data.tokenize.spacy_tokenize`), lowercase, every token containing a
digit -> ``[DIGITS]``. Vocabulary: premises + hypotheses of train, min_df 3.

Two file layouts are read (per split, the first found wins):

* official: ``snli_1.0_{train,dev,test}.jsonl`` with ``gold_label`` / ``sentence1`` /
  ``sentence2``, in ``data_dir/snli/snli_1.0/``, ``data_dir/snli/`` or ``data_dir/snli_1.0/``;
* converted: ``data_dir/snli/{train,dev,test}.jsonl`` with ``premise`` / ``hypothesis`` /
  ``label`` (the layout of ``../shared/data``; its text is InferSent-pretokenized, i.e.
  punctuation already split off, which spaCy then mostly leaves alone; the original
  tokenized the raw sentences).

Official sizes: 549,367 / 9,842 / 9,824 (train / val = dev / test).

**Fallback when no train file exists** (the case in ``../shared/data``):
``train_fallback="dev-split"`` (default) carves train and val out of the official dev
set, 85/15 (``train_test_split(train_size=0.85)`` with ``RandomState(split_seed)``,
reproduced exactly): **8,365 train / 1,477 val**; test stays the official 9,824. That
is ~1.5% of SNLI's training data, so absolute accuracy is far below the paper's; the
returned ``RawTask.notes`` says so, and every result must repeat it.
``train_fallback="error"`` raises instead.
"""
from __future__ import annotations

import logging
import os
import re

import numpy as np

from nlproar_jax.data.dataset import RawSplit, RawTask
from nlproar_jax.data.loader_utils import (DataFileError, iter_jsonl, missing_file_error, require_text,
                                           resolve_data_dir, shuffle_split)
from nlproar_jax.data.tokenize import replace_digits, spacy_tokenizer

LABEL_NAMES = ("entailment", "contradiction", "neutral")
NO_LABEL = "-"
TRAIN_FALLBACKS = ("dev-split", "error")
OFFICIAL_TRAIN_SIZE = 549_367
FALLBACK_NOTE = ("SNLI FALLBACK: no SNLI train file was found, so train ({train}) and val ({val}) were carved "
                 "from the official dev set and test is the official test set ({test}); training uses {percent:.1f}% "
                 "of SNLI's {official:,} training pairs, so absolute accuracy is well below the paper's. "
                 "State this with every result.")

log = logging.getLogger(__name__)


def _candidates(data_dir: str, official_split: str) -> list[str]:
    return [os.path.join(data_dir, "snli", "snli_1.0", f"snli_1.0_{official_split}.jsonl"),
            os.path.join(data_dir, "snli", f"snli_1.0_{official_split}.jsonl"),
            os.path.join(data_dir, "snli_1.0", f"snli_1.0_{official_split}.jsonl"),
            os.path.join(data_dir, "snli", f"{official_split}.jsonl")]


def find_file(data_dir: str, official_split: str) -> str | None:
    for c in _candidates(data_dir, official_split):
        if os.path.exists(c):
            return c
    return None


def read_pairs(path: str) -> list[tuple[str, str, int]]:
    """``[(premise, hypothesis, label)]`` from either JSON-lines schema; gold label ``-`` dropped."""
    out = []
    for lineno, obj in iter_jsonl(path):
        if "gold_label" in obj:
            keys = ("gold_label", "sentence1", "sentence2")
        elif "label" in obj:
            keys = ("label", "premise", "hypothesis")
        else:
            raise DataFileError(path, lineno, "expected fields gold_label/sentence1/sentence2 (official SNLI) or "
                                f"label/premise/hypothesis; found {sorted(obj)}")
        label, p_key, h_key = obj[keys[0]], keys[1], keys[2]
        if label == NO_LABEL:
            continue
        if label not in LABEL_NAMES:
            raise DataFileError(path, lineno, f"unknown label {label!r}; valid labels: {LABEL_NAMES} "
                                f"(and {NO_LABEL!r}, which is skipped)")
        for key in (p_key, h_key):
            if key not in obj:
                raise DataFileError(path, lineno, f"missing field {key!r}; found {sorted(obj)}")
        premise = require_text(path, lineno, obj[p_key], p_key)
        hypothesis = require_text(path, lineno, obj[h_key], h_key)
        out.append((premise, hypothesis, LABEL_NAMES.index(label)))
    if not out:
        raise DataFileError(path, None, "no labelled pairs (empty file?)")
    return out


def _to_split(pairs, tokenize) -> RawSplit:
    def tok(text: str) -> list[str]:
        return replace_digits([t.lower() for t in tokenize(re.sub(r"\s+", " ", text.strip()))])
    return RawSplit([tok(p) for p, _, _ in pairs], [lab for _, _, lab in pairs], [tok(h) for _, h, _ in pairs])


def load(data_dir: str | None, *, train_fallback: str = "dev-split", fallback_train_size: float = 0.85,
         split_seed: int = 0, spacy_backend: str = "python") -> RawTask:
    """SNLI (see the module docstring for layouts and the train fallback)."""
    data_dir = resolve_data_dir(data_dir, "snli")
    if train_fallback not in TRAIN_FALLBACKS:
        raise ValueError(f"unknown train_fallback {train_fallback!r}; valid choices: {TRAIN_FALLBACKS}")
    tokenize = spacy_tokenizer(spacy_backend)
    files = {}
    for official in ("dev", "test"):
        files[official] = find_file(data_dir, official)
        if files[official] is None:
            raise missing_file_error(f"SNLI {official} split", _candidates(data_dir, official),
                                     "Get it with: python -m nlproar_jax.download --task snli --data-dir DIR")
    train_file = find_file(data_dir, "train")
    dev = read_pairs(files["dev"])
    test = read_pairs(files["test"])
    notes: tuple[str, ...] = ()
    if train_file is not None:
        train, val = read_pairs(train_file), dev
    elif train_fallback == "error":
        raise missing_file_error("SNLI train split", _candidates(data_dir, "train"),
                                 "Pass train_fallback='dev-split' to train on 85% of the dev set instead.")
    else:
        train_pos, val_pos = shuffle_split(len(dev), np.random.RandomState(split_seed),
                                           train_size=fallback_train_size)
        train, val = [dev[i] for i in train_pos], [dev[i] for i in val_pos]
        notes = (FALLBACK_NOTE.format(train=len(train), val=len(val), test=len(test), official=OFFICIAL_TRAIN_SIZE,
                                      percent=100 * len(train) / OFFICIAL_TRAIN_SIZE),)
        log.warning(notes[0])
    splits = {"train": _to_split(train, tokenize), "val": _to_split(val, tokenize), "test": _to_split(test, tokenize)}
    return RawTask("snli", LABEL_NAMES, splits, notes)
