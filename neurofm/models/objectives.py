"""Masked pretraining objectives over a ``NeuroTransformer``'s (channel, time-patch) tokens.

Both mask a share of each window's *real* tokens (never a padded or bad channel), hand the mask to
``forward_features(..., token_mask=...)`` (masked tokens become the learned mask embedding) and
score only the masked tokens:

- ``mae`` (CBraMod, REVE): a linear decoder predicts each masked token's raw patch; loss = MSE,
  optionally + an L1 between log-magnitude spectra (``spectral_weight``).
- ``tokens`` (LaBraM, NeuroRVQ): a frozen RVQ tokenizer codes the window; a linear head predicts,
  for each masked token, every (frame, level) code of its patch; loss = cross-entropy.

And one that masks nothing: ``next`` (MEG-GPT), attention causal in time, each token predicts the
codes of the next patch of its channel.

Masking is uniform over tokens (CBraMod's random patch masking at 50 %); REVE's block masking would
be another ``random_token_mask``. Objectives are built by name from ``OBJECTIVES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..pipelines.loader import Batch
from ..tokenizers.losses import LOG_FLOOR_REL
from .backbone import NeuroTransformer
from .objective_config import ObjectiveConfig

# patch_norm: the variance floor, in (µV / 10)^2: a flat patch (std < 1 µV) is not blown up to unit variance
PATCH_NORM_VAR_FLOOR = 1e-2


@dataclass
class ObjectiveOutput:
    """One batch scored by an objective."""

    loss: Tensor  # () the weighted total that is optimised
    terms: dict[str, Tensor]  # every loss term, unweighted (logged)
    metrics: dict[str, Tensor] = field(default_factory=dict)  # e.g. code accuracy (logged)


def random_token_mask(chan_mask: Tensor, n_patches: int, ratio: float, generator: torch.Generator) -> Tensor:
    """(B, C) real channels → (B, C, P) bool: ``round(ratio · real tokens)`` of each window's real
    tokens, uniformly at random, at least one; tokens of padded or bad channels are never chosen."""
    b, c = chan_mask.shape
    real = chan_mask[:, :, None].expand(b, c, n_patches).reshape(b, c * n_patches)  # (B, C*P)
    n_real = real.sum(1)  # (B,)
    n_mask = (n_real * ratio).round().long().clamp(min=1)
    n_mask = torch.minimum(n_mask, n_real)  # (B,)
    scores = torch.rand(b, c * n_patches, device=chan_mask.device, generator=generator)  # (B, C*P) in [0, 1)
    scores = scores.masked_fill(~real, 2.0)  # padded tokens sort last
    rank = scores.argsort(1).argsort(1)  # (B, C*P): 0 for the lowest score
    return (rank < n_mask[:, None]).reshape(b, c, n_patches)


def to_patches(x: Tensor, patch_size: int) -> Tensor:
    """(B, C, T) → (B, C, P, patch_size)."""
    b, c, t = x.shape
    return x.reshape(b, c, t // patch_size, patch_size)


def log_spectrum_l1(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between log |rfft| of (M, S) patches; the floor is relative to each target patch's mean
    magnitude (LOG_FLOOR_REL, as the tokenizer's STFT loss) so near-empty bins do not dominate."""
    mag_p, mag_t = torch.fft.rfft(pred, dim=-1).abs(), torch.fft.rfft(target, dim=-1).abs()  # (M, S//2+1)
    floor = LOG_FLOOR_REL * mag_t.mean(-1, keepdim=True).detach() + 1e-8  # (M, 1)
    return F.l1_loss(torch.log(mag_p + floor), torch.log(mag_t + floor))


