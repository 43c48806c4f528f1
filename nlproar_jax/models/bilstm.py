"""A one-layer bidirectional LSTM in two implementations of the same function: ``scan`` (the
reference) and ``chunked`` (tuned for XLA:CPU).

Semantics (both): PyTorch's gate order (i, f, g, o), zero initial state, and packed-sequence
padding: the state is carried unchanged across [PAD] positions, so the backward direction starts
at each row's last real token; outputs are 0 at padding; the final state is the forward one after
the last real token ⊕ the backward one after the first. Everything is time-major
(``[T, B, ...]``, what a recurrence scans over): the models gather embeddings with ``tokens.T``.

The LSTM input projection is linear in the embeddings, so it is cut out of the
recurrence: :meth:`BiLSTM.project` maps embeddings ``e`` to ``P = e @ W_ih``, and
:meth:`BiLSTM.recur_time_major` runs the recurrence on ``P`` (+ bias). Integrated gradients
scales only the LSTM input, so ``proj(alpha * e) = alpha * P``: the projection is computed once
and never back-propagated per interpolation point. :meth:`BiLSTM.encode` (the training path) is
projection and recurrence together.

Choosing the implementation (``impl``, :data:`nlproar_jax.names.LSTM_IMPLS`) is explicit and made
once, when the :class:`BiLSTM` is built (``build_model(..., lstm_impl=...)``, ``config.lstm_impl``);
the module records the resolved choice as ``BiLSTM.impl``, and nothing queries the backend in
traced code. ``"auto"`` resolves (:func:`resolve_impl`) to ``"chunked"`` when JAX's default backend
is the CPU, else to ``"scan"``. Parameters (names, shapes, meaning) are the same for every impl,
so a model trained with one runs with the other.

``scan``: the reference (:func:`scan_bilstm`)
---------------------------------------------
One ``lax.scan`` per direction (the backward one with ``reverse=True``, so it reads and writes in
position order), a textbook LSTM cell, and JAX's own autodiff: ``jax.grad``, ``jax.jvp``,
``jax.linearize`` and ``jax.vmap`` all work through it. It defines what the chunked kernel must
compute (``tests/test_models.py`` checks the two give the same outputs and gradients).

``chunked``: the CPU-tuned kernel
---------------------------------
Reverse-mode only (``jax.custom_vjp``): ``jax.jvp`` and ``jax.linearize`` do not go through it.

Both directions run in the same scan step (one batched matmul): step ``s`` runs the
forward direction at position ``s`` and the backward one at ``T-1-s``, reading the
projections in place and writing outputs in place, so no reversed or transposed copy
of the activations is made.

Training (:meth:`BiLSTM.encode`) runs the steps in time chunks: chunk ``j`` covers
steps ``[a_j, b_j)``, i.e. forward positions ``[a_j, b_j)`` and backward positions
``[T-b_j, T-a_j)`` (chunk sizes are symmetric, so that is chunk ``C-1-j``'s range). The
projection and its gradients live inside the recurrence's VJP
(:func:`_encode_recurrence`): chunk ``j+1``'s projection depends on the state entering
chunk ``j``'s loop, and chunk ``j``'s input-gradient matmuls are made right after its
backward loop. XLA:CPU runs one ``while`` loop on one thread, and it runs an independent
matmul beside it only when both are ready at once: so on a CPU the second core computes
projections and gradients while the first runs the loops (about :data:`CHUNK_STEPS` = 32
steps per chunk, :func:`default_chunks`). Chunking changes no value: every chunking gives
the same function and gradients (``tests/test_models.py``). The attribution path
(:meth:`BiLSTM.recur_time_major`) runs one chunk (:func:`_recurrence`).

The recurrence has a hand-written VJP (:func:`_forward`, :func:`_backward`, shared by
:func:`_recurrence` and :func:`_encode_recurrence`): the forward loops keep
only the gate activations, the previous states and tanh(c) per step, the backward
loops need no transcendentals, and the W_hh gradient is one matmul per chunk and
direction (dead code, removed by XLA, when only input gradients are wanted, as in IG).
Nothing inside a loop reduces over the batch, so a batch-sharded run needs no
collective per step. ``benchmarks/RESULTS.md`` has what each of these gained.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from nlproar_jax.models.layers import uniform
from nlproar_jax.names import LSTM_IMPLS

# The chunked kernel's training path splits the time axis into chunks of about this many steps:
# each chunk's projection matmul runs beside the previous chunk's loop, and its input-gradient
# matmuls beside the next chunk's backward loop (benchmarks/RESULTS.md).
CHUNK_STEPS = 32


def resolve_impl(impl: str) -> str:
    """``"scan"`` or ``"chunked"`` for ``impl`` in :data:`LSTM_IMPLS`: ``"auto"`` is ``"chunked"``
    when JAX's default backend is the CPU, else ``"scan"``. Called once, when a model is built."""
    if impl not in LSTM_IMPLS:
        raise ValueError(f"unknown lstm_impl {impl!r}; valid: {list(LSTM_IMPLS)}")
    if impl == "auto":
        return "chunked" if jax.default_backend() == "cpu" else "scan"
    return impl


