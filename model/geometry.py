"""Pure functions on embedding matrices: the measures of how cross-lingual a representation is.

Everything takes and returns numpy arrays and computes in float64 (similarities of float32 vectors
tie and drift too easily for ranking and for the HSIC sums of CKA).  Rows are items: a sentence, a
word.  Where two matrices are "parallel", row i of X and row i of Y are translations of each other.

Papers, one per function family:
- cosine top-1 retrieval, both directions: XTREME's Tatoeba task (Hu et al. 2020; Artetxe & Schwenk 2019);
- per-language mean-centring: Libovický, Rosa & Fraser 2020 ("On the language neutrality of
  pre-trained multilingual representations");
- ratio margin over k = 4 neighbours: Artetxe & Schwenk 2019 ("Margin-based parallel corpus mining"), BUCC;
- debiased linear CKA: Kornblith et al. 2019 (CKA), with the unbiased HSIC estimator of Song et al. 2012
  as Nguyen, Raghu & Kornblith 2021 use it;
- orthogonal Procrustes and CSLS (k = 10): Xing et al. 2015; Conneau et al. 2018 (MUSE, "Word translation
  without parallel data");
- lexical-overlap floor: cosine over bag-of-token-id count vectors;
- bootstrap intervals over groups (cluster bootstrap: resample help pages, not items): Efron & Tibshirani 1993.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse

MARGIN_K = 4  # BUCC's ratio margin (Artetxe & Schwenk 2019)
CSLS_K = 10  # MUSE's CSLS (Conneau et al. 2018)
_EPS = 1e-12  # below this norm a vector counts as zero (its cosines are 0, never NaN)


class Retrieval(NamedTuple):
    """Top-1 accuracy of retrieving translations, each direction separately (XTREME reports both)."""

    x_to_y: float
    y_to_x: float


# ----------------------------------------------------------------------------------------- basics


def _as_matrix(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d matrix (items x dim), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _check_parallel(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"parallel matrices need as many rows: {x.shape[0]} vs {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("no items to score")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64); all-zero rows stay zero."""
    x = _as_matrix(x, "x")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms < _EPS, 1.0, norms)


def cosine_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, m) matrix of cosines between the rows of x (n, d) and y (m, d)."""
    x, y = l2_normalize(x), l2_normalize(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"vectors of different dimension: {x.shape[1]} vs {y.shape[1]}")
    return x @ y.T


def top1_accuracy(scores: np.ndarray) -> float:
    """Fraction of rows i whose best-scoring column is i (row i's translation is column i).

    Ties go to the lowest column index (``argmax``), so a constant score matrix scores 1/n, chance.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(f"expected a square, non-empty score matrix, got shape {scores.shape}")
    return float(np.mean(scores.argmax(axis=1) == np.arange(scores.shape[0])))


def retrieval_accuracy(x: np.ndarray, y: np.ndarray) -> Retrieval:
    """Cosine top-1 retrieval accuracy both ways (XTREME Tatoeba): rows i of x and y are translations."""
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_parallel(x, y)
    scores = cosine_similarity(x, y)
    return Retrieval(top1_accuracy(scores), top1_accuracy(scores.T))


def center(x: np.ndarray) -> np.ndarray:
    """One language's vectors minus their mean vector (Libovický et al. 2020).

    Language and position embeddings push every vector of a language the same way; that shared
    offset dominates cosines between languages.  Centre each language with its own mean.
    """
    x = _as_matrix(x, "x")
    return x - x.mean(axis=0, keepdims=True)


def center_by_language(x: np.ndarray, languages: Sequence[str]) -> np.ndarray:
    """Rows of a mixed matrix centred with the mean of their own language's rows."""
    x = _as_matrix(x, "x")
    labels = np.asarray(languages)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"need one language per row: {labels.shape[0]} labels for {x.shape[0]} rows")
    out = np.empty_like(x)
    for lang in np.unique(labels):
        rows = labels == lang
        out[rows] = x[rows] - x[rows].mean(axis=0, keepdims=True)
    return out


# ------------------------------------------------------------------------- margin (BUCC) and CSLS


