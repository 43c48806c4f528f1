"""``config.model = "bert"`` through the pipeline, on a TINY random BERT checkpoint written here (2 layers,
hidden 32, a 85-piece WordPiece vocabulary): tasks encoded with its tokenizer (word pieces, the
tokenizer's ids, truncation, pairs, a pad id other than 0), the cache key, eligibility, section 9's
fine-tuning optimiser (schedule closed form, no decay on biases and LayerNorms, torch AdamW parity),
the model defaults, and (slow) a base run from the command line and a classic k=10 ROAR run.

Skips when ``transformers`` (the tokenizer) is absent; the AdamW parity check also needs torch."""
import json
import os
import string
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import REPO_ROOT
from nlproar_jax.data import pretrained
from nlproar_jax.data.dataset import RawSplit, RawTask, TaskData
from nlproar_jax.data.registry import dataset_key, load_task
from nlproar_jax.data.tokens import PretrainedVocabulary
from nlproar_jax.models import apply_model_defaults, bert, build_from_config, task_tokenizer
from nlproar_jax.training import optim

transformers = pytest.importorskip("transformers", reason="the bert pipeline reads its tokenizer with transformers")

WORDS = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase) + list(string.digits)
         + ["##" + c for c in string.digits + string.ascii_lowercase]
         + ["pos", "neg", "the", "movie", "good", "bad", ",", "."])
MAX_LEN = 64


