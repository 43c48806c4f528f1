"""The original's BiLSTM-attention models, training step and importance measures in PyTorch.

A reference for parity tests (``tests/test_torch_parity.py``) and the
throughput benchmark (``benchmarks/throughput.py``); **not** part of the
library: ``torch`` and ``captum`` are benchmark-only requirements
(``benchmarks/requirements-torch.txt``).

The architecture is the original's (AndreasMadsen/nlp-roar-interpretability,
``nlproar/model/rnn_{single,multiple}_sequence_to_class.py``; ORIGINAL.md §3):
``nn.Embedding(padding_idx=0)`` -> ``nn.LSTM(bidirectional=True, batch_first=True)``
over ``pack_padded_sequence`` -> additive tanh attention with ``-inf`` at
non-attended positions -> linear decoder (single) or the paired decoder.
:func:`load_from_jax` copies the parameters of an ``nlproar_jax`` model, so the
two compute the same function.

Measures (ORIGINAL.md §5), all explaining the gold label's logit:

* :func:`gradient` - the original's ``||(dF/de) E^T||_2`` (the full ``B x T x V``
  product, as the original computes it; ``efficient=True`` uses ``E^T E``);
* :func:`input_times_gradient` - ``|e_t . dF/de_t|``;
* :func:`integrated_gradient_captum` - Captum's textbook IG (zero baseline,
  ``riemann_right``) on the embedding output;
* :func:`integrated_gradient_loop` - the original's loop: the model sees
  ``alpha_i e``, the gradient is taken w.r.t. the unscaled ``e``
  (``alpha_weighted``), or w.r.t. the scaled input (``textbook``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD = 0
FIRST_ELIGIBLE = 3  # [MASK]: ids >= 3 are attended


def lengths_of(tokens: torch.Tensor) -> torch.Tensor:
    """``<int64>[B]``: the number of non-[PAD] tokens per row (right padding)."""
    return (tokens != PAD).sum(dim=1)


class _Encoder(nn.Module):
    """Embedding + packed BiLSTM (the original's ``_Encoder``)."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.rnn = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)

    def run(self, emb: torch.Tensor, lengths: torch.Tensor):
        """``<f32>[B, T, D]`` -> outputs ``<f32>[B, T, 2H]`` (0 at padding), final ``<f32>[B, 2H]``."""
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, padding_value=0.0,
                                                  total_length=emb.shape[1])
        return out, torch.cat([h[0], h[1]], dim=-1)


def _masked_softmax(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    mask = tokens >= FIRST_ELIGIBLE
    scores = torch.where(mask, scores, torch.tensor(-np.inf, dtype=scores.dtype, device=scores.device))
    return torch.softmax(scores, dim=-1)


class TorchSingleSequenceModel(nn.Module):
    """The original's ``RNNSingleSequenceToClass``: encoder, attention, decoder."""

    paired = False

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 300, hidden_size: int = 128):
        super().__init__()
        h = hidden_size
        self.encoder = _Encoder(vocab_size, embedding_dim, h)
        self.attention = nn.ModuleDict(dict(W1=nn.Linear(2 * h, h), W2=nn.Linear(h, 1, bias=False)))
        self.decoder = nn.Linear(2 * h, num_classes)

    @property
    def embedding_matrix(self) -> torch.Tensor:
        return self.encoder.embedding.weight

    def embed(self, tokens):
        return self.encoder.embedding(tokens)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        """``(logits <f32>[B, C], attention <f32>[B, T])``; ``emb`` may be scaled (IG)."""
        hs, _ = self.encoder.run(emb, lengths_of(tokens))
        scores = self.attention["W2"](torch.tanh(self.attention["W1"](hs))).squeeze(2)
        alpha = _masked_softmax(scores, tokens)
        context = (alpha.unsqueeze(2) * hs).sum(1)
        return self.decoder(context), alpha

    def forward(self, tokens, aux_tokens=None):
        return self.logits_from_embeddings(self.embed(tokens), tokens, aux_tokens)

    def param_groups(self, weight_decay: float):
        """The original's ``configure_optimizers``: decay encoder and decoder, not attention."""
        return [{"params": list(self.encoder.parameters()), "weight_decay": weight_decay},
                {"params": list(self.attention.parameters()), "weight_decay": 0.0},
                {"params": list(self.decoder.parameters()), "weight_decay": weight_decay}]


