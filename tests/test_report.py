"""The HTML report: hostile tokens are escaped, the legend is there, [MASK] is styled, and the file
references nothing outside itself. Built from a fabricated persistent dir (no training)."""
import json
import os
import re

import numpy as np

from nlproar_jax.analysis import report
from nlproar_jax.data.dataset import RawSplit, RawTask, encode_task
from nlproar_jax.data.tokens import MASK
from test_results import fake_grid, fake_result, write_results

HOSTILE = "<script>alert(1)</script>"


def fake_persistent_dir(root):
    """Results of a tiny grid, the encoded dataset with a hostile word, cached importance, one masked run."""
    docs = [["good", HOSTILE, "film"], ["bad", "film", "&amp;", "x"], ["good", "good"], ["bad", HOSTILE]]
    split = RawSplit(docs, [1, 0, 1, 0])
    data = encode_task(RawTask("synthetic", ("neg", "pos"), {"train": split, "val": split, "test": split}))
    results = fake_grid(seeds=(0,))
    results.append(fake_result(k=10, measure="attention", test=0.6))
    rec = fake_result(k=10, measure="attention", recursive=True, test=0.55)
    results.append(rec)
    write_results(root, results)
    data.save(os.path.join(root, "cache", "datasets", "synthetic-abc.npz"))
    test = data.splits["test"]
    os.makedirs(os.path.join(root, "cache", "importance"))
    for measure in ("attention", "gradient"):
        scores = np.linspace(0, 1, len(test.main.values)).astype(np.float32)
        np.savez(os.path.join(root, "cache", "importance", f"synthetic_rnn_s-0__{measure}.npz"), test=scores,
                 train=scores, val=scores)
    main = test.main.copy()
    main.values[1] = MASK  # first word of example 0
    masked = data.replace_splits({**data.splits, "test": test.replace_main(main)})
    masked.save(os.path.join(root, "runs", rec["experiment_id"], "masked_dataset.npz"))
    return data


def test_tokens_html_escapes_and_styles():
    words = ("[PAD]", "[CLS]", "[EOS]", "[MASK]", "[UNK]", HOSTILE, 'say "hi"')
    ids = np.array([1, 5, 3, 6, 4, 2, 0])
    out = report.tokens_html(words, ids, np.array([0, 1.0, 0.5, 0.2, 0.1, 0, 0]))
    assert HOSTILE not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&quot;hi&quot;" in out
    assert '<span class="tok mask"' in out and '<span class="tok special">[CLS]</span>' in out
    assert "[PAD]" not in out
    assert "rgba(230,85,13,1.000)" in out  # the most important eligible token is fully coloured
    plain = report.tokens_html(words, ids)
    assert "rgba" not in plain and "tok mask" in plain


def test_sample_is_deterministic_and_prefers_short_rows():
    lengths = np.array([5, 500, 7, 8, 600, 9, 10])
    a = report.sample_examples(lengths, 3, seed=0)
    assert a == report.sample_examples(lengths, 3, seed=0) and a == sorted(a)
    assert all(lengths[i] <= 60 for i in a)
    assert len(report.sample_examples(lengths, 10)) == 7


def test_report_is_escaped_self_contained_and_has_a_legend(tmp_path):
    fake_persistent_dir(str(tmp_path))
    path = report.write_report(str(tmp_path), str(tmp_path / "out" / "report.html"), n_examples=3)
    page = open(path, encoding="utf-8").read()
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert 'class="legend"' in page and "most important" in page
    assert "data:image/png;base64," in page
    # nothing loaded from elsewhere: every src is a data URI, no links or remote URLs
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "Attention" in page and "Gradient" in page  # a row per measure with cached importance
    assert 'class="tok mask"' in page and "k = 10%" in page  # the recursive run's masked data
    assert "&amp;amp;" in page  # an '&amp;' word is escaped, not rendered as '&'


def test_results_cli_writes_the_report(tmp_path):
    from nlproar_jax import results

    fake_persistent_dir(str(tmp_path))
    assert results.main(["--persistent-dir", str(tmp_path), "--out", str(tmp_path / "x"), "--report"]) == 0
    page = open(tmp_path / "x" / "report.html", encoding="utf-8").read()
    assert "Faithfulness summary" in page and "gradient" in page
    assert json.load(open(tmp_path / "x" / "summary.json"))["summary"]
