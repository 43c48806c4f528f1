"""IMDB (binary sentiment): BiLSTM-attention, the original's settings.

    python -m nlproar_jax.train --config=configs/imdb.py

Matches the original's IMDB setup (ORIGINAL.md section 2): min_df 10, 8 epochs, batch 32, H 128,
best epoch by val AUROC, test macro-F1; splits 17,212 / 4,304 / 4,346 here (Keras-style tokenization
of the raw reviews).

Deviations: raw text tokenized the Keras way instead of Keras' imdb_full.pkl (same procedure, not
the same reviews per split); GloVe 6B 50d instead of fastText wiki.simple 300d.

Expected k = 0 test macro-F1: paper about 89-90% (ORIGINAL.md section 8).

Measured here: seed 0, test macro-F1 89.8% (best epoch 3), 2-core CPU, 2026-11-23.
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
    c.task = "imdb"
    c.dataset.split_seed = 0  # RandomState of the 80/20 split and the 20% test subsample
    c.min_df = 10
    c.embedding = "glove-6b-50d"  # substitute for fastText wiki.simple 300d
    c.embedding_dim = 50
    c.embedding_oov = "zero"
    c.hidden_size = 128
    c.batch_size = 32
    c.max_epochs = 8
    return c
