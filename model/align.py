"""Unsupervised alignment of two word-vector spaces (MUSE; Conneau et al. 2018, "Word translation without
parallel data"), optionally with a cycle-consistency loss (Tien & Steinert-Threlkeld 2021).

1. Adversarial: a linear map W (row vectors: ``x @ W``) and a small MLP discriminator that tells mapped
   source vectors from target vectors play a minimax game; W is trained to fool it and kept near-orthogonal
   after every step by MUSE's update W <- (1 + beta) W - beta (W W^T) W.  With ``cycle_weight > 0`` a second
   map V (target -> source) plays the same game against a second discriminator, and both maps pay
   cycle_weight * (||x W V - x||^2 + ||y V W - y||^2).
2. Refinement: a dictionary of mutual nearest neighbours under CSLS among the most frequent words, then
   orthogonal Procrustes on it, repeated.
3. Model selection without any dictionary: MUSE's criterion, the mean cosine between the most frequent
   source words mapped and their CSLS translations; the best W by it is kept at every stage.

Rows of both matrices are words sorted by decreasing frequency (the discriminator and the dictionary look
at the most frequent ones only: rare words' vectors are noisy).  MUSE normalizes first (``center,renorm``):
``normalize_embeddings``.  CPU torch, seeded: the same inputs and config give the same map.
The geometry (Procrustes, CSLS, cosines) is model/geometry.py's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from model import geometry


@dataclass(frozen=True)
class AlignConfig:
    """Settings of ``align``; MUSE's defaults are noted where ours are smaller (MUSE trains on GPUs for hours)."""

    seed: int = 0
    """Seed of the discriminator's weights, the batches and dropout."""
    epochs: int = 5
    """Adversarial epochs; the criterion is measured after each, and the best epoch's map is kept."""
    iterations: int = 5000
    """Mapping steps per epoch (MUSE: 1,000,000)."""
    batch_size: int = 32
    """Words per side in a discriminator or mapping batch."""
    dis_steps: int = 5
    """Discriminator steps per mapping step."""
    dis_hidden: int = 512
    """Width of the discriminator's two hidden layers (MUSE: 2048)."""
    dis_input_dropout: float = 0.1
    """Dropout on the discriminator's input."""
    dis_smooth: float = 0.1
    """Label smoothing: the discriminator's targets are 1 - s (mapped source) and s (target)."""
    dis_lr: float = 0.1
    """SGD learning rate of the discriminator."""
    map_lr: float = 0.1
    """SGD learning rate of the map."""
    lr_decay: float = 0.98
    """Map learning rate factor after every epoch."""
    lr_shrink: float = 0.5
    """Extra map learning rate factor after an epoch whose criterion is worse than the best."""
    beta: float = 0.001
    """Orthogonalization step (W <- (1 + beta) W - beta W W^T W)."""
    restarts: int = 1
    """Adversarial runs, the first from the identity (as MUSE), the others from seeded random rotations; the
    run whose refined map scores the best criterion wins.  The game has poor local optima (Søgaard et al.
    2018 show MUSE failing on some seeds), and the criterion tells them apart without a dictionary."""
    most_frequent: int = 75000
    """The discriminator samples words among this many most frequent of each side."""
    cycle_weight: float = 0.0
    """Weight of the cycle-consistency loss; 0 trains one map and one discriminator (plain MUSE)."""
    refine_iterations: int = 5
    """Procrustes refinement rounds after the adversarial stage (0: none)."""
    dico_max_rank: int = 5000
    """The refinement dictionary pairs words among this many most frequent of each side (MUSE: 15,000; the
    CSLS score matrix is held whole, so this bounds memory at about 8 * rank^2 bytes)."""
    csls_k: int = 10
    """Neighbours of CSLS."""
    criterion_words: int = 2000
    """Most frequent source words the validation criterion translates (MUSE: 10,000)."""


