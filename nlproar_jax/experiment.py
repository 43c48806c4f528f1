"""A validated experiment: what one ROAR run is, its id, and where its files live.

:func:`Experiment.from_config` checks every field of an ``ml_collections``
config once, at start-up, with errors that name the bad value and the valid
choices. The experiment id is built from (task, model, seed, measure, strategy,
k, recursive, step size, IG steps and variant); every other field is recorded in
the run's ``config.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from nlproar_jax.data.registry import task_spec
from nlproar_jax.importance import IG_VARIANTS, canonical_measure
from nlproar_jax.masking import STRATEGIES
from nlproar_jax.run_names import measure_tag

EMBEDDING_OOV = ("zero", "normal")
DEFAULT_STEP = {"count": 1, "quantile": 10}


@dataclasses.dataclass(frozen=True)
class Experiment:
    task: str
    seed: int
    k: int
    measure: str
    strategy: str
    recursive: bool
    step: int
    ig_steps: int
    ig_variant: str
    model: str = "rnn"

    @classmethod
    def from_config(cls, config) -> "Experiment":
        task_spec(config.task)  # raises with the valid tasks
        strategy = config.roar_strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown roar_strategy {strategy!r}; valid: {list(STRATEGIES)}")
        k = int(config.k)
        if k < 0 or (strategy == "quantile" and k > 100):
            raise ValueError(f"k={k} is out of range for strategy {strategy!r}: "
                             f"{'0..100 (percent)' if strategy == 'quantile' else '>= 0 (tokens)'}")
        step = config.recursive_step_size
        step = DEFAULT_STEP[strategy] if step is None else int(step)
        if step < 1:
            raise ValueError(f"recursive_step_size must be >= 1, got {step}")
        recursive = bool(config.recursive) and k > 0
        if recursive and k % step:
            raise ValueError(f"recursive ROAR reaches k={k} only if it is a multiple of "
                             f"recursive_step_size={step}; try k={k - k % step or step}")
        if config.ig_variant not in IG_VARIANTS:
            raise ValueError(f"unknown ig_variant {config.ig_variant!r}; valid: {list(IG_VARIANTS)}")
        if int(config.ig_steps) < 1:
            raise ValueError(f"ig_steps must be >= 1, got {config.ig_steps}")
        if config.embedding_oov not in EMBEDDING_OOV:
            raise ValueError(f"unknown embedding_oov {config.embedding_oov!r}; valid: {list(EMBEDDING_OOV)}")
        for field in ("batch_size", "max_epochs", "hidden_size", "embedding_dim", "min_df", "num_seeds"):
            if int(config[field]) < 1:
                raise ValueError(f"{field} must be >= 1, got {config[field]}")
        if int(config.ig_chunk_size) < 0:
            raise ValueError(f"ig_chunk_size must be >= 0 (0 = choose from memory), got {config.ig_chunk_size}")
        measure = canonical_measure(config.importance_measure)
        return cls(task=config.task, seed=int(config.seed), k=k, measure=measure, strategy=strategy,
                   recursive=recursive, step=step, ig_steps=int(config.ig_steps), ig_variant=config.ig_variant)

    # -- identity --------------------------------------------------------------------------
    @property
    def is_base(self) -> bool:
        return self.k == 0

    @property
    def measure_tag(self) -> str:
        return measure_tag(self.measure, self.ig_steps, self.ig_variant)

    @property
    def id(self) -> str:
        base = f"{self.task}_{self.model}_s-{self.seed}"
        if self.is_base:
            return base
        rec = f"r-1_st-{self.step}" if self.recursive else "r-0"
        return f"{base}_y-{self.measure_tag}_rs-{self.strategy}_k-{self.k}_{rec}"

    def base(self) -> "Experiment":
        return dataclasses.replace(self, k=0, recursive=False)

    def reference(self) -> Optional["Experiment"]:
        """The run whose model and data this run's importance comes from (None for k=0).

        Classic: the k=0 model on unmasked data. Recursive: the run at k - step
        (the k=0 model for the first step)."""
        if self.is_base:
            return None
        if not self.recursive or self.k - self.step <= 0:
            return self.base()
        return dataclasses.replace(self, k=self.k - self.step)

    def fields(self) -> dict:
        return {**dataclasses.asdict(self), "experiment_id": self.id}


@dataclasses.dataclass(frozen=True)
class Paths:
    """Everything a run writes, under ``persistent_dir``."""

    root: str

    def run_dir(self, exp: Experiment) -> str:
        return os.path.join(self.root, "runs", exp.id)

    def model(self, exp: Experiment) -> str:
        return os.path.join(self.run_dir(exp), "model")

    def checkpoints(self, exp: Experiment) -> str:
        return os.path.join(self.run_dir(exp), "checkpoints")

    def masked_dataset(self, exp: Experiment) -> str:
        return os.path.join(self.run_dir(exp), "masked_dataset.npz")

    def result(self, exp: Experiment) -> str:
        return os.path.join(self.root, "results", exp.id + ".json")

    def importance(self, reference: Experiment, measure_tag: str) -> str:
        return os.path.join(self.root, "cache", "importance", f"{reference.id}__{measure_tag}.npz")

    @property
    def dataset_cache(self) -> str:
        return os.path.join(self.root, "cache", "datasets")


def write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
