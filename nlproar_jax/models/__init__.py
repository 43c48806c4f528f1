"""Models: the classifier protocol, the original's BiLSTM + attention classifiers, and the registry
that builds a task's model by name (``config.model``): ``rnn`` (the original's), ``transformer``
(:mod:`.transformer`, trained from scratch), ``transformer-soft-attention`` (the same encoder with
the soft-attention head, :mod:`.soft_attention`) and ``bert`` (a pretrained BERT/RoBERTa-family
encoder from ``config.bert_dir``, default MiniLM, fine-tuned as the original's RoBERTa: :mod:`.bert`).

A builder may come with a ``tokenizer`` (``config -> TokenizerSpec``: the task is then encoded with
that pretrained tokenizer, :func:`task_tokenizer`) and ``defaults`` (``config -> {field: value}``:
the training settings ``--config.model=NAME`` brings, :func:`apply_model_defaults`).

Any ``flax.nnx`` module meeting :mod:`nlproar_jax.models.protocol` trains, is attributed by every
measure and goes through ROAR. To run the pipeline with your own, register a builder::

    from nlproar_jax.models import register_model
    register_model("my-model", lambda config, data, seed: MyModel(len(data.vocab), data.num_classes, ...))
    # then config.model = "my-model" (experiment ids read synthetic_my-model_s-0_...)

``params`` throughout the library is the ``nnx.State`` of a model (a pytree); ``graphdef`` is its
static structure. Jitted functions take ``(graphdef, params)`` and rebuild the module with
``nnx.merge`` at trace time, which costs nothing at run time.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

from flax import nnx

from nlproar_jax.models.bilstm import BiLSTM
from nlproar_jax.models.protocol import Classifier, check_classifier, forward
from nlproar_jax.models import bert, soft_attention, transformer
from nlproar_jax.models.rnn_attention import PairedSequenceModel, SingleSequenceModel, build_model, from_config
from nlproar_jax.names import check_model_name

# name -> builder(config, data: TaskData, seed: int) -> classifier (deterministic in seed)
_BUILDERS: dict[str, Callable] = {}
_TOKENIZERS: dict[str, Callable] = {}  # name -> config -> TokenizerSpec (pretrained models only)
_DEFAULTS: dict[str, Callable] = {}  # name -> config -> {field: value} (what --config.model=name sets)


def register_model(name: str, builder: Callable, *, tokenizer: Optional[Callable] = None,
                   defaults: Optional[Callable] = None) -> None:
    """Make ``config.model = name`` build models with ``builder(config, data, seed)``. Registering a
    name again replaces its builder (and its tokenizer and defaults). ``tokenizer(config)``: the
    :class:`~nlproar_jax.data.pretrained.TokenizerSpec` the task is encoded with (None: the project's
    word vocabulary). ``defaults(config)``: config fields the model's training wants, applied by
    :func:`apply_model_defaults`."""
    check_model_name(name)
    _BUILDERS[name] = builder
    for table, value in ((_TOKENIZERS, tokenizer), (_DEFAULTS, defaults)):
        table.pop(name, None)
        if value is not None:
            table[name] = value


def task_tokenizer(config):
    """The :class:`~nlproar_jax.data.pretrained.TokenizerSpec` that ``config.model`` encodes tasks with,
    or None (the project's word vocabulary)."""
    name = config.get("model", "rnn")
    return _TOKENIZERS[name](config) if name in _TOKENIZERS else None


def apply_model_defaults(config, keep: Iterable[str] = ()) -> dict:
    """In place: set the fields ``config.model``'s registered defaults name (``bert``: section 9's
    optimizer, learning rate, weight decay, batch size and epochs), except those in ``keep`` (the
    command line's own overrides). Returns what was set. The command line calls this when it sets
    ``--config.model`` itself; a config file that names a model sets its fields itself."""
    name = config.get("model", "rnn")
    if name not in _DEFAULTS:
        return {}
    keep = set(keep)
    applied = {k: v for k, v in _DEFAULTS[name](config).items() if k not in keep}
    for k, v in applied.items():
        config[k] = v
    if applied:
        logging.getLogger("nlproar_jax").info("model %s: %s (its defaults; set a field on the command line to "
                                              "change it)", name, ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied


def build_from_config(config, data, seed: int):
    """The task's freshly initialised model for ``seed``, by ``config.model``."""
    name = config.get("model", "rnn")
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(_BUILDERS)} "
                         "(nlproar_jax.models.register_model adds one)")
    model = _BUILDERS[name](config, data, seed)
    check_classifier(model)
    return model


register_model("rnn", from_config)
register_model("transformer", transformer.from_config)  # a small transformer trained from scratch
register_model("transformer-soft-attention", soft_attention.from_config)  # ... with the soft-attention head
# A pretrained BERT/RoBERTa-family encoder (config.bert_dir; default MiniLM), its tokenizer's word pieces
register_model("bert", bert.from_config, tokenizer=bert.tokenizer_spec, defaults=bert.finetune_defaults)


def split(model):
    """``model -> (graphdef, params)``."""
    return nnx.split(model)


def merge(graphdef, params):
    """``(graphdef, params) -> model`` (inside or outside jit)."""
    return nnx.merge(graphdef, params)


__all__ = ["BiLSTM", "Classifier", "PairedSequenceModel", "SingleSequenceModel", "apply_model_defaults",
           "build_from_config", "build_model", "check_classifier", "forward", "merge", "register_model", "split",
           "task_tokenizer"]