@dataclass
class AlignReport:
    """What happened, for eval JSON: per adversarial epoch and per refinement round."""

    discriminator_accuracy: list[float] = field(default_factory=list)
    """Mean accuracy of the discriminator on its training batches, per epoch (0.5: it cannot tell)."""
    adversarial_criterion: list[float] = field(default_factory=list)
    """The validation criterion after each epoch."""
    best_epoch: int = -1
    """The epoch whose map refinement started from, in the chosen restart (-1: no adversarial epoch ran)."""
    restart_criterion: list[float] = field(default_factory=list)
    """The refined map's criterion, per restart."""
    best_restart: int = 0
    """The restart whose map is returned; the per-epoch and per-round lists above are its own."""
    refinement_dictionary_sizes: list[int] = field(default_factory=list)
    """Mutual-CSLS pairs that each Procrustes round was solved on."""
    refinement_criterion: list[float] = field(default_factory=list)
    """The validation criterion after each refinement round."""
    criterion: float = float("nan")
    """The criterion of the returned map."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Alignment:
    """The learned map (source rows map with ``x @ w``) and the report."""

    w: np.ndarray
    report: AlignReport


# ----------------------------------------------------------------------------------- geometry helpers


def normalize_embeddings(x: np.ndarray) -> np.ndarray:
    """MUSE's ``center,renorm``: subtract the mean vector, then scale rows to unit length (float64)."""
    return geometry.l2_normalize(geometry.center(x))


def _top(x: np.ndarray, n: int) -> np.ndarray:
    return x[: min(n, x.shape[0])]


def csls_translations(mapped: np.ndarray, y: np.ndarray, k: int, max_rank: int) -> np.ndarray:
    """Each of the ``max_rank`` most frequent mapped source words' best target (among as many) by CSLS."""
    queries, targets = _top(mapped, max_rank), _top(y, max_rank)
    return geometry.csls_scores(queries, targets, k).argmax(axis=1)


def mutual_dictionary(mapped: np.ndarray, y: np.ndarray, k: int, max_rank: int) -> np.ndarray:
    """(pairs, 2) source and target rows that are each other's CSLS nearest neighbour (MUSE's S2T&T2S).

    CSLS is symmetric in its two sides (2 cos - r_T(x) - r_S(y)), so one score matrix gives both
    directions: a pair is mutual when it is the best of its row and of its column.
    """
    scores = geometry.csls_scores(_top(mapped, max_rank), _top(y, max_rank), k)
    s2t, t2s = scores.argmax(axis=1), scores.argmax(axis=0)
    source = np.flatnonzero(t2s[s2t] == np.arange(scores.shape[0]))
    return np.stack([source, s2t[source]], axis=1)


def validation_criterion(mapped: np.ndarray, y: np.ndarray, cfg: AlignConfig) -> float:
    """MUSE's unsupervised criterion: mean cosine of the most frequent source words and their CSLS translations.

    Translations are searched among the ``dico_max_rank`` most frequent target words.
    """
    queries = _top(mapped, cfg.criterion_words)
    targets = _top(y, cfg.dico_max_rank)
    best = geometry.csls_scores(queries, targets, cfg.csls_k, source_pool=_top(mapped, cfg.dico_max_rank))
    chosen = targets[best.argmax(axis=1)]
    return float(np.mean(np.sum(geometry.l2_normalize(queries) * geometry.l2_normalize(chosen), axis=1)))


# ----------------------------------------------------------------------------------- adversarial stage


def _discriminator(dim: int, cfg: AlignConfig) -> nn.Module:
    """MUSE's discriminator: input dropout, two LeakyReLU hidden layers, one logit (source = 1)."""
    return nn.Sequential(
        nn.Dropout(cfg.dis_input_dropout),
        nn.Linear(dim, cfg.dis_hidden), nn.LeakyReLU(0.2),
        nn.Linear(cfg.dis_hidden, cfg.dis_hidden), nn.LeakyReLU(0.2),
        nn.Linear(cfg.dis_hidden, 1),
    )  # fmt: skip


