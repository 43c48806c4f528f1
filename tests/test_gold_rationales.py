"""Gold token rationales of SST (polar treebank leaves) and bAbI (supporting statements).

The hand-picked cases were read off the raw files in ``../shared/data`` (the real-data tests skip,
saying why, when that directory, or ``$NLPROAR_DATA_DIR``, is absent); the small cases need no files.
"""
from __future__ import annotations

import numpy as np
import pytest

from nlproar_jax.data import babi, sst
from nlproar_jax.data.dataset import encode_task
from nlproar_jax.data.tokenize import spacy_tokenize
from nlproar_jax.data.tokens import FIRST_ELIGIBLE
from nlproar_jax.evaluation.plausibility import file_rationales, plausibility, rationales_from_masks


# -- no files ------------------------------------------------------------------------------------
def test_leaf_labels_are_the_smallest_labelled_node():
    root, leaves, labels = sst.parse_labelled_tree("(3 (2 (2 The) (4 x)) (3 (1 a) b))")
    assert (root, leaves, labels) == ("3", ["The", "x", "a", "b"], ["2", "4", "1", "3"])
    assert sst.parse_tree("(3 (2 (2 The) (4 x)) (3 (1 a) b))") == ("3", ["The", "x", "a", "b"])


def test_token_alignment_follows_normalisation_and_resplits():
    leaves = ["...", "-LRB-", "well-made", "-RRB-", "film", "does", "n't", "'s", "A.I.", "."]
    labels = ["2", "2", "4", "2", "2", "2", "1", "2", "3", "2"]
    tokens = spacy_tokenize(sst.normalise(" ".join(leaves)))
    assert tokens == [" ", "well", "made", "film", "does", "n", "t", "s", "A", "I"]
    assert sst.token_leaves(leaves, tokens) == [-1, 2, 2, 4, 5, 6, 6, 7, 8, 8]
    pos = sst.token_rationales(leaves, labels, 1, tokens)
    neg = sst.token_rationales(leaves, labels, 0, tokens)
    assert [t for t, f in zip(tokens, pos) if f] == ["well", "made", "A", "I"]
    assert [t for t, f in zip(tokens, neg) if f] == ["n", "t"]
    with pytest.raises(ValueError, match="does not match one leaf"):
        sst.token_leaves(leaves, [" ", "wellmadefilm"] + tokens[4:])  # two leaves in one token
    with pytest.raises(ValueError, match="valid: \\[0, 1\\]"):
        sst.token_rationales(leaves, labels, 2, tokens)


def test_masks_get_false_specials():
    gold = rationales_from_masks([np.array([True, False]), np.zeros(0, bool)])
    np.testing.assert_array_equal(gold.offsets, [0, 4, 6])
    np.testing.assert_array_equal(gold.values, [False, True, False, False, False, False])
    with pytest.raises(ValueError, match="no gold rationales in its files; valid: .*'sst'"):
        file_rationales("imdb", "test", "/nowhere")


# -- the real files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sst_gold(shared_data_dir):
    return sst.gold_rationales(str(shared_data_dir))


@pytest.fixture(scope="module")
def sst_task(shared_data_dir):
    return encode_task(sst.load(str(shared_data_dir)))


def _gold_words(docs, masks, i):
    return [t for t, f in zip(docs[i], masks[i]) if f]


def test_real_sst_hand_picked(sst_gold):
    docs, masks = sst_gold["test"]
    # test.txt line 6, root 3 (positive): "Perhaps no picture ... the road to hell is paved with good
    # intentions ." Leaves no 1, literally 3, road 1, hell 0, good 3: only the positive ones are gold.
    assert docs[3][:3] == ["perhaps", "no", "picture"] and len(docs[3]) == 19
    assert _gold_words(docs, masks, 3) == ["literally", "good"]
    # test.txt, root 4: "One of the greatest family-oriented , fantasy-adventure movies ever ." greatest 3,
    # family-oriented 3 (two tokens, both gold), fantasy-adventure 2, the comma dropped by normalisation.
    assert docs[10] == ["one", "of", "the", "greatest", "family", "oriented", "fantasy", "adventure", "movies", "ever"]
    assert _gold_words(docs, masks, 10) == ["greatest", "family", "oriented"]
    # A negated negative sentence: "I just did n't care as much for the story ." (root 1; care 3, n't 2)
    # has no gold token under the leaf rule.
    assert docs[1567][:5] == ["i", "just", "did", "n", "t"] and not masks[1567].any()
    # dev.txt, root 1: "... is an arthritic attempt at directing by Callie Khouri ." The leading "..." makes
    # a " " token, never gold; arthritic (1) is.
    docs, masks = sst_gold["val"]
    assert docs[477][:4] == [" ", "is", "an", "arthritic"]
    assert _gold_words(docs, masks, 477) == ["arthritic"]


