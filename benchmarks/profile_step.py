"""Where a training step's time goes: XLA CPU ops of one step, in order, from a profiler trace.

    python benchmarks/profile_step.py --length 250 [--cpus 1] [--min-ms 1]

Builds the benchmark's single-sequence model (vocabulary 20k, embedding 300, hidden 128,
batch 32, full-length rows), runs a few warm-up steps, traces ``--steps`` more with
``jax.profiler`` (XLA's per-op trace events on), and prints the last step's ops longer
than ``--min-ms`` (start offset, duration, op name as in the optimised HLO), then the
step's total. Like throughput.py it re-runs itself under ``glibc.malloc.hugetlb=1``
unless ``--malloc-hugetlb 0``. Numbers from a trace run are a little slower than
untraced ones: use them for proportions, and throughput.py for speed.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=250)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--vocab", type=int, default=20000)
    p.add_argument("--embedding", type=int, default=300)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--min-ms", type=float, default=1.0)
    p.add_argument("--cpus", type=int, default=0, help="pin to the first N allowed CPUs (0: all)")
    p.add_argument("--lstm-impl", default="auto", choices=("auto", "scan", "chunked"),
                   help="the BiLSTM kernel; auto = what a ROAR run uses (chunked on a CPU backend)")
    p.add_argument("--malloc-hugetlb", type=int, default=1, choices=(0, 1))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from nlproar_jax.runtime.malloc import reexec_with_hugetlb

    if argv is None and args.malloc_hugetlb:
        reexec_with_hugetlb([sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    if args.cpus:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cpus])
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

    import jax
    import numpy as np
    from flax import nnx
    from jax.profiler import ProfileData

    from benchmarks.throughput import make_tokens
    from nlproar_jax.data.batching import Batch
    from nlproar_jax.models import build_model
    from nlproar_jax.training.optim import original_optimizer
    from nlproar_jax.training.loop import TrainState, train_step

    model = build_model(paired=False, vocab_size=args.vocab, num_classes=2, embedding_dim=args.embedding,
                        hidden_size=args.hidden, seed=0, lstm_impl=args.lstm_impl)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    batch = jax.device_put(Batch(make_tokens(rng, args.batch, args.length, args.vocab),
                                 rng.integers(0, 2, args.batch).astype(np.int32),
                                 np.arange(args.batch, dtype=np.int32), np.ones(args.batch, np.float32), None))
    tx = original_optimizer(tuple(model.no_weight_decay), 1e-3, 1e-5)
    state = TrainState(params, tx.init(params))
    for _ in range(3):
        state, loss = train_step(graphdef, tx, state, batch)
        loss.block_until_ready()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                state, loss = train_step(graphdef, tx, state, batch)
                loss.block_until_ready()
        profile = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
    events = sorted((ev.start_ns, ev.duration_ns, line.name, ev.name)
                    for plane in profile.planes for line in plane.lines for ev in line.events)
    start = max(s for s, _, _, name in events if name.startswith("PjitFunction"))  # the last step's dispatch
    ops = [e for e in events if e[0] >= start and "Eigen" in e[2] and not e[3].startswith("ThunkExecutor")]
    print(f"train step ({model.encoder.impl} BiLSTM kernel), batch {args.batch}, length {args.length}, "
          f"{len(os.sched_getaffinity(0))} CPU(s); "
          f"ops over {args.min_ms} ms (ms from the step's start, duration, thread, op):")
    for s, d, thread, name in ops:
        if d >= args.min_ms * 1e6:
            print(f"{(s - start) / 1e6:8.1f} {d / 1e6:8.2f}  {thread[-6:]}  {name}")
    end = max(s + d for s, d, *_ in ops)
    print(f"step: {(end - start) / 1e6:.1f} ms from dispatch to its last op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
