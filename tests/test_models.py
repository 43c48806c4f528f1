"""Models: the BiLSTM matches a per-example loop, padding is never processed, attention skips specials,
and both BiLSTM kernels (the scan reference, the CPU-tuned chunked one) are the same function."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax.models import build_model
from nlproar_jax.models.bilstm import CHUNK_STEPS, _gates_to_activations, chunk_sizes, default_chunks
from nlproar_jax.models.layers import attention_mask
from nlproar_jax.names import LSTM_IMPLS

IMPLS = ("scan", "chunked")


@functools.lru_cache(maxsize=None)
def tiny(paired: bool, impl: str):
    """conftest's ``tiny_single`` / ``tiny_paired`` (same seeds, so the same parameters) with this kernel."""
    return build_model(paired=paired, vocab_size=30, num_classes=3, embedding_dim=6, hidden_size=5,
                       seed=2 if paired else 1, lstm_impl=impl)


def reference_bilstm(lstm, emb_row):
    """Plain per-example loop: forward over the row, backward over the reversed row, zero initial state."""
    h = lstm.hidden_size
    w_ih, w_hh, b = np.asarray(lstm.w_ih[...]), np.asarray(lstm.w_hh[...]), np.asarray(lstm.bias[...])

    def run(xs, d):
        hs, hh, cc = [], np.zeros(h), np.zeros(h)
        for x in xs:
            g = x @ w_ih[:, 4 * h * d: 4 * h * (d + 1)] + b[4 * h * d: 4 * h * (d + 1)] + hh @ w_hh[d]
            i, f, gg, o = np.split(g, 4)
            sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
            cc = sig(f) * cc + sig(i) * np.tanh(gg)
            hh = sig(o) * np.tanh(cc)
            hs.append(hh)
        return np.array(hs), hh

    fwd, hf = run(emb_row, 0)
    bwd, hb = run(emb_row[::-1], 1)
    return np.concatenate([fwd, bwd[::-1]], axis=1), np.concatenate([hf, hb])


