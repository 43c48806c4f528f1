"""Models: the classifier protocol, the original's BiLSTM + attention classifiers, and the registry
that builds a task's model by name (``config.model``): ``rnn`` (the original's), ``transformer``
(:mod:`.transformer`, trained from scratch) and ``transformer-soft-attention`` (the same encoder with
the soft-attention head, :mod:`.soft_attention`).

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

from typing import Callable

from flax import nnx

from nlproar_jax.models.bilstm import BiLSTM
from nlproar_jax.models.protocol import Classifier, check_classifier, forward
from nlproar_jax.models import soft_attention, transformer
from nlproar_jax.models.rnn_attention import PairedSequenceModel, SingleSequenceModel, build_model, from_config
from nlproar_jax.names import check_model_name

# name -> builder(config, data: TaskData, seed: int) -> classifier (deterministic in seed)
_BUILDERS: dict[str, Callable] = {}


def register_model(name: str, builder: Callable) -> None:
    """Make ``config.model = name`` build models with ``builder(config, data, seed)``. Registering a
    name again replaces its builder."""
    check_model_name(name)
    _BUILDERS[name] = builder


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


def split(model):
    """``model -> (graphdef, params)``."""
    return nnx.split(model)


def merge(graphdef, params):
    """``(graphdef, params) -> model`` (inside or outside jit)."""
    return nnx.merge(graphdef, params)


__all__ = ["BiLSTM", "Classifier", "PairedSequenceModel", "SingleSequenceModel", "build_from_config", "build_model",
           "check_classifier", "forward", "merge", "register_model", "split"]
