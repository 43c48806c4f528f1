"""Erasure metrics (nlproar_jax.evaluation.erasure) against direct computations.

Two hand-built models meeting the classifier protocol, both linear in their embeddings and
evaluated here in numpy (float64) on perturbed inputs built by hand: a bag of the eligible tokens'
embeddings (positions do not matter) and a position-weighted bag of every non-padding token
(specials too), for which deleting and re-packing differs from masking. The BiLSTM checks the fast
path, batching and padding.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import make_batch
from nlproar_jax.data.dataset import Ragged, Split
from nlproar_jax.evaluation import erasure
from nlproar_jax.evaluation.erasure import BINS, aopc, erasure_batch, keep_masks, perturb
from nlproar_jax.roar.masking import roar_mask

MASK_ID = 3  # maskable = id >= 3, as the task vocabulary; [PAD]=0, [CLS]=1, [EOS]=2


class LinearBag(nnx.Module):
    """``logits = (sum of the eligible tokens' embeddings) @ W + b``."""

    mask_token = MASK_ID

    def __init__(self, vocab_size=30, dim=4, num_classes=2, seed=0):
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        self.table = nnx.Param(0.4 * jax.random.normal(k1, (vocab_size, dim)))
        self.w = nnx.Param(jax.random.normal(k2, (dim, num_classes)))
        self.b = nnx.Param(0.1 * jax.random.normal(k3, (num_classes,)))

    def embed(self, tokens):
        return jnp.take(self.table[...], tokens, axis=0)

    def maskable(self, tokens):
        return tokens >= MASK_ID

    @staticmethod
    def weights(tokens, xp=jnp):
        return (tokens >= MASK_ID).astype(xp.float32)

    def logits_from_embeddings(self, emb, tokens, aux_tokens=None):
        return (emb * self.weights(tokens)[..., None]).sum(1) @ self.w[...] + self.b[...], None

    def numpy_logits(self, tokens):
        """The same function in float64 numpy, for one ``[T]`` row or a batch."""
        tokens = np.asarray(tokens)
        table, w, b = (np.asarray(p[...], np.float64) for p in (self.table, self.w, self.b))
        return (table[tokens] * self.weights(tokens, np)[..., None]).sum(-2) @ w + b


class PositionalBag(LinearBag):
    """Every non-padding token (specials included), weighted by ``1 + position / 4``."""

    @staticmethod
    def weights(tokens, xp=jnp):
        return (tokens != 0) * (1.0 + xp.arange(tokens.shape[-1]) / 4.0)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def random_batch(lengths, seed, *, tied=True, extra_pad=0):
    """[CLS] words [EOS] rows (word ids 4..29, no [MASK]), scores (integers: many ties) that are
    huge at specials and padding (they must never be chosen)."""
    rng = np.random.default_rng(seed)
    rows = [[1] + list(rng.integers(4, 30, n)) + [2] for n in lengths]
    batch = make_batch(rows, rng.integers(0, 2, len(rows)), pad_to=max(lengths) + 2 + extra_pad)
    scores = rng.integers(0, 4, batch.tokens.shape) if tied else rng.normal(size=batch.tokens.shape)
    scores = np.where(batch.tokens >= MASK_ID, scores, 1e6).astype(np.float32)
    return batch, scores


# -- the reference: ROAR's top-b and the perturbed inputs, by hand -----------------------------
def ref_top(tokens, scores, count):
    """The ``count`` eligible positions of a row with the highest score, ties to the lower position."""
    eligible = [t for t in range(len(tokens)) if tokens[t] >= MASK_ID]
    return set(sorted(eligible, key=lambda t: (-scores[t], t))[:count])


def ref_input(tokens, removed, removal):
    if removal == "mask":
        return np.array([MASK_ID if t in removed else x for t, x in enumerate(tokens)])
    kept = [x for t, x in enumerate(tokens) if t not in removed]
    return np.array(kept + [0] * (len(tokens) - len(kept)))


def reference(model, tokens, scores, labels, bins, removal):
    """Per-row values computed in numpy from hand-built perturbed inputs."""
    out = {k: [] for k in ("probability", "prediction", "removed", "comprehensiveness", "sufficiency", "flip",
                           "flip_top1")}
    for row, s, c in zip(tokens, scores, labels):
        n = int((row >= MASK_ID).sum())
        full = model.numpy_logits(row)
        pred, p = int(np.argmax(full)), softmax(full)[c]
        counts = [k * n // 100 for k in bins]
        comp, suff, flip = [], [], []
        for b in counts:
            top = ref_top(row, s, b)
            without = model.numpy_logits(ref_input(row, top, removal))
            only = model.numpy_logits(ref_input(row, {t for t in range(len(row)) if row[t] >= MASK_ID} - top, removal))
            comp.append(p - softmax(without)[c])
            suff.append(p - softmax(only)[c])
            flip.append(int(np.argmax(without)) != pred)
        top1 = model.numpy_logits(ref_input(row, ref_top(row, s, 1), removal))
        for k, v in zip(out, (p, pred, counts, comp, suff, flip, int(np.argmax(top1)) != pred)):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def assert_matches(got, want, atol=2e-6):
    for k, v in want.items():
        g = np.asarray(got[k])
        if v.dtype.kind == "f":
            np.testing.assert_allclose(g, v, atol=atol, err_msg=k)
        else:
            np.testing.assert_array_equal(g, v, err_msg=k)


# -- tests ------------------------------------------------------------------------------------
def test_closed_form_two_classes():
    """1-d embeddings, W = [0, 1], b = 0: p_1 = sigmoid(sum of the eligible embeddings)."""
    model = LinearBag(vocab_size=10, dim=1)
    table = np.zeros((10, 1), np.float32)
    table[[5, 6, 7, 8, 1, 2], 0] = [2.0, -1.0, 0.5, 1.0, 7.0, 7.0]  # specials carry weight 0 anyway
    model.table[...] = jnp.asarray(table)
    model.w[...] = jnp.asarray([[0.0, 1.0]])
    model.b[...] = jnp.zeros(2)
    tokens = np.array([[1, 5, 6, 7, 8, 2, 0]])
    scores = np.array([[9, 4, 3, 2, 1, 9, 9]], np.float32)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for removal in ("mask", "delete"):  # E[mask] = 0: both conventions agree here
        out = erasure_batch(model, tokens, scores, np.array([1]), bins=(25, 50, 100), removal=removal)
        full = sig(2.5)
        np.testing.assert_allclose(out["probability"], [full], atol=1e-6)
        np.testing.assert_array_equal(out["removed"], [[1, 2, 4]])
        np.testing.assert_allclose(out["comprehensiveness"], [[full - sig(0.5), full - sig(1.5), full - sig(0.0)]],
                                   atol=1e-6)
        np.testing.assert_allclose(out["sufficiency"], [[full - sig(2.0), full - sig(1.0), 0.0]], atol=1e-6)
        np.testing.assert_array_equal(out["flip"], [[False, False, True]])  # sigmoid(0) = 0.5: argmax ties to 0
        assert not out["flip_top1"][0]


@pytest.mark.parametrize("removal", ["mask", "delete"])
@pytest.mark.parametrize("model_cls", [LinearBag, PositionalBag])
def test_against_hand_built_inputs(model_cls, removal):
    model = model_cls(seed=3)
    batch, scores = random_batch([40, 20, 7, 0], seed=1, extra_pad=2)  # eligible: 40, 20, 7, 0
    out = erasure_batch(model, batch.tokens, scores, batch.labels, removal=removal)
    want = reference(model, batch.tokens, scores, batch.labels, BINS, removal)
    np.testing.assert_array_equal(out["removed"], [[0, 2, 4, 8, 20], [0, 1, 2, 4, 10], [0, 0, 0, 1, 3],
                                                   [0, 0, 0, 0, 0]])  # floor(k n / 100), exactly
    np.testing.assert_array_equal(out["eligible"], [40, 20, 7, 0])
    assert_matches(out, want)
    np.testing.assert_array_equal(out["comprehensiveness"][:, 0], 0.0)  # 1% rounds to 0 tokens here
    for norm, denom in (("mean", 5), ("unirex", 6)):
        np.testing.assert_allclose(aopc(np.asarray(out["comprehensiveness"]), norm),
                                   want["comprehensiveness"].sum(1) / denom, atol=2e-6)
        np.testing.assert_allclose(aopc(np.asarray(out["sufficiency"]), norm),
                                   want["sufficiency"].sum(1) / denom, atol=2e-6)
    if model_cls is PositionalBag:  # explaining the prediction (one model suffices: compile time)
        pred = erasure_batch(model, batch.tokens, scores, "predicted", removal=removal)
        np.testing.assert_array_equal(pred["target"], pred["prediction"])
        assert_matches(pred, reference(model, batch.tokens, scores, np.asarray(pred["prediction"]), BINS, removal))


@pytest.mark.parametrize("removal", ["mask", "delete"])
def test_perturbed_inputs_are_roars_and_keep_specials(removal):
    batch, scores = random_batch([30, 11, 3], seed=2, extra_pad=3)
    tokens = batch.tokens.copy()
    tokens[0, 5] = MASK_ID  # an earlier ROAR mask ranks first, as in roar_mask
    maskable = jnp.asarray(tokens >= MASK_ID)
    keep = np.asarray(keep_masks(jnp.asarray(tokens), jnp.asarray(scores), BINS, maskable=maskable,
                                 mask_token=MASK_ID))
    assert keep.shape == (2 + 2 * len(BINS),) + tokens.shape
    inputs = np.asarray(perturb(jnp.asarray(tokens), jnp.asarray(keep), removal, mask_token=MASK_ID))
    assert (keep | (tokens >= MASK_ID)).all()  # specials and padding are always kept
    for j, k in enumerate(BINS):
        roar = np.asarray(roar_mask(tokens, scores, jnp.int32(k), "quantile", mask_token=MASK_ID))
        if removal == "mask":
            np.testing.assert_array_equal(inputs[1 + j], roar)
        removed = [set(np.flatnonzero(r != t)) | set(np.flatnonzero((t == MASK_ID) & (r == MASK_ID)))
                   for r, t in zip(roar, tokens)]
        for b, row in enumerate(tokens):
            np.testing.assert_array_equal(inputs[1 + j, b], ref_input(row, removed[b], removal))
            eligible = set(np.flatnonzero(row >= MASK_ID))
            np.testing.assert_array_equal(inputs[1 + len(BINS) + j, b],
                                          ref_input(row, eligible - removed[b], removal))
    specials = lambda x: x[(x > 0) & (x < MASK_ID)].tolist()  # noqa: E731
    for x in inputs.reshape(-1, tokens.shape[1]):
        assert specials(x) in ([1, 2],)  # [CLS] ... [EOS] survive every perturbation, in order
        assert x[0] == 1


@pytest.mark.parametrize("removal", ["mask", "delete"])
def test_bilstm_batched_per_example_padding_fast_path(tiny_single, removal):
    batch, scores = random_batch([22, 14, 9], seed=4, tied=False)
    labels = np.array([0, 2, 1])
    out = {k: np.asarray(v) for k, v in erasure_batch(tiny_single, batch.tokens, scores, labels, removal=removal).items()}
    # each row alone (a batch of one) with 8 more [PAD] columns (scores there huge): the same values
    padded = np.pad(batch.tokens, ((0, 0), (0, 8)))
    padded_scores = np.pad(scores, ((0, 0), (0, 8)), constant_values=1e6)
    for i in range(3):
        one = erasure_batch(tiny_single, padded[i : i + 1], padded_scores[i : i + 1], labels[i : i + 1],
                            removal=removal)
        assert_matches(one, {k: v[i : i + 1] for k, v in out.items()}, atol=2e-6)
    # the projection fast path equals the generic path (the definition), chunked or not
    generic = erasure_batch(tiny_single, batch.tokens, scores, labels, removal=removal, fast_path=False,
                            chunk_size=5)
    assert_matches(generic, out, atol=2e-6)


def test_paired_bilstm_fast_path_equals_generic(tiny_paired, paired_batch):
    """The auxiliary sequence (never perturbed) reaches both paths; deletion re-packs the premise only."""
    scores = np.arange(paired_batch.tokens.size, dtype=np.float32).reshape(paired_batch.tokens.shape) % 5
    kwargs = dict(bins=(25, 50, 100), removal="delete")
    fast = erasure_batch(tiny_paired, paired_batch.tokens, scores, paired_batch.labels, paired_batch.aux_tokens,
                         **kwargs)
    generic = erasure_batch(tiny_paired, paired_batch.tokens, scores, paired_batch.labels, paired_batch.aux_tokens,
                            fast_path=False, **kwargs)
    np.testing.assert_array_equal(fast["removed"], [[1, 2, 4], [0, 1, 2], [0, 1, 3]])
    assert_matches(generic, {k: np.asarray(v) for k, v in fast.items()}, atol=2e-6)


def test_chunks_and_row_independence_linear():
    model = PositionalBag(seed=5)
    batch, scores = random_batch([25, 12, 6, 16], seed=6)
    base = erasure_batch(model, batch.tokens, scores, batch.labels, removal="delete", chunk_size=0)
    for chunk in (5,):  # two full chunks in a scan, then a remainder of 2
        got = erasure_batch(model, batch.tokens, scores, batch.labels, removal="delete", chunk_size=chunk)
        assert_matches(got, {k: np.asarray(v) for k, v in base.items()}, atol=1e-6)
    # a row's values do not depend on its batch mates' scores or tokens
    other = scores.copy()
    other[1:] = -other[1:]
    got = erasure_batch(model, batch.tokens, other, batch.labels, removal="delete", chunk_size=0)
    for k, v in base.items():
        np.testing.assert_array_equal(np.asarray(got[k])[0], np.asarray(v)[0], err_msg=k)


def test_over_split_matches_per_row_reference():
    model = LinearBag(seed=7)
    rng = np.random.default_rng(8)
    lengths = [12, 30, 5, 19, 0, 26, 8]
    rows = [np.array([1] + list(rng.integers(4, 30, n)) + [2], np.int32) for n in lengths]
    split = Split(Ragged.from_list(rows), rng.integers(0, 2, len(rows)).astype(np.int32))
    flat = rng.normal(size=len(split.main.values)).astype(np.float32)
    got = erasure.erasure_rows_over_split(model, split, flat, batch_size=3, removal="mask")
    for i, row in enumerate(rows):
        want = reference(model, row[None], flat[split.main.offsets[i] : split.main.offsets[i + 1]][None],
                         split.labels[i : i + 1], BINS, "mask")
        assert_matches({k: np.asarray(v)[i : i + 1] for k, v in got.items()}, want)
    summary = erasure.erasure_over_split(model, split, Ragged(flat, split.main.offsets), batch_size=4)
    assert summary["rows"] == len(rows)
    np.testing.assert_allclose(summary["comprehensiveness@50"], got["comprehensiveness"][:, 4].mean(), atol=1e-6)
    np.testing.assert_allclose(summary["aopc_sufficiency"], got["sufficiency"].mean(), atol=1e-6)
    np.testing.assert_allclose(summary["aopc_sufficiency_unirex"], got["sufficiency"].sum(1).mean() / 6, atol=1e-6)
    np.testing.assert_allclose(summary["flip_top1"], got["flip_top1"].mean())
    assert set(summary) >= {f"{m}@{k}" for m in ("comprehensiveness", "sufficiency", "flip") for k in BINS}


def test_rejects_bad_options():
    model = LinearBag()
    tokens, scores = np.array([[1, 5, 2]]), np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="removal"):
        erasure_batch(model, tokens, scores, np.array([0]), removal="drop")
    with pytest.raises(ValueError, match="bins"):
        erasure_batch(model, tokens, scores, np.array([0]), bins=(10, 150))
    with pytest.raises(ValueError, match="target"):
        erasure_batch(model, tokens, scores, "gold")
    with pytest.raises(ValueError, match="normalisation"):
        aopc(np.zeros((1, 5)), "trapezoid")
