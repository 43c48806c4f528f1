"""bAbI question answering tasks 1-3 (the original's ``nlproar/dataset/babi.py``).

Reads the official v1.2 text files
``data_dir/babi/tasks_1-20_v1-2/<variant>/qa<N>_<name>_{train,test}.txt`` (also
accepted: ``data_dir/tasks_1-20_v1-2/``), variant ``en-10k`` (the original's) or ``en``
(the 1k version).

Parsing, as the original: each line is ``<id> <text>``; id 1 starts a new story. A line
ending in ``.`` is a statement (the ``.`` removed) and joins the story; any other line is
a question ``<question>?\\t<answer>\\t<supporting ids>`` and becomes one example whose
paragraph is the story's statements so far joined by ``" . "`` and whose question is the
question without its ``?``. Both are split on whitespace, case kept. The label is the
answer's index in the original's fixed 36-word list :data:`LABEL_NAMES` (only six words
occur as answers). Main sequence = paragraph, auxiliary = question.

Splits: the official train file is split 85/15 into train and val with
``train_test_split(train_size=0.85, random_state=RandomState(split_seed))``
(reproduced exactly; the original's cached dataset is built with seed 0); test is the
official test file. en-10k: **8,500 / 1,500 / 1,000**; en: 850 / 150 / 1,000.

The supporting-fact ids are kept: :func:`supporting_facts` returns, for every example of
each split (same order as :func:`load_task`), the token positions of its supporting
statements in the main sequence: the ground truth for importance. :func:`gold_rationales`
gives the same as a ``<bool>`` mask per example, beside the tokens: every word of a supporting
statement is a rationale token; the ``"."`` tokens that separate statements, the other
statements and the question (the auxiliary sequence) are not.

Data gap here: ``../shared/data`` lacks the en-10k task-3 training file; loading it
raises an error that suggests ``variant="en"``.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from nlproar_jax.data.dataset import RawSplit, RawTask
from nlproar_jax.data.loader_utils import DataFileError, iter_lines, missing_file_error, resolve_data_dir, shuffle_split

# The original's label list (nlproar/dataset/babi.py, BabiDataset.label_names), verbatim.
LABEL_NAMES = ("put", "picked", "down", ".", "travelled", "was",
               "football", "got", "garden", "milk", "discarded", "is",
               "moved", "journeyed", "apple", "took", "Sandra", "before",
               "Mary", "Where", "John", "office", "there", "Daniel",
               "bathroom", "went", "left", "the", "back", "hallway",
               "dropped", "to", "bedroom", "kitchen", "grabbed", "up")
TASK_FILES = {1: "qa1_single-supporting-fact_", 2: "qa2_two-supporting-facts_", 3: "qa3_three-supporting-facts_"}
VARIANTS = ("en-10k", "en")


@dataclasses.dataclass(frozen=True)
class Example:
    paragraph: str
    question: str
    answer: str
    support: tuple[int, ...]  # indices (0-based) into the paragraph's statements


def parse_file(path: str) -> list[Example]:
    """Every question of a bAbI file as an :class:`Example` (see the module docstring)."""
    examples: list[Example] = []
    story: list[str] = []
    line_to_statement: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split(" ", 1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataFileError(path, lineno, f"expected '<id> <text>', got {line[:80]!r}")
        tid, text = parts
        if tid == "1":
            story, line_to_statement = [], {}
        if text.endswith("."):
            story.append(text[:-1])
            line_to_statement[tid] = len(story) - 1
            continue
        fields = [x.strip() for x in text.split("\t")]
        if len(fields) != 3:
            raise DataFileError(path, lineno, "a question line must be '<id> <question>?\\t<answer>\\t<supporting ids>' "
                                f"(or a statement ending in '.'), got {line[:80]!r}")
        query, answer, support = fields
        if not query.endswith("?") or not query[:-1].strip():
            raise DataFileError(path, lineno, f"question {query!r} must be non-empty and end with '?'")
        if answer not in LABEL_NAMES:
            raise DataFileError(path, lineno, f"unknown answer {answer!r}; valid answers: {LABEL_NAMES}")
        # The original drops empty statements when joining; map supporting line ids accordingly.
        kept = [i for i, s in enumerate(story) if s]
        position = {old: new for new, old in enumerate(kept)}
        support_ids = []
        for sid in support.split():
            if sid not in line_to_statement or line_to_statement[sid] not in position:
                raise DataFileError(path, lineno, f"supporting id {sid!r} is not a statement of this story")
            support_ids.append(position[line_to_statement[sid]])
        examples.append(Example(" . ".join(story[i] for i in kept), query[:-1], answer, tuple(support_ids)))
    if not examples:
        raise DataFileError(path, None, "no questions (empty file?)")
    return examples


def statement_token_positions(paragraph_tokens: list[str], statements: tuple[int, ...]) -> list[int]:
    """Token positions (0-based, [CLS] not counted) of the given statements' words in a paragraph."""
    out, current = [], 0
    for pos, tok in enumerate(paragraph_tokens):
        if tok == ".":
            current += 1
        elif current in statements:
            out.append(pos)
    return out


