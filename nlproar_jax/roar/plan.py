"""A ROAR grid as a plan: every run, its config overrides, and the runs it needs first.

The original's grid (``batch_jobs/*.sh``, ORIGINAL.md section 7): per seed a
k=0 base model; classic ROAR with quantile k for every measure (plus k=100 for
random) and count k for random only, each after the base; recursive ROAR with
quantile and count k for every measure but random (whose classic curve is the
baseline), each step after the previous one. Beyond the original:
keep-and-retrain (``roar_mode="keep"``) at ``grid.keep_quantile_k`` and
``grid.keep_count_k`` for every measure, random included (the baseline), each
after the base model (keep is classic only; both are empty by default, so a
grid without them is the original's). Both the local sweep and the Slurm
launcher run this plan.
"""
from __future__ import annotations

import dataclasses

from nlproar_jax.names import DEFAULT_STEP, Experiment, canonical_measure


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    experiment: Experiment
    overrides: tuple[tuple[str, object], ...]  # config fields to set, in command-line order
    after: tuple[str, ...]  # experiment ids that must finish first

    @property
    def id(self) -> str:
        return self.experiment.id

    def apply(self, config):
        """A copy of ``config`` with this run's overrides."""
        config = config.copy_and_resolve_references()
        with config.unlocked():
            for key, value in self.overrides:
                config[key] = value
        return config

    def command_args(self) -> list[str]:
        return [f"--config.{k}={v}" for k, v in self.overrides]

    @property
    def shares(self) -> str:
        """What this run computes that other runs of the plan need too: its reference's importance by its
        measure (every k masked by one measure on one model shares it; "" for a base model). The parallel
        runner avoids starting two runs that share it at once while other work is ready."""
        ref = self.experiment.reference()
        return "" if ref is None else f"{ref.id}__{self.experiment.measure_tag}"


def _run(config, seed, k=0, measure="random", strategy="quantile", recursive=False, mode="remove") -> PlannedRun:
    overrides = [("seed", seed), ("k", k)]
    if k > 0:  # every field that tells runs apart, so a global --config.roar_mode cannot change a planned run
        overrides += [("importance_measure", measure), ("roar_strategy", strategy), ("roar_mode", mode),
                      ("recursive", recursive)]
        if recursive:
            overrides.append(("recursive_step_size", DEFAULT_STEP[strategy]))
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        for key, value in overrides:
            cfg[key] = value
    exp = Experiment.from_config(cfg)
    ref = exp.reference()
    return PlannedRun(exp, tuple(overrides), (ref.id,) if ref is not None else ())


def plan_grid(config) -> list[PlannedRun]:
    """Every run of ``config.grid``, each after the runs it needs (a topological order)."""
    g = config.grid
    measures = [canonical_measure(m) for m in g.measures]
    runs: list[PlannedRun] = []
    for seed in g.seeds:
        runs.append(_run(config, seed))
        if g.classic:
            for measure in measures:
                ks = list(g.quantile_k) + (list(g.random_quantile_k) if measure == "random" else [])
                runs += [_run(config, seed, k, measure, "quantile") for k in ks]
                if measure == "random":
                    runs += [_run(config, seed, k, measure, "count") for k in g.count_k]
        if g.recursive:
            for measure in measures:
                if measure == "random":
                    continue
                for strategy, ks in (("quantile", g.quantile_k), ("count", g.count_k)):
                    step = DEFAULT_STEP[strategy]
                    chain = [k for k in sorted(ks)]
                    missing = [k for k in range(step, max(chain, default=0) + 1, step) if k not in chain]
                    if missing:
                        raise ValueError(f"recursive {strategy} ROAR steps by {step}: the grid's k {chain} "
                                         f"lacks {missing}, which later steps need")
                    runs += [_run(config, seed, k, measure, strategy, recursive=True) for k in chain]
        for measure in measures:  # keep-and-retrain: classic only, after the base model
            for strategy, ks in (("quantile", g.get("keep_quantile_k", ())), ("count", g.get("keep_count_k", ()))):
                if any(int(k) < 1 for k in ks):
                    raise ValueError(f"grid.keep_{strategy}_k={tuple(ks)}: keep runs need k >= 1 (k = 0 is the "
                                     "base model, which keeps everything)")
                runs += [_run(config, seed, k, measure, strategy, mode="keep") for k in ks]
    seen: set[str] = set()
    unique = []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            unique.append(run)
    # A first recursive step waits for its classic twin (the same training: nlproar_jax.roar.run
    # reuses the twin's model and result) when the grid has it.
    out = []
    for run in unique:
        exp = run.experiment
        if exp.recursive and exp.k == exp.step:
            twin = dataclasses.replace(exp, recursive=False).id
            if twin in seen:
                run = dataclasses.replace(run, after=run.after + (twin,))
        out.append(run)
    return out