class TorchPairedSequenceModel(nn.Module):
    """The original's ``RNNMultipleSequenceToClass`` (main = premise / paragraph, aux = hypothesis / question)."""

    paired = True

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 300, hidden_size: int = 128):
        super().__init__()
        h = hidden_size
        self.encoder = _Encoder(vocab_size, embedding_dim, h)
        self.aux_encoder = _Encoder(vocab_size, embedding_dim, h)
        self.attention = nn.ModuleDict(dict(W1_main=nn.Linear(2 * h, h), W1_aux=nn.Linear(2 * h, h),
                                            W2=nn.Linear(h, 1, bias=False)))
        self.decoder = nn.ModuleDict(dict(main=nn.Linear(2 * h, h), aux=nn.Linear(2 * h, h),
                                          final=nn.Linear(h, num_classes)))

    @property
    def embedding_matrix(self) -> torch.Tensor:
        return self.encoder.embedding.weight

    def embed(self, tokens):
        return self.encoder.embedding(tokens)

    def logits_from_embeddings(self, emb, tokens, aux_tokens):
        hs, _ = self.encoder.run(emb, lengths_of(tokens))
        _, q = self.aux_encoder.run(self.aux_encoder.embedding(aux_tokens), lengths_of(aux_tokens))
        a = self.attention
        scores = a["W2"](torch.tanh(a["W1_main"](hs) + a["W1_aux"](q).unsqueeze(1))).squeeze(2)
        alpha = _masked_softmax(scores, tokens)
        context = (alpha.unsqueeze(2) * hs).sum(1)
        d = self.decoder
        return d["final"](torch.tanh(d["main"](context) + d["aux"](q))), alpha

    def forward(self, tokens, aux_tokens):
        return self.logits_from_embeddings(self.embed(tokens), tokens, aux_tokens)

    def param_groups(self, weight_decay: float):
        """Paired models decay everything (the original)."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]


# --------------------------------------------------------------------------------------------------
# Parameters from nlproar_jax


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32, copy=True))


def _load_linear(linear: nn.Linear, jax_linear) -> None:
    linear.weight.copy_(_t(jax_linear.kernel[...]).T)  # nnx [in, out] -> torch [out, in]
    if linear.bias is not None:
        linear.bias.copy_(_t(jax_linear.bias[...]))


def _load_lstm(rnn: nn.LSTM, jax_lstm) -> None:
    """Our ``w_ih [D, 8H]`` (forward gates then backward gates, order i, f, g, o),
    ``w_hh [2, H, 4H]`` and one summed ``bias [8H]`` -> PyTorch's per-direction tensors
    (``bias_hh`` zero, so ``bias_ih + bias_hh`` is our bias)."""
    w_ih, w_hh, bias = _t(jax_lstm.w_ih[...]), _t(jax_lstm.w_hh[...]), _t(jax_lstm.bias[...])
    g = 4 * jax_lstm.hidden_size
    for d, suffix in enumerate(("", "_reverse")):
        getattr(rnn, f"weight_ih_l0{suffix}").copy_(w_ih[:, d * g:(d + 1) * g].T)
        getattr(rnn, f"weight_hh_l0{suffix}").copy_(w_hh[d].T)
        getattr(rnn, f"bias_ih_l0{suffix}").copy_(bias[d * g:(d + 1) * g])
        getattr(rnn, f"bias_hh_l0{suffix}").zero_()


def build_torch_model(*, paired: bool, vocab_size: int, num_classes: int, embedding_dim: int,
                      hidden_size: int) -> nn.Module:
    cls = TorchPairedSequenceModel if paired else TorchSingleSequenceModel
    return cls(vocab_size, num_classes, embedding_dim, hidden_size)


@torch.no_grad()
def load_from_jax(torch_model: nn.Module, jax_model) -> nn.Module:
    """Copy an ``nlproar_jax`` model's parameters (the merged ``nnx`` module) into ``torch_model``."""
    torch_model.encoder.embedding.weight.copy_(_t(jax_model.embedding[...]))
    _load_lstm(torch_model.encoder.rnn, jax_model.encoder)
    a, d = jax_model.attention, jax_model.decoder
    if torch_model.paired:
        torch_model.aux_encoder.embedding.weight.copy_(_t(jax_model.aux_embedding[...]))
        _load_lstm(torch_model.aux_encoder.rnn, jax_model.aux_encoder)
        _load_linear(torch_model.attention["W1_main"], a["main"])
        _load_linear(torch_model.attention["W1_aux"], a["aux"])
        _load_linear(torch_model.attention["W2"], a["score"])
        _load_linear(torch_model.decoder["main"], d["main"])
        _load_linear(torch_model.decoder["aux"], d["aux"])
        _load_linear(torch_model.decoder["final"], d["output"])
    else:
        _load_linear(torch_model.attention["W1"], a["hidden"])
        _load_linear(torch_model.attention["W2"], a["score"])
        _load_linear(torch_model.decoder, d)
    return torch_model


