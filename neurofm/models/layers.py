"""Transformer pieces: GLU MLPs, full and criss-cross attention over (channel, patch) tokens, blocks.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-
efficient kernels on GPU). Token grids are ``(B, C, P, D)``: ``C`` channels (padded, with a
channel mask), ``P`` time patches, width ``D``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` whose weight follows the input's dtype, so that under bf16 autocast the fused
    kernel runs (with an fp32 weight and a bf16 input torch falls back to the unfused ops)."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)


class GLUMLP(nn.Module):
    """``W2 (act(W1 x) * W3 x)``: SwiGLU (SiLU) or GEGLU (GELU)."""

    def __init__(self, dim: int, hidden: int, kind: str = "swiglu", dropout: float = 0.0) -> None:
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.act = {"swiglu": F.silu, "geglu": F.gelu}[kind]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.dropout(self.w2(self.act(a) * b))


def _attend(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, dropout: float,
            allowed: Tensor | None = None, causal: bool = False) -> Tensor:
    """SDPA over ``(N, H, L, hd)``; ``key_mask`` (N, L) True = a key that may be attended to;
    ``allowed`` (L, L) True where query i may attend to key j, None: everywhere; ``causal``: key j <= i
    only (SDPA's own ``is_causal``, which keeps the fused kernels; no other mask may be given with it)."""
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (N, 1, 1, L)
    if allowed is not None:
        mask = allowed if mask is None else mask & allowed  # (N, 1, L, L) or (L, L)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)


def time_causal_mask(n_chans: int, n_patches: int, device: torch.device) -> Tensor:
    """(C·P, C·P) bool over channel-major tokens: (c, p) may attend to (c', p') iff p' <= p."""
    t = torch.arange(n_patches, device=device).repeat(n_chans)  # (C*P,) the patch of each token
    return t[None, :] <= t[:, None]


class GridAttention(nn.Module):
    """Multi-head self-attention over a token grid ``(B, C, P, D)``.

    ``kind="full"``: every token attends to every real token (C·P keys). ``kind="criss_cross"``
    (CBraMod): half of the heads attend across channels within a patch, the other half across
    patches within a channel; cost O(C·P·(C+P)) instead of O((C·P)²).

    ``causal=True`` (next-token pretraining): a token attends only to tokens of its own or earlier
    patches, of any channel. ``kind="full"`` needs :func:`time_causal_mask` for that: pass it as
    ``time_mask`` to build it once per forward for all blocks (else it is built here, on each call).
    """

    def __init__(self, dim: int, heads: int, kind: str = "full", qk_norm: bool = True, dropout: float = 0.0,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.heads, self.kind, self.dropout = heads, kind, dropout
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, chan_mask: Tensor | None, causal: bool = False,
                time_mask: Tensor | None = None) -> Tensor:
        # (B, C, P, D), (B, C) or None, (C*P, C*P) or None -> (B, C, P, D)
        b, c, p, d = x.shape
        q, k, v = self.qkv(x).view(b, c, p, 3, self.heads, self.head_dim).unbind(3)  # each (B, C, P, H, hd)
        q, k = self.q_norm(q), self.k_norm(k)
        drop = self.dropout if self.training else 0.0
        if self.kind == "full":
            out = self._full(q, k, v, chan_mask, drop, causal, time_mask)
        else:
            out = self._criss_cross(q, k, v, chan_mask, drop, causal)
        return self.proj(out.reshape(b, c, p, d))

    def _full(self, q: Tensor, k: Tensor, v: Tensor, chan_mask: Tensor, drop: float, causal: bool,
              time_mask: Tensor | None = None) -> Tensor:
        b, c, p, h, hd = q.shape
        seq = [t.reshape(b, c * p, h, hd).transpose(1, 2) for t in (q, k, v)]  # (B, H, C*P, hd)
        key_mask = None if chan_mask is None else chan_mask[:, :, None].expand(b, c, p).reshape(b, c * p)  # (B, C*P)
        allowed = None  # (C*P, C*P) when causal
        if causal:
            allowed = time_mask if time_mask is not None else time_causal_mask(c, p, q.device)
        out = _attend(*seq, key_mask, drop, allowed)  # (B, H, C*P, hd)
        return out.transpose(1, 2).reshape(b, c, p, h, hd)

    def _criss_cross(self, q: Tensor, k: Tensor, v: Tensor, chan_mask: Tensor, drop: float, causal: bool) -> Tensor:
        b, c, p, h, hd = q.shape
        half = h // 2
        # spatial heads: for each (batch, patch), a sequence over channels; padded channels masked
        sq, sk, sv = (t[..., :half, :].permute(0, 2, 3, 1, 4).reshape(b * p, half, c, hd) for t in (q, k, v))
        s_mask = None if chan_mask is None else chan_mask[:, None, :].expand(b, p, c).reshape(b * p, c)  # (B*P, C)
        s_out = _attend(sq, sk, sv, s_mask, drop).reshape(b, p, half, c, hd).permute(0, 3, 1, 2, 4)  # (B, C, P, h/2, hd)
        # temporal heads: for each (batch, channel), a sequence over patches (all real)
        tq, tk, tv = (t[..., half:, :].permute(0, 1, 3, 2, 4).reshape(b * c, h - half, p, hd) for t in (q, k, v))
        t_out = _attend(tq, tk, tv, None, drop, causal=causal).reshape(b, c, h - half, p, hd).transpose(2, 3)  # (B, C, P, h/2, hd)
        return torch.cat([s_out, t_out], dim=3)  # (B, C, P, H, hd)


class NeighbourMix(nn.Module):
    """Each token gets a learned map of the distance-weighted mean of the same patch on nearby electrodes.

    ``tokens + W · Σ_j a_ij · tokens_j`` with ``a_ij ∝ exp(-|p_i - p_j|² / 2σ²)`` over the other real
    channels with a known position (j ≠ i; rows without any neighbour get 0). A conditional position
    encoding from electrode geometry (CBraMod's convolutional one needs a fixed channel order): it
    works on any montage, and it gives a masked token its neighbours' signal before any attention
    has learned where to look. Without it, on average-referenced EEG, uniform attention averages the
    other channels to ~0 and masked-patch reconstruction sits at NMSE ≈ 1 for thousands of steps
    (docs/pretraining.md).
    """

    def __init__(self, dim: int, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.proj = nn.Linear(dim, dim, bias=False)

    def weights(self, pos: Tensor, pos_known: Tensor, chan_mask: Tensor) -> Tensor:
        """(B, C, 3) metres, (B, C), (B, C) → (B, C, C) rows summing to 1 (or 0: no neighbour)."""
        d2 = torch.cdist(pos, pos).square()  # (B, C, C)
        valid = (pos_known & chan_mask)[:, None, :] & (pos_known & chan_mask)[:, :, None]
        valid &= ~torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
        w = torch.exp(-d2 / (2 * self.sigma ** 2)) * valid  # (B, C, C)
        return w / w.sum(-1, keepdim=True).clamp_min(1e-12)

    def forward(self, tokens: Tensor, weights: Tensor) -> Tensor:  # (B, C, P, D), (B, C, C) -> (B, C, P, D)
        return tokens + self.proj(torch.einsum("bij,bjpd->bipd", weights.to(tokens.dtype), tokens))


class Block(nn.Module):
    """Pre-norm (RMSNorm) attention + GLU MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, *, attention: str = "full", mlp: str = "swiglu",
                 qk_norm: bool = True, dropout: float = 0.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim, eps=eps)
        self.attn = GridAttention(dim, heads, attention, qk_norm=qk_norm, dropout=dropout, eps=eps)
        self.norm2 = RMSNorm(dim, eps=eps)
        self.mlp = GLUMLP(dim, mlp_hidden, mlp, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, chan_mask: Tensor | None, causal: bool = False,
                time_mask: Tensor | None = None) -> Tensor:  # (B, C, P, D) -> same; time_mask: GridAttention
        x = x + self.drop(self.attn(self.norm1(x), chan_mask, causal, time_mask))
        return x + self.mlp(self.norm2(x))


class AttentionPool(nn.Module):
    """One learned query attends over the real tokens: ``(B, N, D)`` → ``(B, D)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: Tensor, key_mask: Tensor) -> Tensor:  # (B, N, D), (B, N) True = real
        q = self.query.expand(tokens.shape[0], -1, -1)
        out, _ = self.attn(q, tokens, tokens, key_padding_mask=~key_mask, need_weights=False)
        return out[:, 0]