@torch.no_grad()
def orthogonalize(w: torch.Tensor, beta: float) -> None:
    """MUSE's update, in place: W <- (1 + beta) W - beta (W W^T) W pulls W's singular values towards 1."""
    w.copy_((1 + beta) * w - beta * (w @ w.T) @ w)


class _Game:
    """One direction of the adversarial game: a map from ``src`` towards ``tgt`` and its discriminator."""

    def __init__(self, src: torch.Tensor, tgt: torch.Tensor, w0: torch.Tensor, cfg: AlignConfig,
                 gen: torch.Generator) -> None:  # fmt: skip
        self.src, self.tgt, self.cfg, self.gen = src, tgt, cfg, gen
        self.w = nn.Parameter(w0.clone())
        self.dis = _discriminator(src.shape[1], cfg).to(src.dtype)
        self.dis_opt = torch.optim.SGD(self.dis.parameters(), lr=cfg.dis_lr)
        self.smooth = torch.cat([torch.full((cfg.batch_size,), 1 - cfg.dis_smooth),
                                 torch.full((cfg.batch_size,), cfg.dis_smooth)]).to(src.dtype)  # fmt: skip

    def _ids(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, min(self.cfg.most_frequent, rows.shape[0]), (self.cfg.batch_size,), generator=self.gen)

    def source_batch(self) -> torch.Tensor:
        return self.src[self._ids(self.src)]

    def dis_step(self) -> float:
        """One discriminator step on a fresh batch; its accuracy on that batch."""
        self.dis.train()
        with torch.no_grad():
            inputs = torch.cat([self.source_batch() @ self.w, self.tgt[self._ids(self.tgt)]])
        logits = self.dis(inputs).squeeze(1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, self.smooth)
        self.dis_opt.zero_grad()
        loss.backward()
        self.dis_opt.step()
        return float(((logits > 0) == (self.smooth > 0.5)).float().mean())

    def fool_loss(self) -> torch.Tensor:
        """The map's loss: mapped source words labelled as target (the flipped, smoothed label)."""
        self.dis.eval()  # as MUSE: no dropout when the map is trained
        logits = self.dis(self.source_batch() @ self.w).squeeze(1)
        return nn.functional.binary_cross_entropy_with_logits(logits, self.smooth[self.cfg.batch_size :])


def _cycle_loss(forward: _Game, backward: _Game) -> torch.Tensor:
    """||x W V - x||^2 + ||y V W - y||^2, averaged over a batch of each side (Tien & Steinert-Threlkeld 2021)."""
    x, y = forward.source_batch(), backward.source_batch()
    there_and_back = ((x @ forward.w @ backward.w - x) ** 2).sum(1).mean()
    back_and_there = ((y @ backward.w @ forward.w - y) ** 2).sum(1).mean()
    return there_and_back + back_and_there


def _epoch(games: list[_Game], map_opt: torch.optim.Optimizer, cfg: AlignConfig) -> float:
    """One epoch of the game; the mean discriminator accuracy (of the forward direction)."""
    accuracy = []
    for _ in range(cfg.iterations):
        for _ in range(cfg.dis_steps):
            accuracy.append(games[0].dis_step())
            for game in games[1:]:
                game.dis_step()
        loss = sum(game.fool_loss() for game in games)
        if len(games) == 2:
            loss = loss + cfg.cycle_weight * _cycle_loss(*games)
        map_opt.zero_grad()
        loss.backward()
        map_opt.step()
        for game in games:
            orthogonalize(game.w.data, cfg.beta)
    return float(np.mean(accuracy))


