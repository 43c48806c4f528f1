"""Word pieces merged back into words for display (data/tokens.py: merge_word_pieces; report.py:
pieces_html): hand-built pieces of both conventions (BERT's "##" continuations, RoBERTa's "Ġ" word
starts), the convention read off a vocabulary, tiny local BERT and RoBERTa tokenizers (no download:
vocabularies written here), and the report's examples of a word-piece task."""
import math
import os
import re
import string

import numpy as np
import pytest

from nlproar_jax.analysis import report
from nlproar_jax.data.dataset import RawSplit, RawTask
from nlproar_jax.data.tokens import (MASK, PretrainedVocabulary, Vocabulary, merge_word_pieces, piece_convention,
                                     special_ids)

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_WORDS = (BERT_SPECIALS + list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
              + ["an", "un", "##believ", "##able", "film", "bad", "good", "<", ">"])
ROBERTA_WORDS = (["<s>", "<pad>", "</s>", "<unk>", "<mask>", "Ġ"] + list(string.ascii_lowercase)
                 + ["Ã", "©", "Ġm", "Ġg", "Ġc", "Ġb", "Ġt", "go", "goo", "good"])
ROBERTA_MERGES = [("Ġ", "m"), ("Ġ", "g"), ("Ġ", "c"), ("Ġ", "b"), ("Ġ", "t"),
                  ("g", "o"), ("go", "o"), ("goo", "d")]


def texts(words):
    return [w.text for w in words]


# -- hand-built pieces ------------------------------------------------------------------------
def test_wordpiece_continuations_join_and_scores_sum():
    pieces = ["[CLS]", "un", "##believ", "##able", "film", "[UNK]", "##s", "[SEP]"]
    alone = [True, False, False, False, False, True, False, True]
    scores = [9.0, 0.1, 0.2, 0.3, 1.0, 0.5, np.nan, 9.0]
    masked = [False, False, True, True, False, False, False, False]
    words = merge_word_pieces(pieces, "wordpiece", scores=scores, masked=masked, alone=alone)
    # a continuation after a special token cannot join it: it is a word of its own
    assert texts(words) == ["[CLS]", "unbelievable", "film", "[UNK]", "##s", "[SEP]"]
    assert [(w.start, w.stop, w.pieces) for w in words[:3]] == [(0, 1, 1), (1, 4, 3), (4, 5, 1)]
    assert [w.alone for w in words] == [True, False, False, True, False, True]
    assert words[1].score == pytest.approx(0.6) and words[1].masked == 2  # the sum; 2 of 3 pieces masked
    assert words[2].score == 1.0 and words[2].masked == 0
    assert math.isnan(words[4].score)  # only NaN pieces
    plain = merge_word_pieces(pieces, "wordpiece")
    assert texts(plain)[1] == "unbelievable" and all(math.isnan(w.score) and w.masked == 0 for w in plain)


def test_bpe_word_starts_join_and_bytes_decode():
    pieces = ["<s>", "The", "Ġfil", "m", "Ġis", "Ġcaf", "Ã©", "</s>"]
    alone = [True, False, False, False, False, False, False, True]
    words = merge_word_pieces(pieces, "bpe", scores=np.arange(8.0), masked=[0, 0, 0, 1, 0, 0, 0, 0], alone=alone)
    # the first word has no "Ġ" (no space before it); "Ã©" is é as byte-level BPE writes it
    assert texts(words) == ["<s>", "The", "film", "is", "café", "</s>"]
    assert [w.score for w in words] == [0.0, 1.0, 5.0, 4.0, 11.0, 7.0]
    assert [w.masked for w in words] == [0, 0, 1, 0, 0, 0]
    # SentencePiece's word start likewise; the project's own words never merge
    assert texts(merge_word_pieces(["▁The", "▁fil", "m"], "bpe")) == ["The", "film"]
    assert texts(merge_word_pieces(["un", "##able"], "word")) == ["un", "##able"]


def test_convention_and_special_ids_from_the_vocabulary():
    assert piece_convention(BERT_WORDS) == "wordpiece"
    assert piece_convention(ROBERTA_WORDS) == "bpe"
    assert piece_convention(["[PAD]", "good", "film"]) == "word"
    assert special_ids(Vocabulary.build([["a"]])) == {"pad": 0, "cls": 1, "sep": 2, "mask": MASK, "unk": 4}
    bert = PretrainedVocabulary(tuple(BERT_WORDS), "tok-test")
    assert special_ids(bert) == {"pad": 0, "cls": 2, "sep": 3, "mask": 4, "unk": 1}
    swapped = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0 and 1 exchanged (pad_swap)
    assert special_ids(PretrainedVocabulary(tuple(swapped), "tok-test")) == {"pad": 0, "cls": 1, "sep": 2,
                                                                             "unk": 3, "mask": 4}
    with pytest.raises(ValueError, match="unknown word-piece convention"):
        merge_word_pieces(["a"], "sentencepiece")
    with pytest.raises(ValueError, match="scores has 1 entries for 2 pieces"):
        merge_word_pieces(["a", "b"], "bpe", scores=[1.0])


# -- tiny local tokenizers ----------------------------------------------------------------------
def tiny_bert_tokenizer():
    transformers = pytest.importorskip("transformers", reason="the tokenizers come from transformers")
    return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(BERT_WORDS)}, do_lower_case=True)