def _mean_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the mean of its k largest scores (k capped at the number of columns)."""
    k = min(k, scores.shape[1])
    if k < 1:
        raise ValueError("k must be at least 1")
    return np.mean(np.partition(scores, scores.shape[1] - k, axis=1)[:, -k:], axis=1)


def margin_scores(x: np.ndarray, y: np.ndarray, k: int = MARGIN_K) -> np.ndarray:
    """Ratio-margin scores (Artetxe & Schwenk 2019), an (n, m) matrix.

    margin(x, y) = cos(x, y) / (mean cos of x's k nearest y + mean cos of y's k nearest x) / 2.
    Dividing by the neighbourhood density discounts hubs: a y close to everything scores low.
    """
    cos = cosine_similarity(x, y)
    density = (_mean_top_k(cos, k)[:, None] + _mean_top_k(cos.T, k)[None, :]) / 2
    # Cosines may be negative; a density at or below 0 would flip the ranking, so clamp it.
    return cos / np.maximum(density, _EPS)


def margin_retrieval_accuracy(x: np.ndarray, y: np.ndarray, k: int = MARGIN_K) -> Retrieval:
    """Top-1 retrieval accuracy both ways under ratio-margin scoring (BUCC style)."""
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_parallel(x, y)
    scores = margin_scores(x, y, k)
    return Retrieval(top1_accuracy(scores), top1_accuracy(scores.T))


def csls_scores(queries: np.ndarray, targets: np.ndarray, k: int = CSLS_K,
                source_pool: np.ndarray | None = None) -> np.ndarray:
    """Cross-domain similarity local scaling (Conneau et al. 2018, MUSE), a (queries, targets) matrix.

    CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y): r_T(x) is the mean cosine of x to its k nearest
    targets, r_S(y) that of target y to its k nearest (mapped) source words.  ``source_pool`` is the
    mapped source vocabulary r_S looks into (MUSE: every source word); by default the queries.
    """
    pool = queries if source_pool is None else source_pool
    cos = cosine_similarity(queries, targets)
    r_target = _mean_top_k(cos, k)
    r_source = _mean_top_k(cosine_similarity(targets, pool), k)
    return 2 * cos - r_target[:, None] - r_source[None, :]


# ---------------------------------------------------------------------- lexicon induction (MUSE)


def procrustes(x_seed: np.ndarray, y_seed: np.ndarray) -> np.ndarray:
    """The orthogonal W minimising ||x_seed W - y_seed||_F, for row vectors (map source with x @ W).

    Xing et al. 2015 / MUSE write it for column vectors as W = UV^T from SVD(Y X^T); this is its
    transpose, from ``scipy.linalg.orthogonal_procrustes``.  Rows i of the seeds are translations.
    """
    x_seed, y_seed = _as_matrix(x_seed, "x_seed"), _as_matrix(y_seed, "y_seed")
    _check_parallel(x_seed, y_seed)
    if x_seed.shape[1] != y_seed.shape[1]:
        raise ValueError(f"Procrustes needs one dimension on both sides: {x_seed.shape[1]} vs {y_seed.shape[1]}")
    w, _ = scipy.linalg.orthogonal_procrustes(x_seed, y_seed)
    return w


def precision_at_1(scores: np.ndarray, gold: Sequence[Collection[int]]) -> float:
    """Fraction of queries whose best-scoring target is one of their gold translations.

    ``scores`` is (queries, target words); retrieval searches only the target language's words, so
    the columns are exactly that vocabulary.  A word may have several gold translations (any counts).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(gold) or scores.shape[0] == 0:
        raise ValueError(f"need one gold set per query row: {len(gold)} sets for scores of shape {scores.shape}")
    if any(not g for g in gold):
        raise ValueError("every query needs at least one gold translation")
    best = scores.argmax(axis=1)
    return float(np.mean([int(b) in g for b, g in zip(best, gold, strict=True)]))


# ------------------------------------------------------------------------------------------ CKA


