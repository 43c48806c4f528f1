"""MIMIC-III diabetes: BiLSTM-attention, the original's settings (user-provided data).

    python -m nlproar_jax.train --config=configs/mimic_diabetes.py
    (requires MIMIC-III; not runnable on ../shared/data)

Matches the original's MIMIC diabetes setup (ORIGINAL.md section 2): min_df 5, 8 epochs, batch 32, H
128, best epoch by val AUROC, test macro-F1; splits from Jain & Wallace's admission lists.

Needs the user's MIMIC-III files in <data_dir>/mimic/ (see nlproar_jax/data/mimic.py) and 300d
word2vec vectors trained on the notes as the original did: write the corpus with `python -m
nlproar_jax.data.mimic --data-dir DIR --corpus-out notes.txt`, train word2vec (gensim: 300d, window
10, min_count 2, CBOW) and save it with save_word2vec_format to the path in c.embedding (or override
--config.embedding=PATH). [PAD] 0, other specials and OOV N(0, 1), as the original.

Expected k = 0 test macro-F1: paper about 81% (ORIGINAL.md section 8).

Measured here: not measured: MIMIC-III is restricted data and none is available here.
Reproduce: the command above (results/<task>_rnn_s-0.json under the persistent dir).
"""
import importlib.util
import os

# configs/base.py, loaded by path: absl's config_flags loads this file by path, not as a package.
_spec = importlib.util.spec_from_file_location(
    "nlproar_configs_base", os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)


def get_config():
    c = base.get_config()
    c.task = "mimic-d"
    c.dataset.spacy_backend = "python"
    c.min_df = 5
    c.embedding = os.path.join(c.data_dir, "mimic", "mimic_word2vec_300d.txt")  # user-provided, see docstring
    c.embedding_dim = 300
    c.embedding_oov = "normal"
    c.hidden_size = 128
    c.batch_size = 32
    c.max_epochs = 8
    return c
