"""The XLM encoder (Conneau & Lample 2019) in plain PyTorch, one screen per concept.

Token + learned position + language embeddings, LayerNorm, then post-LN Transformer blocks (attention
through ``scaled_dot_product_attention``, exact GELU, FFN 4 x dim), and an output projection tied to the
token embedding with its own bias. This is the layout of ``transformers.XLMWithLMHeadModel``, so a
checkpoint exports to it by renaming weights (model/export.py) and gives the same logits.

Shapes: B batch, T sequence length, C model dim, H heads, V vocabulary, N predicted positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.schemas import PAD

EMBEDDING_STD = 0.02  # weight init of token and position embeddings (BERT, HF XLM), and of every weight under init xlm
INITS = ("xlm", "fan_in")
IGNORE = -100  # target value of positions that are not predicted (F.cross_entropy's ignore_index)


@dataclass
class XLMConfig:
    vocab_size: int
    """Number of token ids (the SentencePiece vocabulary size)."""
    n_langs: int
    """Number of language ids; ids follow the sorted configured languages."""
    dim: int = 256
    """Model width C; the FFN is 4 x dim, as in XLM and HF's XLM layout."""
    n_layers: int = 4
    """Number of Transformer blocks."""
    n_heads: int = 4
    """Attention heads; dim must be a multiple of it."""
    dropout: float = 0.1
    """Dropout after embeddings, attention output and FFN output."""
    attention_dropout: float = 0.1
    """Dropout on attention probabilities."""
    max_positions: int = 512
    """Size of the learned position table; sequences (each TLM side) must fit in it."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon (XLM's value); exported as HF's layer_norm_eps."""
    use_lang_emb: bool = True
    """Add a learned language embedding to every token (XLM); off gives an XLM-R-style encoder."""
    init: str = "xlm"
    """Weight init: xlm (every weight N(0, 0.02), as XLM and HF) | fan_in (linears N(0, 1/fan_in), embeddings
    N(0, 0.02): what a model of 64 or fewer dims needs to leave the unigram plateau; see XLM._init_weights)."""

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"model dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.init not in INITS:
            raise ValueError(f"model init {self.init!r} is not one of {INITS}")

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(nn.Module):
    def __init__(self, cfg: XLMConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.attention_dropout
        self.q, self.k, self.v = (nn.Linear(cfg.dim, cfg.dim) for _ in range(3))
        self.out = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, C) -> (B, H, T, C/H)
        q, k, v = (proj(x).view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and attn_mask is None,
        )  # fmt: skip
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Post-LN: x = LN(x + Attn(x)); x = LN(x + FFN(x)), as in XLM and BERT."""

    def __init__(self, cfg: XLMConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.dim, 4 * cfg.dim)
        self.ffn_out = nn.Linear(4 * cfg.dim, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, attn_mask, causal)))
        return self.ln2(x + self.drop(self.ffn_out(F.gelu(self.ffn_in(x)))))


class XLM(nn.Module):
    def __init__(self, cfg: XLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=PAD)
        self.positions = nn.Embedding(cfg.max_positions, cfg.dim)
        self.langs = nn.Embedding(cfg.n_langs, cfg.dim) if cfg.use_lang_emb else None
        self.ln_emb = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.out_bias = nn.Parameter(torch.zeros(cfg.vocab_size))  # output weight is self.tokens.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # Embeddings N(0, 0.02) as BERT and HF XLM. Linears: N(0, 0.02) too under init xlm; N(0, 1/fan_in) under
        # fan_in, which keeps each branch's output on the scale of its input at every width. Which one learns
        # depends on the width, in our trials:
        # - 2 x 64: 0.02 leaves the attention and value paths ~40x too weak; on a planted copy task
        #   (bench/bench_learning.py) the model never left the unigram plateau with it and learned the task
        #   within 200 steps with fan_in (tests/tiny.yaml uses fan_in).
        # - 4 x 128 on the default corpus, 4500 steps: with fan_in (which then also zeroed the language vectors;
        #   README "Training" says why it no longer does) the valid MLM loss stayed at the unigram's
        #   (en 6.66 against 6.59) and mean-pooled retrieval at chance (macro P@1 .011); with xlm it reached
        #   en 6.04 and P@1 .12 (README "Training").
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=EMBEDDING_STD)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])
        if isinstance(module, nn.Linear):
            std = EMBEDDING_STD if self.cfg.init == "xlm" else module.in_features**-0.5
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens: torch.Tensor, langs: torch.Tensor | None, positions: torch.Tensor | None) -> torch.Tensor:
        B, T = tokens.shape
        if positions is None and tokens.shape[1] > self.cfg.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_positions {self.cfg.max_positions}")
        if positions is None:
            positions = torch.arange(T, device=tokens.device).expand(B, T)
        x = self.tokens(tokens) + self.positions(positions)  # (B, T, C)
        if self.langs is not None:
            if langs is None:
                raise ValueError("this model uses language embeddings: pass langs")
            x = x + self.langs(langs)
        return self.drop(self.ln_emb(x))

    def hidden_states(
        self,
        tokens: torch.Tensor,
        langs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> list[torch.Tensor]:
        """Every layer's output, embeddings first: n_layers + 1 tensors of (B, T, C).

        attention_mask (B, T) is True on real tokens; by default every non-padding token is real.
        """
        if attention_mask is None:
            attention_mask = tokens != PAD
        attn_mask = self._attention_mask(attention_mask, causal)
        x = self.embed(tokens, langs, positions)
        states = [x]
        for block in self.blocks:
            x = block(x, attn_mask, causal)
            states.append(x)
        return states

    @staticmethod
    def _attention_mask(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor | None:
        """A boolean (B, 1, T, T) or (B, 1, 1, T) mask for SDPA, or None when nothing is masked."""
        if bool(attention_mask.all()):
            return None  # no padding: SDPA's fast path (is_causal for CLM)
        keys = attention_mask[:, None, None, :]  # (B, 1, 1, T): padding keys are never attended
        if not causal:
            return keys
        T = attention_mask.shape[1]
        lower = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
        return keys & lower  # (B, 1, T, T)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output projection: (..., C) -> (..., V)."""
        return F.linear(hidden, self.tokens.weight, self.out_bias)

    def forward(
        self,
        tokens: torch.Tensor,
        langs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, loss). With targets (B, T; IGNORE where nothing is predicted), logits are computed only at
        the N predicted positions, (N, V), and loss is their mean cross-entropy; without, logits are (B, T, V)."""
        hidden = self.hidden_states(tokens, langs, positions, attention_mask, causal)[-1]
        if targets is None:
            return self.logits(hidden), None
        predicted = targets != IGNORE  # (B, T)
        logits = self.logits(hidden[predicted])  # (N, V): the projection is most of the FLOPs at small dims
        loss = F.cross_entropy(logits.float(), targets[predicted]) if logits.shape[0] else logits.sum() * 0.0
        return logits, loss