@pytest.mark.parametrize("impl", IMPLS)
def test_bilstm_matches_per_example_loop_and_ignores_padding(impl):
    """Both paths of every kernel against the numpy loop: the attribution path (``recur``, on the
    projection) and the training path (``encode``, time-major)."""
    lstm = tiny(False, impl).encoder
    rows = [[1, 5, 6, 7, 8, 2], [1, 9, 2]]
    batch = make_batch(rows, [0, 1], pad_to=9)
    emb = tiny(False, impl).embed(batch.tokens)
    mask = batch.tokens != 0
    out_tm, final_tm = lstm.encode(jnp.swapaxes(emb, 0, 1), mask.T)
    for out, final in (lstm(emb, mask), (jnp.swapaxes(out_tm, 0, 1), final_tm)):
        for i, r in enumerate(rows):
            ref_out, ref_final = reference_bilstm(lstm, np.asarray(emb[i, : len(r)], np.float64))
            np.testing.assert_allclose(out[i, : len(r)], ref_out, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(final[i], ref_final, rtol=1e-5, atol=1e-6)
            assert np.all(np.asarray(out[i, len(r):]) == 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("paired", [False, True])
def test_padding_and_batching_never_change_outputs(paired, impl, single_batch, paired_batch):
    model, batch = (tiny(True, impl), paired_batch) if paired else (tiny(False, impl), single_batch)
    graphdef, params = nnx.split(model)
    model = functools.partial(jax.jit(lambda p, *tokens: nnx.merge(graphdef, p)(*tokens)), params)
    logits, alpha = model(batch.tokens, batch.aux_tokens)
    padded = batch._replace(tokens=np.pad(batch.tokens, ((0, 0), (0, 7))),
                            aux_tokens=None if batch.aux_tokens is None else np.pad(batch.aux_tokens, ((0, 0), (0, 3))))
    logits_p, alpha_p = model(padded.tokens, padded.aux_tokens)
    np.testing.assert_allclose(logits, logits_p, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(alpha, alpha_p[:, : alpha.shape[1]], rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(alpha_p[:, alpha.shape[1]:]) == 0)
    for i in range(len(batch.labels)):
        aux = None if batch.aux_tokens is None else batch.aux_tokens[i : i + 1]
        li, ai = model(batch.tokens[i : i + 1], aux)
        np.testing.assert_allclose(li[0], logits[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ai[0], alpha[i], rtol=1e-5, atol=1e-6)


def test_attention_skips_pad_cls_eos(tiny_single, single_batch):
    _, alpha = tiny_single(single_batch.tokens)
    alpha = np.asarray(alpha)
    eligible = np.asarray(attention_mask(single_batch.tokens))
    assert np.all(alpha[~eligible] == 0)
    assert np.all(alpha[eligible] > 0)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)


def test_paired_model_uses_the_auxiliary_sequence(tiny_paired, paired_batch):
    logits, _ = tiny_paired(paired_batch.tokens, paired_batch.aux_tokens)
    other = paired_batch.aux_tokens.copy()
    other[:, 1] = 20
    logits2, _ = tiny_paired(paired_batch.tokens, other)
    assert not np.allclose(logits, logits2)
    with pytest.raises(ValueError, match="auxiliary"):
        tiny_paired(paired_batch.tokens, None)


def test_pytorch_default_initialisation():
    m = build_model(paired=False, vocab_size=50, num_classes=2, embedding_dim=40, hidden_size=64, seed=0)
    bound_h = 1 / np.sqrt(64)
    assert np.abs(np.asarray(m.encoder.w_ih[...])).max() <= bound_h
    assert np.abs(np.asarray(m.encoder.w_hh[...])).max() <= bound_h
    assert np.abs(np.asarray(m.encoder.bias[...])).max() <= 2 * bound_h  # sum of two U(-k, k)
    assert np.asarray(m.encoder.w_ih[...]).std() == pytest.approx(bound_h / np.sqrt(3), rel=0.05)
    bound_2h = 1 / np.sqrt(128)
    for lin in (m.attention["hidden"], m.decoder):
        assert np.abs(np.asarray(lin.kernel[...])).max() <= bound_2h
        assert np.abs(np.asarray(lin.bias[...])).max() <= bound_2h


def test_same_seed_same_model_and_given_embedding_is_used():
    a = build_model(paired=True, vocab_size=20, num_classes=2, embedding_dim=4, hidden_size=3, seed=7)
    b = build_model(paired=True, vocab_size=20, num_classes=2, embedding_dim=4, hidden_size=3, seed=7)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    table = np.arange(80, dtype=np.float32).reshape(20, 4)
    c = build_model(paired=True, vocab_size=20, num_classes=2, embedding_dim=4, hidden_size=3, seed=7,
                    embedding=table)
    np.testing.assert_array_equal(c.embedding[...], table)
    np.testing.assert_array_equal(c.aux_embedding[...], table)  # own copy, same initial values
    with pytest.raises(ValueError, match="shape"):
        build_model(paired=False, vocab_size=21, num_classes=2, embedding_dim=4, hidden_size=3, seed=0,
                    embedding=table)


def _vjp_case():
    """Inputs and cotangents for :func:`test_chunked_vjp_equals_autodiff_of_the_scan_reference`."""
    rng = np.random.default_rng(0)
    batch = make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 2], [1, 4, 4, 2]], [0, 1, 2], pad_to=8)
    emb = jnp.asarray(rng.standard_normal((8, 3, 6)), jnp.float32)  # time-major
    mask = jnp.asarray(batch.tokens.T != 0)
    c_out = jnp.asarray(rng.standard_normal((8, 3, 10)), jnp.float32)
    c_fin = jnp.asarray(rng.standard_normal((3, 10)), jnp.float32)
    lstm = tiny(False, "scan").encoder
    return (lstm.w_ih[...], lstm.w_hh[...], lstm.bias[...], emb), mask, (c_out, c_fin)


def _vjp_loss(impl, path, chunks=None):
    """``(w_ih, w_hh, bias, emb <f32>[T, B, D]), mask, cotangents -> scalar`` through one kernel's path."""
    lstm = tiny(False, impl).encoder

    def loss(params, mask, cotangents):
        w_ih, w_hh, bias, e = params
        model = nnx.clone(lstm)
        model.w_ih[...], model.w_hh[...], model.bias[...] = w_ih, w_hh, bias
        if path == "encode":  # the training path
            out, final = model.encode(e, mask, chunks=chunks)
        else:  # the attribution path, on the projection
            out, final = model.recur_time_major(e @ w_ih, mask)
        c_out, c_fin = cotangents
        return jnp.sum(out * c_out) + jnp.sum(final * c_fin)
    return jax.jit(jax.value_and_grad(loss))


@functools.lru_cache(maxsize=None)
def _scan_reference_grads():
    return _vjp_loss("scan", "encode")(*_vjp_case())