def from_jax(jax_model) -> nn.Module:
    """A torch model with the shapes and parameters of ``jax_model``."""
    vocab_size, embedding_dim = jax_model.embedding[...].shape
    hidden = jax_model.encoder.hidden_size
    num_classes = (jax_model.decoder["output"] if jax_model.paired else jax_model.decoder).kernel[...].shape[1]
    model = build_torch_model(paired=jax_model.paired, vocab_size=vocab_size, num_classes=num_classes,
                              embedding_dim=embedding_dim, hidden_size=hidden)
    return load_from_jax(model, jax_model)


def lstm_parameters_as_jax(rnn: nn.LSTM) -> dict[str, np.ndarray]:
    """PyTorch LSTM tensors in our layout (``w_ih [D, 8H]``, ``w_hh [2, H, 4H]``, summed ``bias [8H]``)."""
    w_ih = torch.cat([rnn.weight_ih_l0, rnn.weight_ih_l0_reverse], dim=0).T
    w_hh = torch.stack([rnn.weight_hh_l0.T, rnn.weight_hh_l0_reverse.T])
    bias = torch.cat([rnn.bias_ih_l0 + rnn.bias_hh_l0, rnn.bias_ih_l0_reverse + rnn.bias_hh_l0_reverse])
    return {k: v.detach().numpy().copy() for k, v in dict(w_ih=w_ih, w_hh=w_hh, bias=bias).items()}


# --------------------------------------------------------------------------------------------------
# Training


def original_optimizer(model: nn.Module, learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                       single_lstm_bias: bool = False):
    """``Adam(lr, amsgrad=True)`` with coupled L2 on the original's parameter groups.

    ``single_lstm_bias=True`` freezes the LSTMs' ``bias_hh`` (at the zero that
    :func:`load_from_jax` gives it), so only ``bias_ih`` trains: the layout of
    nlproar_jax's BiLSTM, which stores one summed bias. With both biases trainable
    (the original), Adam moves each by about ``lr`` per step, so their sum moves
    about twice as far as one summed bias would.
    """
    groups = model.param_groups(weight_decay)
    if single_lstm_bias:
        frozen = {id(p) for name, p in model.named_parameters() if ".bias_hh_l0" in name}
        for p in model.parameters():
            if id(p) in frozen:
                p.requires_grad_(False)
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in frozen]} for g in groups]
    return torch.optim.Adam(groups, lr=learning_rate, amsgrad=True)


def train_step(model: nn.Module, optimizer, tokens, labels, aux_tokens=None) -> torch.Tensor:
    """One step of mean cross-entropy; returns the loss (detached)."""
    optimizer.zero_grad(set_to_none=True)
    logits, _ = model(tokens, aux_tokens)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return loss.detach()


# --------------------------------------------------------------------------------------------------
# Importance measures


