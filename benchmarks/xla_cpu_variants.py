"""The XLA:CPU measurements behind the BiLSTM's design (benchmarks/RESULTS.md, section 1).

    python benchmarks/xla_cpu_variants.py cell     # LSTM cell: gate activations on column slices vs whole rows
    python benchmarks/xla_cpu_variants.py dot      # the recurrence's per-step dot, several formulations
    python benchmarks/xla_cpu_variants.py chunks   # whole train step at length 250 with 1 to 16 time chunks (+ scan)
    python benchmarks/xla_cpu_variants.py flags    # whole train step under XLA compiler options

Each variant is a jitted function timed in the same process, interleaved (order alternating per
repeat), median of ``--repeats`` samples; one JSON object per line with the machine recorded.
``cell`` and ``dot`` are ``lax.scan`` / ``fori_loop`` microbenchmarks over ``--steps`` steps of
batch 32, H 128 (the benchmark model); ``chunks`` and ``flags`` time
``nlproar_jax.training.loop._train_step`` on the throughput benchmark's model and batch (vocabulary 20k,
embedding 300, full-length rows) and record each variant's trace + compile time (``compile_s``):
``chunks`` with the chunked BiLSTM kernel (and the scan reference, ``lstm_impl="scan"``, beside
it), ``flags`` with ``lstm_impl="auto"`` (what a ROAR run uses).
Like throughput.py this re-runs itself under
``glibc.malloc.hugetlb=1`` unless ``--malloc-hugetlb 0``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("cell", "dot", "chunks", "flags"))
    p.add_argument("--steps", type=int, default=250, help="scan steps (cell, dot) or sequence length (chunks, flags)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--malloc-hugetlb", type=int, default=1, choices=(0, 1))
    p.add_argument("--out", help="also append the JSON lines to this file")
    return p.parse_args(argv)


def cell_variants(steps, batch, hidden):
    """One LSTM direction's forward scan; the two variants compute the same values."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.standard_normal((steps, batch, 4 * hidden), np.float32))
    w = jnp.asarray(rng.standard_normal((hidden, 4 * hidden), np.float32) * 0.05)
    is_g = (jnp.arange(4 * hidden) // hidden) == 2

    def sliced(g):
        return (jax.nn.sigmoid(g[:, :hidden]), jax.nn.sigmoid(g[:, hidden:2 * hidden]),
                jnp.tanh(g[:, 2 * hidden:3 * hidden]), jax.nn.sigmoid(g[:, 3 * hidden:]))

    def whole_rows(g):  # what nlproar_jax.models.bilstm does
        a = jnp.where(is_g, jnp.tanh(g), jax.nn.sigmoid(g))
        return a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:3 * hidden], a[:, 3 * hidden:]

    def scan(activations):
        def run(u, w):
            def step(carry, u_t):
                h, c = carry
                i, f, g, o = activations(u_t + h @ w)
                c = f * c + i * g
                return (o * jnp.tanh(c), c), None
            zeros = jnp.zeros((batch, hidden))
            return jax.lax.scan(step, (zeros, zeros), u)[0][0]
        return run

    return {"cell: gates on column slices": (scan(sliced), (u, w)),
            "cell: gates on whole rows": (scan(whole_rows), (u, w))}


