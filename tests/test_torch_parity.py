"""Parity with the PyTorch original (``benchmarks/torch_reference.py``): same weights give the same
logits, attention, importance scores and optimiser steps.

Needs ``torch`` and ``captum`` (``pip install -r benchmarks/requirements-torch.txt``); they are not
library requirements, so without them this module is skipped.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

_WHY = "PyTorch parity tests need torch and captum (pip install -r benchmarks/requirements-torch.txt)"
torch = pytest.importorskip("torch", reason=_WHY, exc_type=ImportError)
pytest.importorskip("captum", reason=_WHY, exc_type=ImportError)

import jax  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import torch_reference as tr  # noqa: E402
from nlproar_jax.data.batching import Batch  # noqa: E402
from nlproar_jax import importance  # noqa: E402
from nlproar_jax.models import build_model  # noqa: E402
from nlproar_jax.training.optim import original_optimizer  # noqa: E402
from nlproar_jax.training.loop import TrainState, train_step  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
VOCAB, CLASSES, EMB, HIDDEN = 40, 3, 12, 7


def _rows(rng, lengths, vocab):
    """[CLS] words [EOS] rows with the given total lengths, right-padded with [PAD]; words include [MASK]/[UNK]."""
    out = np.zeros((len(lengths), max(lengths) + 2), np.int32)  # +2: trailing padding in every row
    for i, n in enumerate(lengths):
        out[i, 0], out[i, n - 1] = 1, 2
        out[i, 1:n - 1] = rng.integers(3, vocab, size=n - 2)
    return out


def _batch(paired: bool, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = [11, 3, 7, 9, 4]  # a 1-word row, and padding in every row
    tokens = _rows(rng, lengths, VOCAB)
    aux = _rows(rng, [4, 6, 3, 5, 6], VOCAB) if paired else None
    n = len(lengths)
    return Batch(tokens, rng.integers(0, CLASSES, n).astype(np.int32), np.arange(n, dtype=np.int32),
                 np.ones(n, np.float32), aux)


@pytest.fixture(params=["single", "paired"])
def setup(request):
    paired = request.param == "paired"
    model = build_model(paired=paired, vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=EMB,
                        hidden_size=HIDDEN, seed=3)
    return model, tr.from_jax(model), _batch(paired)


def _t(batch: Batch):
    aux = None if batch.aux_tokens is None else torch.from_numpy(batch.aux_tokens.astype(np.int64))
    return torch.from_numpy(batch.tokens.astype(np.int64)), torch.from_numpy(batch.labels.astype(np.int64)), aux


def _jax_scores(measure, model, batch, **options):
    fn = importance.get(measure, **options)
    return np.asarray(jax.jit(lambda m, b: fn(m, b.tokens, target=b.labels, aux_tokens=b.aux_tokens))(model, batch))


def _close(actual, expected, mask=None):
    actual, expected = np.asarray(actual), np.asarray(expected)
    if mask is not None:
        actual, expected = actual[mask], expected[mask]
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def test_logits_and_attention(setup):
    model, torch_model, batch = setup
    tokens, _, aux = _t(batch)
    logits, alpha = model(batch.tokens, batch.aux_tokens)
    with torch.no_grad():
        t_logits, t_alpha = torch_model(tokens, aux)
    _close(logits, t_logits.numpy())
    _close(alpha, t_alpha.numpy())
    _close(_jax_scores("attention", model, batch), tr.attention(torch_model, tokens, aux).numpy())


def test_gradient(setup):
    model, torch_model, batch = setup
    tokens, labels, aux = _t(batch)
    ours = _jax_scores("gradient", model, batch)
    _close(ours, tr.gradient(torch_model, tokens, labels, aux).detach().numpy())  # the original's B x T x V
    _close(ours, tr.gradient(torch_model, tokens, labels, aux, efficient=True).detach().numpy())
    assert np.all(ours[batch.tokens == 0] == 0)


def test_input_times_gradient(setup):
    model, torch_model, batch = setup
    tokens, labels, aux = _t(batch)
    _close(_jax_scores("input_times_gradient", model, batch),
           tr.input_times_gradient(torch_model, tokens, labels, aux).numpy())


def test_textbook_integrated_gradient_matches_captum(setup):
    model, torch_model, batch = setup
    tokens, labels, aux = _t(batch)
    ours = _jax_scores("integrated_gradient", model, batch, steps=50, variant="textbook")
    captum = tr.integrated_gradient_captum(torch_model, tokens, labels, aux, steps=50).numpy()
    _close(ours, captum, batch.tokens != 0)
    _close(ours, tr.integrated_gradient_loop(torch_model, tokens, labels, aux, 50, "textbook").numpy(),
           batch.tokens != 0)


def test_alpha_weighted_integrated_gradient_matches_the_original_loop(setup):
    model, torch_model, batch = setup
    tokens, labels, aux = _t(batch)
    ours = _jax_scores("integrated_gradient", model, batch, steps=50, chunk_size=7)
    _close(ours, tr.integrated_gradient_loop(torch_model, tokens, labels, aux, 50, "alpha_weighted").numpy(),
           batch.tokens != 0)


def _torch_params_in_jax_layout(torch_model) -> dict[str, np.ndarray]:
    out = {"embedding": torch_model.encoder.embedding.weight.detach().numpy()}
    for k, v in tr.lstm_parameters_as_jax(torch_model.encoder.rnn).items():
        out[f"encoder.{k}"] = v
    if torch_model.paired:
        out["aux_embedding"] = torch_model.aux_encoder.embedding.weight.detach().numpy()
        for k, v in tr.lstm_parameters_as_jax(torch_model.aux_encoder.rnn).items():
            out[f"aux_encoder.{k}"] = v
        pairs = {"attention.main": "W1_main", "attention.aux": "W1_aux", "attention.score": "W2"}
        layers = {**{k: torch_model.attention[v] for k, v in pairs.items()},
                  "decoder.main": torch_model.decoder["main"], "decoder.aux": torch_model.decoder["aux"],
                  "decoder.output": torch_model.decoder["final"]}
    else:
        layers = {"attention.hidden": torch_model.attention["W1"], "attention.score": torch_model.attention["W2"],
                  "decoder": torch_model.decoder}
    for name, layer in layers.items():
        out[f"{name}.kernel"] = layer.weight.detach().numpy().T
        if layer.bias is not None:
            out[f"{name}.bias"] = layer.bias.detach().numpy()
    return out


def _jax_params_flat(params) -> dict[str, np.ndarray]:
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]:
        flat[".".join(str(getattr(p, "key", p)) for p in path)] = np.asarray(leaf)
    return flat


def _train_both(setup, steps: int, single_lstm_bias: bool):
    model, torch_model, batch = setup
    tokens, labels, aux = _t(batch)
    graphdef, params = nnx.split(model)
    tx = original_optimizer(tuple(model.no_weight_decay), 1e-3, 1e-5)
    state = TrainState(jax.tree.map(lambda x: x.copy(), params), tx.init(params))
    optimizer = tr.original_optimizer(torch_model, 1e-3, 1e-5, single_lstm_bias=single_lstm_bias)
    for _ in range(steps):
        state, loss = train_step(graphdef, tx, state, batch)
        t_loss = tr.train_step(torch_model, optimizer, tokens, labels, aux)
        _close(loss, t_loss.numpy())
    ours, theirs = _jax_params_flat(state.params), _torch_params_in_jax_layout(torch_model)
    assert set(ours) == set(theirs)
    before = _jax_params_flat(params)
    assert all(not np.array_equal(before[k], ours[k]) for k in ours)  # every parameter moved
    return ours, theirs


def test_training_steps_match_with_one_lstm_bias(setup):
    """Five optimiser steps (Adam + AMSGrad as PyTorch, coupled L2 on the original's groups) give the same
    parameters as PyTorch whose LSTM trains one bias (``bias_hh`` frozen at 0), our layout."""
    ours, theirs = _train_both(setup, 5, single_lstm_bias=True)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.xfail(reason="nlproar_jax's BiLSTM trains one summed bias; PyTorch trains bias_ih and bias_hh "
                          "separately, and Adam moves each by ~lr per step, so the sum moves ~2x as far",
                   strict=False)
def test_training_steps_match_the_original_two_lstm_biases(setup):
    ours, theirs = _train_both(setup, 1, single_lstm_bias=False)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=RTOL, atol=ATOL, err_msg=name)