def _gram(x: np.ndarray) -> np.ndarray:
    return x @ x.T


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (the paper's names)
    """Song et al. 2012's unbiased HSIC estimator on two n x n Gram matrices (n >= 4).

    HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), K~ = K with a zero diagonal.
    """
    n = k.shape[0]
    k, l = k.copy(), l.copy()  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k_rows, l_rows = k.sum(axis=1), l.sum(axis=1)
    trace = float(np.sum(k * l))  # tr(K~ L~) for symmetric matrices
    total = k_rows.sum() * l_rows.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * float(k_rows @ l_rows)  # 1'K~L~1
    return (trace + total - cross) / (n * (n - 3))


def debiased_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA with the unbiased HSIC estimator (Kornblith et al. 2019; Song et al. 2012; Nguyen et al. 2021).

    Rows are the same n items (sentences) seen by two representations; the widths may differ.
    Plain CKA is biased upwards when n is small against the width (independent random matrices
    score far above 0); this estimator is near 0 for them, 1 for identical representations, and
    invariant to orthogonal transforms and isotropic scaling of either side.  It can be slightly
    negative.  Needs n >= 4.
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_parallel(x, y)
    if x.shape[0] < 4:
        raise ValueError(f"debiased CKA needs at least 4 items, got {x.shape[0]}")
    kx, ky = _gram(x), _gram(y)
    denominator = np.sqrt(_unbiased_hsic(kx, kx) * _unbiased_hsic(ky, ky))
    if not denominator > _EPS:
        raise ValueError("debiased CKA undefined: a representation is (nearly) constant over the items")
    return float(_unbiased_hsic(kx, ky) / denominator)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Plain linear CKA (Kornblith et al. 2019): ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on centred features.

    Biased upwards with few items against a large width; kept to show what ``debiased_linear_cka`` fixes.
    """
    x, y = center(x), center(y)
    _check_parallel(x, y)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


# --------------------------------------------------------------------------- lexical-overlap floor


def bag_of_ids(sequences: Sequence[Sequence[int]], vocab_size: int,
               ignore: Collection[int] = ()) -> scipy.sparse.csr_matrix:
    """Sparse (items, vocab_size) counts of token ids; ids in ``ignore`` (e.g. specials) are not counted."""
    skip = frozenset(ignore)
    indptr, indices = [0], []
    for i, ids in enumerate(sequences):
        kept = [t for t in ids if t not in skip]
        if any(t < 0 or t >= vocab_size for t in kept):
            raise ValueError(f"item {i}: token id outside the vocabulary of {vocab_size}")
        indices.extend(kept)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    matrix = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(sequences), vocab_size))
    matrix.sum_duplicates()  # repeated ids become counts
    return matrix


def bag_cosine(a: scipy.sparse.spmatrix, b: scipy.sparse.spmatrix) -> np.ndarray:
    """Dense (n, m) cosines between the rows of two bag-of-ids matrices; empty rows score 0."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"bags over different vocabularies: {a.shape[1]} vs {b.shape[1]}")

    def inverse_norms(m: scipy.sparse.spmatrix) -> np.ndarray:
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1), dtype=np.float64).ravel())
        return np.where(norms < _EPS, 0.0, 1.0 / np.where(norms < _EPS, 1.0, norms))

    dots = np.asarray((a @ b.T).todense(), dtype=np.float64)
    return dots * inverse_norms(a)[:, None] * inverse_norms(b)[None, :]


def lexical_overlap_retrieval(x_ids: Sequence[Sequence[int]], y_ids: Sequence[Sequence[int]], vocab_size: int,
                              ignore: Collection[int] = ()) -> Retrieval:
    """Top-1 retrieval both ways by bag-of-token-id cosine: the floor that shared strings alone reach."""
    if len(x_ids) != len(y_ids) or not x_ids:
        raise ValueError(f"parallel lists need as many (and some) items: {len(x_ids)} vs {len(y_ids)}")
    scores = bag_cosine(bag_of_ids(x_ids, vocab_size, ignore), bag_of_ids(y_ids, vocab_size, ignore))
    return Retrieval(top1_accuracy(scores), top1_accuracy(scores.T))


# ---------------------------------------------------------------------------------------- bootstrap


class Interval(NamedTuple):
    """A point estimate and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, groups: Sequence[object] | np.ndarray,
                      seed: int, n_resamples: int = 1000, confidence: float = 0.95) -> Interval:
    """Mean of per-item ``values`` with a cluster-bootstrap percentile interval.

    Items of one group (a help page) are not independent, so whole groups are resampled with
    replacement and the mean is taken over the items of the drawn groups.  For a paired comparison
    pass per-item differences (model minus twin).  Seeded ``numpy.random.Generator``: reproducible.
    """
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(groups)
    if values.ndim != 1 or labels.shape != values.shape or values.size == 0:
        raise ValueError(f"need one group per value and some values: {labels.shape} groups, {values.shape} values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    _, group_index = np.unique(labels, return_inverse=True)
    sums = np.bincount(group_index, weights=values)
    counts = np.bincount(group_index).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, sums.size, size=(n_resamples, sums.size))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high))
