"""bAbI task 1: paired BiLSTM-attention, the original's settings.

    python -m nlproar_jax.train --config=configs/babi_1.py

Matches the original's bAbI-1 setup (ORIGINAL.md section 2): min_df 1, 100 epochs, batch 50, H 32,
best epoch by val accuracy, test accuracy; en-10k train split 85/15 (8,500 / 1,500), official test
1,000.

Random 50d embeddings (N(0, 1), [PAD] 0) as the original: no substitution. Data: en-10k, complete
here.

Expected k = 0 test accuracy: paper 100% (prior-work reference in the original's
export/dataset_summary.py) (ORIGINAL.md section 8).

Measured here: seed 0, test accuracy 99.9% (best epoch 8), 2-core CPU, 2026-11-23.
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
    c.task = "babi-1"
    c.dataset.variant = "en-10k"  # "en-10k" (the original's) or "en" (1k)
    c.dataset.split_seed = 0
    c.min_df = 1
    c.embedding = "random"  # N(0, 1), [PAD] 0 (the original's bAbI)
    c.embedding_dim = 50
    c.embedding_oov = "normal"
    c.hidden_size = 32
    c.batch_size = 50
    c.max_epochs = 100
    return c
