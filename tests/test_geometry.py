"""model.geometry on constructed inputs whose right answer is known without the function under test.

Each test plants a structure (identical rows, a hub, a rotation, a language offset, independent noise)
and checks that the measure sees it; numbers are compared with constants derived by hand or with an
independent formula, never with the same computation.
"""

from __future__ import annotations

import numpy as np
import pytest

from model import geometry as g


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix


# ----------------------------------------------------------------------------------- retrieval


def test_identical_embeddings_retrieve_perfectly():
    x = np.random.default_rng(0).standard_normal((50, 16))
    assert g.retrieval_accuracy(x, x.copy()) == (1.0, 1.0)
    assert g.retrieval_accuracy(x, 3.0 * x) == (1.0, 1.0)  # cosine ignores length


def test_random_embeddings_retrieve_at_chance():
    # 200 trials of n = 50 independent Gaussian pairs: each trial's number of hits is Binomial(50, 1/50),
    # so the total over trials has mean 200 and sd sqrt(200 * 49/50) = 14.0.  A 4-sd band (±56 hits,
    # i.e. accuracy 0.02 ± 0.0056) fails by chance with probability < 1e-4 and excludes 0 and 2x chance.
    rng = np.random.default_rng(1)
    n, trials = 50, 200
    hits = np.zeros(2)
    for _ in range(trials):
        hits += np.array(g.retrieval_accuracy(rng.standard_normal((n, 32)), rng.standard_normal((n, 32)))) * n
    assert np.all(np.abs(hits - trials) < 4 * 14.0), hits


def test_top1_ties_count_as_chance_not_success():
    assert g.top1_accuracy(np.zeros((4, 4))) == 0.25  # argmax picks column 0 for every row


def _hub_setting(seed: int, n: int = 100, d: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Queries x_i = .7u + .7r_i, true targets y_i = .7r_i + .5s_i, and target 0 is the hub u itself.

    cos(x_i, u) = .71 > cos(x_i, y_i) = .57, so cosine sends every query to the hub; but the hub is
    near all queries (dense neighbourhood) while y_i is near only x_i, which margin and CSLS discount.
    """
    rng = np.random.default_rng(seed)
    u = np.zeros(d)
    u[0] = 1.0
    r, s = _unit_rows(rng, n, d), _unit_rows(rng, n, d)
    r[:, 0] = s[:, 0] = 0.0  # keep the hub direction out of the item-specific parts
    x = 0.7 * u + 0.7 * r
    y = 0.7 * r + 0.5 * s
    y[0] = u
    return x, y


def test_margin_beats_cosine_on_a_planted_hub():
    x, y = _hub_setting(2)
    cosine = g.retrieval_accuracy(x, y)
    margin = g.margin_retrieval_accuracy(x, y, k=4)
    assert cosine.x_to_y <= 0.05  # only the hub's own query (row 0) is right
    assert margin.x_to_y >= 0.95


def test_csls_beats_nearest_neighbour_on_a_planted_hub():
    x, y = _hub_setting(3)
    gold = [{i} for i in range(len(x))]
    assert g.precision_at_1(g.cosine_similarity(x, y), gold) <= 0.05
    assert g.precision_at_1(g.csls_scores(x, y, k=10), gold) >= 0.95


def test_mean_centring_removes_a_per_language_offset():
    # Shared content b plus noise; each language adds its own constant vector 5x the content's norm.
    rng = np.random.default_rng(4)
    n, d = 200, 64
    b = rng.standard_normal((n, d))
    x = b + 0.5 * rng.standard_normal((n, d))
    y = b + 0.5 * rng.standard_normal((n, d))
    offsets = _unit_rows(rng, 2, d) * 5 * np.sqrt(d)
    xs, ys = x + offsets[0], y + offsets[1]
    shifted = g.retrieval_accuracy(xs, ys)
    centred = g.retrieval_accuracy(g.center(xs), g.center(ys))
    assert max(shifted) < 0.5 and min(centred) > 0.95
    mixed = g.center_by_language(np.vstack([xs, ys]), ["en"] * n + ["de"] * n)
    assert min(g.retrieval_accuracy(mixed[:n], mixed[n:])) > 0.95  # per-language means, not the global one
    assert np.allclose(mixed[:n].mean(axis=0), 0.0) and np.allclose(mixed[n:].mean(axis=0), 0.0)


# ----------------------------------------------------------------------------------------- CKA


def _kornblith_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Reference: Kornblith's U-centred Gram matrices (the colab's center_gram(unbiased=True)), another route."""
    def u_center(gram: np.ndarray) -> np.ndarray:
        n = gram.shape[0]
        gram = gram.copy()
        np.fill_diagonal(gram, 0.0)
        means = gram.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        gram -= means[:, None] + means[None, :]
        np.fill_diagonal(gram, 0.0)
        return gram

    kx, ky = u_center(x @ x.T), u_center(y @ y.T)
    return float(np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky)))


