"""Tasks encoded with a pretrained transformer's own tokenizer (``config.model = "bert"``).

A pretrained encoder reads its tokenizer's ids, so its tasks are not encoded with the project's word
vocabulary (:func:`nlproar_jax.data.dataset.encode_task`) but here, into the same
:class:`~nlproar_jax.data.dataset.TaskData`: the **word pieces are the tokens** (what importance
scores and ROAR masks), ``vocab.words[id]`` is the word piece with that id
(:class:`~nlproar_jax.data.tokens.PretrainedVocabulary`, the tokenizer's vocabulary in id order).

As the original's RoBERTa path (``ORIGINAL.md`` section 9):

* single texts: ``[CLS] text [SEP]`` (``<s> text </s>``), the tokenizer's own specials; longer
  than ``max_length``, the first ``max_length - 1`` ids and the last one are kept;
* pairs (SNLI premise/hypothesis, bAbI paragraph/question): main ``[CLS] premise [SEP]``, aux
  ``hypothesis [SEP]`` (the hypothesis' own leading ``[CLS]``/``<s>`` dropped), which the model
  concatenates with type ids 0 / 1 (:mod:`nlproar_jax.models.bert`). **[ours]** a pair longer than
  ``max_length`` shortens the main part by the same rule (the original's rule is not recorded).

**[ours]** The tokenizer reads each example's word tokens joined by single spaces (the loaders'
normalised text: SST lowercased with ``\\W`` removed, SNLI tokenised, bAbI as in the files); the
original gave the raw sentence (SST: the tree's leaves joined) to RoBERTa's tokenizer.

Padding: batches are right-padded with id 0 everywhere in the pipeline. A tokenizer whose pad id
``p`` is not 0 (RoBERTa's is 1) has ids 0 and ``p`` exchanged in the data (:func:`pad_swap`, an
involution; ``vocab.words`` follows it) and the model is built for those ids
(:func:`nlproar_jax.models.bert.from_config` swaps the two embedding rows and its special ids), so
padding is 0 in the data and nothing else changes. BERT-family tokenizers pad with 0: ids unchanged.

The dataset cache key includes :meth:`TokenizerSpec.identity` (a hash of the tokenizer files, the
maximum length and the encoding rules), so word-vocabulary caches and word-piece caches of a task
never collide, nor do two tokenizers'.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Optional, Sequence

import numpy as np

from nlproar_jax.data.dataset import SPLITS, RawTask, Ragged, Split, TaskData
from nlproar_jax.data.tokens import PretrainedVocabulary

# The files a Hugging Face tokenizer may be read from; whichever are present enter the identity.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model")
# Bump when the encoding rules below change, so cached datasets are rebuilt.
ENCODING_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer encodes a task: an HF directory (local files only) and the longest sequence
    (main + auxiliary, specials included) the model reads."""

    directory: str
    max_length: int

    def __post_init__(self):
        if self.max_length < 4:
            raise ValueError(f"max_length {self.max_length} is too short for [CLS] text [SEP] pairs (need >= 4)")

    def identity(self) -> str:
        """``tok-<sha256 prefix>`` of the tokenizer files, ``max_length`` and :data:`ENCODING_VERSION`."""
        h = hashlib.sha256(f"v{ENCODING_VERSION}:max_length={self.max_length}".encode())
        found = [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(self.directory, name))]
        if not found:
            raise FileNotFoundError(f"no tokenizer files in {self.directory} (looked for {', '.join(TOKENIZER_FILES)})")
        for name in found:
            with open(os.path.join(self.directory, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read() + b"\0")
        return f"tok-{h.hexdigest()[:12]}"

    def load(self):
        """The directory's fast tokenizer (``transformers.AutoTokenizer``, local files only)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.directory, local_files_only=True)


def truncate(ids: list[int], n: int) -> list[int]:
    """The first ``n - 1`` ids and the last one, when ``ids`` is longer than ``n`` (section 9)."""
    if n < 2:
        raise ValueError(f"cannot fit a sequence with its specials into {n} tokens")
    return ids if len(ids) <= n else ids[: n - 1] + ids[-1:]


def encode_batch(tokenizer, texts: Sequence[str], pairs: Optional[Sequence[str]] = None, max_length: int = 512
                 ) -> tuple[list[list[int]], Optional[list[list[int]]]]:
    """``(mains, auxs)``: the tokenizer's ids of each text (``[CLS] text [SEP]``) and, for pairs, of
    each pair's second part without its leading special (``pair [SEP]``); truncated to ``max_length``
    together (see the module docstring). ``auxs`` is None without ``pairs``."""
    mains = [list(ids) for ids in tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]
    if pairs is None:
        return [truncate(m, max_length) for m in mains], None
    if len(pairs) != len(mains):
        raise ValueError(f"{len(mains)} texts but {len(pairs)} pairs")
    auxs = [list(ids)[1:] for ids in tokenizer(list(pairs), add_special_tokens=True, verbose=False)["input_ids"]]
    too_long = [i for i, a in enumerate(auxs) if len(a) > max_length - 3]
    if too_long:
        raise ValueError(f"pair {too_long[0]} has a second part of {len(auxs[too_long[0]])} tokens: no room for the "
                         f"first part within max_length {max_length}")
    return [truncate(m, max_length - len(a)) for m, a in zip(mains, auxs)], auxs


def pad_swap(ids: np.ndarray, pad: int) -> np.ndarray:
    """``ids`` with the values 0 and ``pad`` exchanged (the identity when ``pad`` is 0): tokenizer ids to
    data ids and back (see the module docstring)."""
    ids = np.asarray(ids)
    if pad == 0:
        return ids
    return np.where(ids == 0, pad, np.where(ids == pad, 0, ids)).astype(ids.dtype)


def vocabulary(tokenizer, source: str) -> PretrainedVocabulary:
    """The tokenizer's word pieces in data-id order (:func:`pad_swap` applied)."""
    words = list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    pad = int(tokenizer.pad_token_id)
    words[0], words[pad] = words[pad], words[0]
    return PretrainedVocabulary(tuple(words), source)


def encode_task(raw: RawTask, spec: TokenizerSpec, tokenizer=None) -> TaskData:
    """``raw`` encoded with the tokenizer of ``spec`` (loaded unless given): one
    :class:`~nlproar_jax.data.dataset.Split` per split, ids in data order (:func:`pad_swap`)."""
    tokenizer = spec.load() if tokenizer is None else tokenizer
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer in {spec.directory} has no padding token")
    pad = int(tokenizer.pad_token_id)
    splits = {}
    for name in SPLITS:
        rs = raw.splits[name]
        texts = [" ".join(tokens) for tokens in rs.main]
        pairs = None if rs.aux is None else [" ".join(tokens) for tokens in rs.aux]
        mains, auxs = encode_batch(tokenizer, texts, pairs, spec.max_length)
        to_rows = lambda rows: Ragged.from_list([pad_swap(np.asarray(r, np.int32), pad) for r in rows])  # noqa: E731
        splits[name] = Split(to_rows(mains), np.asarray(rs.labels, np.int32), None if auxs is None else to_rows(auxs))
    return TaskData(raw.name, vocabulary(tokenizer, spec.identity()), tuple(raw.label_names), splits, tuple(raw.notes))
