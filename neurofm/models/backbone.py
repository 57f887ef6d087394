"""``NeuroTransformer``: an any-montage spatiotemporal transformer over (channel, time-patch) tokens.

::

    model = build_backbone("tiny", n_outputs=2)                      # a registered preset
    logits = model(x, pos=batch.pos, chan_mask=batch.chan_mask,      # x: (B, C, T) µV at config.sfreq
                   pos_known=batch.pos_known)                        # (B, 2)
    feats = model.forward_features(x, pos=..., chan_mask=...)        # (B, C, P, D)

Electrode positions come with every batch (metres, MNE head frame, from the shards) and are encoded
with Fourier features of (x, y, z, t) and a small MLP, as REVE does: no channel table, so a montage
never seen in training runs. For braindecode-style use with one fixed montage, pass ``chs_info``
(MNE ``info["chs"]``) at construction and call ``model(x)``.

Signal arguments follow braindecode's ``EEGModuleMixin`` (``n_outputs, n_chans, chs_info, n_times,
sfreq``) so the evaluation harness builds ours and braindecode's models alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..hub import StrictHubMixin
from .config import BackboneConfig, resolve_backbone_config
from .layers import AttentionPool, Block, NeighbourMix, RMSNorm, time_causal_mask


class BackboneInputError(ValueError):
    """A batch the backbone cannot take (shape, sampling rate, channel mask), named precisely."""


class FourierPositionEncoding(nn.Module):
    """(x, y, z, t) → sin/cos at ``bands`` geometric frequencies per coordinate → MLP → ``dim``.

    Channels without a known position get the encoding of t alone plus a learned "unknown" vector.
    """

    def __init__(self, dim: int, bands: int, pos_scale: float, time_scale: float) -> None:
        super().__init__()
        self.pos_scale, self.time_scale = pos_scale, time_scale
        # Angular frequencies π/2 .. 16π, geometric: coordinates are ~[-1, 1] (head radius / pos_scale), so the
        # finest band resolves ~0.06 units (6 mm at pos_scale 0.1), below the 2-3 cm electrode spacing; higher
        # bands would only add noise (2^k for k up to 15 did).
        self.register_buffer("freqs", math.pi * torch.logspace(-1, 4, bands, base=2.0), persistent=False)
        n_in = 4 * (2 * bands + 1)
        self.mlp = nn.Sequential(nn.Linear(n_in, dim), nn.GELU(), nn.Linear(dim, dim))
        self.unknown = nn.Parameter(torch.zeros(dim))

    def forward(self, pos: Tensor, pos_known: Tensor, n_patches: int) -> Tensor:
        """pos (B, C, 3), pos_known (B, C) → (B, C, P, D)."""
        b, c, _ = pos.shape
        xyz = torch.where(pos_known[..., None], pos, torch.zeros_like(pos)) / self.pos_scale  # (B, C, 3)
        t = torch.arange(n_patches, device=pos.device, dtype=pos.dtype) / self.time_scale  # (P,)
        coords = torch.cat([xyz[:, :, None, :].expand(b, c, n_patches, 3),
                            t[None, None, :, None].expand(b, c, n_patches, 1)], dim=-1)  # (B, C, P, 4)
        angles = coords[..., None] * self.freqs  # (B, C, P, 4, bands)
        feats = torch.cat([coords[..., None], angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (B, C, P, 4*(2b+1))
        enc = self.mlp(feats)  # (B, C, P, D)
        return enc + (~pos_known)[:, :, None, None].to(enc.dtype) * self.unknown


class PatchEmbed(nn.Module):
    """A channel's patch of ``patch_size`` samples → ``dim`` (a linear map after a fixed µV scale)."""

    def __init__(self, patch_size: int, dim: int, input_scale_uv: float = 10.0) -> None:
        super().__init__()
        self.patch_size, self.input_scale = patch_size, input_scale_uv
        self.proj = nn.Linear(patch_size, dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, P, D)
        b, c, t = x.shape
        patches = x.reshape(b, c, t // self.patch_size, self.patch_size) / self.input_scale
        return self.proj(patches)


class CodeEmbed(nn.Module):
    """RVQ codes of a patch's frames → ``dim``: per-level embeddings summed per frame, frames concatenated."""

    def __init__(self, n_q: int, codebook_size: int, frames_per_patch: int, dim: int) -> None:
        super().__init__()
        self.frames_per_patch = frames_per_patch
        self.levels = nn.ModuleList(nn.Embedding(codebook_size, dim) for _ in range(n_q))
        self.proj = nn.Linear(frames_per_patch * dim, dim)

    def forward(self, codes: Tensor) -> Tensor:  # (B, C, n_q, F) -> (B, C, P, D)
        b, c, n_q, f = codes.shape
        emb = sum(level(codes[:, :, q]) for q, level in enumerate(self.levels[:n_q]))  # (B, C, F, D)
        p = f // self.frames_per_patch
        return self.proj(emb.reshape(b, c, p, self.frames_per_patch * emb.shape[-1]))


class NeuroTransformer(nn.Module, StrictHubMixin, library_name="neurofm"):
    """Any-montage transformer; see the module docstring. ``config`` holds the architecture."""

    config_class = BackboneConfig

    def __init__(
        self,
        config: BackboneConfig | str | dict[str, Any] = "tiny",
        n_outputs: int | None = None,
        n_chans: int | None = None,
        chs_info: list[dict[str, Any]] | None = None,
        n_times: int | None = None,
        sfreq: float | None = None,
    ) -> None:
        super().__init__()
        overrides = {} if n_outputs is None else {"n_outputs": n_outputs}
        cfg = resolve_backbone_config(config, **overrides)
        if sfreq is not None and float(sfreq) != cfg.sfreq:
            raise BackboneInputError(f"sfreq={sfreq} but the backbone works at {cfg.sfreq:g} Hz "
                                     "(resample, or build it with config sfreq)")
        self.config = self._hub_mixin_config = cfg
        self.n_chans, self.n_times = n_chans, n_times
        if cfg.input == "patch":
            self.embed = PatchEmbed(cfg.patch_size, cfg.dim)
        else:
            self.embed = CodeEmbed(cfg.n_q, cfg.codebook_size, cfg.frames_per_patch, cfg.dim)
        self.pos_enc = FourierPositionEncoding(cfg.dim, cfg.fourier_bands, cfg.pos_scale, cfg.time_scale)
        self.mask_token = nn.Parameter(torch.zeros(cfg.dim))
        self.neighbour_mix = NeighbourMix(cfg.dim, cfg.neighbour_sigma) if cfg.neighbour_mix else None
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_hidden, attention=cfg.attention, mlp=cfg.mlp, qk_norm=cfg.qk_norm,
                  dropout=cfg.dropout, eps=cfg.norm_eps)
            for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.pool = AttentionPool(cfg.dim, cfg.heads) if cfg.pooling == "attention" else None
        self.head: nn.Module = nn.Identity()
        self.grad_checkpointing = cfg.grad_checkpointing
        self.register_buffer("default_pos", _positions_from_chs(chs_info, n_chans), persistent=False)
        self.apply(_init_weights)
        self.reset_head(cfg.n_outputs)

    # ---------------------------------------------------------------------------------------------
    # braindecode-style head handling

    @property
    def n_outputs(self) -> int | None:
        return self.config.n_outputs

    def reset_head(self, n_outputs: int | None) -> None:
        """A new, freshly initialised linear head (``None``: ``forward`` returns pooled features)."""
        self.config = self._hub_mixin_config = resolve_backbone_config(self.config, n_outputs=n_outputs)
        self.head = nn.Identity() if n_outputs is None else nn.Linear(self.config.dim, n_outputs)
        if n_outputs is not None:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    # ---------------------------------------------------------------------------------------------
    # forward

    def n_patches(self, n_times: int) -> int:
        return n_times // self.config.patch_size

    def forward_features(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        chan_mask: Tensor | None = None,
        pos_known: Tensor | None = None,
        token_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """Token features ``(B, C, P, D)`` after the final norm.

        Args:
            x: signal (B, C, T) in µV (``input="patch"``) or codes (B, C, n_q, F) (``input="codes"``).
            pos: (B, C, 3) metres; default: the positions from ``chs_info``.
            chan_mask: (B, C) True for a real channel (padding and bad channels False); default all.
            pos_known: (B, C) True where ``pos`` is known; default: where ``pos`` is finite.
            token_mask: (B, C, P) True for tokens replaced by the mask embedding (masked pretraining).
            causal: a token sees only tokens of its own and earlier patches (next-token pretraining).
        """
        x = self._check_input(x)
        return self._encode(x, *self._montage(pos, pos_known, chan_mask, *x.shape[:2], x.device), token_mask, causal)

    def _encode(self, x: Tensor, pos: Tensor, pos_known: Tensor, chan_mask: Tensor,
                token_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """``forward_features`` on a checked input and a resolved montage (``_montage``)."""
        tokens = self.embed(x)  # (B, C, P, D)
        b, c, p, _ = tokens.shape
        if token_mask is not None:
            if token_mask.shape != (b, c, p):
                raise BackboneInputError(f"token_mask has shape {tuple(token_mask.shape)}, expected {(b, c, p)}")
            tokens = torch.where(token_mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        if self.neighbour_mix is not None:
            tokens = self.neighbour_mix(tokens, self.neighbour_mix.weights(pos.float(), pos_known, chan_mask))
        tokens = tokens + self.pos_enc(pos.to(tokens.dtype), pos_known, p)
        # No mask when every channel is real: SDPA's fused (flash) kernels take no arbitrary mask.
        attn_mask = None if bool(chan_mask.all()) else chan_mask
        # Built once here for all blocks, not in each; criss-cross attention uses SDPA's is_causal instead.
        time_mask = time_causal_mask(c, p, tokens.device) if causal and self.config.attention == "full" else None
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                tokens = checkpoint(block, tokens, attn_mask, causal, time_mask, use_reentrant=False)
            else:
                tokens = block(tokens, attn_mask, causal, time_mask)
        return self.norm(tokens)

    def forward_head(self, features: Tensor, chan_mask: Tensor | None = None) -> Tensor:
        """Pool the real tokens of ``features`` (B, C, P, D) and apply the head → (B, n_outputs or D)."""
        b, c, p, d = features.shape
        mask = torch.ones(b, c, dtype=torch.bool, device=features.device) if chan_mask is None else chan_mask
        token_mask = mask[:, :, None].expand(b, c, p).reshape(b, c * p)  # (B, C*P)
        flat = features.reshape(b, c * p, d)
        if self.pool is not None:
            pooled = self.pool(flat, token_mask)
        else:
            w = token_mask.to(flat.dtype)[..., None]  # (B, C*P, 1)
            pooled = (flat * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(pooled)

    def forward(self, x: Tensor, pos: Tensor | None = None, chan_mask: Tensor | None = None,
                pos_known: Tensor | None = None) -> Tensor:
        x = self._check_input(x)
        pos, pos_known, chan_mask = self._montage(pos, pos_known, chan_mask, *x.shape[:2], x.device)
        return self.forward_head(self._encode(x, pos, pos_known, chan_mask), chan_mask)

    # ---------------------------------------------------------------------------------------------
    # input checks

    def _check_input(self, x: Tensor) -> Tensor:
        cfg = self.config
        if cfg.input == "patch":
            if x.ndim != 3 or not x.is_floating_point():
                raise BackboneInputError(f"x must be a float tensor (batch, channels, samples), got {x.dtype} "
                                         f"{tuple(x.shape)}")
            if x.shape[-1] < cfg.patch_size or x.shape[-1] % cfg.patch_size:
                raise BackboneInputError(f"n_times={x.shape[-1]} must be a positive multiple of patch_size="
                                         f"{cfg.patch_size} ({cfg.patch_size / cfg.sfreq:g} s at {cfg.sfreq:g} Hz)")
        else:
            if x.ndim != 4 or x.is_floating_point():
                raise BackboneInputError(f"codes must be an integer tensor (batch, channels, n_q, frames), got "
                                         f"{x.dtype} {tuple(x.shape)}")
            if x.shape[2] > cfg.n_q or x.shape[-1] < cfg.frames_per_patch or x.shape[-1] % cfg.frames_per_patch:
                raise BackboneInputError(f"codes of shape {tuple(x.shape)}: need n_q <= {cfg.n_q} and a positive "
                                         f"multiple of frames_per_patch={cfg.frames_per_patch} frames")
        if self.n_chans is not None and x.shape[1] != self.n_chans:
            raise BackboneInputError(f"x has {x.shape[1]} channels, this model was built for n_chans={self.n_chans}")
        return x

    def _montage(self, pos: Tensor | None, pos_known: Tensor | None, chan_mask: Tensor | None, b: int, c: int,
                 device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        if pos is None:
            if self.default_pos.numel() == 0 or self.default_pos.shape[0] != c:
                raise BackboneInputError(f"no electrode positions: pass pos (B, C, 3) with the batch, or build the "
                                         f"model with chs_info for these {c} channels")
            pos = self.default_pos[None].expand(b, c, 3)
        if pos.shape != (b, c, 3):
            raise BackboneInputError(f"pos has shape {tuple(pos.shape)}, expected {(b, c, 3)}")
        finite = torch.isfinite(pos).all(-1)
        pos_known = finite if pos_known is None else pos_known & finite
        pos = torch.nan_to_num(pos, nan=0.0)
        if chan_mask is None:
            chan_mask = torch.ones(b, c, dtype=torch.bool, device=device)
        elif chan_mask.shape != (b, c):
            raise BackboneInputError(f"chan_mask has shape {tuple(chan_mask.shape)}, expected {(b, c)}")
        if not bool(chan_mask.any(1).all()):
            raise BackboneInputError("a window in the batch has no usable channel (chan_mask all False)")
        return pos, pos_known, chan_mask

    # ---------------------------------------------------------------------------------------------
    # hub card

    def _card_title(self) -> str:
        return f"neurofm backbone `{self.config.name}`"

    def _card_summary(self) -> str:
        c = self.config
        n = sum(p.numel() for p in self.parameters())
        return (f"Any-montage spatiotemporal transformer: {c.depth} layers, width {c.dim}, {c.heads} heads, "
                f"{c.attention} attention, {c.input} input, {c.patch_size}-sample patches at {c.sfreq:g} Hz; "
                f"{n:,} parameters.")

    def _card_usage(self) -> tuple[str, ...]:
        return ("from neurofm.models import NeuroTransformer",
                "model = NeuroTransformer.from_pretrained(\"<this folder or hub id>\")",
                "feats = model.forward_features(x, pos=pos, chan_mask=chan_mask)  # x: (B, C, T) µV; pos (B, C, 3) m")

    def _card_kind(self) -> str:
        return "backbone"


def _positions_from_chs(chs_info: list[dict[str, Any]] | None, n_chans: int | None) -> Tensor:
    """(C, 3) positions from MNE ``info["chs"]`` entries (``loc[:3]``; zeros or NaN → unknown)."""
    if not chs_info:
        return torch.zeros(0, 3)
    locs = np.array([np.asarray(ch.get("loc", [np.nan] * 3), dtype=float)[:3] for ch in chs_info], dtype=np.float32)
    locs[~np.isfinite(locs).all(1) | (np.abs(locs).sum(1) == 0)] = np.nan
    if n_chans is not None and len(locs) != n_chans:
        raise BackboneInputError(f"chs_info has {len(locs)} channels but n_chans={n_chans}")
    return torch.from_numpy(locs)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


# --------------------------------------------------------------------------------------------------
# registry

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = fn
        return fn
    return deco


for _preset in BackboneConfig.PRESETS:
    register_backbone(_preset)(lambda _name=_preset, **kw: NeuroTransformer(_name, **kw))


def build_backbone(name: str | BackboneConfig, **kwargs: Any) -> nn.Module:
    """A registered backbone by name (``tiny``, ``small``, ``base``, ``large``) or from a config."""
    if isinstance(name, BackboneConfig):
        return NeuroTransformer(name, **kwargs)
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} is not one of {sorted(BACKBONES)}")
    return BACKBONES[name](**kwargs)


def list_backbones() -> list[str]:
    return sorted(BACKBONES)
