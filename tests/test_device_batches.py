"""Training batches gathered on the device equal the host's exactly, so fit trains bit for bit the same with
device_data on or off (one model, a stack, a resumed run); config.device_data is checked and not identity."""
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from nlproar_jax.data.batching import (DeviceEpoch, gather_batch, length_key, make_batch, stack_to_device, to_device,
                                        train_batch_rows)
from nlproar_jax.data.dataset import Ragged, Split, encode_task
from nlproar_jax.data.synthetic import load as load_synthetic
from nlproar_jax.models import build_model
from nlproar_jax.names import Experiment, Paths, device_data_setting, write_json_atomic
from nlproar_jax.roar import run as roar_run
from nlproar_jax.training.loop import fit, stack_batches
from test_pipeline import load_config


def random_split(seed: int, n: int, paired: bool, max_len: int = 70) -> Split:
    """Rows of lengths 1..max_len (several buckets: multiples of 8, then of 32), nonzero token ids."""
    rng = np.random.default_rng(seed)

    def ragged():
        return Ragged.from_list([rng.integers(1, 50, rng.integers(1, max_len + 1)) for _ in range(n)])

    return Split(ragged(), rng.integers(0, 3, n).astype(np.int32), ragged() if paired else None)


def assert_same_batch(device, host):
    assert (device.aux_tokens is None) == (host.aux_tokens is None)
    for name, d, h in zip(host._fields, device, host):
        if h is None:
            continue
        d = np.asarray(d)
        assert d.dtype == h.dtype and d.shape == h.shape, (name, d.dtype, d.shape, h.dtype, h.shape)
        np.testing.assert_array_equal(d, h, err_msg=name)


@pytest.mark.parametrize("paired", [False, True])
def test_gather_batch_equals_make_batch(paired):
    split, batch_size = random_split(0, 45, paired), 8
    data = to_device(split)
    rng = np.random.default_rng(1)
    for n in (8, 8, 3, 1):  # full batches, a short one and a single row: filler copies of the first, weight 0
        rows = rng.choice(len(split), n, replace=False)
        host = make_batch(split, rows, batch_size)
        full = np.concatenate([rows, np.full(batch_size - n, rows[0])])
        aux_length = None if host.aux_tokens is None else host.aux_tokens.shape[1]
        assert_same_batch(gather_batch(data, full, host.weight, length=host.tokens.shape[1], aux_length=aux_length),
                          host)


@pytest.mark.parametrize("paired", [False, True])
def test_an_epoch_of_device_batches_equals_the_host_batches(paired):
    split, batch_size = random_split(2, 45, paired), 8  # 45 rows: a short last batch of 5
    rows = train_batch_rows(len(split), length_key(split), batch_size, seed=3, epoch=1, pool_batches=2)
    epoch = DeviceEpoch(to_device(split), [split], [rows], batch_size)
    assert len(epoch) == len(rows) == 6
    for i, r in enumerate(rows):
        assert_same_batch(epoch.batch(i), make_batch(split, r, batch_size))


@pytest.mark.parametrize("paired", [False, True])
def test_a_stack_of_device_batches_equals_stack_batches(paired):
    splits = [random_split(4, 45, paired), random_split(5, 45, paired, max_len=20)]  # different buckets
    batch_size = 8
    rows = [train_batch_rows(len(s), length_key(s), batch_size, seed=m, epoch=0) for m, s in enumerate(splits)]
    epoch = DeviceEpoch(stack_to_device(splits), splits, rows, batch_size)
    for i, step_rows in enumerate(zip(*rows)):
        host = stack_batches([make_batch(s, r, batch_size) for s, r in zip(splits, step_rows)])
        assert_same_batch(epoch.batch(i), host)


def test_gather_refuses_a_length_beyond_the_device_split():
    split = random_split(6, 10, False, max_len=5)  # padded to 8 on the device
    with pytest.raises(ValueError, match="exceeds"):
        gather_batch(to_device(split), np.arange(4), np.ones(4, np.float32), length=16, aux_length=None)


# -- fit -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
    """60 training rows in batches of 16: a short last batch of 12 every epoch."""
    kw = dict(train_size=60, val_size=20, test_size=20, max_length=12)
    data, other = encode_task(load_synthetic(seed=0, **kw)), encode_task(load_synthetic(seed=1, **kw))
    models = [build_model(paired=False, vocab_size=len(data.vocab), num_classes=2, embedding_dim=8, hidden_size=8,
                          seed=s) for s in (0, 1)]
    graphdef = nnx.split(models[0])[0]
    return data, other, graphdef, [nnx.split(m)[1] for m in models]


def strip(history):
    return [{k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k} for h in history]


def assert_same_results(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.best_epoch == y.best_epoch and strip(x.history) == strip(y.history)
        for p, q in zip(jax.tree.leaves(x.best_params), jax.tree.leaves(y.best_params)):
            np.testing.assert_array_equal(p, q)


KW = dict(epochs=2, batch_size=16, monitor="auroc")


def test_fit_on_device_batches_equals_host_batches_one_model(task):
    data, _, graphdef, params = task
    args = (graphdef, params[:1], [data.splits["train"]], [data.splits["val"]], [0])
    assert_same_results(fit(*args, device_data=True, **KW), fit(*args, device_data=False, **KW))


def test_fit_on_device_batches_equals_host_batches_two_stacked_models(task):
    data, other, graphdef, params = task  # each model its own data, as classic-ROAR k values have
    args = (graphdef, params, [data.splits["train"], other.splits["train"]],
            [data.splits["val"], other.splits["val"]], [0, 1])
    assert_same_results(fit(*args, device_data=True, **KW), fit(*args, device_data=False, **KW))


class Interrupt(Exception):
    pass


def test_an_interrupted_device_data_run_resumed_equals_uninterrupted(task, tmp_path):
    data, _, graphdef, params = task
    args = (graphdef, params[:1], [data.splits["train"]], [data.splits["val"]], [0])
    full = fit(*args, device_data=False, **KW)
    ckpt = str(tmp_path / "ckpt")

    def stop_after_first_epoch(records):
        if records[0]["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(*args, checkpoint_dir=ckpt, on_epoch=stop_after_first_epoch, device_data=True, **KW)
    assert_same_results(fit(*args, checkpoint_dir=ckpt, device_data=True, **KW), full)


# -- config --------------------------------------------------------------------------------------
def test_config_device_data_is_checked():
    c = load_config()
    assert c.device_data == "auto" and device_data_setting(c) is None
    for value, expected in (("true", True), ("false", False)):
        c.device_data = value
        assert device_data_setting(c) is expected
    c.device_data = "yes"
    with pytest.raises(ValueError, match=r"unknown device_data 'yes'; valid: \['auto', 'true', 'false'\]"):
        Experiment.from_config(c)


def test_config_device_data_is_not_part_of_a_runs_identity(tmp_path):
    c = load_config()
    c.persistent_dir = str(tmp_path)
    exp = Experiment.from_config(c)
    paths = Paths(c.persistent_dir)
    write_json_atomic(paths.config(exp), c.to_dict())  # the run was started with "auto"
    c.device_data = "false"
    assert Experiment.from_config(c).id == exp.id
    roar_run._check_config(paths, exp, c)  # resuming it with another device_data is allowed
    with open(paths.config(exp)) as f:  # as is resuming a run started before the field existed
        old = {k: v for k, v in json.load(f).items() if k != "device_data"}
    os.remove(paths.config(exp))
    write_json_atomic(paths.config(exp), old)
    roar_run._check_config(paths, exp, c)
