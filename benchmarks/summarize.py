"""Markdown table from ``throughput.py`` JSON lines: ``python benchmarks/summarize.py results.jsonl``.

One row per (tag, figure, length[, torch implementation]) (``tag``: throughput.py's ``--tag``): JAX examples/s, the fastest PyTorch
examples/s over the timed thread counts (with that count), their ratio, and the ratio against
each timed thread count.
"""
from __future__ import annotations

import json
import sys


def table(rows: list[dict]) -> str:
    jax_rows = {(r.get("tag"), r["figure"], r["length"]): r for r in rows if r["framework"] == "jax"}
    torch_rows = {(r.get("tag"), r["figure"], r["length"], r.get("impl", ""), r.get("torch_threads")): r
                  for r in rows if r["framework"] == "torch"}
    ratios = [r for r in rows if r["framework"] == "jax/torch"]
    lines = ["| figure | length | jax ex/s (samples min-max) | torch ex/s (samples min-max) [threads] "
             "| ratio jax/torch | ratio by torch threads |", "|---|---|---|---|---|---|"]
    seen = set()

    def spread(r):
        s = r["samples_examples_per_s"]
        return f"{r['examples_per_s']:.4g} ({min(s):.3g}-{max(s):.3g})"

    for r in ratios:
        name = (f"[{r['tag']}] " if r.get("tag") else "") + r["figure"] + (f" ({r['impl']})" if r.get("impl") else "")
        j = jax_rows[(r.get("tag"), r["figure"], r["length"])]
        t = torch_rows[(r.get("tag"), r["figure"], r["length"], r.get("impl", ""), r["torch_threads"])]
        by = ", ".join(f"{n}: {v:.2f}" for n, v in sorted(r.get("ratios_by_torch_threads", {}).items()))
        lines.append(f"| {name} | {r['length']} | {spread(j)} | {spread(t)} [{r['torch_threads']}] "
                     f"| {r['ratio']:.2f} | {by} |")
        seen.add((r.get("tag"), r["figure"], r["length"]))
    for key, r in jax_rows.items():
        if key not in seen:
            lines.append(f"| {r['figure']} | {r['length']} | {spread(r)} | - | - | - |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = []
    for path in argv:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
