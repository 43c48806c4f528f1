"""Orbax round trips: parameters and optimiser states come back bit for bit, into the model's structure."""
import os

import jax
import numpy as np
import pytest
from flax import nnx

from nlproar_jax.training.checkpointing import EpochCheckpoints, load_params, params_exist, save_params
from nlproar_jax.training.optim import original_optimizer
from nlproar_jax.training.loop import TrainState


def test_params_round_trip(tiny_paired, tmp_path):
    _, params = nnx.split(tiny_paired)
    path = str(tmp_path / "model")
    assert not params_exist(path)
    save_params(path, params, {"best_epoch": 3})
    assert params_exist(path) and not os.path.exists(path + ".tmp")
    restored, meta = load_params(path, params)
    assert meta == {"best_epoch": 3}
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)
    save_params(path, jax.tree.map(lambda x: x + 1, params), {"best_epoch": 4})  # overwrite in place
    assert load_params(path, params)[1] == {"best_epoch": 4}


def test_wrong_model_is_refused(tiny_single, tiny_paired, tmp_path):
    save_params(str(tmp_path / "m"), nnx.split(tiny_single)[1], {})
    with pytest.raises(ValueError, match="different configuration|expects"):
        load_params(str(tmp_path / "m"), nnx.split(tiny_paired)[1])


def test_epoch_checkpoints_keep_the_latest_train_state(tiny_single, tmp_path):
    _, params = nnx.split(tiny_single)
    tx = original_optimizer(tiny_single.no_weight_decay, 1e-3, 1e-5)
    state = TrainState(params, tx.init(params))
    with EpochCheckpoints(str(tmp_path / "ck")) as ckpt:
        assert ckpt.latest_step() is None
        for step in (1, 2, 3):
            ckpt.save(step, jax.tree.map(lambda x, s=step: x * s, state), {"epoch": step})
        assert ckpt.latest_step() == 3
        restored, meta = ckpt.restore(3, state)
    assert meta == {"epoch": 3}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a) * 3, b)
    assert sorted(os.listdir(tmp_path / "ck")) == ["3"]  # only the latest is kept