@pytest.mark.parametrize("chunks", [None, 1, 2, 3, 8])
def test_chunked_vjp_equals_autodiff_of_the_scan_reference(chunks):
    """The chunked kernel's hand-written, time-major VJP gives autodiff's gradients of the scan
    reference for every input, padding included, through the training path (any number of time
    chunks) and the attribution path. (The reference's values are checked against the numpy loop above.)"""
    case = _vjp_case()
    value, expected = _scan_reference_grads()
    assert np.all(np.asarray(expected[3])[~np.asarray(case[1])] == 0)  # padding gets no gradient ...
    paths = [_vjp_loss("chunked", "encode", chunks)] + ([_vjp_loss("chunked", "recur")] if chunks is None else [])
    for ours in paths:
        v, grads = ours(*case)
        np.testing.assert_allclose(v, value, rtol=1e-6)
        for g, r in zip(grads, expected):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)  # ... from either kernel


def _losses_and_grads(model, batch):
    """The gold-label cross-entropy (+ a term on the attention) through the training path
    (``__call__``) and through the fast path (``logits_from_embeddings``, on the recurrence's
    attribution path), each with its gradient with respect to every parameter and (fast path) the
    embeddings, padding included."""
    graphdef, params = nnx.split(model)

    def loss(params, emb, fast_path):
        m = nnx.merge(graphdef, params)
        if fast_path:
            logits, alpha = m.logits_from_embeddings(emb, batch.tokens, batch.aux_tokens)
        else:
            logits, alpha = m(batch.tokens, batch.aux_tokens)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch.labels[:, None], axis=1).sum()
        return nll + jnp.sum(alpha ** 2)

    both = jax.jit(lambda p, e: [jax.value_and_grad(loss, argnums=(0, 1))(p, e, fast) for fast in (False, True)])
    return both(params, model.embed(batch.tokens))


@pytest.mark.parametrize("paired", [False, True])
def test_every_impl_gives_the_same_outputs_and_gradients(paired):
    """Both model families, both paths: the same loss, and the same gradient for every parameter
    (the paired model's two encoders included) and every embedding, padding included."""
    batch = make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 3, 2], [1, 10, 4, 11, 2]], [0, 2, 1], pad_to=9,
                       aux_rows=[[1, 12, 13, 2], [1, 14, 2], [1, 15, 16, 17, 2]] if paired else None, aux_pad_to=6)
    scan, chunked = (_losses_and_grads(tiny(paired, impl), batch) for impl in IMPLS)
    for (loss_s, (g_params_s, g_emb_s)), (loss_c, (g_params_c, g_emb_c)) in zip(scan, chunked):
        np.testing.assert_allclose(loss_c, loss_s, rtol=1e-6)
        flat_s, flat_c = nnx.to_flat_state(g_params_s), nnx.to_flat_state(g_params_c)
        assert [path for path, _ in flat_s] == [path for path, _ in flat_c]
        for (path, gs), (_, gc) in zip(flat_s, flat_c):
            np.testing.assert_allclose(gc[...], gs[...], rtol=1e-5, atol=1e-6, err_msg=str(path))
        np.testing.assert_allclose(g_emb_c, g_emb_s, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(g_emb_s)[batch.tokens == 0] == 0)  # the fast path's embedding gradient


@pytest.mark.parametrize("paired", [False, True])
def test_jvp_through_the_default_model(paired, single_batch, paired_batch):
    """``jax.jvp`` and ``jax.linearize`` work through a ``build_model(...)`` model as built by
    default (the scan reference), through both paths; the directional derivative equals central
    finite differences and ``<u, J v> = <J^T u, v>`` with the chunked kernel's hand-written VJP."""
    batch = paired_batch if paired else single_batch
    model = build_model(paired=paired, vocab_size=30, num_classes=3, embedding_dim=6, hidden_size=5,
                        seed=2 if paired else 1)
    assert model.encoder.impl == "scan"
    graphdef, params = nnx.split(model)
    chunked_graphdef = nnx.split(tiny(paired, "chunked"))[0]
    rng = np.random.default_rng(0)
    v = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), params)
    emb = model.embed(batch.tokens)
    v_emb = jnp.asarray(rng.standard_normal(emb.shape), jnp.float32)
    u = jnp.asarray(rng.standard_normal((len(batch.labels), 3)), jnp.float32)
    h = 1e-3

    def logits(graphdef, fast_path):
        def f(p, e):
            m = nnx.merge(graphdef, p)
            if fast_path:
                return m.logits_from_embeddings(e, batch.tokens, batch.aux_tokens)[0]
            return m(batch.tokens, batch.aux_tokens)[0]
        return f

    @jax.jit
    def check(params, emb, tangent):
        out = []
        for fast_path in (False, True):
            f = logits(graphdef, fast_path)
            _, jv = jax.jvp(f, (params, emb), tangent)
            lin = jax.linearize(f, params, emb)[1](*tangent)
            plus, minus = (jax.tree.map(lambda x, t: x + sign * h * t, (params, emb), tangent) for sign in (1, -1))
            fd = (f(*plus) - f(*minus)) / (2 * h)
            ju = jax.vjp(logits(chunked_graphdef, fast_path), params, emb)[1](u)
            transposed = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(ju), jax.tree.leaves(tangent)))
            out.append((jv, lin, fd, jnp.vdot(u, jv), transposed))
        return out

    for jv, lin, fd, ujv, transposed in check(params, emb, (v, v_emb)):
        np.testing.assert_allclose(lin, jv, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jv, fd, rtol=2e-2, atol=2e-3)
        np.testing.assert_allclose(ujv, transposed, rtol=1e-4)


