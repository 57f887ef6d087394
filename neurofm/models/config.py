"""``BackboneConfig``: every knob of an any-montage transformer, with named presets as data.

Torch-free so that the command line builds ``--help`` without importing torch;
``neurofm.models.backbone`` builds the module from it (``build_backbone``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from ..presets import PresetConfig

ATTENTIONS = ("full", "criss_cross")
MLPS = ("swiglu", "geglu")
INPUTS = ("patch", "codes")
POOLINGS = ("mean", "attention")


@dataclass
class BackboneConfig(PresetConfig):
    """One backbone: (channel, time-patch) tokens → pre-norm transformer → features / head.

    Tokens: every channel's signal is cut into patches of ``patch_size`` samples (at ``sfreq``); a
    token is embedded from the patch (``input="patch"``) or from the RVQ codes of its frames
    (``input="codes"``: sum of per-level code embeddings), plus a Fourier encoding of the channel's
    3-D position and the patch's time (REVE-style), so that any montage runs.
    """

    name: str = "custom"
    sfreq: float = 200.0
    patch_size: int = 200  # samples per time patch (1 s at 200 Hz, as LaBraM/CBraMod)
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 8 / 3  # hidden = mlp_ratio * dim per GLU branch (4 * dim * 2/3: same params as a GELU MLP of 4 * dim)
    mlp: Literal["swiglu", "geglu"] = "swiglu"
    attention: Literal["full", "criss_cross"] = "full"
    input: Literal["patch", "codes"] = "patch"
    # codes input: what the tokenizer gives per patch
    n_q: int = 4
    codebook_size: int = 256
    frames_per_patch: int = 10  # tokenizer frames per patch (rvq_tiny: 10 frames/s, 1 s patches)
    # position: Fourier features of (x, y, z) in metres / pos_scale and t in patches / time_scale
    fourier_bands: int = 16
    pos_scale: float = 0.1  # metres: head radius ~0.09 m maps to ~1
    time_scale: float = 64.0  # patches: a minute of 1 s patches maps to ~1
    # neighbour mixing (``layers.NeighbourMix``): each token adds a map of nearby electrodes' tokens
    neighbour_mix: bool = False
    neighbour_sigma: float = 0.03  # metres: the Gaussian width of "nearby" (10-10 spacing is ~3 cm)
    dropout: float = 0.0
    qk_norm: bool = True  # RMSNorm on queries and keys per head (stable at scale, as in ViT-22B)
    pooling: Literal["mean", "attention"] = "mean"
    n_outputs: int | None = None  # head outputs; None: forward returns pooled features
    grad_checkpointing: bool = False
    norm_eps: float = 1e-6

    PRESET_KIND: ClassVar[str] = "backbone"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        for name, allowed in (("attention", ATTENTIONS), ("mlp", MLPS), ("input", INPUTS), ("pooling", POOLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} must be one of {allowed}")
        for name in ("patch_size", "dim", "depth", "heads", "n_q", "codebook_size", "frames_per_patch",
                     "fourier_bands"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")
        if self.attention == "criss_cross" and self.heads % 2:
            raise ValueError(f"criss_cross attention splits the heads in two halves: heads={self.heads} must be even")
        for name in ("sfreq", "mlp_ratio", "pos_scale", "time_scale", "neighbour_sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.n_outputs is not None and self.n_outputs < 1:
            raise ValueError(f"n_outputs={self.n_outputs} must be >= 1 or None")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(round(self.mlp_ratio * self.dim / 8)) * 8 or 8  # a multiple of 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Every preset mixes in neighbouring electrodes' tokens (`neighbour_mix`): without it masked
# reconstruction on average-referenced EEG sits at NMSE ~1 for thousands of steps (docs/pretraining.md).
# The field's default stays False so that checkpoints saved before it load unchanged.
BackboneConfig.PRESETS.update({
    # CPU tests and the quickstart (~60 k parameters).
    "tiny": dict(dim=32, depth=2, heads=4, neighbour_mix=True),
    "small": dict(dim=128, depth=6, heads=8, neighbour_mix=True),
    # LaBraM-base / CBraMod scale: width 200, 12 layers, 10 heads (~5.9 M parameters).
    "base": dict(dim=200, depth=12, heads=10, neighbour_mix=True),
    # LaBraM-large scale: width 400, 24 layers, 16 heads.
    "large": dict(dim=400, depth=24, heads=16, neighbour_mix=True),
})


def resolve_backbone_config(config: str | dict[str, Any] | BackboneConfig, **overrides: Any) -> BackboneConfig:
    """A preset name, a mapping (strict) or a config; ``overrides`` replace fields."""
    if isinstance(config, BackboneConfig):
        return BackboneConfig.from_dict({**config.to_dict(), **overrides}) if overrides else config
    if isinstance(config, dict):
        return BackboneConfig.from_dict({**config, **overrides})
    return BackboneConfig.from_name(config, **overrides)