def test_real_sst_aligns_with_every_encoded_row(sst_gold, sst_task, shared_data_dir):
    for name, split in sst_task.splits.items():
        docs, masks = sst_gold[name]
        assert [len(m) for m in masks] == [len(d) for d in docs] == list(split.main.lengths - 2)
        gold = file_rationales("sst", name, str(shared_data_dir), encoded=split, vocab=sst_task.vocab)
        np.testing.assert_array_equal(gold.offsets, split.main.offsets)
        assert not gold.values[split.main.values < FIRST_ELIGIBLE].any()  # never [CLS] / [EOS]
        assert 0.08 < gold.values.mean() < 0.12  # about 10% of the tokens (measured: 10.6-10.9%)
    test = sst_task.splits["test"]
    gold = file_rationales("sst", "test", str(shared_data_dir), encoded=test)
    assert plausibility(gold, gold)["map"] == 1.0
    with pytest.raises(ValueError, match="does not line up"):
        file_rationales("sst", "val", str(shared_data_dir), encoded=test)
    with pytest.raises(ValueError, match="row 0 of the encoded test split of sst holds other tokens"):
        shuffled = test.replace_main(test.main.copy())
        shuffled.main.values[1] = shuffled.main.values[1] + 1
        file_rationales("sst", "test", str(shared_data_dir), encoded=shuffled, vocab=sst_task.vocab)


def test_real_babi_hand_picked(shared_data_dir):
    gold = babi.gold_rationales(1, str(shared_data_dir))
    docs, masks = gold["test"]
    # qa1 test lines 1-3: "John travelled to the hallway." "Mary journeyed to the bathroom." "Where is John?
    # hallway 1": statement 1 is the support.
    assert docs[0] == "John travelled to the hallway . Mary journeyed to the bathroom".split()
    assert _gold_words(docs, masks, 0) == "John travelled to the hallway".split()
    assert masks[0].tolist() == [True] * 5 + [False] * 6  # the "." separator is not gold
    # lines 7-9: "Where is Sandra? kitchen 8": line 8, the last of the six statements so far.
    assert len(docs[2]) == 6 * 5 + 1 + 5 and masks[2].tolist() == [False] * 31 + [True] * 5
    # qa2 test lines 1-11: "Where is the football? hallway 9 7": two supporting statements, listed out of order.
    docs, masks = babi.gold_rationales(2, str(shared_data_dir))["test"]
    assert _gold_words(docs, masks, 2) == "John went to the hallway John put down the football".split()


@pytest.mark.parametrize("task", [1, 2])
def test_real_babi_aligns_with_every_encoded_row(shared_data_dir, task):
    data = encode_task(babi.load_task(task, str(shared_data_dir)))
    for name, split in data.splits.items():
        gold = file_rationales(f"babi-{task}", name, str(shared_data_dir), encoded=split, vocab=data.vocab)
        np.testing.assert_array_equal(gold.offsets, split.main.offsets)
        assert not gold.values[split.main.values < FIRST_ELIGIBLE].any()
        words = np.asarray(data.vocab.words, dtype=object)[split.main.values[gold.values]]
        assert "." not in set(words)
        per_row = np.add.reduceat(gold.values, split.main.offsets[:-1])
        assert per_row.min() >= 4  # every question has at least one supporting statement (4+ words)


def test_evaluate_finds_them_by_task(sst_task, shared_data_dir, tmp_path):
    """``nlproar_jax.evaluate`` takes SST's and bAbI's gold rationales from the task config, as the synthetic task's."""
    from test_pipeline import load_config

    from nlproar_jax.evaluate import GOLD_RATIONALES, babi_gold, sst_gold

    assert GOLD_RATIONALES["sst"] is sst_gold and GOLD_RATIONALES["babi-3"] is babi_gold
    config = load_config("configs/sst.py")
    config.data_dir = str(shared_data_dir)
    gold = GOLD_RATIONALES["sst"](config, sst_task, "test")
    np.testing.assert_array_equal(gold.offsets, sst_task.splits["test"].main.offsets)
    config.dataset.min_leaves = 1  # other loader options: other rows
    with pytest.raises(ValueError, match="does not line up"):
        GOLD_RATIONALES["sst"](config, sst_task, "test")
    config.data_dir = str(tmp_path)  # no files there
    with pytest.raises(FileNotFoundError, match="SST train trees not found"):
        GOLD_RATIONALES["sst"](config, sst_task, "test")