# -- scan: the reference ---------------------------------------------------------------------
def _lstm_cell(u, h, c, w_hh):
    """One LSTM step. ``u <f32>[B, 4H]``: input projection + bias; ``h, c <f32>[B, H]``;
    ``w_hh <f32>[H, 4H]``. Returns the new ``(h, c)``."""
    i, f, g, o = jnp.split(u + h @ w_hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


def _scan_direction(u, m, w_hh, reverse):
    """One direction over the whole sequence.

    Args:
      u: ``<f32>[T, B, 4H]``: input projection + bias, in position order.
      m: ``<bool>[T, B, 1]``: real tokens.
      w_hh: ``<f32>[H, 4H]``.
      reverse: False = positions ``0 .. T-1``; True = ``T-1 .. 0`` (outputs still in position order).
    Returns:
      outputs ``<f32>[T, B, H]`` (0 at padding) and the state after the last real step ``<f32>[B, H]``.
    """
    def step(carry, x):
        h, c = carry
        u_t, m_t = x
        h_new, c_new = _lstm_cell(u_t, h, c, w_hh)
        # Padding: the state is carried unchanged (packed-sequence semantics), the output is 0.
        carry = (jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c))
        return carry, jnp.where(m_t, h_new, 0.0)

    batch, hidden = u.shape[1], w_hh.shape[0]
    zeros = jnp.zeros((batch, hidden), u.dtype)
    (h_last, _), ys = jax.lax.scan(step, (zeros, zeros), (u, m), reverse=reverse)
    return ys, h_last


def scan_bilstm(proj, bias, mask, w_hh):
    """The reference BiLSTM recurrence: one ``lax.scan`` per direction, plain autodiff.

    Args:
      proj: ``<f32>[T, B, 8H]``: the input projection ``e @ W_ih`` (forward gates, then backward), no bias.
      bias: ``<f32>[8H]``.
      mask: ``<bool>[T, B]``: True at real tokens (a prefix of each column).
      w_hh: ``<f32>[2, H, 4H]``.
    Returns:
      ``ys <f32>[T, B, 2H]`` (forward ⊕ backward output at each position, 0 at padding) and the
      final hidden state ``<f32>[2, B, H]`` (forward after the last real token, backward after the first).
    """
    u = proj + bias
    m = mask[..., None]
    forward, backward = jnp.split(u, 2, axis=-1)
    ys_f, h_f = _scan_direction(forward, m, w_hh[0], reverse=False)
    ys_b, h_b = _scan_direction(backward, m, w_hh[1], reverse=True)
    return jnp.concatenate([ys_f, ys_b], axis=-1), jnp.stack([h_f, h_b])


