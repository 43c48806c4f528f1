"""Orbax round trips: parameters and optimiser states come back bit for bit, into the model's structure, by
name; a checkpoint whose names or shapes differ from the model's is refused, naming the first mismatch."""
import os

import jax
import numpy as np
import pytest
from flax import nnx

from nlproar_jax.training.checkpointing import (EpochCheckpoints, leaf_names, load_params, params_exist,
                                                save_params)
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
    with pytest.raises(ValueError, match="first mismatch"):
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


def _renamed(params, old: str, new: str):
    """``params`` (an nnx.State) with the top-level group ``old`` renamed ``new``."""
    return nnx.State({(new if k == old else k): v for k, v in params.items()})


def test_a_renamed_parameter_is_refused_naming_the_first_mismatch(tiny_single, tmp_path):
    """Checkpoints are keyed by parameter names: a renamed field is an error, never a silent load of
    same-shaped arrays in flattening order."""
    _, params = nnx.split(tiny_single)
    renamed = _renamed(params, "encoder", "rnn")
    # What made a list of anonymous leaves dangerous: same shapes, same order, other names.
    assert [np.shape(x) for x in jax.tree.leaves(renamed)] == [np.shape(x) for x in jax.tree.leaves(params)]
    save_params(str(tmp_path / "m"), renamed, {})
    with pytest.raises(ValueError, match=r"has no parameter \['encoder'\]\['bias'\]\.value \(first mismatch; "
                                         r"3 missing\); it holds \['rnn'\]\['bias'\]\.value"):
        load_params(str(tmp_path / "m"), params)
    # ... and the other way round: a name the model does not have
    save_params(str(tmp_path / "m2"), nnx.State({**params, "extra": nnx.Param(np.zeros(3, np.float32))}), {})
    with pytest.raises(ValueError, match=r"holds \['extra'\]\.value, which the model does not have"):
        load_params(str(tmp_path / "m2"), params)


def test_a_reshaped_parameter_is_refused_naming_it(tiny_single, tmp_path):
    _, params = nnx.split(tiny_single)
    name = "['decoder']['kernel'].value"
    transposed = jax.tree_util.tree_map_with_path(
        lambda path, x: x.T if jax.tree_util.keystr(path) == name else x, params)
    save_params(str(tmp_path / "m"), transposed, {})
    with pytest.raises(ValueError, match=r"\['decoder'\]\['kernel'\]\.value has shape \(3, 10\), the model "
                                         r"expects \(10, 3\) \(first mismatch\)"):
        load_params(str(tmp_path / "m"), params)


def test_training_state_names_survive_orbax(tiny_paired, tmp_path):
    """Optimiser states (NamedTuples in a tuple) and nnx.State paths come back under their names."""
    _, params = nnx.split(tiny_paired)
    tx = original_optimizer(tiny_paired.no_weight_decay, 1e-3, 1e-5)
    tree = {"state": TrainState(params, tx.init(params)), "best": params}
    names = leaf_names(tree)
    assert "['state'].opt_state[1].nu_max['aux_encoder']['w_hh'].value" in names
    assert len(set(names)) == len(names)
    with EpochCheckpoints(str(tmp_path / "ck")) as ckpt:
        ckpt.save(1, tree, {})
        restored, _ = ckpt.restore(1, tree)
    assert leaf_names(restored) == names


def test_old_unnamed_checkpoints_are_refused(tiny_single, tmp_path):
    from orbax.checkpoint import v1 as ocp

    _, params = nnx.split(tiny_single)
    ocp.save(str(tmp_path / "old"), {"leaves": [np.asarray(x) for x in jax.tree.leaves(params)],
                                     "meta": np.frombuffer(b"{}", np.uint8)})
    with pytest.raises(ValueError, match="older nlproar_jax"):
        load_params(str(tmp_path / "old"), params)