def _roots(data_dir: str) -> list[str]:
    return [os.path.join(data_dir, "babi", "tasks_1-20_v1-2"), os.path.join(data_dir, "tasks_1-20_v1-2")]


def task_file(data_dir: str, task: int, variant: str, split: str) -> str:
    """Path of the official file for (task, variant, split), or a FileNotFoundError that says what to do."""
    candidates = [os.path.join(root, variant, f"{TASK_FILES[task]}{split}.txt") for root in _roots(data_dir)]
    for c in candidates:
        if os.path.exists(c):
            return c
    hint = "Get it with: python -m nlproar_jax.download --task babi --data-dir DIR"
    if variant == "en-10k":
        gap = " (../shared/data has no en-10k task-3 train file)" if (task, split) == (3, "train") else ""
        hint = (f"The en-10k {split} file of task {task} is missing{gap}. Use variant=\"en\" (the official 1k "
                "version) instead, e.g. --config.dataset.variant=en, or place the file there. " + hint)
    raise missing_file_error(f"bAbI task {task} ({variant}) {split} file", candidates, hint)


def _examples_by_split(data_dir, task, variant, split_seed, train_size) -> dict[str, list[Example]]:
    data_dir = resolve_data_dir(data_dir, f"babi-{task}")
    if task not in TASK_FILES:
        raise ValueError(f"unknown bAbI task {task!r}; valid tasks: {sorted(TASK_FILES)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown bAbI variant {variant!r}; valid variants: {VARIANTS}")
    train_file = task_file(data_dir, task, variant, "train")
    test_file = task_file(data_dir, task, variant, "test")
    train_all = parse_file(train_file)
    train_pos, val_pos = shuffle_split(len(train_all), np.random.RandomState(split_seed), train_size=train_size)
    return {"train": [train_all[i] for i in train_pos], "val": [train_all[i] for i in val_pos],
            "test": parse_file(test_file)}


def load_task(task: int, data_dir: str | None, *, variant: str = "en-10k", split_seed: int = 0,
              train_size: float = 0.85) -> RawTask:
    """bAbI task ``task`` (1, 2 or 3); see the module docstring."""
    splits = {}
    for name, examples in _examples_by_split(data_dir, task, variant, split_seed, train_size).items():
        splits[name] = RawSplit([e.paragraph.split() for e in examples],
                                [LABEL_NAMES.index(e.answer) for e in examples],
                                [e.question.split() for e in examples])
    notes = () if variant == "en-10k" else (
        f"bAbI-{task} uses the 1k variant ('en'), not the original's en-10k: less training data, lower accuracy.",)
    return RawTask(f"babi-{task}", LABEL_NAMES, splits, notes)


def supporting_facts(task: int, data_dir: str | None, *, variant: str = "en-10k", split_seed: int = 0,
                     train_size: float = 0.85) -> dict[str, list[list[int]]]:
    """Per split, per example (aligned with :func:`load_task`): main-sequence token positions
    (0-based, before [CLS]) of the supporting statements."""
    return {name: [statement_token_positions(e.paragraph.split(), e.support) for e in examples]
            for name, examples in _examples_by_split(data_dir, task, variant, split_seed, train_size).items()}


def gold_rationales(task: int, data_dir: str | None, *, variant: str = "en-10k", split_seed: int = 0,
                    train_size: float = 0.85) -> dict[str, tuple[list[list[str]], list[np.ndarray]]]:
    """Per split, ``(docs, rationales)`` aligned with :func:`load_task` (same options): ``docs[i]`` the
    main-sequence tokens of example ``i``, ``rationales[i]`` a ``<bool>[len(docs[i])]`` mask (no [CLS] /
    [EOS]), True on every word of its supporting statements."""
    out = {}
    for name, examples in _examples_by_split(data_dir, task, variant, split_seed, train_size).items():
        docs, masks = [], []
        for e in examples:
            tokens = e.paragraph.split()
            mask = np.zeros(len(tokens), dtype=bool)
            mask[statement_token_positions(tokens, e.support)] = True
            docs.append(tokens)
            masks.append(mask)
        out[name] = (docs, masks)
    return out


def load_task1(data_dir: str | None, *, variant: str = "en-10k", split_seed: int = 0,
               train_size: float = 0.85) -> RawTask:
    """bAbI task 1 (see :func:`load_task`)."""
    return load_task(1, data_dir, variant=variant, split_seed=split_seed, train_size=train_size)


def load_task2(data_dir: str | None, *, variant: str = "en-10k", split_seed: int = 0,
               train_size: float = 0.85) -> RawTask:
    """bAbI task 2 (see :func:`load_task`)."""
    return load_task(2, data_dir, variant=variant, split_seed=split_seed, train_size=train_size)


def load_task3(data_dir: str | None, *, variant: str = "en-10k", split_seed: int = 0,
               train_size: float = 0.85) -> RawTask:
    """bAbI task 3 (see :func:`load_task`)."""
    return load_task(3, data_dir, variant=variant, split_seed=split_seed, train_size=train_size)