def random_rotation(dim: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def adversarial(x: np.ndarray, y: np.ndarray, cfg: AlignConfig, report: AlignReport, restart: int = 0) -> np.ndarray:
    """The adversarial stage: the map of the epoch with the best criterion (the start if no epoch ran).

    Restart 0 starts from the identity, restart r > 0 from a random rotation drawn with seed (seed, r).
    """
    # float32 for the game (speed); the criterion, Procrustes and CSLS stay float64 (geometry's choice).
    src, tgt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    best_w, best = np.eye(x.shape[1]), -np.inf
    with torch.random.fork_rng(devices=[]):  # dropout and nn.Linear's init draw from the global RNG
        torch.manual_seed(cfg.seed * 1000 + restart)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + restart)
        dim = x.shape[1]
        w0 = (torch.eye(dim, dtype=torch.float64) if restart == 0 else random_rotation(dim, gen)).float()
        best_w = w0.double().numpy()
        games = [_Game(src, tgt, w0, cfg, gen)]
        if cfg.cycle_weight > 0:
            games.append(_Game(tgt, src, w0.T, cfg, gen))
        map_opt = torch.optim.SGD([game.w for game in games], lr=cfg.map_lr)
        for epoch in range(cfg.epochs):
            report.discriminator_accuracy.append(_epoch(games, map_opt, cfg))
            w = games[0].w.detach().double().numpy()
            criterion = validation_criterion(x @ w, y, cfg)
            report.adversarial_criterion.append(criterion)
            if criterion > best:
                best_w, best, report.best_epoch = w, criterion, epoch
            for group in map_opt.param_groups:  # MUSE's schedule: decay, and shrink when the criterion falls
                group["lr"] *= cfg.lr_decay * (cfg.lr_shrink if criterion < best else 1.0)
    return best_w


# ----------------------------------------------------------------------------------- refinement


def refine(x: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: AlignConfig, report: AlignReport) -> np.ndarray:
    """Procrustes on the mutual-CSLS dictionary of the current map, ``refine_iterations`` times; the best map
    by the criterion (the starting one included) is returned."""
    best_w, best = w, validation_criterion(x @ w, y, cfg)
    for _ in range(cfg.refine_iterations):
        pairs = mutual_dictionary(x @ w, y, cfg.csls_k, cfg.dico_max_rank)
        w = geometry.procrustes(x[pairs[:, 0]], y[pairs[:, 1]])
        criterion = validation_criterion(x @ w, y, cfg)
        report.refinement_dictionary_sizes.append(int(len(pairs)))
        report.refinement_criterion.append(criterion)
        if criterion > best:
            best_w, best = w, criterion
    return best_w


def _check_inputs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    for name, m in (("source", x), ("target", y)):
        if m.ndim != 2 or m.shape[0] < 2 or not np.isfinite(m).all():
            raise ValueError(f"{name} vectors: need a finite (words x dim) matrix of 2+ words, got shape {m.shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"source and target vectors differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    return x, y


def align(x: np.ndarray, y: np.ndarray, cfg: AlignConfig | None = None, w0: np.ndarray | None = None) -> Alignment:
    """Learn W mapping source rows ``x`` onto target rows ``y`` without a dictionary.

    Rows are words by decreasing frequency; normalize both first (``normalize_embeddings``).  With ``w0``
    the adversarial stage is skipped and refinement starts from it (``epochs=0`` starts from the identity).
    """
    cfg = cfg or AlignConfig()
    x, y = _check_inputs(x, y)
    if w0 is not None or cfg.epochs == 0:
        start = np.eye(x.shape[1]) if w0 is None else np.asarray(w0, dtype=np.float64)
        return _refined(x, y, start, cfg, AlignReport())
    best: Alignment | None = None
    criteria = []
    for restart in range(max(cfg.restarts, 1)):
        report = AlignReport()
        found = _refined(x, y, adversarial(x, y, cfg, report, restart), cfg, report)
        criteria.append(found.report.criterion)
        if best is None or found.report.criterion > best.report.criterion:
            best, found.report.best_restart = found, restart
    best.report.restart_criterion = criteria
    return best


def _refined(x: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: AlignConfig, report: AlignReport) -> Alignment:
    w = refine(x, y, w, cfg, report)
    report.criterion = validation_criterion(x @ w, y, cfg)
    return Alignment(w, report)
