"""The project's vocabulary, without JAX: tasks, measures, strategies, experiment ids, the on-disk layout.

Everything that names a thing lives here once, and every other module (the pipeline, the results
tables, plots, report, grid plan and Slurm launcher) reads it from here. Importing this module
imports no JAX, so the bookkeeping layer stays light.

* :data:`TASKS`: task name -> :class:`TaskSpec` (loader, paired, monitored and reported metric).
* :data:`MEASURES` and :data:`MEASURE_ALIASES` (the original's spellings), :func:`canonical_measure`,
  :data:`MODEL_FREE`, :data:`MODEL_SPECIFIC`, :data:`IG_VARIANTS`, :func:`measure_tag`.
* :data:`STRATEGIES` (ROAR masking), :data:`ROAR_MODES` (remove or keep the top k'),
  :data:`DEFAULT_STEP` (recursive step per strategy).
* :class:`Experiment`: one ROAR run, validated from a config; its id and its reference run.
* :class:`Paths`: every file a run, a grid or an evaluation writes under ``persistent_dir``.

:func:`Experiment.from_config` checks every field of an ``ml_collections`` config once, at
start-up, with errors that name the bad value and the valid choices. The experiment id is built
from (task, model, seed, measure, strategy, mode, k, recursive, step size, IG steps and variant); every
other field is recorded in the run's ``config.json``. Remove runs (the default mode) keep the ids they
always had; keep runs add ``_rm-keep`` after the strategy. Runs trained with the faithfulness losses
(``config.faithfulness_loss``, :func:`faithfulness_loss_settings`) add ``_fl-<measure>-k=..,comp=..,suff=..``
after the seed; runs without them keep their ids.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional


# -- tasks -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TaskSpec:
    loader: str  # "module:function", imported lazily by nlproar_jax.data.registry
    paired: bool
    monitor: str  # validation metric used to pick the best epoch
    reported: str  # the test metric the paper reports


TASKS: dict[str, TaskSpec] = {
    "synthetic": TaskSpec("nlproar_jax.data.synthetic:load", False, "auroc", "macro_f1"),
    "sst": TaskSpec("nlproar_jax.data.sst:load", False, "auroc", "macro_f1"),
    "imdb": TaskSpec("nlproar_jax.data.imdb:load", False, "auroc", "macro_f1"),
    "snli": TaskSpec("nlproar_jax.data.snli:load", True, "accuracy", "micro_f1"),
    "mimic-d": TaskSpec("nlproar_jax.data.mimic:load_diabetes", False, "auroc", "macro_f1"),
    "mimic-a": TaskSpec("nlproar_jax.data.mimic:load_anemia", False, "auroc", "macro_f1"),
    "babi-1": TaskSpec("nlproar_jax.data.babi:load_task1", True, "accuracy", "accuracy"),
    "babi-2": TaskSpec("nlproar_jax.data.babi:load_task2", True, "accuracy", "accuracy"),
    "babi-3": TaskSpec("nlproar_jax.data.babi:load_task3", True, "accuracy", "accuracy"),
}


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name]


# -- importance measures ---------------------------------------------------------------------
MEASURES = ("random", "mutual_information", "attention", "gradient", "input_times_gradient",
            "integrated_gradient",
            # beyond the original: sampled gradients, perturbation, learned gates
            "smoothgrad", "smoothgrad_times_input", "gradient_shap", "occlusion", "lime", "kernel_shap",
            "diffmask",
            # model-specific: read off a model that has them (MODEL_SPECIFIC)
            "soft_attention")
# The original's six (its grid, ORIGINAL.md section 7).
ORIGINAL_MEASURES = MEASURES[:6]
# Measures whose scores need no trained model.
MODEL_FREE = ("random", "mutual_information")
# Measures that draw random numbers (a key per row; the pipeline derives it from the example id).
STOCHASTIC = ("random", "smoothgrad", "smoothgrad_times_input", "gradient_shap", "lime", "kernel_shap")
# Measures trained on the explained model's training split before they score (importance precompute).
LEARNED = ("diffmask",)
# Measures that only some models have: measure -> the model method it reads (a clear error otherwise).
MODEL_SPECIFIC = {"soft_attention": "token_scores"}
# The original's spellings (nlp-roar-interpretability command lines and file names).
MEASURE_ALIASES = {
    "mutual-information": "mutual_information",
    "times-input-gradient": "input_times_gradient",
    "times_input_gradient": "input_times_gradient",
    "input-times-gradient": "input_times_gradient",
    "integrated-gradient": "integrated_gradient",
    "integrated_gradients": "integrated_gradient",
    "integrated-gradients": "integrated_gradient",
    # the usual spellings of the newer measures (Captum's class names, papers' names)
    "smooth_grad": "smoothgrad",
    "smooth-grad": "smoothgrad",
    "smoothgrad-times-input": "smoothgrad_times_input",
    "smoothgrad_x_input": "smoothgrad_times_input",
    "gradient-shap": "gradient_shap",
    "gradientshap": "gradient_shap",
    "expected_gradients": "gradient_shap",
    "expected-gradients": "gradient_shap",
    "leave_one_out": "occlusion",
    "leave-one-out": "occlusion",
    "kernel-shap": "kernel_shap",
    "kernelshap": "kernel_shap",
    "diff_mask": "diffmask",
    "diff-mask": "diffmask",
    "soft-attention": "soft_attention",
}
IG_VARIANTS = ("alpha_weighted", "textbook")


def canonical_measure(name: str) -> str:
    """The canonical measure name for ``name`` (either spelling); a clear error otherwise."""
    name = MEASURE_ALIASES.get(name, name)
    if name not in MEASURES:
        import difflib

        close = difflib.get_close_matches(name, list(MEASURES) + list(MEASURE_ALIASES), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown importance measure {name!r}{hint}; valid: {list(MEASURES)} "
                         f"(or an alias: {sorted(MEASURE_ALIASES)})")
    return name


# Options that change how a measure is computed (memory, matmul precision, which of two equal paths),
# not what it computes: never part of a tag.
NOT_IDENTITY_OPTIONS = ("chunk_size", "precision", "fast_path")


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets and quotes (``stretch=(-0.2, 1.0),epochs=5``)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def format_option_value(value) -> str:
    """An option value as ``measure_options`` and run ids write it (``500``, ``0.1``, ``zero``, ``(-0.2,1.0)``)."""
    return str(value).replace(" ", "")


def parse_measure_options(text: str, measure: str) -> tuple[tuple[str, object], ...]:
    """The options ``config.measure_options`` gives ``measure``, sorted by name.

    ``text`` is ``"name=value,name=value"`` (for the run's measure, whichever it is) or per measure,
    ``"lime:samples=500,kernel_width=25;smoothgrad:sigma=0.1"`` (the original's spellings allowed), so
    one setting serves a whole grid. Values are Python literals (``500``, ``0.1``, ``True``, ``'zero'``;
    a bare word is a string). Option names are checked when the measure is built
    (:func:`nlproar_jax.importance.get` names the valid ones)."""
    import ast

    measure = canonical_measure(measure)
    found: dict[str, object] = {}
    for part in (p.strip() for p in str(text or "").split(";")):
        if not part:
            continue
        head, colon, rest = part.partition(":")
        if colon and "=" not in head:
            if canonical_measure(head.strip()) != measure:
                continue
            part = rest
        for item in (i.strip() for i in _split_top_level(part)):
            if not item:
                continue
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise ValueError(f"measure_options item {item!r} is not name=value (in {text!r})")
            try:
                found[name.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                found[name.strip()] = value.strip()
    return tuple(sorted(found.items()))


def measure_tag(measure: str, ig_steps: int, ig_variant: str, options=()) -> str:
    """The measure with its settings where they matter, as in run ids: ``integrated_gradient-50a``
    (50 steps, alpha-weighted; ``t`` for textbook); other measures their name, then their options
    from ``config.measure_options`` if any (``lime-samples=500``; :data:`NOT_IDENTITY_OPTIONS` left out)."""
    tag = measure
    if measure == "integrated_gradient":
        tag = f"{measure}-{ig_steps}{'a' if ig_variant == 'alpha_weighted' else 't'}"
    shown = [(k, v) for k, v in options if k not in NOT_IDENTITY_OPTIONS]
    if shown:
        tag += "-" + ",".join(f"{k}={format_option_value(v)}" for k, v in shown)
    return tag


# -- display ---------------------------------------------------------------------------------
# One display name per measure in every view (text tables, CSVs' measure_name, plot legends, the report);
# a tag's settings (IG steps and variant, measure options) are shown once, in a note beside the view.
MEASURE_NAMES = {"random": "Random", "attention": "Attention", "gradient": "Gradient",
                 "input_times_gradient": "Input × gradient", "integrated_gradient": "Integrated gradient",
                 "mutual_information": "Mutual information", "smoothgrad": "SmoothGrad",
                 "smoothgrad_times_input": "SmoothGrad × input", "gradient_shap": "Gradient SHAP",
                 "occlusion": "Occlusion", "lime": "LIME", "kernel_shap": "KernelSHAP", "diffmask": "DiffMask",
                 "soft_attention": "Soft attention"}


def tag_measure(tag: str) -> str:
    """``integrated_gradient-50a`` -> ``integrated_gradient`` (the measure of a :func:`measure_tag`)."""
    return tag.split("-")[0]


def measure_details(tag: str) -> str:
    """A tag's settings in words: ``integrated_gradient-50a`` -> ``50 steps, α-weighted``;
    ``lime-samples=500`` -> ``samples=500``; ``""`` when the tag is the bare measure."""
    if "-" not in tag:
        return ""
    rest = tag.split("-", 1)[1]
    parts = []
    if tag_measure(tag) == "integrated_gradient":
        head, _, rest = rest.partition("-")
        if head[:-1].isdigit() and head[-1:] in ("a", "t"):
            parts.append(f"{head[:-1]} steps, {'α-weighted' if head[-1] == 'a' else 'textbook'}")
        else:
            rest = head + ("-" + rest if rest else "")
    if rest:
        parts.append(rest)
    return ", ".join(parts)


def display_names(tags) -> dict:
    """``{tag: display name}``: the measure's name, plus its settings only where two of ``tags`` share a
    measure (``Integrated gradient (50 steps, α-weighted)`` beside ``Integrated gradient (20 steps,
    textbook)``)."""
    tags = list(dict.fromkeys(tags))
    count: dict = {}
    for tag in tags:
        count[tag_measure(tag)] = count.get(tag_measure(tag), 0) + 1
    out = {}
    for tag in tags:
        name = MEASURE_NAMES.get(tag_measure(tag), tag_measure(tag))
        details = measure_details(tag)
        out[tag] = f"{name} ({details})" if count[tag_measure(tag)] > 1 and details else name
    return out


def settings_note(tags) -> str:
    """The settings of ``tags`` that their display names leave out, once: ``Integrated gradient: 50 steps,
    α-weighted; LIME: samples=500`` (``""`` when none)."""
    names = display_names(tags)
    notes = [f"{names[tag]}: {measure_details(tag)}" for tag in names
             if measure_details(tag) and measure_details(tag) not in names[tag]]
    return "; ".join(notes)


# -- ROAR ------------------------------------------------------------------------------------
STRATEGIES = ("count", "quantile")
# What ROAR does with each row's top k' maskable tokens: "remove" masks them (ROAR); "keep" keeps them and
# masks every other maskable token (keep-and-retrain, KAR: FRESH, UNIREX). Keep is classic only.
ROAR_MODES = ("remove", "keep")
DEFAULT_STEP = {"count": 1, "quantile": 10}
SEEDS_TOGETHER = ("auto", "vmap", "loop")
# grid.classic_together: which runs the sweep trains together (one run_together call per group: one vmapped
# program on accelerators). "waves": every run whose inputs are ready (the seeds' base models; then every
# classic run of every measure and seed; then each recursive step), at most grid.models_together per
# group; "true": each seed's classic runs of one measure and strategy; "false": none; "auto": waves on
# accelerators, none on a CPU (one vmapped program pays where one small model leaves the device idle; on a
# CPU it does not, see the README's Speed).
CLASSIC_TOGETHER = ("auto", "waves", "true", "false")
EMBEDDING_OOV = ("zero", "normal")
# The BiLSTM kernel (nlproar_jax.models.bilstm): "scan" (the reference), "chunked" (tuned for
# XLA:CPU), "auto" (chunked when the default backend is the CPU, else scan; resolved at build time).
LSTM_IMPLS = ("auto", "scan", "chunked")
# config.device_data: training batches gathered on the device ("true"), built on the host ("false"), or
# "auto" (the device unless the default backend is the CPU); nlproar_jax.training.loop.fit's device_data.
DEVICE_DATA = ("auto", "true", "false")


def device_data_setting(config) -> Optional[bool]:
    """``config.device_data`` (default "auto") checked, as ``fit``'s ``device_data``: None (auto), True or False."""
    value = config.get("device_data", "auto")
    if value not in DEVICE_DATA:
        raise ValueError(f"unknown device_data {value!r}; valid: {list(DEVICE_DATA)}")
    return None if value == "auto" else value == "true"


# -- faithfulness-regularised training -------------------------------------------------------
# config.faithfulness_loss (nlproar_jax/training/faithfulness_loss.py): UNIREX's comprehensiveness and
# sufficiency losses on the model's own top-k rationale, chosen per batch by one of these measures: the
# deterministic ones that explain a model (no key to draw, nothing to fit first).
FAITHFULNESS_LOSS_MEASURES = tuple(m for m in MEASURES if m not in MODEL_FREE + STOCHASTIC + LEARNED)


@dataclasses.dataclass(frozen=True)
class FaithfulnessLossSettings:
    """A checked ``config.faithfulness_loss`` that is on (:func:`faithfulness_loss_settings`)."""

    measure: str  # one of FAITHFULNESS_LOSS_MEASURES
    k: int  # the rationale: top k% of each row's eligible tokens (ROAR's quantile rounding)
    comprehensiveness_weight: float
    sufficiency_weight: float
    comprehensiveness_margin: float
    sufficiency_margin: float
    options: tuple = ()  # the measure's options: integrated gradients' steps and variant (config.ig_*)

    @property
    def tag(self) -> str:
        """What run ids add: ``fl-input_times_gradient-k=20,comp=0.5,suff=0.5`` (margins only where they
        are not the defaults)."""
        parts = [f"k={self.k}", f"comp={self.comprehensiveness_weight:g}", f"suff={self.sufficiency_weight:g}"]
        if self.comprehensiveness_margin != FAITHFULNESS_LOSS_DEFAULTS["comprehensiveness_margin"]:
            parts.append(f"comp_margin={self.comprehensiveness_margin:g}")
        if self.sufficiency_margin != FAITHFULNESS_LOSS_DEFAULTS["sufficiency_margin"]:
            parts.append(f"suff_margin={self.sufficiency_margin:g}")
        options = dict(self.options)
        tag = (measure_tag(self.measure, options["steps"], options["variant"])
               if self.measure == "integrated_gradient" else self.measure)
        return f"fl-{tag}-" + ",".join(parts)

    def fields(self) -> dict:
        out = dataclasses.asdict(self)
        out["options"] = dict(self.options)
        return out


# configs/base.py's config.faithfulness_loss (off: measure "", weights 0)
FAITHFULNESS_LOSS_DEFAULTS = {"measure": "", "k": 20, "comprehensiveness_weight": 0.0, "sufficiency_weight": 0.0,
                              "comprehensiveness_margin": 0.5, "sufficiency_margin": 0.0}


def faithfulness_loss_settings(config) -> Optional[FaithfulnessLossSettings]:
    """``config.faithfulness_loss`` checked: None when off (``measure=""``, both weights 0, or a config
    without the field), else the settings. ValueError (one line, naming the bad value and what is valid)
    for an unknown measure, a k outside 1..100, a negative or non-finite weight or margin, weights without
    a measure, or a measure with both weights 0."""
    section = config.get("faithfulness_loss", None)
    fl = dict(FAITHFULNESS_LOSS_DEFAULTS, **(section.to_dict() if section is not None else {}))
    unknown = sorted(set(fl) - set(FAITHFULNESS_LOSS_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown faithfulness_loss field(s) {unknown}; valid: {list(FAITHFULNESS_LOSS_DEFAULTS)}")
    numbers = {}
    for name in ("comprehensiveness_weight", "sufficiency_weight", "comprehensiveness_margin", "sufficiency_margin"):
        try:
            value = float(fl[name])
        except (TypeError, ValueError):
            value = float("nan")
        if not value >= 0.0 or value == float("inf"):
            raise ValueError(f"faithfulness_loss.{name}={fl[name]!r} must be a finite number >= 0")
        numbers[name] = value
    weighted = numbers["comprehensiveness_weight"] > 0 or numbers["sufficiency_weight"] > 0
    measure = str(fl["measure"] or "")
    if not measure:
        if weighted:
            raise ValueError(f"faithfulness_loss weights (comprehensiveness_weight="
                             f"{numbers['comprehensiveness_weight']:g}, sufficiency_weight="
                             f"{numbers['sufficiency_weight']:g}) need faithfulness_loss.measure, one of "
                             f"{list(FAITHFULNESS_LOSS_MEASURES)}")
        return None
    canonical = MEASURE_ALIASES.get(measure, measure)
    if canonical not in FAITHFULNESS_LOSS_MEASURES:
        raise ValueError(f"unknown faithfulness_loss.measure {measure!r}; valid: {list(FAITHFULNESS_LOSS_MEASURES)} "
                         "('' = off; random, sampled, learned and model-free measures cannot choose it)")
    if not weighted:
        raise ValueError(f"faithfulness_loss.measure={measure!r} with comprehensiveness_weight=0 and "
                         "sufficiency_weight=0 adds nothing: set a weight > 0, or measure='' (off)")
    k = fl["k"]
    if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= 100:
        raise ValueError(f"faithfulness_loss.k={k!r} is out of range: an integer 1..100 (percent of each row's "
                         "eligible tokens)")
    options = ()
    if canonical == "integrated_gradient":
        if config.ig_variant not in IG_VARIANTS:
            raise ValueError(f"unknown ig_variant {config.ig_variant!r}; valid: {list(IG_VARIANTS)}")
        options = (("steps", int(config.ig_steps)), ("variant", str(config.ig_variant)))
    return FaithfulnessLossSettings(measure=canonical, k=int(k), options=options, **numbers)


# -- models ----------------------------------------------------------------------------------
# ``config.model`` names a builder in nlproar_jax.models' registry ("rnn": the original's BiLSTM with
# attention; users register their own). It is part of every experiment id, so it must be one token.
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def check_model_name(name: str) -> str:
    """``name`` if it can be a model name in experiment ids (lowercase letters, digits, '-'); else ValueError."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} must be lowercase letters, digits and '-' (it is part of run ids, "
                         "which '_' separates), e.g. 'rnn' or 'conv-attention'")
    return name


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
    options: tuple = ()  # the measure's options from config.measure_options, sorted (name, value) pairs
    mode: str = "remove"  # ROAR_MODES: "remove" masks the top k'; "keep" masks every other maskable token
    # the training objective's faithfulness losses (config.faithfulness_loss); None: the task loss alone
    faithfulness: Optional[FaithfulnessLossSettings] = None

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
        mode = config.get("roar_mode", "remove")
        if mode not in ROAR_MODES:
            raise ValueError(f"unknown roar_mode {mode!r}; valid: {list(ROAR_MODES)}")
        mode = mode if k > 0 else "remove"  # k = 0 is the unmasked base model in either mode
        if recursive and mode == "keep":
            raise ValueError("roar_mode='keep' (keep-and-retrain) is classic only: set recursive=False, or "
                             "roar_mode='remove' for recursive ROAR")
        if recursive and k % step:
            raise ValueError(f"recursive ROAR reaches k={k} only if it is a multiple of "
                             f"recursive_step_size={step}; try k={k - k % step or step}")
        if config.ig_variant not in IG_VARIANTS:
            raise ValueError(f"unknown ig_variant {config.ig_variant!r}; valid: {list(IG_VARIANTS)}")
        if int(config.ig_steps) < 1:
            raise ValueError(f"ig_steps must be >= 1, got {config.ig_steps}")
        if config.embedding_oov not in EMBEDDING_OOV:
            raise ValueError(f"unknown embedding_oov {config.embedding_oov!r}; valid: {list(EMBEDDING_OOV)}")
        if config.lstm_impl not in LSTM_IMPLS:
            raise ValueError(f"unknown lstm_impl {config.lstm_impl!r}; valid: {list(LSTM_IMPLS)}")
        device_data_setting(config)
        for field in ("batch_size", "max_epochs", "hidden_size", "embedding_dim", "min_df", "num_seeds"):
            if int(config[field]) < 1:
                raise ValueError(f"{field} must be >= 1, got {config[field]}")
        if int(config.ig_chunk_size) < 0:
            raise ValueError(f"ig_chunk_size must be >= 0 (0 = choose from memory), got {config.ig_chunk_size}")
        measure = canonical_measure(config.importance_measure)
        model = check_model_name(config.get("model", "rnn"))
        options = parse_measure_options(config.get("measure_options", ""), measure) if k > 0 else ()
        if measure == "integrated_gradient" and {"steps", "variant"} & {name for name, _ in options}:
            raise ValueError("integrated gradients takes its steps and variant from --config.ig_steps and "
                             "--config.ig_variant, not from measure_options")
        return cls(task=config.task, seed=int(config.seed), k=k, measure=measure, strategy=strategy,
                   recursive=recursive, step=step, ig_steps=int(config.ig_steps), ig_variant=config.ig_variant,
                   model=model, options=options, mode=mode, faithfulness=faithfulness_loss_settings(config))

    # -- identity --------------------------------------------------------------------------
    @property
    def is_base(self) -> bool:
        return self.k == 0

    @property
    def measure_tag(self) -> str:
        return measure_tag(self.measure, self.ig_steps, self.ig_variant, self.options)

    @property
    def id(self) -> str:
        base = f"{self.task}_{self.model}_s-{self.seed}"
        if self.faithfulness is not None:  # regularised training; runs without it keep their old ids
            base += f"_{self.faithfulness.tag}"
        if self.is_base:
            return base
        rec = f"r-1_st-{self.step}" if self.recursive else "r-0"
        mode = "" if self.mode == "remove" else f"_rm-{self.mode}"  # remove runs keep their old ids
        return f"{base}_y-{self.measure_tag}_rs-{self.strategy}{mode}_k-{self.k}_{rec}"

    @property
    def keep(self) -> bool:
        """A keep-and-retrain run: the top k' maskable tokens are kept, every other one is masked."""
        return self.mode == "keep"

    def base(self) -> "Experiment":
        return dataclasses.replace(self, k=0, recursive=False, mode="remove")

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
        fields = dataclasses.asdict(self)
        fields["measure_options"] = dict(fields.pop("options"))
        fields.pop("faithfulness")  # results of runs without it keep their old fields
        if self.faithfulness is not None:
            fields["faithfulness_loss"] = self.faithfulness.fields()
        return {**fields, "measure_tag": self.measure_tag, "experiment_id": self.id}


@dataclasses.dataclass(frozen=True)
class Paths:
    """Everything a run or a grid writes, under ``persistent_dir`` (``root``). Methods take an
    :class:`Experiment` or an experiment id (what results files record)."""

    root: str

    def run_dir(self, exp) -> str:
        return os.path.join(self.root, "runs", _id(exp))

    def config(self, exp) -> str:
        return os.path.join(self.run_dir(exp), "config.json")

    def metrics(self, exp) -> str:
        return os.path.join(self.run_dir(exp), "metrics.jsonl")

    def model(self, exp) -> str:
        return os.path.join(self.run_dir(exp), "model")

    def checkpoints(self, exp) -> str:
        return os.path.join(self.run_dir(exp), "checkpoints")

    def stacked_checkpoints(self, first, group: str) -> str:
        """Training state of runs trained together (``group``: a hash of their ids), under the first run."""
        return os.path.join(self.run_dir(first), f"stacked-checkpoints-{group}")

    def lock(self, exp) -> str:
        """Held (``flock``) by the process working on the run: :mod:`nlproar_jax.runtime.runlock`. Beside,
        not in, the run directory, which exists only once the run has started."""
        return os.path.join(self.root, "locks", _id(exp) + ".lock")

    def masked_dataset(self, exp) -> str:
        return os.path.join(self.run_dir(exp), "masked_dataset.npz")

    @property
    def results_dir(self) -> str:
        return os.path.join(self.root, "results")

    def result(self, exp) -> str:
        return os.path.join(self.results_dir, _id(exp) + ".json")

    def importance(self, reference, measure_tag: str) -> str:
        return os.path.join(self.root, "cache", "importance", f"{_id(reference)}__{measure_tag}.npz")

    @property
    def erasure_dir(self) -> str:
        return os.path.join(self.root, "erasure")

    def erasure(self, base, measure_tag: str, settings_tag: str = "") -> str:
        """The erasure (faithfulness without retraining) and plausibility of one measure on a base run
        (``python -m nlproar_jax.evaluate``); ``settings_tag``: the evaluation's non-default settings."""
        return os.path.join(self.erasure_dir, f"{_id(base)}_y-{measure_tag}{settings_tag}.json")

    @property
    def dataset_cache(self) -> str:
        return os.path.join(self.root, "cache", "datasets")

    def dataset(self, key: str) -> str:
        """The encoded dataset with this ``dataset_key`` (see :func:`nlproar_jax.data.registry.dataset_key`)."""
        return os.path.join(self.dataset_cache, f"{key}.npz")

    @property
    def xla_cache(self) -> str:
        return os.path.join(self.root, "cache", "xla")

    @property
    def export_dir(self) -> str:
        return os.path.join(self.root, "export")

    @property
    def slurm_dir(self) -> str:
        return os.path.join(self.root, "slurm")

    @property
    def slurm_logs(self) -> str:
        return os.path.join(self.slurm_dir, "logs")

    def slurm_launch(self, stamp: str) -> str:
        """One launch's sbatch scripts, args files and submission log (``stamp``: the launch time)."""
        return os.path.join(self.slurm_dir, stamp)


def _id(exp) -> str:
    return exp if isinstance(exp, str) else exp.id


def write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"  # a name of this process's own: no two writers share one
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