def write_tiny_bert(directory, words, seed=0):
    """A random 2-layer BERT with ``words`` as its WordPiece vocabulary, as an HF directory
    (config.json, model.safetensors without a head, vocab.txt, tokenizer files)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True,
                                           model_max_length=MAX_LEN)
    tokenizer.save_pretrained(str(directory))
    special = bert.SpecialTokens.from_tokenizer(tokenizer)
    cfg = bert.TransformerConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=MAX_LEN, pad_token_id=special.pad)
    model = bert.TransformerClassifier(cfg, special, rngs=nnx.Rngs(params=seed))
    for _, param, _, _ in bert.hf_parameter_names(model):  # biases and LayerNorms off their trivial init
        param.value = param[...] + 0.05 * jax.random.normal(jax.random.key(seed + 1), param[...].shape)
    return bert.save_checkpoint(model, directory)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), WORDS)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return bert.load_tokenizer(tiny_dir)


def synthetic_config(tiny_dir, persistent_dir, **kw):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg", REPO_ROOT / "configs/synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.model, c.bert_dir, c.persistent_dir = "bert", str(tiny_dir), str(persistent_dir)
    c.dataset.train_size, c.dataset.val_size, c.dataset.test_size = 48, 16, 16
    for k, v in kw.items():
        c[k] = v
    return c


def test_task_is_encoded_with_the_tokenizer(tiny_dir, tokenizer, tmp_path):
    c = synthetic_config(tiny_dir, tmp_path)
    spec = task_tokenizer(c)
    assert spec == pretrained.TokenizerSpec(str(tiny_dir), MAX_LEN)
    data = load_task("synthetic", data_dir=None, min_df=1, options=c.dataset.to_dict(), cache_dir=str(tmp_path),
                     tokenizer=spec)
    assert isinstance(data.vocab, PretrainedVocabulary) and data.vocab.words == tuple(WORDS)
    assert data.vocab.source == spec.identity()
    from nlproar_jax.data.synthetic import load

    raw = load(None, **c.dataset.to_dict())
    main = data.splits["test"].main
    for i in range(8):  # the tokenizer's ids of the words joined by spaces, truncated as section 9 says
        ids = tokenizer(" ".join(raw.splits["test"].main[i]))["input_ids"]
        expected = ids if len(ids) <= MAX_LEN else ids[:MAX_LEN - 1] + ids[-1:]
        assert main.row(i).tolist() == expected
        assert data.vocab.decode(main.row(i))[:2] == ["[CLS]", tokenizer.tokenize(raw.splits["test"].main[i][0])[0]]
    assert main.lengths.max() <= MAX_LEN and (main.lengths == MAX_LEN).any()  # some rows were truncated
    # The cache: its key names the tokenizer and differs from the word vocabulary's; it loads back as is.
    key = dataset_key("synthetic", 1, c.dataset.to_dict(), spec.identity())
    assert key.startswith(f"synthetic-{spec.identity()}-") and key != dataset_key("synthetic", 1, c.dataset.to_dict())
    again = TaskData.load(os.path.join(str(tmp_path), key + ".npz"))
    assert again.vocab == data.vocab and np.array_equal(again.splits["test"].main.values, main.values)
    with pytest.raises(TypeError, match="tokenizer"):
        data.vocab.encode(["the"])


def test_pairs_and_truncation(tokenizer):
    texts, pairs = ["the movie good", "a b c d e f g h"], ["bad .", "pos"]
    mains, auxs = pretrained.encode_batch(tokenizer, texts, pairs, 64)
    packed = tokenizer(texts, pairs)["input_ids"]
    for m, a, p in zip(mains, auxs, packed):  # [CLS] a [SEP] + b [SEP] == HF's own pair encoding
        assert m[0] == tokenizer.cls_token_id and m[-1] == a[-1] == tokenizer.sep_token_id
        assert m + a == p
    mains, auxs = pretrained.encode_batch(tokenizer, texts, pairs, 8)  # the main part gives way
    assert [len(m) + len(a) for m, a in zip(mains, auxs)] == [8, 8]  # 5 + 3 fits; 10 + 2 does not
    assert mains[1] == tokenizer(texts[1])["input_ids"][:5] + [tokenizer.sep_token_id]
    assert bert.encode(tokenizer, texts[1], max_length=5)[0] == tokenizer(texts[1])["input_ids"][:4] + [3]
    with pytest.raises(ValueError, match="no room"):
        pretrained.encode_batch(tokenizer, ["a"], ["a b c d e f"], 8)


def test_model_reads_data_ids_and_masks_only_word_pieces(tiny_dir, tokenizer, tmp_path):
    c = synthetic_config(tiny_dir, tmp_path)
    from nlproar_jax.roar.run import load_base_data

    data = load_base_data(c)
    model = build_from_config(c, data, seed=0)
    assert model.num_labels == 2 and model.mask_token == tokenizer.mask_token_id == 4
    tokens = jnp.asarray(data.splits["test"].main.pad(np.arange(4), MAX_LEN + 8))
    specials = np.isin(np.asarray(tokens), [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id])
    np.testing.assert_array_equal(model.maskable(tokens), ~specials)
    assert model.maskable(jnp.array([[4, 1]])).tolist() == [[True, True]]  # [MASK] and [UNK] stay eligible
    # A task encoded with the word vocabulary is refused, naming the problem.
    words = synthetic_config(tiny_dir, tmp_path, model="rnn")
    from nlproar_jax.roar.run import load_base_data as load_words

    with pytest.raises(ValueError, match="encoded with another vocabulary"):
        build_from_config(c, load_words(words), seed=0)


def test_a_pad_id_other_than_0_is_exchanged_with_0(tmp_path):
    """RoBERTa pads with 1: the data has ids 0 and pad exchanged, the model reads them, logits unchanged."""
    words = ["[UNK]", "[PAD]"] + [w for w in WORDS if w not in ("[UNK]", "[PAD]")]
    directory = write_tiny_bert(tmp_path / "pad1", words, seed=3)
    tok = bert.load_tokenizer(directory)
    assert tok.pad_token_id == 1
    raw = RawTask("t", ("a", "b"), {s: RawSplit([["the", "movie", "w12"], ["bad"]], [0, 1]) for s in ("train", "val", "test")})
    spec = pretrained.TokenizerSpec(str(directory), MAX_LEN)
    data = pretrained.encode_task(raw, spec)
    ids = [tok("the movie w12")["input_ids"], tok("bad")["input_ids"]]
    assert data.splits["test"].main.row(1).tolist() == pretrained.pad_swap(np.array(ids[1]), 1).tolist()
    assert data.vocab.words[0] == "[PAD]" and data.vocab.words[1] == "[UNK]"
    ours = bert.from_config({"bert_dir": str(directory)}, data, 0)
    reference = bert.load_pretrained(directory, num_labels=2, key=jax.random.key(0))
    assert (ours.pad_token, ours.cls_token, ours.mask_token) == (0, reference.cls_token, reference.mask_token)
    data_batch = data.splits["test"].main.pad(np.arange(2), 8)  # padded with 0, the pipeline's way
    tok_batch = bert.pad_batch(ids, 1, length=8)
    np.testing.assert_allclose(ours(jnp.asarray(data_batch))[0], reference(jnp.asarray(tok_batch))[0], atol=1e-5)
    np.testing.assert_array_equal(ours.maskable(jnp.asarray(data_batch)), reference.maskable(jnp.asarray(tok_batch)))


# -- section 9's optimiser ------------------------------------------------------------------
def test_linear_warmup_schedule_closed_form():
    lr, total, warmup = 2e-5, 200, 0.06
    w = optim.warmup_steps(total, warmup)
    assert w == 12
    schedule = optim.linear_warmup_schedule(lr, total, warmup)
    closed = lambda t: lr * t / w if t < w else lr * max(0.0, (total - t) / (total - w))  # noqa: E731
    for t in (0, 1, w // 2, w, w + 1, 100, total - 1, total):
        np.testing.assert_allclose(float(schedule(t)), closed(t), rtol=1e-6, atol=1e-12)
    assert float(schedule(0)) == 0.0 and float(schedule(w)) == pytest.approx(lr) and float(schedule(total)) == 0.0
    with pytest.raises(ValueError, match="warmup"):
        optim.finetune_optimizer((), warmup=1.5)
    with pytest.raises(ValueError, match="adam"):
        optim.make_optimizer("adam", (), 1e-3, 0.0, total_steps=1)


def test_no_weight_decay_on_biases_and_layer_norms(tiny_dir):
    model = bert.load_pretrained(tiny_dir, num_labels=2, key=jax.random.key(0))
    params = nnx.state(model)
    lr, wd = 1e-2, 0.1
    tx = optim.make_optimizer("adamw", model.no_weight_decay, lr, wd, total_steps=10, warmup=0.0)
    zeros = jax.tree.map(jnp.zeros_like, params)  # Adam's step is 0: only the decay moves a parameter
    updates, _ = tx.update(zeros, tx.init(params), params)
    flat = jax.tree_util.tree_flatten_with_path(updates)[0]
    values = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    decayed = 0
    for path, update in flat:
        names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
        if names & {"bias", "scale"}:
            assert np.all(np.asarray(update) == 0), path
        else:
            np.testing.assert_allclose(update, -lr * wd * np.asarray(values[path]), rtol=1e-6)
            decayed += 1
    assert decayed == 3 + 2 * 6 + 2  # word/position/type tables, 6 kernels per block, the head's 2


def test_adamw_matches_torch_with_hf_schedule():
    torch = pytest.importorskip("torch", reason="parity with torch.optim.AdamW")
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    grads = [(rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)) for _ in range(6)]
    total = 10
    tw, tb = torch.nn.Parameter(torch.tensor(w0)), torch.nn.Parameter(torch.tensor(b0))
    opt = torch.optim.AdamW([{"params": [tw], "weight_decay": 0.01}, {"params": [tb], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.98))
    sched = transformers.get_linear_schedule_with_warmup(opt, int(total * 0.2), total)
    params = {"w": jnp.asarray(w0), "bias": jnp.asarray(b0)}
    tx = optim.finetune_optimizer(("bias",), 1e-2, 0.01, total, 0.2)
    state = tx.init(params)
    for gw, gb in grads:
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        opt.step()
        sched.step()
        updates, state = tx.update({"w": jnp.asarray(gw), "bias": jnp.asarray(gb)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(params["bias"], tb.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_model_defaults_are_section_9s_and_the_command_line_wins(tiny_dir, tmp_path):
    c = synthetic_config(tiny_dir, tmp_path)
    applied = apply_model_defaults(c, keep={"max_epochs"})
    assert applied == dict(optimizer="adamw", learning_rate=2e-5, weight_decay=0.01, batch_size=16)
    assert c.max_epochs == 3 and c.optimizer == "adamw"  # max_epochs kept: synthetic.py's 3
    c.task = "babi-2"
    assert apply_model_defaults(c)["max_epochs"] == 8
    assert (c.warmup, c.adam_b1, c.adam_b2, c.adam_eps) == (0.06, 0.9, 0.98, 1e-8)
    assert apply_model_defaults(synthetic_config(tiny_dir, tmp_path, model="rnn")) == {}


# -- the pipeline end to end ----------------------------------------------------------------
@pytest.mark.slow
def test_bert_base_run_from_the_command_line_and_classic_roar(tiny_dir, tokenizer, tmp_path):
    from nlproar_jax.names import Experiment, Paths
    from nlproar_jax.roar.references import masked_data
    from nlproar_jax.roar.run import load_base_data, run_experiment

    out = subprocess.run([sys.executable, "-m", "nlproar_jax.train", "--config=configs/synthetic.py",
                          "--config.model=bert", f"--config.bert_dir={tiny_dir}", "--config.max_epochs=1",
                          "--config.dataset.train_size=48", "--config.dataset.val_size=16",
                          "--config.dataset.test_size=16", f"--config.persistent_dir={tmp_path}",
                          "--config.malloc_hugetlb=False"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    paths = Paths(str(tmp_path))
    base_exp = Experiment.from_config(synthetic_config(tiny_dir, tmp_path))
    with open(paths.result(base_exp)) as f:
        base = json.load(f)
    assert base["experiment_id"] == "synthetic_bert_s-0" and base["epochs"] == 1
    assert "tok-" in base["dataset_key"] and 0.0 <= base["test"]["macro_f1"] <= 1.0
    with open(paths.config(base_exp)) as f:
        used = json.load(f)  # --config.model=bert brought section 9's settings; max_epochs stayed the command line's
    assert (used["optimizer"], used["learning_rate"], used["batch_size"], used["max_epochs"]) == ("adamw", 2e-5, 16, 1)

    c = synthetic_config(tiny_dir, tmp_path, max_epochs=1, optimizer="adamw", learning_rate=2e-5,
                         weight_decay=0.01, batch_size=16, k=10, roar_strategy="count", importance_measure="gradient")
    result = run_experiment(c)
    assert result["reference_id"] == "synthetic_bert_s-0" and result["dataset_key"] == base["dataset_key"]
    base_data = load_base_data(c)
    masked = masked_data(paths, Experiment.from_config(c), base_data, c)  # the cached importance, masked again
    mask = tokenizer.mask_token_id
    for name in ("train", "test"):
        before, after = base_data.splits[name].main, masked.splits[name].main
        for i in range(len(before)):
            b, a = before.row(i), after.row(i)
            word_pieces = ~np.isin(b, [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id])
            changed = a != b
            assert np.all(a[changed] == mask) and np.all(word_pieces[changed])  # only word pieces, only to [MASK]
            assert int(np.sum(a[word_pieces] == mask)) == min(10, int(word_pieces.sum()))


@pytest.mark.slow
def test_dropout_in_training_only_and_stacked_equals_single(tiny_dir, tmp_path):
    """fit passes a dropout key per step (the model asks: train_dropout), the same in a stack of models
    as alone; training with dropout differs from training without."""
    from nlproar_jax.roar.run import load_base_data
    from nlproar_jax.training.loop import fit

    c = synthetic_config(tiny_dir, tmp_path)
    data = load_base_data(c)
    model = build_from_config(c, data, seed=0)
    assert model.train_dropout
    graphdef, params = nnx.split(model)
    train, val = data.splits["train"], data.splits["val"]
    settings = dict(epochs=1, batch_size=16, monitor="auroc", optimizer="adamw", learning_rate=1e-3,
                    weight_decay=0.01, optimizer_options=dict(warmup=0.1))
    single = fit(graphdef, [params], [train], [val], [0], **settings)[0]
    stacked = fit(graphdef, [params, params], [train, train], [val, val], [0, 1], **settings)
    plain = fit(graphdef, [params], [train], [val], [0], dropout=False, **settings)[0]
    leaves = lambda r: jax.tree.leaves(r.best_params)  # noqa: E731
    for a, b in zip(leaves(single), leaves(stacked[0])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(leaves(single), leaves(stacked[1])))  # another seed
    assert not all(np.allclose(a, b) for a, b in zip(leaves(single), leaves(plain)))


def test_use_data_ids_keeps_roberta_positions_and_logits():
    """A RoBERTa config (pad 1, positions from pad + 1) reading data ids (0 and 1 exchanged) == on its own ids."""
    cfg = bert.TransformerConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, model_type="roberta", max_position_embeddings=20,
                                 type_vocab_size=1, pad_token_id=1)
    special = bert.SpecialTokens(pad=1, cls=0, sep=2, mask=49)
    make = lambda: bert.TransformerClassifier(cfg, special, num_labels=3, rngs=nnx.Rngs(params=0))  # noqa: E731
    reference, ours = make(), bert.use_data_ids(make())
    assert (ours.pad_token, ours.cls_token, ours.sep_token, ours.mask_token) == (0, 1, 2, 49)
    tok = bert.pad_batch([[0, 5, 6, 7, 2], [0, 8, 2]], 1, length=7)
    data = jnp.asarray(pretrained.pad_swap(tok, 1))
    np.testing.assert_array_equal(ours.positions(data), reference.positions(jnp.asarray(tok)))
    np.testing.assert_allclose(ours(data)[0], reference(jnp.asarray(tok))[0], atol=1e-5)
    np.testing.assert_array_equal(ours.maskable(data), reference.maskable(jnp.asarray(tok)))


def test_integrated_gradients_chunks_are_sized_by_the_transformers_own_memory_estimate(tiny_dir):
    """The compiled IG program's extra temporary memory per interpolation point (XLA's own memory
    analysis) is at most the model's estimate and not far below it, so the chunk chosen from it
    bounds the memory actually used; the BiLSTM's estimate would undercount this model."""
    from nlproar_jax.importance import IntegratedGradients
    from nlproar_jax.roar.scores import autodiff_bytes_per_position, ig_chunk_size, score_batch

    model = bert.load_pretrained(tiny_dir, num_labels=2)
    graphdef, params = nnx.split(model)
    B, T = 4, 48
    tokens = jnp.asarray(np.random.default_rng(0).integers(5, 40, (B, T)), jnp.int32)
    tokens = tokens.at[:, 0].set(model.cls_token).at[:, -1].set(model.sep_token)

    def temp_bytes(chunk):
        measure = IntegratedGradients(steps=4, chunk_size=chunk)
        compiled = score_batch.lower(measure, graphdef, params, tokens, jnp.zeros(B, jnp.int32), None,
                                     jax.random.key(0), jnp.arange(B)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    per_point = (temp_bytes(4) - temp_bytes(1)) / 3 / (B * T)
    estimate = autodiff_bytes_per_position(model, T, hidden_size=128)
    assert 0.6 * estimate <= per_point <= estimate, (per_point, estimate)
    assert autodiff_bytes_per_position(None, T, hidden_size=8) < estimate  # the BiLSTM default
    budget = 20 * B * T * estimate
    assert ig_chunk_size(B, T, 0, 50, budget, bytes_per_position=estimate) == 20