def dot_variants(steps, batch, hidden):
    """``steps`` dependent recurrent products of both directions (the loop carries h)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    h0 = jnp.asarray(rng.standard_normal((2, batch, hidden), np.float32))
    w = jnp.asarray(rng.standard_normal((2, hidden, 4 * hidden), np.float32) * 0.05)
    w_t = jnp.swapaxes(w, 1, 2)

    def loop(product):
        return lambda h, w: jax.lax.fori_loop(0, steps, lambda _, h: jnp.tanh(product(h, w)), h).sum()

    return {
        "dot: batched [2,B,H]x[2,H,4H] (used)": (loop(lambda h, w: jnp.einsum("dbh,dhg->dbg", h, w)[..., :hidden]),
                                                 (h0, w)),
        "dot: two separate [B,H]x[H,4H]": (loop(lambda h, w: jnp.stack([(h[0] @ w[0])[:, :hidden],
                                                                       (h[1] @ w[1])[:, :hidden]])), (h0, w)),
        "dot: W stored [2,4H,H]": (loop(lambda h, w: jnp.einsum("dbh,dgh->dbg", h, w)[..., :hidden]), (h0, w_t)),
        "dot: transposed W^T h^T -> [2,4H,B]": (loop(lambda h, w: jnp.einsum("dgh,dhb->dgb", w, h)[:, :hidden, :]),
                                                (jnp.swapaxes(h0, 1, 2), w_t)),
    }


def train_step_variants(what, steps, batch, hidden):
    """The train step on the throughput benchmark's model: with forced chunk counts, or under
    XLA compiler options. Each variant trains its own copy of the state (donated)."""
    import jax
    import numpy as np
    from flax import nnx

    import nlproar_jax.models.bilstm as bilstm
    from benchmarks.throughput import make_tokens
    from nlproar_jax.data.batching import Batch
    from nlproar_jax.models import build_model
    from nlproar_jax.training.optim import original_optimizer
    from nlproar_jax.training.loop import TrainState, _train_step

    rng = np.random.default_rng(0)
    batch_ = jax.device_put(Batch(make_tokens(rng, batch, steps, 20000), rng.integers(0, 2, batch).astype(np.int32),
                                  np.arange(batch, dtype=np.int32), np.ones(batch, np.float32), None))
    # name -> (XLA compiler options, forced chunk count or None, lstm_impl)
    if what == "chunks":
        cases = {f"train step: {c} time chunk(s)": ({}, c, "chunked") for c in (1, 2, 4, 8, 12, 16)}
        cases["train step: scan reference (lstm_impl=scan)"] = ({}, None, "scan")
    else:
        cases = {"train step: default options": ({}, None, "auto"),
                 "train step: Eigen dots (no YNNPACK)": ({"xla_cpu_experimental_ynn_fusion_type": ""}, None, "auto"),
                 "train step: old fusion emitters": ({"xla_cpu_use_fusion_emitters": False}, None, "auto"),
                 "train step: fast math (approximate; not used)": ({"xla_cpu_enable_fast_math": True}, None, "auto")}
    variants = {}
    default_chunks = bilstm.default_chunks
    for name, (options, chunks, impl) in cases.items():
        model = build_model(paired=False, vocab_size=20000, num_classes=2, embedding_dim=300, hidden_size=hidden,
                            seed=0, lstm_impl=impl)
        graphdef, params = nnx.split(model)
        tx = original_optimizer(tuple(model.no_weight_decay), 1e-3, 1e-5)
        # A fresh function per variant: jax caches traces by function and static arguments, so
        # jitting ``_train_step`` itself would reuse the first variant's trace (chunk count).
        step = jax.jit(lambda *a: _train_step(*a), static_argnums=(0, 1), donate_argnums=(2,),
                       compiler_options=options)
        holder = [TrainState(params, tx.init(params))]

        def run(step=step, graphdef=graphdef, tx=tx, holder=holder):
            holder[0], loss = step(graphdef, tx, holder[0], batch_)
            return loss

        if chunks is not None:  # the chunk count is read when the step is traced: trace it now
            bilstm.default_chunks = lambda *_, c=chunks: c
        try:
            t0 = time.perf_counter()  # trace + compile (an AOT compile, not kept) ...
            step.lower(graphdef, tx, holder[0], batch_).compile()
            compile_s = time.perf_counter() - t0
            jax.block_until_ready(run())  # ... then the jitted step's own compile and first call
        finally:
            bilstm.default_chunks = default_chunks
        variants[name] = (lambda run=run: run(), (), {"compile_s": compile_s})
    return variants


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from nlproar_jax.runtime.malloc import reexec_with_hugetlb

    if argv is None and args.malloc_hugetlb:
        reexec_with_hugetlb([sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    import jax

    from benchmarks.throughput import cpu_model

    if args.what == "cell":
        variants = cell_variants(args.steps, args.batch, args.hidden)
    elif args.what == "dot":
        variants = dot_variants(args.steps, args.batch, args.hidden)
    else:
        variants = train_step_variants(args.what, args.steps, args.batch, args.hidden)
    fns = {}
    extras = {}  # per-variant fields for the JSON line (the train step's compile time)
    for name, (fn, fn_args, *extra) in variants.items():
        fn = jax.jit(fn) if fn_args else fn
        jax.block_until_ready(fn(*fn_args))  # compile
        fns[name] = (fn, fn_args)
        extras[name] = extra[0] if extra else {}
    samples = {name: [] for name in fns}
    for rep in range(args.repeats):
        for name in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):
            fn, fn_args = fns[name]
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*fn_args))
            samples[name].append(time.perf_counter() - t0)
    device = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
              "python": platform.python_version(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    out = open(args.out, "a") if args.out else None
    per_step = args.what in ("cell", "dot")
    for name, s in samples.items():
        median = statistics.median(s)
        row = {"benchmark": args.what, "variant": name, "steps": args.steps, "batch": args.batch,
               "hidden": args.hidden, "median_ms": 1e3 * median, "samples_ms": [1e3 * x for x in s],
               **({"us_per_step": 1e6 * median / args.steps} if per_step else {}), **extras[name],
               "device": device}
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