def _gold(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits[torch.arange(labels.numel()), labels]


def _embedding_gradient(model, tokens, labels, aux_tokens=None, scale=None):
    """``(e, dF/de)``, F the sum of the gold logits; the model sees ``scale * e`` when given."""
    emb = model.embed(tokens).detach().requires_grad_(True)
    inp = emb if scale is None else emb * scale
    logits, _ = model.logits_from_embeddings(inp, tokens, aux_tokens)
    (grad,) = torch.autograd.grad(_gold(logits, labels).sum(), (emb,))
    return emb.detach(), grad


@torch.no_grad()
def random(tokens, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    return torch.rand(tokens.shape, generator=generator)


@torch.no_grad()
def mutual_information(tokens, table: torch.Tensor) -> torch.Tensor:
    return table[tokens]


@torch.no_grad()
def attention(model, tokens, aux_tokens=None) -> torch.Tensor:
    return model(tokens, aux_tokens)[1]


def gradient(model, tokens, labels, aux_tokens=None, efficient: bool = False) -> torch.Tensor:
    """``||E g_t||_2``. ``efficient=False`` is the original's ``norm(g @ E^T)`` (B x T x V)."""
    _, g = _embedding_gradient(model, tokens, labels, aux_tokens)
    with torch.no_grad():
        table = model.embedding_matrix
        if efficient:
            return torch.einsum("btd,de,bte->bt", g, table.T @ table, g).clamp_min(0).sqrt()
        return torch.norm(torch.matmul(g, table.T), p=2, dim=2)


def input_times_gradient(model, tokens, labels, aux_tokens=None) -> torch.Tensor:
    emb, g = _embedding_gradient(model, tokens, labels, aux_tokens)
    return (emb * g).sum(-1).abs()


def integrated_gradient_loop(model, tokens, labels, aux_tokens=None, steps: int = 50,
                             variant: str = "alpha_weighted") -> torch.Tensor:
    """The original's loop over ``alpha_i = i / steps``: the model sees ``alpha_i e``.

    ``alpha_weighted`` (the original): gradient w.r.t. the unscaled ``e``, so each
    term is ``alpha_i e . grad f(alpha_i e)``; ``textbook``: ``e . grad f(alpha_i e)``.
    Returns ``|mean_i term_i|``.
    """
    total = torch.zeros(tokens.shape)
    for i in range(1, steps + 1):
        alpha = i / steps
        emb, g = _embedding_gradient(model, tokens, labels, aux_tokens, scale=alpha)
        term = (emb * g).sum(-1)
        total += term if variant == "alpha_weighted" else term / alpha
    return (total / steps).abs()


def integrated_gradient_captum(model, tokens, labels, aux_tokens=None, steps: int = 50,
                               internal_batch_size: Optional[int] = None, signed: bool = False):
    """Captum's ``IntegratedGradients`` on the embedding output: zero baseline,
    ``riemann_right`` with ``steps`` points, summed over the embedding dimension.

    That is textbook IG, ``|e_t . mean_i grad f(alpha_i e)|`` (``signed=True``: without ``abs``).
    """
    from captum.attr import IntegratedGradients

    def forward(emb, toks, aux=None):
        return model.logits_from_embeddings(emb, toks, aux)[0]

    emb = model.embed(tokens).detach()
    extra = (tokens,) if aux_tokens is None else (tokens, aux_tokens)
    attributions = IntegratedGradients(forward).attribute(
        emb, baselines=torch.zeros_like(emb), target=labels, additional_forward_args=extra,
        n_steps=steps, method="riemann_right", internal_batch_size=internal_batch_size)
    scores = attributions.detach().sum(-1)
    return scores if signed else scores.abs()


# --------------------------------------------------------------------------------------------------
# Captum counterparts of the sampled and perturbation measures (issue 15)
#
# Every one attributes to the embeddings of the **interior** positions of full-length rows
# ([CLS] w_1 .. w_n [EOS], no padding: the benchmark's rows), which are exactly the maskable
# positions there (nlproar_jax's ``model.maskable``): the Captum input is ``x = e[:, 1:-1]`` and the
# forward function puts the fixed [CLS] / [EOS] embeddings back around it. So noise, baselines and
# ablations touch the maskable positions only, as nlproar_jax's measures do, and a feature mask gives
# one interpretable feature per maskable token. The token ids stay the clean ones: a replaced token
# becomes [MASK], which is attended like the word it replaces (ids >= 3), so the attention mask and
# the lengths are the same either way.

MASK = 3  # nlproar_jax.data.tokens.MASK


def _interior(model, tokens):
    """``x <f32>[B, T-2, D]``: the embeddings of the interior (= maskable) positions, detached;
    raises unless every row is full length."""
    maskable = tokens >= FIRST_ELIGIBLE
    if not (bool(maskable[:, 1:-1].all()) and not bool(maskable[:, [0, -1]].any())):
        raise ValueError("the Captum counterparts expect full-length rows: [CLS] words [EOS], no padding")
    x = model.embed(tokens)[:, 1:-1].detach()
    return x


def _forward_fn(model, output: str = "logit"):
    """``forward(x, tokens[, aux])``: the logits (``output="probability"``: softmax probabilities)
    ``<f32>[n, C]`` of the model on ``x`` put back between the clean [CLS] / [EOS] embeddings."""
    def forward(x, toks, aux=None):
        e = model.embed(toks)
        emb = torch.cat([e[:, :1], x, e[:, -1:]], dim=1)
        logits = model.logits_from_embeddings(emb, toks, aux)[0]
        return torch.softmax(logits, dim=-1) if output == "probability" else logits
    return forward


def _extra(tokens, aux_tokens):
    return (tokens,) if aux_tokens is None else (tokens, aux_tokens)


def _mask_embedding(model, like: torch.Tensor) -> torch.Tensor:
    """``<f32>[1, 1, D]``: the [MASK] token's embedding, which Captum broadcasts to every interior
    position of every row (the cheapest baseline shape it takes)."""
    with torch.no_grad():
        return model.embedding_matrix[MASK].detach().view(1, 1, -1).clone()


def _finish(attributions: torch.Tensor, signed: bool, reduce: str = "sum") -> torch.Tensor:
    """``<f32>[B, T]`` from ``attributions <f32>[B, T-2, D]``: reduced over D, 0 at the specials."""
    a = attributions.detach()
    s = a.sum(-1) if reduce == "sum" else a.mean(-1)
    s = torch.nn.functional.pad(s, (1, 1))
    return s if signed else s.abs()


def smoothgrad_captum(model, tokens, labels, aux_tokens=None, samples: int = 50, sigma: float = 0.15,
                      batch_size: Optional[int] = None) -> torch.Tensor:
    """``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``, ``stdevs = sigma * (max - min)`` of the
    batch's interior embeddings, summed over D: ``mean_s ||g(x + eps_s)||_1`` per position. Not
    nlproar_jax's statistic (``mean_s ||E g||_2``): Captum has none like it; the cost is the same
    (one forward + backward per sample and row)."""
    from captum.attr import NoiseTunnel, Saliency

    x = _interior(model, tokens)
    stdev = float(sigma * (x.max() - x.min()))
    a = NoiseTunnel(Saliency(_forward_fn(model))).attribute(
        x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=batch_size, stdevs=stdev,
        target=labels, additional_forward_args=_extra(tokens, aux_tokens))
    return _finish(a, signed=True)


def smoothgrad_times_input_captum(model, tokens, labels, aux_tokens=None, samples: int = 50, sigma: float = 0.15,
                                  batch_size: Optional[int] = None, signed: bool = False) -> torch.Tensor:
    """``NoiseTunnel(InputXGradient)``, ``nt_type="smoothgrad"``, summed over D: ``|mean_s (x + eps_s) .
    g(x + eps_s)|`` (nlproar_jax's ``smoothgrad_times_input``; its noise scale is per row, Captum's one
    ``stdevs`` per input tensor, here the batch's range)."""
    from captum.attr import InputXGradient, NoiseTunnel

    x = _interior(model, tokens)
    stdev = float(sigma * (x.max() - x.min()))
    a = NoiseTunnel(InputXGradient(_forward_fn(model))).attribute(
        x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=batch_size, stdevs=stdev,
        target=labels, additional_forward_args=_extra(tokens, aux_tokens))
    return _finish(a, signed=signed)


def random_token_baselines(model, like: torch.Tensor, count: int, generator=None) -> torch.Tensor:
    """``<f32>[count, T-2, D]``: embeddings of tokens drawn uniformly from the whole vocabulary, one
    per (baseline, position): Captum's ``GradientShap`` draws one of them per (row, sample)."""
    table = model.embedding_matrix.detach()
    ids = torch.randint(0, table.shape[0], (count, like.shape[1]), generator=generator)
    return table[ids]


def gradient_shap_captum(model, tokens, labels, aux_tokens=None, samples: int = 5, baselines=None,
                         baseline_count: int = 64, signed: bool = False, generator=None) -> torch.Tensor:
    """``GradientShap`` with ``n_samples=samples``, ``stdevs=0``, summed over D. ``baselines``: a
    ``[K, T-2, D]`` distribution (default: ``baseline_count`` random-token rows, nlproar_jax's
    ``baseline="random_tokens"``), or ``"mask"`` for the [MASK] embedding."""
    from captum.attr import GradientShap

    x = _interior(model, tokens)
    if baselines is None:
        baselines = random_token_baselines(model, x, baseline_count, generator)
    elif isinstance(baselines, str) and baselines == "mask":
        baselines = _mask_embedding(model, x).expand(1, x.shape[1], -1).contiguous()  # GradientShap: [K, T-2, D]
    a = GradientShap(_forward_fn(model)).attribute(
        x, baselines=baselines, n_samples=samples, stdevs=0.0, target=labels,
        additional_forward_args=_extra(tokens, aux_tokens))
    return _finish(a, signed=signed)


def occlusion_captum(model, tokens, labels, aux_tokens=None, perturbations_per_eval: int = 1,
                     output: str = "logit", signed: bool = False) -> torch.Tensor:
    """``Occlusion`` with a window of one token (``(1, D)``, stride 1) and the [MASK] embedding as
    baseline: ``f(x) - f(x with token t replaced by [MASK])``. Captum gives that difference to each
    of the window's D elements, so the score is their mean."""
    from captum.attr import Occlusion

    x = _interior(model, tokens)
    a = Occlusion(_forward_fn(model, output)).attribute(
        x, sliding_window_shapes=(1, x.shape[-1]), strides=(1, x.shape[-1]), baselines=_mask_embedding(model, x),
        target=labels, additional_forward_args=_extra(tokens, aux_tokens),
        perturbations_per_eval=perturbations_per_eval)
    return _finish(a, signed, reduce="mean")


def _feature_mask(x: torch.Tensor) -> torch.Tensor:
    """``<int64>[1, T-2, 1]``: one interpretable feature per interior token, broadcast over rows and
    the embedding dimension (Captum's cheapest feature-mask shape: its per-sample
    ``default_from_interp_rep_transform`` indexes the sample with this mask)."""
    return torch.arange(x.shape[1]).view(1, -1, 1)


def lime_text_similarity(kernel_width: float = 25.0):
    """The ``lime`` package's text kernel on the interpretable sample ``z``: ``distance = 100 * cosine
    distance(z, 1) = 100 (1 - sqrt(|z| / d))``, weight ``sqrt(exp(-distance^2 / width^2))``."""
    def similarity(_original, _perturbed, z, **kwargs):
        d = z.shape[-1]
        distance = 100.0 * (1.0 - (float(z.sum()) / d) ** 0.5)
        return np.sqrt(np.exp(-distance ** 2 / kernel_width ** 2))
    return similarity


def lime_text_perturbations(original_inp, **kwargs):
    """``LimeTextExplainer``'s sampling as a Captum perturbation generator: first the input itself,
    then each sample removes ``k ~ U{1..d}`` distinct features, uniformly."""
    d = int(kwargs["num_interp_features"])
    yield torch.ones(1, d, dtype=torch.long)
    while True:
        z = torch.ones(1, d, dtype=torch.long)
        k = int(torch.randint(1, d + 1, ()))
        z[0, torch.randperm(d)[:k]] = 0
        yield z


def lime_captum(model, tokens, labels, aux_tokens=None, samples: int = 5000, perturbations_per_eval: int = 1,
                kernel_width: float = 25.0, alpha: float = 1.0, output: str = "probability",
                signed: bool = False, sampling: str = "lime_text") -> torch.Tensor:
    """Captum ``Lime`` with nlproar_jax's (the ``lime`` package's) choices: interpretable model
    ``SkLearnRidge(alpha)`` (sklearn ``Ridge``, intercept), the text kernel of
    :func:`lime_text_similarity`, ``LimeTextExplainer``'s sampling (:func:`lime_text_perturbations`;
    ``sampling="bernoulli"``: Captum's default), the [MASK] embedding as the removed value, one
    feature per token. With a batch Captum fits one model per row, one row at a time."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    x = _interior(model, tokens)
    lime = Lime(_forward_fn(model, output), interpretable_model=SkLearnRidge(alpha=alpha),
                similarity_func=lime_text_similarity(kernel_width),
                perturb_func=lime_text_perturbations if sampling == "lime_text" else None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multiple inputs ... a separate interpretable model for each example"
        a = lime.attribute(x, baselines=_mask_embedding(model, x), target=labels,
                           additional_forward_args=_extra(tokens, aux_tokens), feature_mask=_feature_mask(x),
                           n_samples=samples, perturbations_per_eval=perturbations_per_eval)
    return _finish(a, signed, reduce="mean")


def kernel_shap_captum(model, tokens, labels, aux_tokens=None, samples: int = 2048, perturbations_per_eval: int = 1,
                       output: str = "logit", signed: bool = False) -> torch.Tensor:
    """Captum ``KernelShap`` (its Shapley-kernel sampling, ``SkLearnLinearRegression``, weight 1e6 on
    the full and empty coalitions), the [MASK] embedding as the absent value, one feature per token;
    one fit per row, one row at a time."""
    from captum.attr import KernelShap

    x = _interior(model, tokens)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = KernelShap(_forward_fn(model, output)).attribute(
            x, baselines=_mask_embedding(model, x), target=labels, additional_forward_args=_extra(tokens, aux_tokens),
            feature_mask=_feature_mask(x), n_samples=samples, perturbations_per_eval=perturbations_per_eval)
    return _finish(a, signed, reduce="mean")