class MaskedObjective(nn.Module):
    """Draws the token mask; subclasses score the masked tokens (``score``)."""

    name: ClassVar[str]

    def __init__(self, mask_ratio: float) -> None:
        super().__init__()
        self.mask_ratio = mask_ratio

    def forward(self, backbone: NeuroTransformer, batch: Batch, generator: torch.Generator) -> ObjectiveOutput:
        """``batch.x`` (B, C, T) µV, T a multiple of the patch size, padded channels zeroed."""
        n_patches = backbone.n_patches(batch.x.shape[-1])
        token_mask = random_token_mask(batch.chan_mask, n_patches, self.mask_ratio, generator)  # (B, C, P)
        return self.score(backbone, batch, token_mask)

    def score(self, backbone: NeuroTransformer, batch: Batch, token_mask: Tensor) -> ObjectiveOutput:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What the model card records about the objective beyond its config (e.g. the tokenizer)."""
        return {}


class MaskedReconstruction(MaskedObjective):
    """Predict each masked token's patch from its feature with a linear decoder (dim → patch_size).

    ``target="scaled"``: the patch divided by the backbone's input scale (10 µV), so the MSE is in
    the units the backbone reads and 1.0 is the error of predicting zeros for a 10 µV RMS signal.
    ``"patch_norm"``: each target patch normalised to zero mean, unit variance (MAE's norm_pix_loss):
    the loss ignores amplitude, which in EEG is information (alpha power, sleep stage), hence not the
    default (docs/pretraining.md has the measurement).
    """

    name = "mae"

    def __init__(self, dim: int, patch_size: int, *, input_scale_uv: float = 10.0, mask_ratio: float = 0.5,
                 target: str = "scaled", spectral_weight: float = 0.0) -> None:
        super().__init__(mask_ratio)
        self.patch_size, self.input_scale_uv = patch_size, input_scale_uv
        self.target, self.spectral_weight = target, spectral_weight
        self.decoder = nn.Linear(dim, patch_size)

    def targets(self, x: Tensor) -> Tensor:
        """(B, C, T) µV → (B, C, P, patch_size) in the loss's units."""
        patches = to_patches(x, self.patch_size) / self.input_scale_uv  # (B, C, P, S)
        if self.target == "patch_norm":
            mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
            patches = (patches - mean) / (var + PATCH_NORM_VAR_FLOOR).sqrt()
        return patches

    def score(self, backbone: NeuroTransformer, batch: Batch, token_mask: Tensor) -> ObjectiveOutput:
        # (B, C, P, D)
        feats = backbone.forward_features(batch.x, batch.pos, batch.chan_mask, batch.pos_known, token_mask)
        pred = self.decoder(feats[token_mask]).float()  # (M, S)
        target = self.targets(batch.x)[token_mask]  # (M, S)
        terms = {"mse": F.mse_loss(pred, target), "spectral": log_spectrum_l1(pred, target)}
        loss = terms["mse"] + self.spectral_weight * terms["spectral"]
        nmse = terms["mse"].detach() / target.square().mean().clamp_min(1e-12)  # 1.0: predicting zeros
        return ObjectiveOutput(loss=loss, terms=terms, metrics={"nmse": nmse})


class MaskedTokenPrediction(MaskedObjective):
    """Predict every (frame, level) code of each masked token's patch: a linear head
    dim → frames_per_patch · n_q · K, cross-entropy over the K codes of each (frame, level).

    ``tokenizer``: any frozen module with ``encode(x (B, C, T) µV, n_q) -> (B, C, n_q, F)`` codes in
    [0, K); it runs in eval mode and in float32 (outside autocast: bf16 would change the codes).
    ``backbone_input``: "patch" (the backbone sees the raw signal) or "codes" (it sees the codes).
    """

    name = "tokens"

    def __init__(self, dim: int, tokenizer: nn.Module, *, n_q: int, codebook_size: int, frames_per_patch: int,
                 mask_ratio: float = 0.5, backbone_input: str = "patch", source: dict[str, Any] | None = None) -> None:
        super().__init__(mask_ratio)
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.n_q, self.codebook_size, self.frames_per_patch = n_q, codebook_size, frames_per_patch
        self.backbone_input, self.source = backbone_input, source or {}
        self.head = nn.Linear(dim, frames_per_patch * n_q * codebook_size)

    def train(self, mode: bool = True) -> MaskedTokenPrediction:
        super().train(mode)
        self.tokenizer.eval()  # frozen: no codebook updates, no quantiser dropout
        return self

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """(B, C, T) µV → (B, C, n_q, F) long."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.tokenizer.encode(x.float(), n_q=self.n_q).long()

    def score(self, backbone: NeuroTransformer, batch: Batch, token_mask: Tensor) -> ObjectiveOutput:
        codes = self.encode(batch.x)  # (B, C, n_q, F)
        inputs = codes if self.backbone_input == "codes" else batch.x
        # (B, C, P, D)
        feats = backbone.forward_features(inputs, batch.pos, batch.chan_mask, batch.pos_known, token_mask)
        targets = self.patch_codes(codes, feats.shape[2])  # (B, C, P, fpp, n_q)
        return self.code_loss(feats[token_mask], targets[token_mask])

    def patch_codes(self, codes: Tensor, n_patches: int) -> Tensor:
        """(B, C, n_q, F) → (B, C, P, frames_per_patch, n_q): each patch's codes."""
        b, c, n_q, f = codes.shape
        if f != n_patches * self.frames_per_patch:
            raise ValueError(f"the tokenizer gave {f} frames for {n_patches} patches; expected "
                             f"{n_patches * self.frames_per_patch} ({self.frames_per_patch} frames per patch)")
        return codes.reshape(b, c, n_q, n_patches, self.frames_per_patch).permute(0, 1, 3, 4, 2)

    def code_loss(self, feats: Tensor, targets: Tensor) -> ObjectiveOutput:
        """Cross-entropy of the head on token features (M, D) against their codes (M, fpp, n_q)."""
        fpp, n_q, k = self.frames_per_patch, self.n_q, self.codebook_size
        logits = self.head(feats).float().reshape(-1, fpp, n_q, k)  # (M, fpp, n_q, K)
        ce = F.cross_entropy(logits.reshape(-1, k), targets.reshape(-1))
        hit = (logits.argmax(-1) == targets).float()  # (M, fpp, n_q)
        metrics = {"acc": hit.mean(), **{f"acc_l{q}": hit[..., q].mean() for q in range(n_q)}}
        return ObjectiveOutput(loss=ce, terms={"ce": ce}, metrics=metrics)

    def provenance(self) -> dict[str, Any]:
        return {"tokenizer": self.source, "n_q": self.n_q, "codebook_size": self.codebook_size}


class NextTokenPrediction(MaskedTokenPrediction):
    """Next-token prediction over codes (MEG-GPT): attention is causal in time (a token sees its own
    and earlier patches, of every channel), and each real token predicts every (frame, level) code of
    the *next* patch of its channel. Nothing is masked; the last patch has no target."""

    name = "next"

    def forward(self, backbone: NeuroTransformer, batch: Batch, generator: torch.Generator) -> ObjectiveOutput:
        codes = self.encode(batch.x)  # (B, C, n_q, F)
        inputs = codes if self.backbone_input == "codes" else batch.x
        # (B, C, P, D)
        feats = backbone.forward_features(inputs, batch.pos, batch.chan_mask, batch.pos_known, causal=True)
        b, c, p, _ = feats.shape
        if p < 2:
            raise ValueError(f"next-token prediction needs at least 2 patches per window, got {p}: use longer crops")
        targets = self.patch_codes(codes, p)[:, :, 1:]  # (B, C, P-1, fpp, n_q): the next patch's codes
        real = batch.chan_mask[:, :, None].expand(b, c, p - 1)  # (B, C, P-1)
        return self.code_loss(feats[:, :, :-1][real], targets[real])


# --------------------------------------------------------------------------------------------------
# registry: ObjectiveConfig + backbone → objective module (the one place config becomes objects)

ObjectiveBuilder = Callable[[ObjectiveConfig, NeuroTransformer, "nn.Module | None"], MaskedObjective]
OBJECTIVES: dict[str, ObjectiveBuilder] = {}


def register_objective(name: str) -> Callable[[ObjectiveBuilder], ObjectiveBuilder]:
    def deco(fn: ObjectiveBuilder) -> ObjectiveBuilder:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is registered twice")
        OBJECTIVES[name] = fn
        return fn
    return deco


def build_objective(cfg: ObjectiveConfig, backbone: NeuroTransformer,
                    tokenizer: nn.Module | None = None) -> MaskedObjective:
    """``cfg.name`` from ``OBJECTIVES``. ``tokenizer``: a module for "tokens" (else ``cfg.tokenizer`` is loaded)."""
    if cfg.name not in OBJECTIVES:
        raise ValueError(f"objective {cfg.name!r} is not one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[cfg.name](cfg, backbone, tokenizer)


@register_objective("mae")
def _mae(cfg: ObjectiveConfig, backbone: NeuroTransformer, tokenizer: nn.Module | None) -> MaskedReconstruction:
    bc = backbone.config
    if bc.input != "patch":
        raise ValueError(f"the mae objective reconstructs raw patches from a backbone with input='patch', "
                         f"not {bc.input!r}")
    scale = float(getattr(backbone.embed, "input_scale", 10.0))
    return MaskedReconstruction(bc.dim, bc.patch_size, input_scale_uv=scale, mask_ratio=cfg.mask_ratio,
                                target=cfg.target, spectral_weight=cfg.spectral_weight)


@register_objective("tokens")
def _tokens(cfg: ObjectiveConfig, backbone: NeuroTransformer, tokenizer: nn.Module | None) -> MaskedTokenPrediction:
    return _code_objective(MaskedTokenPrediction, cfg, backbone, tokenizer)


@register_objective("next")
def _next(cfg: ObjectiveConfig, backbone: NeuroTransformer, tokenizer: nn.Module | None) -> NextTokenPrediction:
    return _code_objective(NextTokenPrediction, cfg, backbone, tokenizer)


def _code_objective(cls: type[MaskedTokenPrediction], cfg: ObjectiveConfig, backbone: NeuroTransformer,
                    tokenizer: nn.Module | None) -> MaskedTokenPrediction:
    source: dict[str, Any] = {}
    if tokenizer is None:
        tokenizer, source = _load_tokenizer(cfg.tokenizer, cfg.name)
    bc = backbone.config
    n_q = cfg.n_q or int(tokenizer.n_q)
    check_tokenizer_fits(tokenizer, bc.sfreq, bc.patch_size, bc.frames_per_patch, n_q)
    if bc.input == "codes" and (n_q > bc.n_q or tokenizer.codebook_size != bc.codebook_size):
        raise ValueError(f"a codes-input backbone takes n_q <= {bc.n_q} levels of K={bc.codebook_size} codes; "
                         f"the tokenizer gives n_q={n_q} of K={tokenizer.codebook_size}")
    return cls(bc.dim, tokenizer, n_q=n_q, codebook_size=int(tokenizer.codebook_size),
               frames_per_patch=bc.frames_per_patch, mask_ratio=cfg.mask_ratio, backbone_input=bc.input,
               source=source)


def _load_tokenizer(ref: str | None, objective: str = "tokens") -> tuple[nn.Module, dict[str, Any]]:
    from ..tokenizers.tokenize import load_saved_tokenizer

    if not ref:
        raise ValueError(f"the {objective} objective needs objective.tokenizer: a tokenizer folder written by "
                         "save_pretrained (neurofm tokenizer fit writes OUT/tokenizer) or a hub id")
    saved = load_saved_tokenizer(ref)  # strict; refuses never-initialised codebooks
    return saved.model, {"id": saved.id, "sha256": saved.sha256, "name": saved.config.get("name")}


def _frames_per_second(tokenizer: nn.Module) -> float:
    config = getattr(tokenizer, "config", None)
    rate = getattr(config, "frames_per_second", None) or getattr(tokenizer, "frames_per_second", None)
    if rate is None:
        raise ValueError(f"{type(tokenizer).__name__} declares no frame rate (config.frames_per_second)")
    return float(rate)


def check_tokenizer_fits(tokenizer: nn.Module, sfreq: float, patch_size: int, frames_per_patch: int,
                         n_q: int) -> None:
    """The tokenizer must run at the backbone's ``sfreq`` and give ``frames_per_patch`` frames per patch."""
    tok_sfreq = float(getattr(tokenizer, "sfreq", sfreq))
    if tok_sfreq != sfreq:
        raise ValueError(f"the tokenizer codes {tok_sfreq:g} Hz signals; the backbone reads {sfreq:g} Hz")
    fps, seconds = _frames_per_second(tokenizer), patch_size / sfreq
    if abs(fps * seconds - frames_per_patch) > 1e-6:
        raise ValueError(f"tokenizer frame rate {fps:g} frames/s x patch {seconds:g} s = {fps * seconds:g} frames "
                         f"per patch, but the backbone's frames_per_patch is {frames_per_patch}: set "
                         f"model.frames_per_patch, or patch_size, to match")
    if not 1 <= n_q <= int(tokenizer.n_q):
        raise ValueError(f"objective.n_q={n_q} must be in [1, {int(tokenizer.n_q)}] (the tokenizer's levels)")