def tiny_roberta_tokenizer():
    transformers = pytest.importorskip("transformers", reason="the tokenizers come from transformers")
    return transformers.RobertaTokenizer(vocab={w: i for i, w in enumerate(ROBERTA_WORDS)}, merges=ROBERTA_MERGES)


def encode(tokenizer, docs):
    from nlproar_jax.data import pretrained

    raw = RawTask("t", ("neg", "pos"), {s: RawSplit(docs, [0, 1] * (len(docs) // 2)) for s in ("train", "val", "test")})
    # encode_task asks the spec only for the length and its identity (a hash of the tokenizer's files,
    # which these in-memory tokenizers do not have)
    spec = type("Spec", (), {"directory": "-", "max_length": 64, "identity": lambda self: "tok-test"})()
    return pretrained.encode_task(raw, spec, tokenizer)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_encoded_rows_merge_back_into_the_words(family):
    tokenizer = tiny_bert_tokenizer() if family == "bert" else tiny_roberta_tokenizer()
    docs = [["an", "unbelievable", "film"], ["bad", "film"]] if family == "bert" else [["good", "movie", "café"],
                                                                                       ["bad", "good"]]
    data = encode(tokenizer, docs)
    vocab = data.vocab
    assert piece_convention(vocab.words) == ("wordpiece" if family == "bert" else "bpe")
    sp = special_ids(vocab)
    from nlproar_jax.data.pretrained import pad_swap

    tokenizer_ids = np.array([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id])
    assert [sp["cls"], sp["sep"], sp["mask"]] == pad_swap(tokenizer_ids, tokenizer.pad_token_id).tolist()
    test = data.splits["test"]
    for i, doc in enumerate(docs):
        ids = test.main.row(i)
        pieces = vocab.decode(ids)
        assert i > 0 or len(pieces) > len(doc) + 2  # the first has words of several pieces
        alone = np.isin(ids, [v for v in sp.values() if v is not None])
        words = merge_word_pieces(pieces, piece_convention(vocab.words), alone=alone)
        assert texts(words)[1:-1] == doc and words[0].alone and words[-1].alone


def test_pieces_html_merges_scores_and_shows_masking():
    tokenizer = tiny_bert_tokenizer()
    data = encode(tokenizer, [["an", "unbelievable", "<b>"], ["bad", "film"]])
    vocab, ids = data.vocab, data.splits["test"].main.row(0)
    # BERT's basic tokenizer splits punctuation off: "<b>" is three words
    assert vocab.decode(ids) == ["[CLS]", "an", "un", "##believ", "##able", "<", "b", ">", "[SEP]"]
    scores = np.array([5.0, 0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 5.0])
    out = report.pieces_html(vocab, ids, scores)
    assert ">unbelievable<" in out and "##" not in out.split("title=")[0]
    assert "importance 0.9 (sum of 3 pieces)" in out and "pieces: un ##believ ##able" in out
    assert ">&lt;</span>" in out and "><</span>" not in out  # escaped
    assert "rgba(230,85,13,1.000)" in out  # the word with the largest sum, not [CLS]'s 5.0
    assert '<span class="tok special">[CLS]</span>' in out
    masked = ids.copy()
    masked[4] = special_ids(vocab)["mask"]  # "##able"
    out = report.pieces_html(vocab, ids, masked_ids=masked)
    assert '<span class="tok mask" title="pieces: un ##believ ##able; 1 of 3 word pieces masked">' \
           "unbelievable<sup>1/3</sup></span>" in out
    with pytest.raises(ValueError, match="masked row"):
        report.pieces_html(vocab, ids, masked_ids=masked[:-1])


def test_report_shows_a_word_piece_task_as_words(tmp_path):
    from test_results import fake_grid, fake_result, write_results

    data = encode(tiny_bert_tokenizer(), [["an", "unbelievable", "film"], ["bad", "film"]] * 2)
    root = str(tmp_path)
    results = fake_grid(seeds=(0,))
    rec = fake_result(k=10, measure="gradient", recursive=True, test=0.55, experiment_id="synthetic_rnn_s-0_rec")
    write_results(root, results + [rec])
    data.save(os.path.join(root, "cache", "datasets", "synthetic-abc.npz"))
    test = data.splits["test"]
    os.makedirs(os.path.join(root, "cache", "importance"))
    scores = np.linspace(0, 1, len(test.main.values)).astype(np.float32)
    np.savez(os.path.join(root, "cache", "importance", "synthetic_rnn_s-0__gradient.npz"), test=scores)
    main = test.main.copy()
    main.values[test.main.offsets[0] + 3] = special_ids(data.vocab)["mask"]  # "##believ" of row 0
    masked = data.replace_splits({**data.splits, "test": test.replace_main(main)})
    masked.save(os.path.join(root, "runs", rec["experiment_id"], "masked_dataset.npz"))
    page = open(report.write_report(root, str(tmp_path / "r.html"), n_examples=4), encoding="utf-8").read()
    examples = page[page.index("<h2>Examples"):]
    assert "merged back into words" in examples and ">unbelievable<" in examples
    assert "##" not in re.sub(r'title="[^"]*"', "", examples)  # pieces only on hover
    assert "unbelievable<sup>1/3</sup>" in examples  # the recursive step's masked piece
