"""Several seeds trained together (vmapped) vs one after another.

  python benchmarks/multiseed.py --models 5 --train-size 2000 --repeats 3          # in one process
  python benchmarks/multiseed.py --cli --models 5 --repeats 3                      # whole command lines

In-process: both sides train the same models (same seeds, data, batches) for one
epoch after a warm-up epoch that compiles, so this isolates the training
arithmetic. ``--cli``: what a user pays: ``--models`` separate
``python -m nlproar_jax.train --config=configs/synthetic.py --config.seed=S`` runs
vs one run with ``--config.num_seeds``, each in a fresh persistent dir (start-up,
data, compilation, training, evaluation, checkpoints all included). The two sides
are interleaved per repeat; medians are reported, one JSON object per line.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
from flax import nnx

from nlproar_jax.data.dataset import encode_task
from nlproar_jax.data.synthetic import load as load_synthetic
from nlproar_jax.models import build_model
from nlproar_jax.training.loop import fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=5)
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--embedding", type=int, default=50)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=50)
    p.add_argument("--lstm-impl", default="auto", choices=("auto", "scan", "chunked"),
                   help="in-process: the BiLSTM kernel (auto = what a ROAR run uses)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--cli", action="store_true", help="time whole command lines instead")
    p.add_argument("--ways", nargs="+", default=["separate", "stacked"],
                   choices=["separate", "stacked", "stacked_host"],
                   help="in-process: which sides to time (stacked alone: the many-models scaling curve; "
                        "stacked_host: the same with its batches built on the host, fit(device_data=False), "
                        "where stacked uses fit's default, batches gathered on an accelerator)")
    p.add_argument("--config", default="configs/synthetic.py", help="with --cli: the task config")
    a = p.parse_args()
    if a.cli:
        return emit(cli_rows(a), a.out)

    data = encode_task(load_synthetic(train_size=a.train_size, val_size=200, test_size=10,
                                      min_length=a.max_length // 2, max_length=a.max_length))
    seeds = list(range(a.models))
    models = [build_model(paired=False, vocab_size=len(data.vocab), num_classes=2, embedding_dim=a.embedding,
                          hidden_size=a.hidden, seed=s, lstm_impl=a.lstm_impl) for s in seeds]
    graphdef = nnx.split(models[0])[0]
    params = [nnx.split(m)[1] for m in models]
    kw = dict(batch_size=a.batch, monitor="auroc", no_decay=models[0].no_weight_decay)
    train, val = data.splits["train"], data.splits["val"]

    def separate(epochs):
        for s, prm in zip(seeds, params):
            r = fit(graphdef, [prm], [train], [val], [s], epochs=epochs, **kw)[0]
            jax.block_until_ready(jax.tree.leaves(r.best_params))

    def together(epochs, device_data=None):
        rs = fit(graphdef, params, [train] * a.models, [val] * a.models, seeds, epochs=epochs,
                 device_data=device_data, **kw)
        jax.block_until_ready(jax.tree.leaves(rs[-1].best_params))

    ways = {"separate": separate, "stacked": together, "stacked_host": lambda e: together(e, device_data=False)}
    ways = {name: ways[name] for name in ways if name in a.ways}
    for fn in ways.values():
        fn(1)  # compile every bucket
    times = {name: [] for name in ways}
    for _ in range(a.repeats):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            fn(1)
            times[name].append(time.perf_counter() - t0)
    device = jax.devices()[0]
    common = {"models": a.models, "train_size": a.train_size, "batch": a.batch, "embedding": a.embedding,
              "hidden": a.hidden, "max_length": a.max_length, "repeats": a.repeats, "lstm_impl": a.lstm_impl,
              "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "jax": jax.__version__,
              "hostname": platform.node()}
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"figure": f"train_{name}", "seconds_per_model_epoch": med / a.models,
                     "examples_per_s": a.train_size * a.models / med,
                     "examples_per_s_per_model": a.train_size / med, "times": ts, **common})
    if {"separate", "stacked"} <= set(times):
        rows.append({"figure": "stacked_speedup_per_model",
                     "ratio": statistics.median(times["separate"]) / statistics.median(times["stacked"]), **common})
    emit(rows, a.out)


def cli_rows(a) -> list[dict]:
    import os
    import subprocess
    import sys
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(args, workdir):
        cmd = [sys.executable, "-m", "nlproar_jax.train", f"--config={a.config}",
               f"--config.persistent_dir={workdir}", *args]
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)

    times = {"separate": [], "stacked": []}
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            t0 = time.perf_counter()
            for s in range(a.models):
                run([f"--config.seed={s}"], d1)
            times["separate"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run([f"--config.num_seeds={a.models}"], d2)
            times["stacked"].append(time.perf_counter() - t0)
    device = jax.devices()[0]
    common = {"mode": "cli", "config": a.config, "models": a.models, "repeats": a.repeats,
              "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "jax": jax.__version__,
              "hostname": platform.node()}
    rows = [{"figure": f"cli_{name}", "seconds_per_model": statistics.median(ts) / a.models, "times": ts, **common}
            for name, ts in times.items()]
    rows.append({"figure": "stacked_speedup_per_model",
                 "ratio": statistics.median(times["separate"]) / statistics.median(times["stacked"]), **common})
    return rows


def emit(rows: list[dict], out) -> None:
    lines = [json.dumps(r) for r in rows]
    print("\n".join(lines))
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
