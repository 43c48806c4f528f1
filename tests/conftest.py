"""Shared test fixtures: tiny models and batches, and the real-data directory."""
from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest

# Float32 matmuls stay float32 on every backend (JAX would use TF32 on recent NVIDIA GPUs), so the
# suite's tolerances mean the same on CPU, GPU and TPU.
jax.config.update("jax_default_matmul_precision", "highest")

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_batch(rows, labels, aux_rows=None, pad_to=None, aux_pad_to=None):
    """A Batch from explicit token-id rows (lists), right-padded with 0."""
    from nlproar_jax.data.batching import Batch

    def pad(rs, n):
        n = n or max(len(r) for r in rs)
        out = np.zeros((len(rs), n), np.int32)
        for i, r in enumerate(rs):
            out[i, : len(r)] = r
        return out

    aux = pad(aux_rows, aux_pad_to) if aux_rows is not None else None
    n = len(rows)
    return Batch(pad(rows, pad_to), np.asarray(labels, np.int32), np.arange(n, dtype=np.int32),
                 np.ones(n, np.float32), aux)


def tiny_model(paired: bool, lstm_impl: str = "scan"):
    from nlproar_jax.models import build_model

    return build_model(paired=paired, vocab_size=30, num_classes=3, embedding_dim=6, hidden_size=5,
                       seed=2 if paired else 1, lstm_impl=lstm_impl)


@pytest.fixture(scope="session")
def tiny_single():
    return tiny_model(False)


@pytest.fixture(scope="session")
def tiny_paired():
    return tiny_model(True)


@pytest.fixture
def single_batch():
    return make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]], [0, 2, 1])


@pytest.fixture
def paired_batch():
    return make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]], [0, 2, 1],
                      aux_rows=[[1, 12, 13, 2], [1, 14, 2], [1, 15, 16, 17, 2]])


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real datasets (``../shared/data`` or ``$NLPROAR_DATA_DIR``); skips when absent."""
    path = Path(os.environ.get("NLPROAR_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).resolve()
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path} (set NLPROAR_DATA_DIR to run these tests)")
    return path


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. XLA:CPU maps memory for every executable it
    keeps, and the whole suite compiles thousands: kept to the end, they approach the kernel's per-process
    limit on memory mappings (vm.max_map_count, 65530 by default), and compiling then segfaults."""
    yield
    jax.clear_caches()


# End-to-end modules (training runs, subprocesses, the real Slurm): `-m "not slow"` leaves them out
# for a quick check of the math and the contracts (README: Test).
SLOW_MODULES = {"test_data_parallel", "test_diffmask", "test_evaluate", "test_pipeline", "test_slurm_real",
                "test_soft_attention", "test_stacked_training", "test_sweep_parallel", "test_transformer"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