def test_debiased_cka_of_a_representation_with_itself_is_one():
    x = np.random.default_rng(5).standard_normal((40, 300))
    assert g.debiased_linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_debiased_cka_is_invariant_to_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 64))
    y = x @ rng.standard_normal((64, 48)) + 2.0 * rng.standard_normal((40, 48))  # related, not identical
    base = g.debiased_linear_cka(x, y)
    assert 0.2 < base < 0.95
    transformed = g.debiased_linear_cka(7.5 * x @ _random_rotation(rng, 64), 0.01 * y @ _random_rotation(rng, 48))
    assert transformed == pytest.approx(base, abs=1e-9)
    assert base == pytest.approx(_kornblith_debiased_cka(x, y), abs=1e-9)  # Song's formula = U-centring


def test_debiased_cka_is_near_zero_where_plain_cka_is_biased_high():
    # Independent Gaussian X, Y with n = 50 items against width 512.  Over 20 seeds the debiased
    # value had mean 0.000 and sd 0.028 (max |.| 0.07); plain CKA was 0.90-0.92.  Band: 5 sd.
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((50, 512)), rng.standard_normal((50, 512))
    assert abs(g.debiased_linear_cka(x, y)) < 0.14
    assert g.linear_cka(x, y) > 0.8  # the bias the debiased estimator removes


def test_cka_refuses_too_few_items():
    with pytest.raises(ValueError, match="at least 4"):
        g.debiased_linear_cka(np.ones((3, 5)), np.ones((3, 5)))


# ---------------------------------------------------------------------------------- Procrustes


def test_procrustes_recovers_a_planted_rotation():
    rng = np.random.default_rng(8)
    d = 32
    rotation = _random_rotation(rng, d)
    x = rng.standard_normal((500, d))
    y = x @ rotation + 0.01 * rng.standard_normal((500, d))
    w = g.procrustes(x, y)
    assert np.abs(w - rotation).max() < 0.01
    assert np.allclose(w.T @ w, np.eye(d), atol=1e-10)  # orthogonal by construction


def test_precision_at_1_accepts_any_of_several_gold_translations():
    scores = np.array([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2], [0.2, 0.3, 0.1]])
    assert g.precision_at_1(scores, [{0, 1}, {2}, {1}]) == pytest.approx(2 / 3)


def test_lexicon_induction_end_to_end_on_a_rotated_vocabulary():
    # Target words are a rotated, noisy copy of the source words; seed pairs learn the rotation and
    # held-out test words are then translated by NN and CSLS among all target words.
    rng = np.random.default_rng(9)
    n, d = 400, 48
    src = rng.standard_normal((n, d))
    tgt = src @ _random_rotation(rng, d) + 0.3 * rng.standard_normal((n, d))
    seed, test = np.arange(0, 200), np.arange(200, n)
    w = g.procrustes(src[seed], tgt[seed])
    gold = [{int(i)} for i in test]
    mapped = src[test] @ w
    assert g.precision_at_1(g.cosine_similarity(mapped, tgt), gold) > 0.9
    assert g.precision_at_1(g.csls_scores(mapped, tgt, source_pool=src @ w), gold) > 0.9
    assert g.precision_at_1(g.cosine_similarity(src[test], tgt), gold) < 0.1  # unmapped: near chance


# ----------------------------------------------------------------------------- lexical overlap


def test_bag_cosine_counts_repeated_ids():
    bags = g.bag_of_ids([[1, 2, 2], [2, 3], [], [0, 4]], vocab_size=5, ignore={0})
    assert bags.toarray().tolist()[0] == [0, 1, 2, 0, 0]
    cos = g.bag_cosine(bags, bags)
    assert cos[0, 1] == pytest.approx(2 / np.sqrt(10))  # (1*0 + 2*1 + 0*1) / (sqrt 5 * sqrt 2)
    assert cos[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # an empty bag is similar to nothing, not NaN
    assert cos[3, 3] == pytest.approx(1.0)  # id 0 ignored, id 4 still there


def test_lexical_overlap_retrieval_finds_shared_ids():
    x = [[10, 11, 5], [12, 13, 5], [14, 5]]
    y = [[20, 11, 6], [21, 13, 6], [14, 22]]  # each pair shares one id (a number, a UI name)
    assert g.lexical_overlap_retrieval(x, y, vocab_size=30) == (1.0, 1.0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        g.bag_of_ids([[30]], vocab_size=30)


# ----------------------------------------------------------------------------------- bootstrap


def test_group_bootstrap_is_as_wide_as_the_number_of_groups_says():
    # 40 help pages of 25 items each; every item of a page is right or every one is wrong (half the
    # pages).  Independent units are pages, so the 95% interval is about 0.5 ± 1.96 sqrt(.25/40) =
    # 0.5 ± 0.155; an item-level bootstrap would claim ± 0.031.
    pages = np.repeat(np.arange(40), 25)
    values = (pages % 2).astype(float)
    est, low, high = g.bootstrap_mean_ci(values, pages, seed=0, n_resamples=2000)
    assert est == 0.5
    assert 0.12 < (high - low) / 2 < 0.19
    assert low < est < high


def test_bootstrap_of_constant_values_has_zero_width():
    assert g.bootstrap_mean_ci([0.7] * 30, [i // 3 for i in range(30)], seed=1) == pytest.approx((0.7, 0.7, 0.7))


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="as many rows"):
        g.retrieval_accuracy(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="one group per value"):
        g.bootstrap_mean_ci([1.0, 2.0], ["a"], seed=0)
    with pytest.raises(ValueError, match="NaN"):
        g.cosine_similarity(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