def test_impl_is_chosen_once_at_build_time(monkeypatch):
    """``auto`` is resolved when the model is built (the chunked kernel on a CPU backend), recorded
    on every encoder and kept through split/merge; nothing queries the backend when tracing."""
    assert set(LSTM_IMPLS) == {"auto", *IMPLS}
    expected = "chunked" if jax.default_backend() == "cpu" else "scan"
    auto = build_model(paired=True, vocab_size=30, num_classes=3, embedding_dim=6, hidden_size=5, seed=2,
                       lstm_impl="auto")
    assert auto.encoder.impl == auto.aux_encoder.impl == expected
    graphdef, params = nnx.split(auto)
    assert nnx.merge(graphdef, params).encoder.impl == expected
    # Same parameters (names, shapes, values) for every impl: a model trained with one loads into the other.
    for impl in IMPLS:
        other = nnx.to_flat_state(nnx.split(tiny(True, impl))[1])
        assert [(p, x[...].shape) for p, x in other] == [(p, x[...].shape) for p, x in nnx.to_flat_state(params)]
        for (_, x), (_, y) in zip(other, nnx.to_flat_state(params)):
            np.testing.assert_array_equal(x[...], y[...])

    def no_backend_query():
        raise AssertionError("the backend was queried after the model was built")

    monkeypatch.setattr(jax, "default_backend", no_backend_query)
    tokens = np.array([[1, 5, 6, 2, 0]], np.int32)
    for impl in IMPLS:
        g, p = nnx.split(tiny(True, impl))
        jax.jit(jax.grad(lambda p: nnx.merge(g, p)(tokens, tokens)[0].sum()))(p)
    with pytest.raises(ValueError, match="lstm_impl 'fast'.*'auto', 'scan', 'chunked'"):
        build_model(paired=False, vocab_size=30, num_classes=3, embedding_dim=6, hidden_size=5, seed=0,
                    lstm_impl="fast")


@pytest.mark.parametrize("steps", [1, 2, 7, 8, 250, 251])
@pytest.mark.parametrize("chunks", [1, 2, 3, 4])
def test_chunk_sizes_are_symmetric_and_cover_every_step(steps, chunks):
    sizes = chunk_sizes(steps, chunks)
    assert sum(sizes) == steps and min(sizes) >= 1
    assert sizes == sizes[::-1]  # chunk j's backward positions are chunk C-1-j's forward ones
    assert abs(len(sizes) - min(chunks, steps)) <= 1


def test_one_tanh_gate_activations_equal_sigmoid_and_tanh():
    """The chunked kernel's activations (one tanh per element) are sigmoid on i, f, o and tanh on g."""
    hidden = 5
    x = jnp.linspace(-40.0, 40.0, 7 * 4 * hidden).reshape(7, 4 * hidden)
    got = _gates_to_activations(x, hidden)
    i, f, g, o = jnp.split(x, 4, axis=-1)
    want = jnp.concatenate([jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)], axis=-1)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)


def test_default_chunks_about_chunk_steps_per_chunk_on_every_backend():
    """The chunked kernel's chunk count depends on the sequence length only (no backend query)."""
    assert default_chunks(1) == 1
    assert default_chunks(CHUNK_STEPS) == 1
    assert default_chunks(50) == 2
    assert default_chunks(250) == round(250 / CHUNK_STEPS) == 8


def test_a_row_with_nothing_to_attend_gives_zero_attention_and_finite_logits(tiny_single):
    """[CLS] [EOS] only: the original's softmax over all -inf gives NaN; masked_softmax gives 0 attention,
    so the logits are the decoder's bias (documented in models/layers.py)."""
    logits, alpha = tiny_single(np.array([[1, 2, 0]], np.int32))
    assert np.all(np.asarray(alpha) == 0)
    np.testing.assert_allclose(logits[0], tiny_single.decoder.bias[...], rtol=1e-6)
