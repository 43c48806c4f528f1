"""The optimiser matches PyTorch's AMSGrad with coupled L2; metrics match direct computations."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlproar_jax.training.metrics import binary_auroc, classification_metrics
from nlproar_jax.training.optim import original_optimizer, torch_amsgrad, weight_decay_mask


def torch_adam_reference(params, grads_seq, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch's Adam(amsgrad=True, weight_decay=wd) update rule, written out in numpy."""
    p = params.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(grads_seq, 1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        denom = np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps
        p = p - lr / (1 - b1**t) * m / denom
    return p


def test_matches_pytorch_amsgrad_with_coupled_l2():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=5).astype(np.float32)
    grads = [rng.normal(size=5).astype(np.float32) * s for s in (1.0, 0.1, 3.0, 0.01, 1.0, 0.5)]
    tx = original_optimizer((), 1e-2, 1e-1)
    params = {"w": jnp.asarray(p0)}
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], torch_adam_reference(p0, grads, 1e-2, 1e-1), rtol=1e-5, atol=1e-6)


def test_differs_from_optax_amsgrad_early_as_documented():
    g = {"w": jnp.array([1.0, -2.0])}
    p = {"w": jnp.zeros(2)}
    ours, theirs = torch_amsgrad(0.1), optax.amsgrad(0.1)
    s1, s2 = ours.init(p), theirs.init(p)
    u1, s1 = ours.update(g, s1, p)
    u2, s2 = theirs.update(g, s2, p)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-5)  # the first step agrees
    g2 = {"w": jnp.array([0.01, 0.01])}
    u1, _ = ours.update(g2, s1, p)
    u2, _ = theirs.update(g2, s2, p)
    assert not np.allclose(u1["w"], u2["w"])  # the max before vs after bias correction


def test_weight_decay_groups(tiny_single, tiny_paired):
    from flax import nnx

    single = weight_decay_mask(nnx.state(tiny_single, nnx.Param), tiny_single.no_weight_decay)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(single)}
    assert all(v is False for k, v in flat.items() if "attention" in k)
    assert all(v is True for k, v in flat.items() if "attention" not in k)
    paired = weight_decay_mask(nnx.state(tiny_paired, nnx.Param), tiny_paired.no_weight_decay)
    assert all(jax.tree.leaves(paired))


def test_auroc_equals_pair_counting():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(40), 1)  # ties included
    pos = rng.random(40) > 0.5
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
             for a, b in itertools.product(scores[pos], scores[~pos])]
    assert binary_auroc(scores, pos) == pytest.approx(np.mean(pairs))


def test_classification_metrics():
    logits = np.array([[2, 0], [0, 1], [1, 0], [0, 3], [1, 0]], np.float32)
    labels = np.array([0, 1, 1, 1, 0])
    m = classification_metrics(logits, labels)
    assert m["accuracy"] == pytest.approx(0.8)
    # class 0: tp 2 fp 1 fn 0 -> 0.8; class 1: tp 2 fp 0 fn 1 -> 0.8
    assert m["macro_f1"] == pytest.approx(0.8)
    assert m["micro_f1"] == pytest.approx(0.8)
    z = logits - logits.max(1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(5), labels].mean()
    assert m["loss"] == pytest.approx(ce, rel=1e-6)
    assert 0 <= m["auroc"] <= 1
