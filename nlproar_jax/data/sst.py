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

Gold token rationales (:func:`gold_rationales`; not part of the ROAR data, which :func:`load` alone
makes): the treebank labels every node, leaves included, so each token gets the label of the
smallest labelled constituent that contains its leaf, which in the SST trees is always the leaf's
own preterminal, e.g. ``(3 good)``: the word's sentiment as annotators rated it out of context. A
token is a rationale token when that label is polar *in the sentence's direction*: 0 or 1 in a
negative sentence, 3 or 4 in a positive one. Words of the opposite polarity (``hell`` in a positive sentence), neutral
words and negators (``n't``, label 2) are not rationales. The tokens are those of :func:`load`,
one-to-one: each token is traced back, character by character through :func:`normalise` and the
tokenizer, to the leaf it comes from; a leaf the tokenizer splits (``too-tepid`` -> ``too tepid``,
``n't`` -> ``n t``) gives every piece its label; leaves that normalisation deletes (punctuation,
``-LRB-``) give no token; the leading ``" "`` token (see above) is never a rationale.

Differences from the original: tokenization uses the pure-Python port of spaCy's
tokenizer (:mod:`nlproar_jax.data.tokenize`, token-identical on every SST sentence;
``spacy_backend="spacy"`` uses the real spaCy); examples keep the file order (the
original additionally shuffles each split with ``random.Random(seed)``; shuffling is the
batcher's job here).
"""
from __future__ import annotations

import os
import re
from typing import Iterator

import numpy as np

from nlproar_jax.data.dataset import RawSplit, RawTask
from nlproar_jax.data.loader_utils import (DataFileError, find_first, iter_lines, missing_file_error,
                                           resolve_data_dir)
from nlproar_jax.data.tokenize import spacy_tokenizer

LABEL_NAMES = ("negative", "positive")
_ROOT_TO_LABEL = {"0": 0, "1": 0, "3": 1, "4": 1}  # "2" (neutral) is dropped
_FILES = {"train": "train.txt", "val": "dev.txt", "test": "test.txt"}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_WORD_CHAR = re.compile(r"\w")
# Sentence class -> the leaf labels that count as evidence for it (see the module docstring).
RATIONALE_LABELS = {0: ("0", "1"), 1: ("3", "4")}


def parse_tree(line: str, *, path: str = "<string>", lineno: int | None = None) -> tuple[str, list[str]]:
    """``(root_label, leaves)`` of one PTB tree such as ``(3 (2 a) (4 b))``."""
    root, leaves, _ = parse_labelled_tree(line, path=path, lineno=lineno)
    return root, leaves


def parse_labelled_tree(line: str, *, path: str = "<string>",
                        lineno: int | None = None) -> tuple[str, list[str], list[str]]:
    """``(root_label, leaves, leaf_labels)`` of one PTB tree: ``leaf_labels[i]`` is the label of the
    smallest node containing leaf ``i`` (in ``(3 (2 a) (4 b))``: ``["2", "4"]``)."""
    tokens = _TOKEN.findall(line)
    if len(tokens) < 4 or tokens[0] != "(" or tokens[-1] != ")":
        raise DataFileError(path, lineno, f"not a PTB tree: {line[:80]!r}")
    open_labels: list[str] = []  # the labels of the nodes open at this point, innermost last
    leaves, leaf_labels = [], []
    for i, tok in enumerate(tokens):
        if tok == "(":
            if i + 1 >= len(tokens) or tokens[i + 1] in "()":
                raise DataFileError(path, lineno, f"tree node without a label at token {i}: {line[:80]!r}")
            open_labels.append(tokens[i + 1])
        elif tok == ")":
            if not open_labels or (len(open_labels) == 1 and i != len(tokens) - 1):
                raise DataFileError(path, lineno, f"unbalanced parentheses: {line[:80]!r}")
            open_labels.pop()
        elif tokens[i - 1] != "(":  # not a node label: a leaf
            leaves.append(tok)
            leaf_labels.append(open_labels[-1])
    if open_labels:
        raise DataFileError(path, lineno, f"unbalanced parentheses (depth {len(open_labels)} at the end): "
                            f"{line[:80]!r}")
    return tokens[1], leaves, leaf_labels


def normalise(text: str) -> str:
    """The original's SST text clean-up before spaCy (see the module docstring)."""
    text = text.strip()
    text = text.replace("-LRB-", "")
    text = text.replace("-RRB-", "  ")
    text = re.sub(r"\W+", " ", text)
    return re.sub(r"\s+", " ", text)


def _binary_trees(path: str, min_leaves: int) -> Iterator[tuple[str, list[str], list[str]]]:
    """``(root_label, leaves, leaf_labels)`` of every tree of ``path`` that the binary task keeps
    (root not neutral, at least ``min_leaves`` leaves), in file order."""
    kept = 0
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        root, leaves, leaf_labels = parse_labelled_tree(line, path=path, lineno=lineno)
        if root not in ("0", "1", "2", "3", "4"):
            raise DataFileError(path, lineno, f"root label {root!r} is not a sentiment class; "
                                "valid labels: 0, 1, 2, 3, 4")
        if not leaves:
            raise DataFileError(path, lineno, "tree has no leaves (empty sentence)")
        if root == "2" or len(leaves) < min_leaves:
            continue
        kept += 1
        yield root, leaves, leaf_labels
    if not kept:
        raise DataFileError(path, None, "no usable sentences (empty file?)")


def read_split(path: str, *, min_leaves: int = 6, tokenize=None) -> RawSplit:
    """One SST split: binary labels, trees with at least ``min_leaves`` leaves, tokenized."""
    tokenize = tokenize or spacy_tokenizer("python")
    docs, labels = [], []
    for root, leaves, _ in _binary_trees(path, min_leaves):
        docs.append([t.lower() for t in tokenize(normalise(" ".join(leaves)))])
        labels.append(_ROOT_TO_LABEL[root])
    return RawSplit(docs, labels)


def token_leaves(leaves: list[str], tokens: list[str]) -> list[int]:
    """For each token of ``tokenize(normalise(" ".join(leaves)))`` (not lowercased), the index of
    the leaf it comes from, or -1 for a whitespace token; ``len(tokens)`` entries.

    :func:`normalise` keeps every word character (``\\w``) of the joined leaves in order, except those
    of ``-LRB-`` / ``-RRB-``, and makes everything else single spaces; so the tokens' characters are
    the leaves' word characters in order, and each token is matched to its leaf by position."""
    owner: list[int] = []  # leaf index of each word character of the normalised text
    chars: list[str] = []
    for j, leaf in enumerate(leaves):
        kept = _WORD_CHAR.findall(leaf.replace("-LRB-", "").replace("-RRB-", "  "))
        chars.extend(kept)
        owner.extend([j] * len(kept))
    out, pos = [], 0
    for tok in tokens:
        text = "".join(tok.split())
        if not text:
            out.append(-1)
            continue
        pieces = set(owner[pos:pos + len(text)])
        if "".join(chars[pos:pos + len(text)]) != text or len(pieces) != 1:
            raise ValueError(f"token {tok!r} (number {len(out)}) does not match one leaf of {leaves}")
        out.append(pieces.pop())
        pos += len(text)
    if pos != len(chars):
        raise ValueError(f"tokens {tokens} cover {pos} of the {len(chars)} word characters of {leaves}")
    return out


def token_rationales(leaves: list[str], leaf_labels: list[str], label: int, tokens: list[str]) -> np.ndarray:
    """``<bool>[len(tokens)]``: the gold rationale of a sentence of class ``label`` (0 negative, 1
    positive) whose tokens are ``tokens`` (see the module docstring for the rule)."""
    if label not in RATIONALE_LABELS:
        raise ValueError(f"unknown SST label {label!r}; valid: {sorted(RATIONALE_LABELS)}")
    polar = RATIONALE_LABELS[label]
    return np.asarray([j >= 0 and leaf_labels[j] in polar for j in token_leaves(leaves, tokens)], dtype=bool)


def read_rationales(path: str, *, min_leaves: int = 6, tokenize=None) -> tuple[list[list[str]], list[np.ndarray]]:
    """``(docs, rationales)`` of one split, row for row as :func:`read_split`: ``docs[i]`` its tokens,
    ``rationales[i]`` a ``<bool>[len(docs[i])]`` gold mask (no [CLS] / [EOS])."""
    tokenize = tokenize or spacy_tokenizer("python")
    docs, masks = [], []
    for root, leaves, leaf_labels in _binary_trees(path, min_leaves):
        tokens = tokenize(normalise(" ".join(leaves)))
        docs.append([t.lower() for t in tokens])
        masks.append(token_rationales(leaves, leaf_labels, _ROOT_TO_LABEL[root], tokens))
    return docs, masks


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


def gold_rationales(data_dir: str | None, *, min_leaves: int = 6,
                    spacy_backend: str = "python") -> dict[str, tuple[list[list[str]], list[np.ndarray]]]:
    """Per split, ``(docs, rationales)`` aligned row for row and token for token with :func:`load`
    (same options): the gold token rationales of the module docstring."""
    data_dir = resolve_data_dir(data_dir, "sst")
    if min_leaves < 1:
        raise ValueError(f"min_leaves must be >= 1, got {min_leaves}")
    tokenize = spacy_tokenizer(spacy_backend)
    return {split: read_rationales(path, min_leaves=min_leaves, tokenize=tokenize)
            for split, path in find_files(data_dir).items()}