# -- chunked: the CPU-tuned kernel -----------------------------------------------------------
def chunk_sizes(steps: int, chunks: int) -> tuple[int, ...]:
    """``chunks`` (or fewer) step counts summing to ``steps``, symmetric (``n_j == n_{C-1-j}``).

    An even number of chunks cannot split an odd number of steps symmetrically; one chunk
    more is used then.
    """
    chunks = max(1, min(chunks, steps))
    if chunks % 2 == 0 and steps % 2 == 1:
        chunks += 1
    sizes = [steps // chunks] * chunks
    extra = steps - sum(sizes)
    for j in range(extra // 2):  # pairs, from the outside in
        sizes[j] += 1
        sizes[chunks - 1 - j] += 1
    if extra % 2:
        sizes[chunks // 2] += 1  # odd chunks: the middle one
    return tuple(sizes)


def default_chunks(steps: int) -> int:
    """How many time chunks the chunked kernel's :meth:`BiLSTM.encode` uses for ``steps`` time
    steps: about :data:`CHUNK_STEPS` steps per chunk, at least one."""
    return max(1, round(steps / CHUNK_STEPS))


def _g_columns(hidden):
    """``<bool>[4H]``: True at the g (cell input, tanh) gate's columns of (i, f, g, o)."""
    return (jnp.arange(4 * hidden) // hidden) == 2


def _gates_to_activations(gates, hidden):
    """``<f32>[..., 4H]`` pre-activations -> ``i, f, g, o`` activations in one array: sigmoid on
    i, f, o and tanh on g, as one tanh over the whole row: ``sigmoid(x) = tanh(x / 2) / 2 + 1/2``,
    so ``a = tanh(x * s) * s + (1 - s)`` with ``s = 1`` on g's columns and ``1/2`` elsewhere. One
    transcendental per element, whole rows (which XLA's CPU emitter vectorises far better than four
    column slices); equal to sigmoid / tanh to float32 rounding (``tests/test_models.py``)."""
    s = jnp.where(_g_columns(hidden), 1.0, 0.5).astype(gates.dtype)
    return jnp.tanh(gates * s) * s + (1 - s)


def _cell(u_t, b, h, c, w_hh, hidden):
    """One step of both directions: ``u_t <f32>[2, B, 4H]`` input projections, ``b <f32>[2, 1, 4H]``,
    ``h, c <f32>[2, B, H]``, ``w_hh <f32>[2, H, 4H]`` -> activations ``[2, B, 4H]``, the new cell,
    its tanh and the new hidden state (each ``[2, B, H]``)."""
    a = _gates_to_activations(u_t + b + jnp.einsum("dbh,dhg->dbg", h, w_hh), hidden)
    i_, f_, g_, o_ = _split_gates(a, hidden)
    c_new = f_ * c + i_ * g_
    tc = jnp.tanh(c_new)
    return a, c_new, tc, o_ * tc


def _step_mask(m, s, r):
    """``<bool>[2, B, 1]``: real-token mask of the forward direction at ``s`` and the backward one at ``r``."""
    return jnp.stack([m[s], m[r]])[..., None]


def _split_gates(a, hidden):
    return a[..., :hidden], a[..., hidden:2 * hidden], a[..., 2 * hidden:3 * hidden], a[..., 3 * hidden:]


def _read_chunk(uf, ub):
    """The step inputs of one chunk's precomputed projections, for :func:`_forward_chunk`:
    ``uf <f32>[n, B, 4H]``: forward input at step ``start+i`` is ``uf[i]``; ``ub <f32>[n, B, 4H]``:
    backward input, in position order, so step ``start+i`` reads ``ub[n-1-i]``."""
    n = uf.shape[0]

    def read(i, s, r):
        return jnp.stack([jax.lax.dynamic_index_in_dim(uf, i, keepdims=False),
                          jax.lax.dynamic_index_in_dim(ub, n - 1 - i, keepdims=False)])
    return read


def _forward_chunk(carry, read, n, b, m, w_hh, start, keep_residuals):
    """Steps ``start .. start+n-1`` of both directions.

    ``read(i, s, r) -> <f32>[2, B, 4H]``: the input projections (no bias) of step ``start+i``, which
    runs the forward direction at position ``s`` and the backward one at ``r`` (:func:`_read_chunk`
    for precomputed projections). ``carry = (h, c, ys)`` with ``h, c <f32>[2, B, H]`` and the whole
    output ``ys <f32>[T, B, 2H]``, written in place. Residuals (stacked in step order, except
    ``h_prev_b`` in position order): activations ``[n, 2, B, 4H]``, previous cell ``[n, 2, B, H]``,
    tanh of the new cell ``[n, 2, B, H]``, previous forward hidden ``[n, B, H]`` and previous
    backward hidden ``[n, B, H]``.
    """
    h, c, ys = carry
    _, batch, hidden = h.shape
    steps = m.shape[0]

    def step(state, i):
        h, c, ys, hpb = state
        s = start + i
        r = steps - 1 - s  # the backward direction's position
        m_t = _step_mask(m, s, r)
        a, c_new, tc, h_new = _cell(read(i, s, r), b, h, c, w_hh, hidden)
        out = h_new * m_t
        ys = jax.lax.dynamic_update_slice(ys, out[0][None], (s, 0, 0))
        ys = jax.lax.dynamic_update_slice(ys, out[1][None], (r, 0, hidden))
        residuals = None
        if keep_residuals:
            hpb = jax.lax.dynamic_update_slice(hpb, h[1][None], (n - 1 - i, 0, 0))
            residuals = (a, c, tc, h[0])
        # Padding: the state is carried unchanged (packed-sequence semantics).
        return (jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c), ys, hpb), residuals

    hpb = jnp.zeros((n, batch, hidden), ys.dtype) if keep_residuals else jnp.zeros((), ys.dtype)
    (h, c, ys, hpb), residuals = jax.lax.scan(step, (h, c, ys, hpb), jnp.arange(n))
    return (h, c, ys), (residuals + (hpb,) if keep_residuals else None)


def _forward(project, count, bias, m, w_hh, dtype, keep_residuals):
    """The forward loops of ``count`` time chunks (see :func:`_recurrence`).

    ``project(j, h) -> (uf_j, ub_j)`` gives chunk ``j``'s input projections (as
    :func:`_read_chunk` reads them); ``h <f32>[2, B, H]`` is the hidden state entering
    chunk ``j-1``'s loop, which chunk ``j``'s projection is called with, before that loop.
    Returns ``(ys, h_last)`` and the chunks' residuals.
    """
    steps, batch = m.shape
    hidden = w_hh.shape[1]
    b = bias.reshape(2, 1, 4 * hidden)
    zeros = jnp.zeros((2, batch, hidden), dtype)
    carry = (zeros, zeros, jnp.zeros((steps, batch, 2 * hidden), dtype))
    uf, ub = project(0, zeros)
    residuals, start = [], 0
    for j in range(count):
        if j + 1 < count:
            after = project(j + 1, carry[0])
        carry, res = _forward_chunk(carry, _read_chunk(uf, ub), uf.shape[0], b, m, w_hh, start, keep_residuals)
        residuals.append(res)
        start += uf.shape[0]
        if j + 1 < count:
            uf, ub = after
    h_last, _, ys = carry
    return (ys, h_last), tuple(residuals)


def _backward_chunk(carry, residuals, d_ys, m, w_t, start):
    """The VJP of :func:`_forward_chunk`'s steps, last step first. ``carry = (dh, dc, d_bias)``:
    cotangents of the state after the chunk and the bias gradient per row ``<f32>[2, B, 4H]``.
    Returns the carry before the chunk and the input cotangents ``duf, dub <f32>[n, B, 4H]``
    (``dub`` in position order, like ``ub``) and ``dW_hh <f32>[2, H, 4H]`` of this chunk."""
    acts, c_prev, tc, h_prev_f, h_prev_b = residuals
    n, _, batch, gates = acts.shape
    hidden = gates // 4
    steps = m.shape[0]
    is_g = _g_columns(hidden)

    def step(state, x):
        dh, dc, d_bias, dub = state  # dh, dc: cotangents of the carried state after this step
        i, a, cp, t = x
        s = start + i
        r = steps - 1 - s
        i_, f_, g_, o_ = _split_gates(a, hidden)
        k = _step_mask(m, s, r).astype(dh.dtype)
        dy = jnp.stack([jax.lax.dynamic_slice(d_ys, (s, 0, 0), (1, batch, hidden))[0],
                        jax.lax.dynamic_slice(d_ys, (r, 0, hidden), (1, batch, hidden))[0]])
        dh_new = k * (dh + dy)  # the output is h' * k; the carry takes h' where k
        dc_new = k * dc + dh_new * o_ * (1 - t * t)
        # d gates = (upstream per gate) * (activation derivative), whole rows like the forward.
        deriv = jnp.where(is_g, 1 - a * a, a * (1 - a))
        da = jnp.concatenate([dc_new * g_, dc_new * cp, dc_new * i_, dh_new * t], axis=-1) * deriv
        dh_prev = jnp.einsum("dbg,dgh->dbh", da, w_t) + (1 - k) * dh
        dc_prev = dc_new * f_ + (1 - k) * dc
        dub = jax.lax.dynamic_update_slice(dub, da[1][None], (n - 1 - i, 0, 0))
        return (dh_prev, dc_prev, d_bias + da, dub), da[0]

    dh, dc, d_bias = carry
    init = (dh, dc, d_bias, jnp.zeros((n, batch, gates), d_ys.dtype))
    (dh, dc, d_bias, dub), duf = jax.lax.scan(step, init, (jnp.arange(n), acts, c_prev, tc), reverse=True)
    # Contiguous operands in matching order: W_hh's gradient is one matmul per direction, and it
    # contracts (n, B) without a reshape, so a batch-sharded run needs no collective per step.
    d_w_hh = jnp.stack([jnp.einsum("tbh,tbg->hg", h_prev_f, duf), jnp.einsum("tbh,tbg->hg", h_prev_b, dub)])
    return (dh, dc, d_bias), duf, dub, d_w_hh


def _backward(residuals, cotangents, m, w_hh, chunk_inputs):
    """The backward loops, last chunk first: ``chunk_inputs(j, duf_j, dub_j)`` receives chunk
    ``j``'s input cotangents right after its loop. Returns the bias and W_hh gradients."""
    d_ys, d_h_last = cotangents
    batch = m.shape[1]
    hidden = w_hh.shape[1]
    w_t = jnp.swapaxes(w_hh, 1, 2)  # [2, 4H, H]
    starts = list(itertools.accumulate([0] + [res[0].shape[0] for res in residuals[:-1]]))
    carry = (d_h_last, jnp.zeros_like(d_h_last), jnp.zeros((2, batch, 4 * hidden), d_ys.dtype))
    d_w_hh = jnp.zeros_like(w_hh)
    for j in reversed(range(len(residuals))):
        carry, duf, dub, d_w = _backward_chunk(carry, residuals[j], d_ys, m, w_t, starts[j])
        d_w_hh = d_w_hh + d_w
        chunk_inputs(j, duf, dub)
    return jnp.sum(carry[2], axis=1).reshape(-1), d_w_hh


@jax.custom_vjp
def _recurrence(uf, ub, bias, m, w_hh):
    """Both LSTM directions over a whole input projection (the attribution path).

    Args:
      uf: ``<f32>[T, B, 4H]``: the forward direction's input projection (no bias).
      ub: ``<f32>[T, B, 4H]``: the backward direction's, in position order.
      bias: ``<f32>[8H]`` (forward gates, then backward gates).
      m: ``<bool>[T, B]`` real-token mask (a prefix of each column).
      w_hh: ``<f32>[2, H, 4H]``.
    Returns:
      ``ys <f32>[T, B, 2H]`` (forward ⊕ backward output at each position, 0 at padding) and the
      final hidden state ``<f32>[2, B, H]``.
    """
    return _forward(lambda j, h: (uf, ub), 1, bias, m, w_hh, uf.dtype, keep_residuals=False)[0]


def _recurrence_fwd(uf, ub, bias, m, w_hh):
    out, residuals = _forward(lambda j, h: (uf, ub), 1, bias, m, w_hh, uf.dtype, keep_residuals=True)
    return out, (residuals, m, w_hh)


def _recurrence_bwd(saved, cotangents):
    residuals, m, w_hh = saved
    d_inputs = []
    d_bias, d_w_hh = _backward(residuals, cotangents, m, w_hh, lambda j, duf, dub: d_inputs.extend((duf, dub)))
    return d_inputs[0], d_inputs[1], d_bias, None, d_w_hh


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def select_recurrence(proj, proj_mask, keep, bias, m, w_hh):
    """Both LSTM directions over perturbed copies of one input projection, without building them
    (the perturbation measures' path; forward only, no VJP).

    Copy ``s`` of row ``b`` (recurrence row ``s * B + b``) has, at position ``t``, the projection
    ``proj[t, b]`` where ``keep[t, s, b]``, else ``proj_mask``: each step selects its rows from
    ``proj[t]`` inside the loop, so the ``[T, n B, 8H]`` perturbed projection is never written.
    Equals :func:`_recurrence` on ``where(keep[..., None], proj[:, None], proj_mask)`` reshaped to
    ``[T, n B, 8H]``.

    Args:
      proj: ``<f32>[T, B, 8H]``: the clean projection (no bias).
      proj_mask: ``<f32>[8H]``: the replacement token's projection row.
      keep: ``<bool>[T, n, B]``.
      bias, w_hh: as :func:`_recurrence`.
      m: ``<bool>[T, n B]``: real tokens of the copies.
    Returns:
      as :func:`_recurrence`, over the ``n B`` rows.
    """
    steps, batch, gates = proj.shape
    hidden = gates // 8
    rows = keep.shape[1] * batch
    # In step order (step s: forward at s, backward at T-1-s), so a step's input is one select of
    # one [2, n, B] slice, which XLA fuses into the gate computation (no stacked copy per step).
    proj_steps = jnp.stack([proj[..., :4 * hidden], proj[::-1, :, 4 * hidden:]], axis=1)  # [T, 2, B, 4H]
    keep_steps = jnp.stack([keep, keep[::-1]], axis=1)  # [T, 2, n, B]
    mask_d = proj_mask.reshape(2, 1, 1, 4 * hidden)

    def read(i, s, r):
        return jnp.where(keep_steps[s][..., None], proj_steps[s][:, None], mask_d).reshape(2, rows, 4 * hidden)

    zeros = jnp.zeros((2, rows, hidden), proj.dtype)
    carry = (zeros, zeros, jnp.zeros((steps, rows, 2 * hidden), proj.dtype))
    (h_last, _, ys), _ = _forward_chunk(carry, read, steps, bias.reshape(2, 1, 4 * hidden), m, w_hh, 0,
                                        keep_residuals=False)
    return ys, h_last


def clean_states(proj, bias, m, w_hh):
    """The clean run of :func:`_recurrence` with the state entering every position, for
    :func:`leave_one_out_recurrence`.

    Args: as :func:`_recurrence`, with ``proj <f32>[T, B, 8H]`` whole.
    Returns:
      ``ys <f32>[T, B, 2H]``, and ``h_in, c_in <f32>[2, T, B, H]``: the hidden and cell state each
      direction carries into position ``t`` (forward: after ``t-1``; backward: after ``t+1``; zero
      before the first real step; carried across padding as the recurrence does).
    """
    hidden = w_hh.shape[1]
    uf, ub = proj[..., :4 * hidden], proj[..., 4 * hidden:]
    (ys, _), (res,) = _forward(lambda j, h: (uf, ub), 1, bias, m, w_hh, proj.dtype, keep_residuals=True)
    _, c_prev, _, h_prev_f, h_prev_b = res  # step order, except h_prev_b (position order)
    return ys, jnp.stack([h_prev_f, h_prev_b]), jnp.stack([c_prev[:, 0], c_prev[::-1, 1]])


def leave_one_out_recurrence(proj, proj_mask, removable, bias, m, w_hh, clean, groups):
    """Both LSTM directions on copies of one input with a single position removed, reusing the
    clean run: about half the steps of :func:`select_recurrence` on the same copies (forward only).

    Removing position ``t`` leaves the forward states before ``t`` and the backward states after
    ``t`` as they were, so the copy needs the forward direction from ``t`` to ``T-1`` (``T - t``
    steps, from the clean state entering ``t``) and the backward one from ``t`` down to 0 (``t + 1``
    steps). Group ``g`` pairs the removals at ``g`` and ``T-1-g``: each direction runs the chain of
    one and then the other, ``T + 1`` steps in all, so ``G`` groups cover ``2 G`` removals in
    ``T + 1`` steps of ``G B`` rows (:func:`select_recurrence`: ``T`` steps of ``2 G B`` rows). A
    chain's first step is the removed position, where the input is ``proj_mask`` if ``removable``;
    outputs outside the chains are the clean run's. (A variant in which every row of a step reads
    the same position, chunks of ``k`` consecutive removals and their mirror images in ``T + k``
    steps, measured a quarter slower on XLA:CPU: benchmarks/RESULTS.md.)

    Args:
      proj: ``<f32>[T, B, 8H]``: the clean projection (no bias); proj_mask: ``<f32>[8H]``.
      removable: ``<bool>[T, B]``: where removing changes the input (elsewhere a copy is the clean input).
      bias, m, w_hh: as :func:`_recurrence`.
      clean: :func:`clean_states` of the same ``proj``.
      groups: ``<int32>[G]``, each in ``[0, T)``.
    Returns:
      ``ys <f32>[T, 2, G, B, 2H]``: ``[:, 0, j]`` the copy with position ``groups[j]`` removed,
      ``[:, 1, j]`` with ``T - 1 - groups[j]`` removed.
    """
    steps, batch, gates = proj.shape
    hidden = gates // 8
    ys_clean, h_in, c_in = clean
    count = groups.shape[0]
    rows = count * batch
    proj_d = jnp.stack([proj[..., :4 * hidden], proj[..., 4 * hidden:]])  # [2, T, B, 4H]
    mask_d = proj_mask.reshape(2, 1, 1, 4 * hidden)
    direction = jnp.arange(2)[:, None]

    def step(state, i):
        h, c = state  # [2, G B, H]
        # Forward: chain of g (positions g .. T-1), then of T-1-g (T-1-g .. T-1), from step T-g.
        # Backward: chain of g (g .. 0), then of T-1-g (T-1-g .. 0), from step g+1.
        pos = jnp.stack([jnp.where(i < steps - groups, groups + i, i - 1),
                         jnp.where(i <= groups, groups - i, steps - i)])  # [2, G]
        first = jnp.stack([(i == 0) | (i == steps - groups), (i == 0) | (i == groups + 1)])[..., None]  # [2, G, 1]
        u = jnp.where((first & removable[pos])[..., None], mask_d, proj_d[direction, pos])  # [2, G, B, 4H]
        h = jnp.where(first[..., None], h_in[direction, pos], h.reshape(2, count, batch, hidden)).reshape(2, rows, hidden)
        c = jnp.where(first[..., None], c_in[direction, pos], c.reshape(2, count, batch, hidden)).reshape(2, rows, hidden)
        m_t = m[pos].reshape(2, rows, 1)
        _, c_new, _, h_new = _cell(u.reshape(2, rows, 4 * hidden), bias.reshape(2, 1, 4 * hidden), h, c, w_hh, hidden)
        return (jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c)), (h_new * m_t).reshape(2, count, batch, hidden)

    zeros = jnp.zeros((2, rows, hidden), proj.dtype)
    _, outs = jax.lax.scan(step, (zeros, zeros), jnp.arange(steps + 1))  # [T+1, 2, G, B, H], step order

    p, g = jnp.arange(steps)[:, None], groups[None]  # [T, 1], [1, G]

    def chain(out, index, inside, clean_half):
        """Position order: the chain's output at step ``index [T, G]`` where ``inside``, else clean."""
        got = jnp.take_along_axis(out, jnp.clip(index, 0, steps)[..., None, None], axis=0)  # [T, G, B, H]
        return jnp.where(inside[..., None, None], got, clean_half[:, None])

    f, b = outs[:, 0], outs[:, 1]
    cf, cb = ys_clean[..., :hidden], ys_clean[..., hidden:]
    q = steps - 1 - g
    first_copy = jnp.concatenate([chain(f, p - g, p >= g, cf), chain(b, g - p, p <= g, cb)], axis=-1)
    second_copy = jnp.concatenate([chain(f, p + 1, p >= q, cf), chain(b, steps - p, p <= q, cb)], axis=-1)
    return jnp.stack([first_copy, second_copy], axis=1)


def _chunk_projection(pieces, w_ih):
    """``project(j, h)`` for :func:`_forward`: chunk ``j`` reads ``pieces[j] @ W_f`` and
    ``pieces[C-1-j] @ W_b``. It depends on ``h``, the state entering the previous chunk's loop,
    so the two become ready together and XLA:CPU runs the matmul beside the loop instead of all
    projections first (benchmarks/RESULTS.md). A data dependency, not an optimization_barrier:
    XLA:CPU's runtime orders thunks by the buffers they use, and barriers are gone by then;
    ``0 * h`` is not folded."""
    count = len(pieces)
    hidden = w_ih.shape[1] // 8

    def project(j, h):
        tie = 0.0 * h[0, 0, 0]
        return pieces[j] @ (w_ih[:, :4 * hidden] + tie), pieces[count - 1 - j] @ (w_ih[:, 4 * hidden:] + tie)
    return project


@jax.custom_vjp
def _encode_recurrence(pieces, w_ih, bias, m, w_hh):
    """The training path: projection and both LSTM directions over time chunks.

    Args:
      pieces: tuple of ``<f32>[n_j, B, D]``: the embeddings of positions ``[a_j, b_j)``, chunk
        sizes symmetric (:func:`chunk_sizes`); chunk ``j``'s loop runs forward over piece ``j``
        and backward over piece ``C-1-j``.
      w_ih: ``<f32>[D, 8H]``; bias, m, w_hh: as :func:`_recurrence`.
    Returns:
      as :func:`_recurrence`.
    """
    project = _chunk_projection(pieces, w_ih)
    return _forward(project, len(pieces), bias, m, w_hh, pieces[0].dtype, keep_residuals=False)[0]


def _encode_recurrence_fwd(pieces, w_ih, bias, m, w_hh):
    project = _chunk_projection(pieces, w_ih)
    out, residuals = _forward(project, len(pieces), bias, m, w_hh, pieces[0].dtype, keep_residuals=True)
    return out, (residuals, pieces, w_ih, m, w_hh)


def _encode_recurrence_bwd(saved, cotangents):
    """Chunk ``j``'s input gradients (into ``pieces[j]`` and ``pieces[C-1-j]``, and W_ih) are
    computed right after its backward loop, beside the next chunk's loop."""
    residuals, pieces, w_ih, m, w_hh = saved
    count = len(pieces)
    hidden = w_hh.shape[1]
    w_f, w_b = w_ih[:, :4 * hidden], w_ih[:, 4 * hidden:]
    d_pieces = [jnp.zeros_like(piece) for piece in pieces]
    d_w = [jnp.zeros_like(w_f), jnp.zeros_like(w_b)]

    def chunk_inputs(j, duf, dub):
        k = count - 1 - j
        d_pieces[j] = d_pieces[j] + jnp.einsum("tbg,dg->tbd", duf, w_f)
        d_pieces[k] = d_pieces[k] + jnp.einsum("tbg,dg->tbd", dub, w_b)
        d_w[0] = d_w[0] + jnp.einsum("tbd,tbg->dg", pieces[j], duf)
        d_w[1] = d_w[1] + jnp.einsum("tbd,tbg->dg", pieces[k], dub)

    d_bias, d_w_hh = _backward(residuals, cotangents, m, w_hh, chunk_inputs)
    return tuple(d_pieces), jnp.concatenate(d_w, axis=1), d_bias, None, d_w_hh


_encode_recurrence.defvjp(_encode_recurrence_fwd, _encode_recurrence_bwd)


class BiLSTM(nnx.Module):
    """Parameters: ``w_ih <f32>[input, 8H]`` (forward gates then backward gates),
    ``w_hh <f32>[2, H, 4H]``, ``bias <f32>[8H]`` (the sum of PyTorch's two biases); the same for
    every ``impl``.

    ``impl``: one of :data:`LSTM_IMPLS` (see the module docstring), resolved here, once;
    ``self.impl`` is the resolved ``"scan"`` or ``"chunked"`` (a static attribute).
    """

    def __init__(self, input_size: int, hidden_size: int, *, impl: str = "scan", rngs: nnx.Rngs):
        bound = 1.0 / math.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.impl = resolve_impl(impl)
        self.w_ih = nnx.Param(uniform(rngs.params(), (input_size, 8 * hidden_size), bound))
        self.w_hh = nnx.Param(uniform(rngs.params(), (2, hidden_size, 4 * hidden_size), bound))
        # PyTorch has b_ih + b_hh, each U(-k, k); one bias with the sum's distribution.
        self.bias = nnx.Param(uniform(rngs.params(), (8 * hidden_size,), bound)
                              + uniform(rngs.params(), (8 * hidden_size,), bound))

    def project(self, emb: jax.Array) -> jax.Array:
        """``<f32>[..., input]`` -> ``<f32>[..., 8H]`` (batch- or time-major alike), without bias."""
        return emb @ self.w_ih[...]

    def _final(self, ys, h_last):
        return ys, jnp.concatenate([h_last[0], h_last[1]], axis=-1)

    def encode(self, emb: jax.Array, mask: jax.Array, chunks: int | None = None) -> tuple[jax.Array, jax.Array]:
        """The training path: projection and recurrence (chunked: in time chunks, see the module docstring).

        Args:
          emb: ``<f32>[seq_len, batch, input]`` (time-major).
          mask: ``<bool>[seq_len, batch]``, True at real tokens (a prefix of each column).
          chunks: the chunked kernel's number of time chunks; None = :func:`default_chunks`. Any
            value gives the same result; the scan reference ignores it.
        Returns:
          outputs ``<f32>[seq_len, batch, 2H]`` (zero at padding) and the final state
          ``<f32>[batch, 2H]``: forward after the last real token ⊕ backward after the first.
        """
        if self.impl == "scan":
            return self.recur_time_major(self.project(emb), mask)
        steps, mask = emb.shape[0], jnp.asarray(mask)
        sizes = chunk_sizes(steps, default_chunks(steps) if chunks is None else chunks)
        pieces = tuple(jnp.split(emb, list(itertools.accumulate(sizes[:-1])), axis=0))
        return self._final(*_encode_recurrence(pieces, self.w_ih[...], self.bias[...], mask, self.w_hh[...]))

    def recur_time_major(self, proj: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Run both directions over a whole time-major projection (the attribution path).

        Args:
          proj: ``<f32>[seq_len, batch, 8H]`` from :meth:`project` (any linear rescaling of it).
          mask: ``<bool>[seq_len, batch]``, True at real tokens (a prefix of each column).
        Returns:
          outputs and final state as :meth:`encode`.
        """
        if self.impl == "scan":
            return self._final(*scan_bilstm(proj, self.bias[...], mask, self.w_hh[...]))
        h4 = 4 * self.hidden_size
        return self._final(*_recurrence(proj[..., :h4], proj[..., h4:], self.bias[...], jnp.asarray(mask),
                                        self.w_hh[...]))

    def recur_selected(self, proj: jax.Array, proj_mask: jax.Array, keep: jax.Array,
                       mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """:meth:`recur_time_major` on ``n`` perturbed copies of ``proj`` (see :func:`select_recurrence`).

        Args:
          proj: ``<f32>[seq_len, batch, 8H]``; proj_mask: ``<f32>[8H]``.
          keep: ``<bool>[seq_len, n, batch]``: copy ``s`` keeps ``proj[t, b]`` at ``t``, else ``proj_mask``.
          mask: ``<bool>[seq_len, n * batch]``: real tokens of the copies (row ``s * batch + b``).
        Returns:
          outputs ``<f32>[seq_len, n * batch, 2H]`` and final state ``<f32>[n * batch, 2H]``.
        """
        if self.impl == "scan":  # the reference: build the copies
            steps, n, batch = keep.shape
            p = jnp.where(keep[..., None], proj[:, None], proj_mask).reshape(steps, n * batch, -1)
            return self.recur_time_major(p, mask)
        return self._final(*select_recurrence(proj, proj_mask, keep, self.bias[...], jnp.asarray(mask),
                                              self.w_hh[...]))

    def clean_states(self, proj: jax.Array, mask: jax.Array):
        """What :meth:`recur_leave_one_out` reuses of the clean run (:func:`clean_states`; None for
        the scan reference, which builds every copy). ``proj <f32>[T, B, 8H]``, ``mask <bool>[T, B]``."""
        if self.impl == "scan":
            return None
        return clean_states(proj, self.bias[...], jnp.asarray(mask), self.w_hh[...])

    def recur_leave_one_out(self, proj: jax.Array, proj_mask: jax.Array, removable: jax.Array, mask: jax.Array,
                            clean, groups: jax.Array) -> jax.Array:
        """Outputs of the copies of ``proj`` with one position removed (:func:`leave_one_out_recurrence`).

        Args:
          proj: ``<f32>[T, B, 8H]``; proj_mask: ``<f32>[8H]``; removable, mask: ``<bool>[T, B]``.
          clean: :meth:`clean_states`; groups: ``<int32>[G]``.
        Returns:
          ``<f32>[T, 2, G, B, 2H]``: ``[:, 0, j]`` without position ``groups[j]``, ``[:, 1, j]``
          without ``T - 1 - groups[j]``.
        """
        if self.impl == "scan":  # the reference: the copies through recur_selected
            steps, batch = mask.shape
            removed = jnp.stack([groups, steps - 1 - groups])  # [2, G]
            keep = ~((jnp.arange(steps)[:, None, None] == removed[None]).reshape(steps, -1, 1) & removable[:, None])
            hs, _ = self.recur_selected(proj, proj_mask, keep, jnp.tile(mask, (1, keep.shape[1])))
            return hs.reshape(steps, 2, groups.shape[0], batch, -1)
        return leave_one_out_recurrence(proj, proj_mask, removable, self.bias[...], jnp.asarray(mask),
                                        self.w_hh[...], clean, groups)

    def recur(self, proj: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """:meth:`recur_time_major` for batch-major ``proj <f32>[batch, seq_len, 8H]`` and
        ``mask <bool>[batch, seq_len]``; outputs ``<f32>[batch, seq_len, 2H]``, final ``<f32>[batch, 2H]``."""
        hs, final = self.recur_time_major(jnp.swapaxes(proj, 0, 1), jnp.swapaxes(mask, 0, 1))
        return jnp.swapaxes(hs, 0, 1), final

    def __call__(self, emb: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Batch-major ``emb <f32>[batch, seq_len, input]``, ``mask <bool>[batch, seq_len]``; see :meth:`recur`."""
        return self.recur(self.project(emb), mask)
