"""``RVQConfig``: every knob of an RVQ tokenizer, with named presets as data.

Kept free of torch so that the command line can build ``neurofm tokenizer fit --help`` (whose
arguments are this dataclass) without importing torch; ``neurofm.tokenizers.rvq`` re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from ..presets import PresetConfig


def _positive_ints(name: str, values: tuple[int, ...], *, odd: bool = False, allow_empty: bool = False) -> None:
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (odd and v % 2 == 0)]
    if bad:
        raise ValueError(f"{name}={values} must hold {'odd ' if odd else ''}integers >= 1 (bad: {bad})")


@dataclass
class RVQConfig(PresetConfig):
    """One RVQ tokenizer: per-channel multi-scale conv encoder → ResidualVQ → conv decoder.

    Kernel sizes and strides are in samples at ``sfreq``: the defaults are chosen for 200 Hz, the
    preprocessing default (``PreprocessConfig.sfreq``).
    """

    name: str = "custom"
    sfreq: float = 200.0
    n_chans: int | None = None  # None: channels are coded independently (any montage)
    # Fixed scale (µV) the signal is divided by before the encoder. Fixed, not per window, so that
    # the codes alone decode (no side information); preprocessed EEG has RMS ~5-20 µV.
    input_scale_uv: float = 10.0

    # encoder / decoder
    # Parallel stem kernels (NeuroRVQ's inception branches): one period of ~40 Hz (gamma), 20 Hz
    # (beta), 8 Hz (alpha), 4 Hz (theta) and 2 Hz (delta) at 200 Hz. The stem sees one input
    # channel, so even the 101-sample branch costs little next to the later convolutions.
    stem_kernels: tuple[int, ...] = (5, 11, 25, 51, 101)
    channels: tuple[int, ...] = (8, 16, 32)  # widths: stem output, then after each stride
    strides: tuple[int, ...] = (4, 5)  # product = samples per latent frame (hop)
    dilations: tuple[int, ...] = (1, 3)  # residual units per resolution (SEANet/EnCodec)
    kernel_size: int = 7
    latent_dim: int = 32  # dimension of a frame's latent vector (= codebook vectors)

    # quantiser: vector_quantize_pytorch.ResidualVQ. Its defaults were checked on tiny, 400 CPU steps,
    # held-out PhysioNet runs, 2 seeds, w_stft 1 (docs/tokenizers.md): mean NMSE 0.444 with the library's
    # decay 0.8, 0.415 with 0.95, 0.427 with 0.99 (the same order on both seeds; seed-to-seed spread
    # ~0.08); rotation trick 0.444 vs plain STE 0.468; without dead-code replacement 11-23% of
    # the codes went unused (vs < 1%) at similar NMSE; k-means init: no difference beyond noise.
    n_q: int = 4  # codebooks (levels) per frame
    codebook_size: int = 256  # K
    ema_decay: float = 0.95  # not the library's 0.8 (see above)
    kmeans_init: bool = True  # codebooks start as k-means centroids of the first batch
    kmeans_iters: int = 10
    threshold_ema_dead_code: float = 2.0  # a code whose EMA count falls below this is re-seeded
    rotation_trick: bool = True  # gradient through the quantiser (arXiv:2410.06424); else plain STE
    quantize_dropout: bool = True  # train on a random number of levels: one model, several bitrates
    min_levels: int = 1  # quantiser dropout keeps at least this many levels

    # losses (all terms are logged unweighted; total = weighted sum)
    time_loss: Literal["l1", "huber"] = "l1"
    stft_windows: tuple[int, ...] = (16, 32, 64, 128, 256)  # samples; 80 ms .. 1.28 s at 200 Hz
    w_time: float = 1.0
    # Multi-scale log-magnitude. 0.1, not EnCodec's 1 (measured with the log floor at -40 dB, see
    # losses.LOG_FLOOR_REL): at 1, tiny settled in a "spectral texture" optimum (right spectrum,
    # random phase: held-out NMSE 1.5, worse than predicting zeros) on synthetic resting EEG for
    # 300+ steps, and reached held-out PhysioNet NMSE 0.375 at 400 steps where 0.1 gave 0.270 and
    # 0 gave 0.246; 0.1 keeps band powers closer than 0 (3.9 vs 6.6 dB mean error: MSE-optimal
    # codes shrink what they cannot predict). docs/tokenizers.md.
    w_stft: float = 0.1
    w_phase: float = 0.5  # magnitude-weighted cos/sin of the phase
    w_commit: float = 1.0  # ResidualVQ commitment, summed over levels

    PRESET_KIND: ClassVar[str] = "RVQ"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        for name in ("stem_kernels", "channels", "strides", "dilations", "stft_windows"):
            setattr(self, name, tuple(getattr(self, name)))
        _positive_ints("stem_kernels", self.stem_kernels, odd=True)
        _positive_ints("channels", self.channels)
        _positive_ints("strides", self.strides, allow_empty=True)
        if any(s < 2 for s in self.strides):
            raise ValueError(f"strides={self.strides} must be >= 2 (a stride of 1 adds a block, not a down-sampling)")
        _positive_ints("dilations", self.dilations, allow_empty=True)
        _positive_ints("stft_windows", self.stft_windows, allow_empty=True)
        if len(self.channels) != len(self.strides) + 1:
            raise ValueError(f"channels={self.channels} needs one width more than strides={self.strides}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd (same-length convolutions)")
        for name in ("sfreq", "input_scale_uv", "ema_decay"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a number > 0")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay} must be in (0, 1)")
        if self.n_chans is not None and self.n_chans < 1:
            raise ValueError(f"n_chans={self.n_chans} must be >= 1 or None (any channel count)")
        for name in ("latent_dim", "n_q", "kmeans_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size} must be >= 2")
        if not 1 <= self.min_levels <= self.n_q:
            raise ValueError(f"min_levels={self.min_levels} must be in [1, n_q={self.n_q}]")
        if self.time_loss not in ("l1", "huber"):
            raise ValueError(f"time_loss={self.time_loss!r} must be 'l1' or 'huber'")
        for name in ("w_time", "w_stft", "w_phase", "w_commit", "threshold_ema_dead_code"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")

    @property
    def hop(self) -> int:
        """Samples per latent frame."""
        return math.prod(self.strides)

    @property
    def frames_per_second(self) -> float:
        return self.sfreq / self.hop

    def bits_per_second(self, n_q: int | None = None) -> float:
        """Per channel: frames/s × levels × log2 K (the codes are all a decoder needs)."""
        return self.frames_per_second * (self.n_q if n_q is None else n_q) * math.log2(self.codebook_size)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


RVQConfig.PRESETS.update({
    # Tests and the quickstart: 72 k parameters, ~0.2 s per step of 64 rows × 2 s on one CPU core.
    # 10 frames/s × 4 levels × 8 bits = 320 bits/s per channel.
    "tiny": dict(channels=(8, 16, 32), strides=(4, 5), dilations=(1, 3), latent_dim=32, n_q=4,
                 codebook_size=256),
    # Real training on a GPU. 10 frames/s × 8 levels × 10 bits = 800 bits/s per channel at full
    # depth; quantiser dropout serves 100..800 bits/s from the same weights.
    "base": dict(channels=(32, 64, 128, 256), strides=(2, 2, 5), dilations=(1, 3, 9), latent_dim=64,
                 n_q=8, codebook_size=1024),
})
