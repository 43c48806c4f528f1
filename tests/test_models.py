"""Models: the BiLSTM matches a per-example loop, padding is never processed, attention skips specials."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax.models import build_model
from nlproar_jax.models.bilstm import chunk_sizes
from nlproar_jax.models.layers import attention_mask


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


def test_bilstm_matches_per_example_loop_and_ignores_padding(tiny_single):
    lstm = tiny_single.encoder
    rows = [[1, 5, 6, 7, 8, 2], [1, 9, 2]]
    batch = make_batch(rows, [0, 1], pad_to=9)
    emb = tiny_single.embed(batch.tokens)
    out, final = lstm(emb, batch.tokens != 0)
    for i, r in enumerate(rows):
        ref_out, ref_final = reference_bilstm(lstm, np.asarray(emb[i, : len(r)], np.float64))
        np.testing.assert_allclose(out[i, : len(r)], ref_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(final[i], ref_final, rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(out[i, len(r):]) == 0)


@pytest.mark.parametrize("paired", [False, True])
def test_padding_and_batching_never_change_outputs(paired, tiny_single, tiny_paired, single_batch, paired_batch):
    model, batch = (tiny_paired, paired_batch) if paired else (tiny_single, single_batch)
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


def plain_bilstm(w_ih, w_hh, bias, emb, mask):
    """Autodiff reference: the plain scan (batch-major in and out, reversed copies), no custom VJP."""
    hidden = w_hh.shape[1]
    proj = emb @ w_ih + bias

    def run(u, m, w):
        def step(carry, x):
            h, c = carry
            u_t, m_t = x
            g = u_t + h @ w
            i, f = jax.nn.sigmoid(g[:, :hidden]), jax.nn.sigmoid(g[:, hidden:2 * hidden])
            gg, o = jnp.tanh(g[:, 2 * hidden:3 * hidden]), jax.nn.sigmoid(g[:, 3 * hidden:])
            c2 = f * c + i * gg
            h2 = o * jnp.tanh(c2)
            return (jnp.where(m_t, h2, h), jnp.where(m_t, c2, c)), h2 * m_t
        zeros = jnp.zeros((u.shape[1], hidden))
        (h, _), ys = jax.lax.scan(step, (zeros, zeros), (u, m))
        return ys, h

    u = jnp.swapaxes(proj, 0, 1)
    m = jnp.swapaxes(mask, 0, 1)[..., None]
    ys_f, h_f = run(u[:, :, :4 * hidden], m, w_hh[0])
    ys_b, h_b = run(u[::-1, :, 4 * hidden:], m[::-1], w_hh[1])
    out = jnp.swapaxes(jnp.concatenate([ys_f, ys_b[::-1]], axis=-1), 0, 1)
    return out, jnp.concatenate([h_f, h_b], axis=-1)


@pytest.mark.parametrize("chunks", [None, 1, 2, 3, 8])
def test_recurrence_vjp_equals_autodiff_of_the_plain_scan(tiny_single, chunks):
    """The hand-written, time-major VJP gives autodiff's gradients for every input, padding
    included, through the training path (any number of time chunks) and the attribution path."""
    lstm = tiny_single.encoder
    rng = np.random.default_rng(0)
    batch = make_batch([[1, 5, 6, 7, 8, 2], [1, 9, 2], [1, 4, 4, 2]], [0, 1, 2], pad_to=8)
    emb = jnp.asarray(rng.standard_normal((3, 8, 6)), jnp.float32)
    mask = jnp.asarray(batch.tokens != 0)
    c_out = jnp.asarray(rng.standard_normal((3, 8, 10)), jnp.float32)
    c_fin = jnp.asarray(rng.standard_normal((3, 10)), jnp.float32)
    params = (lstm.w_ih[...], lstm.w_hh[...], lstm.bias[...], emb)

    def loss(out, final):
        return jnp.sum(out * c_out) + jnp.sum(final * c_fin)

    def trained(w_ih, w_hh, bias, e):  # BiLSTM.encode with these parameters
        model = nnx.clone(lstm)
        model.w_ih[...], model.w_hh[...], model.bias[...] = w_ih, w_hh, bias
        out, final = model.encode(jnp.swapaxes(e, 0, 1), jnp.swapaxes(mask, 0, 1), chunks=chunks)
        return loss(jnp.swapaxes(out, 0, 1), final)

    def attributed(w_ih, w_hh, bias, e):  # BiLSTM.recur_time_major on the projection
        model = nnx.clone(lstm)
        model.w_hh[...], model.bias[...] = w_hh, bias
        out, final = model.recur_time_major(jnp.swapaxes(e @ w_ih, 0, 1), jnp.swapaxes(mask, 0, 1))
        return loss(jnp.swapaxes(out, 0, 1), final)

    def reference(w_ih, w_hh, bias, e):
        return loss(*plain_bilstm(w_ih, w_hh, bias, e, mask))

    expected = jax.grad(reference, argnums=(0, 1, 2, 3))(*params)
    for ours in (trained, attributed):
        np.testing.assert_allclose(ours(*params), reference(*params), rtol=1e-6)
        for g, r in zip(jax.grad(ours, argnums=(0, 1, 2, 3))(*params), expected):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 7, 8, 250, 251])
@pytest.mark.parametrize("chunks", [1, 2, 3, 4])
def test_chunk_sizes_are_symmetric_and_cover_every_step(steps, chunks):
    sizes = chunk_sizes(steps, chunks)
    assert sum(sizes) == steps and min(sizes) >= 1
    assert sizes == sizes[::-1]  # chunk j's backward positions are chunk C-1-j's forward ones
    assert abs(len(sizes) - min(chunks, steps)) <= 1


def test_default_chunks_about_chunk_steps_per_chunk_on_cpu():
    from nlproar_jax.models.bilstm import CHUNK_STEPS, default_chunks

    if jax.default_backend() != "cpu":
        assert default_chunks(250) == 1
        return
    assert default_chunks(1) == 1
    assert default_chunks(CHUNK_STEPS) == 1
    assert default_chunks(250) == round(250 / CHUNK_STEPS)
