"""Models: the original's BiLSTM + additive-attention classifiers.

``params`` throughout the library is the ``nnx.State`` of a model (a pytree);
``graphdef`` is its static structure. Jitted functions take ``(graphdef, params)``
and rebuild the module with ``nnx.merge`` at trace time, which costs nothing at run time.
"""
from flax import nnx

from nlproar_jax.models.bilstm import BiLSTM
from nlproar_jax.models.rnn_attention import PairedSequenceModel, SingleSequenceModel, build_model


def split(model):
    """``model -> (graphdef, params)``."""
    return nnx.split(model)


def merge(graphdef, params):
    """``(graphdef, params) -> model`` (inside or outside jit)."""
    return nnx.merge(graphdef, params)


__all__ = ["BiLSTM", "PairedSequenceModel", "SingleSequenceModel", "build_model", "split", "merge"]
