"""Stanford Sentiment Treebank, binary, sentence level (the original's ``nlproar/dataset/sst.py``).

Reads the official PTB trees ``data_dir/sst/{train,dev,test}.txt`` (also accepted:
``data_dir/sst/trees/``, the layout of ``trainDevTestTrees_PTB.zip``), one tree per line,
labels 0-4 on every node. As the original (torchtext's legacy ``SST``):

* the sentence is the tree's leaves joined by spaces; its label is the root label:
  0, 1 -> negative, 3, 4 -> positive, 2 (neutral) dropped;
* only trees with **more than 5 leaves** are kept (``filter_pred=lambda ex: len(ex.text) > 5``;
  ``ex.text`` is the whitespace-split leaf list). The official 6,920 / 872 / 1,821 binary
  sentences become **6,579 / 848 / 1,776** (train / val = dev / test);
* text normalisation (Jain & Wallace's): strip; delete ``-LRB-``; ``-RRB-`` -> spaces;
  ``\\W+`` -> space; collapse whitespace; spaCy English tokenizer; lowercase. This
  keeps the original's quirks: ``'s`` -> ``s``, ``n't`` -> ``n t``, and a sentence that
  starts with punctuation gets a leading ``" "`` token.

Differences from the original: tokenization uses the pure-Python port of spaCy's
tokenizer (:mod:`nlproar_jax.data.tokenize`, token-identical on every SST sentence;
``spacy_backend="spacy"`` uses the real spaCy); examples keep the file order (the
original additionally shuffles each split with ``random.Random(seed)``; shuffling is the
batcher's job here).
"""
from __future__ import annotations

import os
import re

from nlproar_jax.data.dataset import RawSplit, RawTask
from nlproar_jax.data.loader_utils import (DataFileError, find_first, iter_lines, missing_file_error,
                                           resolve_data_dir)
from nlproar_jax.data.tokenize import spacy_tokenizer

LABEL_NAMES = ("negative", "positive")
_ROOT_TO_LABEL = {"0": 0, "1": 0, "3": 1, "4": 1}  # "2" (neutral) is dropped
_FILES = {"train": "train.txt", "val": "dev.txt", "test": "test.txt"}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_tree(line: str, *, path: str = "<string>", lineno: int | None = None) -> tuple[str, list[str]]:
    """``(root_label, leaves)`` of one PTB tree such as ``(3 (2 a) (4 b))``."""
    tokens = _TOKEN.findall(line)
    if len(tokens) < 4 or tokens[0] != "(" or tokens[-1] != ")":
        raise DataFileError(path, lineno, f"not a PTB tree: {line[:80]!r}")
    depth, leaves = 0, []
    for i, tok in enumerate(tokens):
        if tok == "(":
            depth += 1
            if i + 1 >= len(tokens) or tokens[i + 1] in "()":
                raise DataFileError(path, lineno, f"tree node without a label at token {i}: {line[:80]!r}")
        elif tok == ")":
            depth -= 1
            if depth < 0 or (depth == 0 and i != len(tokens) - 1):
                raise DataFileError(path, lineno, f"unbalanced parentheses: {line[:80]!r}")
        elif tokens[i - 1] != "(":  # not a node label: a leaf
            leaves.append(tok)
    if depth != 0:
        raise DataFileError(path, lineno, f"unbalanced parentheses (depth {depth} at the end): {line[:80]!r}")
    return tokens[1], leaves


def normalise(text: str) -> str:
    """The original's SST text clean-up before spaCy (see the module docstring)."""
    text = text.strip()
    text = text.replace("-LRB-", "")
    text = text.replace("-RRB-", "  ")
    text = re.sub(r"\W+", " ", text)
    return re.sub(r"\s+", " ", text)


def read_split(path: str, *, min_leaves: int = 6, tokenize=None) -> RawSplit:
    """One SST split: binary labels, trees with at least ``min_leaves`` leaves, tokenized."""
    tokenize = tokenize or spacy_tokenizer("python")
    docs, labels = [], []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        root, leaves = parse_tree(line, path=path, lineno=lineno)
        if root not in ("0", "1", "2", "3", "4"):
            raise DataFileError(path, lineno, f"root label {root!r} is not a sentiment class; "
                                "valid labels: 0, 1, 2, 3, 4")
        if not leaves:
            raise DataFileError(path, lineno, "tree has no leaves (empty sentence)")
        if root == "2" or len(leaves) < min_leaves:
            continue
        docs.append([t.lower() for t in tokenize(normalise(" ".join(leaves)))])
        labels.append(_ROOT_TO_LABEL[root])
    if not docs:
        raise DataFileError(path, None, "no usable sentences (empty file?)")
    return RawSplit(docs, labels)


def find_files(data_dir: str) -> dict[str, str]:
    out = {}
    for split, name in _FILES.items():
        candidates = [os.path.join(data_dir, "sst", name), os.path.join(data_dir, "sst", "trees", name)]
        found = find_first(candidates)
        if found is None:
            raise missing_file_error(f"SST {split} trees", candidates,
                                     "Get them with: python -m nlproar_jax.download --task sst --data-dir DIR")
        out[split] = found
    return out


def load(data_dir: str | None, *, min_leaves: int = 6, spacy_backend: str = "python") -> RawTask:
    """Binary SST as in the original: 6,579 / 848 / 1,776 sentences (train / val / test).

    ``min_leaves``: keep trees with at least this many leaves (the original: > 5).
    ``spacy_backend``: "python" (built-in port, default) or "spacy" (needs spaCy).
    """
    data_dir = resolve_data_dir(data_dir, "sst")
    if min_leaves < 1:
        raise ValueError(f"min_leaves must be >= 1, got {min_leaves}")
    tokenize = spacy_tokenizer(spacy_backend)
    files = find_files(data_dir)
    splits = {split: read_split(path, min_leaves=min_leaves, tokenize=tokenize) for split, path in files.items()}
    return RawTask("sst", LABEL_NAMES, splits)
