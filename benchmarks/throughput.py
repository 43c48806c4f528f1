"""Throughput of training and of every importance measure, JAX and (optionally) PyTorch + Captum.

    python benchmarks/throughput.py --batch 32 --length 50 250 --torch --out benchmarks/results.jsonl

prints one JSON object per line and figure: ``framework`` ("jax" / "torch" / "jax/torch" for the
ratio row), ``figure`` ("train" or a measure name), ``batch``, ``length``, ``examples_per_s`` (median
over ``repeats`` timed samples), ``tokens_per_s``, the per-sample values, the device, versions and
every setting. With ``--torch`` the two frameworks run in the same process, interleaved per repeat
(order alternating), so machine noise hits both alike. Each sample runs enough calls to last
``--min-time`` seconds, after a warm-up (compilation) that is not timed; JAX results are
``block_until_ready``-ed.

The model is the task model (vocab 20k, embedding 300, BiLSTM 128 per direction by default) with
random parameters; every row is full length (``[CLS]`` words ``[EOS]``, no padding), so both
frameworks do the same work. PyTorch's figures are the original's implementation
(``benchmarks/torch_reference.py``): the gradient measure computes the full ``B x T x V`` product
as the original does (``--torch-gradient efficient`` for ``E^T E``); integrated gradients is
Captum's ``IntegratedGradients`` (textbook IG, which is why JAX runs ``--ig-variant textbook`` by
default; both variants cost the same), or the original's sequential loop (``--torch-ig loop``).

The sampled and perturbation measures (``smoothgrad``, ``smoothgrad_times_input``, ``gradient_shap``,
``occlusion``, ``lime``, ``kernel_shap``) run against their Captum counterparts on the same weights
(``NoiseTunnel(Saliency)``, ``NoiseTunnel(InputXGradient)``, ``GradientShap``, ``Occlusion``,
``Lime``, ``KernelShap``; ``benchmarks/torch_reference.py`` says how each is set up) with the same
sample counts (``--samples-*``), which every JSON line records with the JAX measure's options
(``measure_options``) and Captum's settings (``captum``). ``--captum-batch`` sets Captum's
``perturbations_per_eval`` / ``nt_samples_batch_size``; ``--check`` compares the two frameworks'
attributions on small shapes instead of timing (``framework: "check"`` lines).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

FIGURES = ("train", "random", "mutual_information", "attention", "gradient", "input_times_gradient",
           "integrated_gradient", "smoothgrad", "smoothgrad_times_input", "gradient_shap", "occlusion", "lime",
           "kernel_shap")
SAMPLED = ("smoothgrad", "smoothgrad_times_input", "gradient_shap")  # gradient measures over samples
PERTURBATION = ("occlusion", "lime", "kernel_shap")                   # masked forward passes
NEW_MEASURES = SAMPLED + PERTURBATION
# Captum's batching of samples when --captum-batch does not say: perturbations_per_eval (occlusion,
# lime, kernel_shap) or NoiseTunnel's nt_samples_batch_size (0 = all samples at once); the fastest
# of those tried with one PyTorch thread on one core of this project's 2-core VM (benchmarks/RESULTS.md,
# section A).
CAPTUM_BATCH = {"smoothgrad": 5, "smoothgrad_times_input": 5, "occlusion": 1, "lime": 16, "kernel_shap": 64,
                ("kernel_shap", 250): 16}


def _key_values(items, parse=int):
    """``FIGURE=VALUE`` (or ``FIGURE:LENGTH=VALUE``, for one length only) -> ``{FIGURE or (FIGURE, LENGTH): value}``."""
    out = {}
    for item in items or ():
        name, _, value = item.partition("=")
        name, _, length = name.partition(":")
        if name not in FIGURES or not value or (length and not length.isdigit()):
            raise SystemExit(f"expected FIGURE[:LENGTH]=VALUE with FIGURE one of {FIGURES}, got {item!r}")
        out[(name, int(length)) if length else name] = parse(value)
    return out


def _for_length(mapping, figure, length, default=None):
    """The ``FIGURE:LENGTH`` entry of a :func:`_key_values` mapping, else its ``FIGURE`` entry."""
    return mapping.get((figure, length), mapping.get(figure, default))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, nargs="+", default=[50], help="main-sequence length(s), [CLS]/[EOS] included")
    p.add_argument("--vocab", type=int, default=20000)
    p.add_argument("--embedding", type=int, default=300)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--ig-variant", default="textbook", choices=("textbook", "alpha_weighted"))
    p.add_argument("--ig-chunk", type=int, default=-1,
                   help="JAX IG points per vmapped chunk: -1 = what a ROAR run uses "
                        "(nlproar_jax.roar.scores.ig_chunk_size), 0 = all at once, N = N")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per timed sample (at least one call)")
    p.add_argument("--paired", action="store_true", help="the paired model (SNLI / bAbI shape)")
    p.add_argument("--lstm-impl", default="auto", choices=("auto", "scan", "chunked"),
                   help="the BiLSTM kernel (nlproar_jax.models.bilstm): auto = what a ROAR run uses "
                        "(config.lstm_impl's default: chunked on a CPU backend, else scan)")
    p.add_argument("--aux-length", type=int, default=16, help="auxiliary-sequence length with --paired")
    p.add_argument("--figures", nargs="+", default=list(FIGURES), choices=FIGURES)
    p.add_argument("--torch", action="store_true", help="also run PyTorch (+ Captum), interleaved")
    p.add_argument("--torch-device", default="cpu",
                   help="PyTorch's device (cuda: cuDNN's LSTM; also its default device, so the measures' own "
                        "tensors are made there, and every timed call ends with a synchronize)")
    p.add_argument("--torch-ig", default="captum", choices=("captum", "loop", "both"))
    p.add_argument("--torch-gradient", default="original", choices=("original", "efficient"))
    p.add_argument("--torch-threads", type=int, nargs="+", default=[0],
                   help="torch.set_num_threads value(s), each timed as its own torch variant (0 = torch's "
                        "default); on a loaded machine 2 OpenMP threads can be far slower than 1")
    p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX is imported")
    p.add_argument("--malloc-hugetlb", type=int, default=1, choices=(0, 1),
                   help="1: re-run this process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (malloc asks for "
                        "transparent huge pages), which both frameworks share; on this VM page faults on fresh "
                        "buffers cost up to a third of a training step. 0: the environment as it is")
    p.add_argument("--cpus", type=int, default=0,
                   help="N > 0: pin this process (both frameworks) to its first N allowed CPUs before either "
                        "starts, e.g. 1 for the per-core throughput that decides how fast a grid of "
                        "one-core runs goes; 0: every allowed CPU")
    p.add_argument("--samples-smoothgrad", type=int, default=50,
                   help="samples of smoothgrad and smoothgrad_times_input (both frameworks)")
    p.add_argument("--samples-gradient-shap", type=int, default=5, help="gradient_shap samples (both frameworks)")
    p.add_argument("--samples-lime", type=int, default=5000, help="lime samples (both frameworks)")
    p.add_argument("--samples-kernel-shap", type=int, default=2048, help="kernel_shap samples (both frameworks)")
    p.add_argument("--sigma", type=float, default=0.15,
                   help="SmoothGrad noise level (fraction of the embedding range; Captum: stdevs = sigma * range)")
    p.add_argument("--chunk", nargs="+", metavar="FIGURE[:LENGTH]=N",
                   help="JAX chunk_size of a new measure (samples per vmapped chunk), e.g. lime=8 or lime:250=16; "
                        "'auto' for the perturbation measures' auto_chunk; default: the measure's default")
    p.add_argument("--captum-batch", nargs="+", metavar="FIGURE[:LENGTH]=N",
                   help="Captum's perturbations_per_eval (occlusion, lime, kernel_shap) or nt_samples_batch_size "
                        "(smoothgrad, smoothgrad_times_input; 0 = all samples at once); default "
                        f"{CAPTUM_BATCH}")
    p.add_argument("--lime-sampling", default="lime_text", choices=("lime_text", "bernoulli"),
                   help="Captum Lime's perturbations: the lime package's text sampling (as nlproar_jax) or "
                        "Captum's default Bernoulli(0.5) per feature")
    p.add_argument("--check", action="store_true",
                   help="instead of timing: compare the new measures' JAX and Captum attributions on small "
                        "shapes (--check-batch, --check-length) and print one JSON line per comparison")
    p.add_argument("--check-batch", type=int, default=4)
    p.add_argument("--check-length", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", help="recorded in every JSON line (summarize.py keeps runs with different tags apart)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    args = p.parse_args(argv)
    args.chunk = _key_values(args.chunk, lambda v: None if v == "auto" else int(v))
    given = _key_values(args.captum_batch)
    # a FIGURE=N on the command line replaces every default of that figure
    args.captum_batch = {**{k: v for k, v in CAPTUM_BATCH.items() if (k[0] if isinstance(k, tuple) else k) not in given},
                         **given}
    for figure in FIGURES:  # ... and a FIGURE:LENGTH=N alone keeps the default elsewhere
        if figure not in args.captum_batch and figure in CAPTUM_BATCH:
            args.captum_batch[figure] = CAPTUM_BATCH[figure]
    return args


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def make_tokens(rng, batch: int, length: int, vocab: int):
    """``<int32>[batch, length]``: [CLS] words [EOS], every row full length (words are ids >= 3)."""
    import numpy as np

    tokens = rng.integers(3, vocab, size=(batch, length)).astype(np.int32)
    tokens[:, 0], tokens[:, -1] = 1, 2
    return tokens


class Timer:
    """Times ``fn`` (which must block until its result is ready) in samples of ``calls`` calls;
    ``setup`` (untimed) runs before the warm-up and before every sample."""

    def __init__(self, fn, min_time: float, setup=None):
        self.fn, self.setup = fn, setup or (lambda: None)
        self.setup()
        self.fn()  # compile / warm up (PyTorch's first calls of a shape are slow too)
        t0 = time.perf_counter()
        self.fn()
        once = time.perf_counter() - t0
        self.calls = max(1, math.ceil(min_time / max(once, 1e-6)))
        self.samples: list[float] = []  # seconds per call

    def sample(self) -> None:
        self.setup()
        t0 = time.perf_counter()
        for _ in range(self.calls):
            self.fn()
        self.samples.append((time.perf_counter() - t0) / self.calls)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from nlproar_jax.runtime.malloc import reexec_with_hugetlb

    if argv is None and args.malloc_hugetlb:
        reexec_with_hugetlb([sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    if args.cpus:  # before JAX and PyTorch size their thread pools from the affinity mask
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cpus])
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import flax
    from flax import nnx

    from nlproar_jax.data.batching import Batch
    from nlproar_jax import importance
    from nlproar_jax.roar.scores import score_batch
    from nlproar_jax.models import build_model
    from nlproar_jax.training.optim import original_optimizer
    from nlproar_jax.training.loop import TrainState, train_step

    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "flax": flax.__version__, "numpy": np.__version__}
    if args.torch:
        import torch
        import captum

        from benchmarks import torch_reference as tr

        default_threads = torch.get_num_threads()
        thread_counts = [n or default_threads for n in args.torch_threads]
        versions.update(torch=torch.__version__, captum=captum.__version__)
        torch.manual_seed(args.seed)

    device = {"jax_device": str(jax.devices()[0].device_kind), "jax_platform": jax.devices()[0].platform,
              "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus_used": len(os.sched_getaffinity(0)),
              "torch_default_threads": default_threads if args.torch else None,
              "xla_flags": os.environ.get("XLA_FLAGS", ""), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
              "transparent_hugepage": _read("/sys/kernel/mm/transparent_hugepage/enabled")}
    if args.check:
        return run_checks(args, versions, device)
    settings = {"vocab": args.vocab, "embedding": args.embedding, "hidden": args.hidden, "classes": args.classes,
                "ig_steps": args.ig_steps, "ig_variant": args.ig_variant, "ig_chunk": args.ig_chunk,
                "repeats": args.repeats, "median": True, "min_time": args.min_time,
                "paired": args.paired, "aux_length": args.aux_length if args.paired else None,
                "torch_ig": args.torch_ig if args.torch else None,
                "torch_gradient": args.torch_gradient if args.torch else None,
                **({"tag": args.tag} if args.tag else {})}
    out = open(args.out, "a") if args.out else None

    def emit(row):
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    model = build_model(paired=args.paired, vocab_size=args.vocab, num_classes=args.classes,
                        embedding_dim=args.embedding, hidden_size=args.hidden, seed=args.seed,
                        lstm_impl=args.lstm_impl)
    settings.update(lstm_impl=args.lstm_impl, lstm_impl_used=model.encoder.impl)
    graphdef, params = nnx.split(model)
    mi_table = jnp.asarray(np.random.default_rng(args.seed).random(args.vocab, dtype=np.float32))
    key = jax.random.key(args.seed)
    if args.torch:
        torch.set_default_device(args.torch_device)
        torch_model = tr.from_jax(model).to(args.torch_device)
        torch_table = torch.from_numpy(np.array(mi_table)).to(args.torch_device)
        generator = torch.Generator(device=args.torch_device).manual_seed(args.seed)
        synchronize = torch.cuda.synchronize if args.torch_device.startswith("cuda") else (lambda: None)
        settings["torch_device"] = args.torch_device

    for length in args.length:
        rng = np.random.default_rng([args.seed, length])
        tokens = make_tokens(rng, args.batch, length, args.vocab)
        labels = rng.integers(0, args.classes, args.batch).astype(np.int32)
        aux = make_tokens(rng, args.batch, args.aux_length, args.vocab) if args.paired else None
        batch = jax.device_put(Batch(tokens, labels, np.arange(args.batch, dtype=np.int32),
                                     np.ones(args.batch, np.float32), aux))
        if args.torch:
            t_tokens = torch.from_numpy(tokens.astype(np.int64)).to(args.torch_device)
            t_labels = torch.from_numpy(labels.astype(np.int64)).to(args.torch_device)
            t_aux = None if aux is None else torch.from_numpy(aux.astype(np.int64)).to(args.torch_device)

        chunk = args.ig_chunk
        if chunk < 0:
            from nlproar_jax.roar.scores import ig_chunk_size

            chunk = ig_chunk_size(args.batch, length, args.hidden, args.ig_steps)
        options = dict(steps=args.ig_steps, variant=args.ig_variant, chunk_size=chunk)
        settings["ig_chunk_used"] = chunk or args.ig_steps
        for figure in args.figures:
            figure_settings = {}
            if figure in NEW_MEASURES:
                measure = importance.get(figure, **new_measure_options(figure, args, length))
                figure_settings = describe_new_measure(figure, measure, args, args.batch, length)
                jax_fn = _score_fn(measure, graphdef, params, batch, key, score_batch)
            else:
                jax_fn = _jax_fn(figure, graphdef, params, batch, key, options, mi_table, args,
                                 jax=jax, original_optimizer=original_optimizer, TrainState=TrainState,
                                 train_step=train_step, importance=importance, score_batch=score_batch, model=model)
            timers = {"jax": Timer(jax_fn, args.min_time)}
            if args.torch:
                impls = ([args.torch_ig] if args.torch_ig != "both" else ["captum", "loop"]) \
                    if figure == "integrated_gradient" else [None]
                for impl in impls:
                    for n in thread_counts:
                        fn = _torch_fn(figure, impl, torch_model, t_tokens, t_labels, t_aux, torch_table,
                                       generator, args, torch=torch, tr=tr)
                        timers[f"torch:{impl or ''}:{n}"] = Timer(lambda fn=fn: (fn(), synchronize()), args.min_time,
                                                                 lambda n=n: torch.set_num_threads(n))
            names = list(timers)
            for r in range(args.repeats):  # interleaved, the order alternating per repeat
                for name in (names if r % 2 == 0 else names[::-1]):
                    timers[name].sample()
            medians = {}
            for name, timer in timers.items():
                framework, impl, threads = (name.split(":") + ["", ""])[:3]
                seconds = statistics.median(timer.samples)
                medians[name] = args.batch / seconds
                emit({"framework": framework, "figure": figure, **({"impl": impl} if impl else {}),
                      **({"torch_threads": int(threads)} if threads else {}),
                      "batch": args.batch, "length": length, "examples_per_s": medians[name],
                      "tokens_per_s": medians[name] * length, "seconds_per_call": seconds,
                      "samples_examples_per_s": [args.batch / s for s in timer.samples],
                      "calls_per_sample": timer.calls, **settings, **figure_settings, "device": device,
                      "versions": versions})
            by_impl: dict[str, list[str]] = {}
            for name in names[1:]:
                by_impl.setdefault(name.split(":")[1], []).append(name)
            for impl, variants in by_impl.items():
                best = max(variants, key=medians.get)  # the fastest torch thread count: a conservative ratio
                emit({"framework": "jax/torch", "figure": figure, **({"impl": impl} if impl else {}),
                      "batch": args.batch, "length": length, "ratio": medians["jax"] / medians[best],
                      "jax_examples_per_s": medians["jax"], "torch_examples_per_s": medians[best],
                      "torch_threads": int(best.split(":")[2]),
                      "ratios_by_torch_threads": {v.split(":")[2]: medians["jax"] / medians[v] for v in variants},
                      **settings, **figure_settings, "device": device, "versions": versions})
    if out:
        out.close()
    return 0


def run_checks(args, versions, device) -> int:
    """``--check``: the new measures' JAX scores against their Captum counterparts on the same weights,
    one JSON line each (``framework: "check"``): max absolute difference at the maskable positions,
    the largest score, their ratio and the correlation. Exact counterparts (occlusion; SmoothGrad x
    input at ``sigma = 0``, which is input x gradient through Captum's NoiseTunnel) should agree to
    float32 rounding; the sampled ones (gradient SHAP with the [MASK] baseline, KernelSHAP, LIME)
    draw different random samples, so they agree up to Monte-Carlo error, and KernelSHAP is also
    compared with the exact Shapley values (``exhaustive=True``)."""
    import jax
    import numpy as np
    import torch
    from flax import nnx

    from benchmarks import torch_reference as tr
    from nlproar_jax import importance
    from nlproar_jax.models import build_model
    from nlproar_jax.roar.scores import score_batch

    torch.manual_seed(args.seed)
    b, length = args.check_batch, args.check_length
    model = build_model(paired=False, vocab_size=args.vocab, num_classes=args.classes, embedding_dim=args.embedding,
                        hidden_size=args.hidden, seed=args.seed, lstm_impl=args.lstm_impl)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng([args.seed, length])
    tokens = make_tokens(rng, b, length, args.vocab)
    labels = rng.integers(0, args.classes, b).astype(np.int32)
    key, index = jax.random.key(args.seed), np.arange(b, dtype=np.int32)
    t_model = tr.from_jax(model)
    t_tokens, t_labels = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))
    interior = np.s_[:, 1:-1]
    out = open(args.out, "a") if args.out else None

    def jax_scores(name, **options):
        return np.asarray(score_batch(importance.get(name, **options), graphdef, params, tokens, labels, None, key,
                                      index))

    def compare(name, a, c, note, **extra):
        a, c = np.asarray(a)[interior], np.asarray(c)[interior]
        diff, scale = float(np.abs(a - c).max()), float(np.abs(a).max())
        row = {"framework": "check", "check": name, "batch": b, "length": length, "max_abs_diff": diff,
               "max_abs_score": scale, "relative": diff / scale, "correlation": float(np.corrcoef(a.ravel(), c.ravel())[0, 1]),
               "note": note, **extra, "device": device, "versions": versions}
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")

    for output in ("logit", "probability"):
        compare(f"occlusion ({output})", jax_scores("occlusion", signed=True, output=output),
                tr.occlusion_captum(t_model, t_tokens, t_labels, perturbations_per_eval=4, output=output, signed=True),
                "exact counterpart: Captum Occlusion, window (1, D), [MASK] baseline")
    compare("smoothgrad_times_input (sigma=0)", jax_scores("smoothgrad_times_input", samples=3, sigma=0.0, signed=True),
            tr.smoothgrad_times_input_captum(t_model, t_tokens, t_labels, samples=3, sigma=0.0, signed=True),
            "exact counterpart at sigma=0 (input x gradient through NoiseTunnel(InputXGradient))")
    n = 2000
    compare("gradient_shap (mask baseline)", jax_scores("gradient_shap", samples=n, baseline="mask", signed=True),
            tr.gradient_shap_captum(t_model, t_tokens, t_labels, samples=n, baselines="mask", signed=True),
            "Monte-Carlo: both estimate integrated gradients from the [MASK] baseline", samples=n)
    exact = jax_scores("kernel_shap", exhaustive=True, signed=True)
    captum_ks = tr.kernel_shap_captum(t_model, t_tokens, t_labels, samples=n, perturbations_per_eval=256, signed=True)
    compare("kernel_shap: JAX sampled vs JAX exact", jax_scores("kernel_shap", samples=n, signed=True), exact,
            "the JAX sampled estimate against the exact Shapley values (exhaustive=True)", samples=n)
    compare("kernel_shap: Captum vs JAX exact", exact, captum_ks,
            "Captum KernelShap's estimate against the exact Shapley values", samples=n)
    n = 5000
    compare("lime", jax_scores("lime", samples=n, signed=True),
            tr.lime_captum(t_model, t_tokens, t_labels, samples=n, perturbations_per_eval=256, signed=True,
                           sampling="lime_text"),
            "Monte-Carlo: same sampling law, kernel and ridge, different draws", samples=n)
    if out:
        out.close()
    return 0


def _jax_fn(figure, graphdef, params, batch, key, options, table, args, *, jax, original_optimizer, TrainState,
            train_step, importance, score_batch, model):
    if figure == "train":
        tx = original_optimizer(tuple(model.no_weight_decay), 1e-3, 1e-5)
        holder = [TrainState(jax.tree.map(lambda x: x.copy(), params), tx.init(params))]

        def step():
            holder[0], loss = train_step(graphdef, tx, holder[0], batch)
            loss.block_until_ready()
        return step

    # What a ROAR run calls per batch (nlproar_jax.roar.scores.score_batch), gold labels explained.
    measure = importance.get(figure, **(options if figure == "integrated_gradient" else
                                        {"table": table} if figure == "mutual_information" else {}))
    return lambda: score_batch(measure, graphdef, params, batch.tokens, batch.labels, batch.aux_tokens, key,
                               batch.index).block_until_ready()


def _score_fn(measure, graphdef, params, batch, key, score_batch):
    """What a ROAR run calls per batch (nlproar_jax.roar.scores.score_batch), gold labels explained;
    per-row keys from the example ids."""
    return lambda: score_batch(measure, graphdef, params, batch.tokens, batch.labels, batch.aux_tokens, key,
                               batch.index).block_until_ready()


def new_measure_options(figure, args, length: int) -> dict:
    """The options of ``importance.get(figure, ...)`` for a new measure: the sample counts of the
    command line (the rest the measure's defaults), ``--chunk`` when given."""
    options = {"smoothgrad": {"samples": args.samples_smoothgrad, "sigma": args.sigma},
               "smoothgrad_times_input": {"samples": args.samples_smoothgrad, "sigma": args.sigma},
               "gradient_shap": {"samples": args.samples_gradient_shap},
               "occlusion": {},
               "lime": {"samples": args.samples_lime},
               "kernel_shap": {"samples": args.samples_kernel_shap}}[figure]
    if (figure, length) in args.chunk or figure in args.chunk:
        options["chunk_size"] = _for_length(args.chunk, figure, length)
    return options


def describe_new_measure(figure, measure, args, batch: int, length: int) -> dict:
    """The JSON fields of a new measure's rows: its samples, the JAX measure's options (and the chunk
    it resolves to), the Captum counterpart and its settings."""
    import dataclasses

    from nlproar_jax.importance.perturbation import resolve_chunk

    options = {f.name: getattr(measure, f.name) for f in dataclasses.fields(measure)}
    samples = length + 1 if figure == "occlusion" else measure.samples  # model evaluations per row
    if figure in PERTURBATION:
        chunk_used = resolve_chunk(measure.chunk_size, samples, batch, length)
    else:
        chunk_used = min(measure.chunk_size or samples, samples)
    captum_batch = _for_length(args.captum_batch, figure, length)
    captum = {
        "smoothgrad": {"class": "NoiseTunnel(Saliency)", "nt_type": "smoothgrad", "nt_samples": samples,
                       "stdevs": "sigma * (max - min) of the batch's interior embeddings",
                       "nt_samples_batch_size": captum_batch or None, "reduce": "sum over D",
                       "note": "statistic differs: Captum averages elementwise |g| (summed over D here), "
                               "nlproar_jax averages ||E g||_2; same cost (one forward + backward per sample)"},
        "smoothgrad_times_input": {"class": "NoiseTunnel(InputXGradient)", "nt_type": "smoothgrad",
                                   "nt_samples": samples, "stdevs": "sigma * (max - min) of the batch's interior "
                                   "embeddings (nlproar_jax: per row)", "nt_samples_batch_size": captum_batch or None,
                                   "reduce": "|sum over D|"},
        "gradient_shap": {"class": "GradientShap", "n_samples": samples, "stdevs": 0.0,
                          "baselines": f"{batch * samples} random-token embedding rows (one drawn per row and "
                                       "sample, with replacement)", "reduce": "|sum over D|"},
        "occlusion": {"class": "Occlusion", "sliding_window_shapes": "(1, D)", "strides": "(1, D)",
                      "baselines": "[MASK] embedding", "perturbations_per_eval": captum_batch,
                      "reduce": "|mean over D|"},
        "lime": {"class": "Lime", "n_samples": samples, "interpretable_model": "SkLearnRidge(alpha=1.0)",
                 "similarity_func": "lime text kernel: sqrt(exp(-(100 cosine distance(z, 1))^2 / 25^2))",
                 "perturb_func": "lime text sampling (input first, then k ~ U{1..d} removed)"
                 if args.lime_sampling == "lime_text" else "Captum default (Bernoulli(0.5) per feature)",
                 "baselines": "[MASK] embedding", "feature_mask": "one feature per interior token",
                 "perturbations_per_eval": captum_batch, "forward": "softmax probability", "reduce": "|coef|"},
        "kernel_shap": {"class": "KernelShap", "n_samples": samples, "baselines": "[MASK] embedding",
                        "feature_mask": "one feature per interior token", "perturbations_per_eval": captum_batch,
                        "forward": "logit", "reduce": "|coef|"},
    }[figure]
    return {"samples": samples, "measure_options": options, "jax_chunk_used": chunk_used, "captum": captum}


def _torch_fn(figure, impl, model, tokens, labels, aux, table, generator, args, *, torch, tr):
    if figure == "train":
        train_model = copy.deepcopy(model)  # training changes the weights; the measures keep theirs
        optimizer = tr.original_optimizer(train_model, 1e-3, 1e-5)
        return lambda: tr.train_step(train_model, optimizer, tokens, labels, aux)
    if figure == "random":
        return lambda: tr.random(tokens, generator)
    if figure == "mutual_information":
        return lambda: tr.mutual_information(tokens, table)
    if figure == "attention":
        return lambda: tr.attention(model, tokens, aux)
    if figure == "gradient":
        return lambda: tr.gradient(model, tokens, labels, aux, efficient=args.torch_gradient == "efficient")
    if figure == "input_times_gradient":
        return lambda: tr.input_times_gradient(model, tokens, labels, aux)
    if figure == "integrated_gradient":
        if impl == "captum":
            return lambda: tr.integrated_gradient_captum(model, tokens, labels, aux, steps=args.ig_steps)
        return lambda: tr.integrated_gradient_loop(model, tokens, labels, aux, args.ig_steps, args.ig_variant)
    batch = _for_length(args.captum_batch, figure, tokens.shape[1])
    if figure == "smoothgrad":
        return lambda: tr.smoothgrad_captum(model, tokens, labels, aux, samples=args.samples_smoothgrad,
                                            sigma=args.sigma, batch_size=batch or None)
    if figure == "smoothgrad_times_input":
        return lambda: tr.smoothgrad_times_input_captum(model, tokens, labels, aux, samples=args.samples_smoothgrad,
                                                        sigma=args.sigma, batch_size=batch or None)
    if figure == "gradient_shap":
        n = args.samples_gradient_shap
        return lambda: tr.gradient_shap_captum(model, tokens, labels, aux, samples=n,
                                               baseline_count=tokens.shape[0] * n, generator=generator)
    if figure == "occlusion":
        return lambda: tr.occlusion_captum(model, tokens, labels, aux, perturbations_per_eval=batch)
    if figure == "lime":
        return lambda: tr.lime_captum(model, tokens, labels, aux, samples=args.samples_lime,
                                      perturbations_per_eval=batch, sampling=args.lime_sampling)
    if figure == "kernel_shap":
        return lambda: tr.kernel_shap_captum(model, tokens, labels, aux, samples=args.samples_kernel_shap,
                                             perturbations_per_eval=batch)
    raise ValueError(f"unknown figure {figure!r}")


if __name__ == "__main__":
    sys.exit(main())
