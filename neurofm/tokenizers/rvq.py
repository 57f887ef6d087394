"""RVQ tokenizer: M/EEG windows → discrete codes ``(batch, channels, n_q, frames)`` → waveform.

Each channel is coded on its own (any montage, any channel count): a multi-scale convolutional
encoder turns a row of ``T`` samples into ``T / hop`` latent frames, ``vector_quantize_pytorch``'s
``ResidualVQ`` turns each frame into ``n_q`` code indices, and a decoder maps the summed code
vectors back to the waveform. Quantiser dropout trains every prefix of levels, so decoding the first
``k`` levels of the codes is a lower-bitrate version of the same tokenizer.

The signal is divided by a fixed ``input_scale_uv`` (no per-window side information): the codes
alone decode, and ``bits_per_second`` = frames/s × levels × log2 K per channel is the whole rate.

    tok = build_tokenizer("rvq_tiny")
    out = tok(x)                      # TokenizerOutput: codes, recon, losses, usage
    codes = tok.encode(x, n_q=2)      # (B, C, 2, F) int64 in [0, K)
    x_hat = tok.decode(codes, n_samples=x.shape[-1])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from vector_quantize_pytorch import ResidualVQ

from .base import Tokenizer, TokenizerInputError, TokenizerOutput, check_signal, register_tokenizer
from .config import RVQConfig
from ..hub import StrictHubMixin
from .losses import reconstruction_losses
from .modules import ConvDecoder, ConvEncoder

__all__ = ["RVQConfig", "RVQTokenizer", "rvq_tiny", "rvq_base"]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` for the block: no codebook EMA update, no quantiser dropout."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class RVQTokenizer(nn.Module, Tokenizer, StrictHubMixin, library_name="neurofm"):
    """See the module docstring. ``config``: an :class:`RVQConfig` (``RVQConfig.from_name("tiny")``)."""

    config_class = RVQConfig

    def __init__(self, config: RVQConfig) -> None:
        super().__init__()
        self.config = config
        self.sfreq, self.n_q, self.codebook_size = float(config.sfreq), config.n_q, config.codebook_size
        self.hop = config.hop
        arch = dict(channels=config.channels, strides=config.strides, dilations=config.dilations,
                    kernel_size=config.kernel_size, latent_dim=config.latent_dim)
        self.encoder = ConvEncoder(stem_kernels=config.stem_kernels, **arch)
        self.decoder = ConvDecoder(**arch)
        self.quantizer = ResidualVQ(
            dim=config.latent_dim,
            num_quantizers=config.n_q,
            codebook_size=config.codebook_size,
            decay=config.ema_decay,
            kmeans_init=config.kmeans_init,
            kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
            rotation_trick=config.rotation_trick,
            quantize_dropout=config.quantize_dropout,
            quantize_dropout_cutoff_index=config.min_levels - 1,
            commitment_weight=1.0,  # unweighted here; config.w_commit weighs it in the total
        )

    # ------------------------------------------------------------------------------------ helpers
    @property
    def min_samples(self) -> int:
        """The shortest window that gives one latent frame."""
        return self.hop

    def _levels(self, n_q: int | None) -> int:
        n_q = self.n_q if n_q is None else n_q
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q={n_q} must be in [1, {self.n_q}]")
        return n_q

    def _rows(self, x: Tensor, mask: Tensor | None) -> Tensor:  # (B, C, T) -> (N, T) of scaled rows
        if mask is not None and mask.shape != x.shape[:2]:
            raise TokenizerInputError(f"mask has shape {tuple(mask.shape)}, expected {tuple(x.shape[:2])}")
        # Masked-out (padded, bad) channels are never read, so whatever they hold is no error.
        checked = x if mask is None or x.ndim != 3 else torch.where(mask[..., None], x, 0.0)
        check_signal(checked, min_samples=self.min_samples, n_chans=self.config.n_chans)
        rows = x.reshape(-1, x.shape[-1])  # (B*C, T)
        if mask is not None:
            rows = rows[mask.reshape(-1)]  # (N, T), N = number of True entries
        if rows.shape[0] == 0:
            raise TokenizerInputError("no channel to code: the batch is empty or the mask selects none")
        return rows / self.config.input_scale_uv

    @staticmethod
    def _unrows(values: Tensor, shape: tuple[int, int], mask: Tensor | None, fill: float) -> Tensor:
        """(N, ...) rows back to (B, C, ...); masked-out channels get ``fill``."""
        if mask is None:
            return values.reshape(*shape, *values.shape[1:])
        out = values.new_full((shape[0] * shape[1], *values.shape[1:]), fill)
        out[mask.reshape(-1)] = values
        return out.reshape(*shape, *values.shape[1:])

    def _latent(self, rows: Tensor) -> Tensor:  # (N, T) -> (N, F, D)
        pad = -rows.shape[-1] % self.hop  # right-pad to whole frames; the decoder output is cropped
        rows = nn.functional.pad(rows, (0, pad))  # (N, F * hop)
        return self.encoder(rows[:, None, :]).transpose(1, 2)  # (N, F, D)

    def _waveform(self, zq: Tensor, n_samples: int) -> Tensor:  # (N, F, D) -> (N, n_samples), scaled
        return self.decoder(zq.transpose(1, 2))[:, 0, :n_samples]

    # ------------------------------------------------------------------------------------ forward
    def forward(self, x: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """x: (B, C, T) µV; mask: (B, C) bool, channels to code (others: codes -1, recon 0)."""
        rows = self._rows(x, mask)  # (N, T)
        z = self._latent(rows)  # (N, F, D)
        zq, idx, commit = self.quantizer(z)  # (N, F, D), (N, F, n_q) (-1: dropped level), (n_q,)
        y = self._waveform(zq, rows.shape[-1])  # (N, T)
        losses = reconstruction_losses(rows, y, time_kind=self.config.time_loss,
                                       stft_windows=self.config.stft_windows)
        losses["commit"] = commit.sum() if self.training else self._commitment(z, idx)
        losses["total"] = self._total(losses)
        shape = (x.shape[0], x.shape[1])
        return TokenizerOutput(
            codes=self._unrows(idx.transpose(1, 2), shape, mask, -1),  # (B, C, n_q, F)
            recon=self._unrows(y * self.config.input_scale_uv, shape, mask, 0.0),  # (B, C, T)
            losses=losses,
            usage=[torch.bincount(level[level >= 0], minlength=self.codebook_size) for level in idx.unbind(-1)],
        )

    def _total(self, losses: dict[str, Tensor]) -> Tensor:
        c = self.config
        return (c.w_time * losses["time"] + c.w_stft * losses["stft"] + c.w_phase * losses["phase"]
                + c.w_commit * losses["commit"])

    @torch.no_grad()
    def _commitment(self, z: Tensor, idx: Tensor) -> Tensor:
        """Outside training ResidualVQ returns zeros; the same sum over levels of
        mse(residual entering level l, its code), computed from the codes."""
        codes = self.quantizer.get_codes_from_indices(idx)  # (n_q, N, F, D), 0 for dropped levels
        before = torch.cumsum(codes, dim=0) - codes  # (n_q, N, F, D): what earlier levels took
        used = (idx >= 0).permute(2, 0, 1)  # (n_q, N, F)
        err = ((z[None] - before - codes).square().mean(-1))  # (n_q, N, F)
        return (err * used).sum() / used[0].sum().clamp_min(1)

    # ------------------------------------------------------------------------------- the contract
    @torch.no_grad()
    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """(B, C, T) µV -> (B, C, n_q, F) int64 codes in [0, K), F = ceil(T / hop)."""
        n_q = self._levels(n_q)
        rows = self._rows(x, None)  # (B*C, T)
        with _eval_mode(self.quantizer):
            _, idx, _ = self.quantizer(self._latent(rows))  # (B*C, F, n_q)
        codes = idx[..., :n_q].transpose(1, 2)  # RVQ is greedy: the first n_q levels are a prefix
        return codes.reshape(x.shape[0], x.shape[1], n_q, -1)

    def decode(self, codes: Tensor, n_samples: int | None = None) -> Tensor:
        """(B, C, n_q', F) codes, n_q' <= n_q levels -> (B, C, n_samples) µV (default F · hop)."""
        b, c, levels, frames = self._check_codes(codes)
        n_samples = frames * self.hop if n_samples is None else n_samples
        if not (frames - 1) * self.hop < n_samples <= frames * self.hop:
            raise TokenizerInputError(f"{frames} frames decode to {(frames - 1) * self.hop + 1}..{frames * self.hop} "
                                      f"samples, not n_samples={n_samples}")
        idx = codes.reshape(b * c, levels, frames).transpose(1, 2)  # (N, F, levels)
        # Missing levels are -1, which ResidualVQ reads as "dropped" (a zero code vector).
        idx = nn.functional.pad(idx, (0, self.n_q - levels), value=-1)  # (N, F, n_q)
        zq = self.quantizer.get_output_from_indices(idx)  # (N, F, D)
        y = self._waveform(zq, n_samples) * self.config.input_scale_uv  # (N, n_samples)
        return y.reshape(b, c, n_samples)

    def _check_codes(self, codes: Tensor) -> tuple[int, int, int, int]:
        if codes.ndim != 4:
            raise TokenizerInputError(f"codes must be (batch, channels, n_q, frames), got shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TokenizerInputError(f"codes must be integers, got {codes.dtype}")
        b, c, levels, frames = codes.shape
        if not 1 <= levels <= self.n_q or frames < 1:
            raise TokenizerInputError(f"codes have {levels} levels and {frames} frames; "
                                      f"1..{self.n_q} levels and >= 1 frame are needed")
        if self.config.n_chans is not None and c != self.config.n_chans:
            raise TokenizerInputError(f"codes have {c} channels; this tokenizer was built for {self.config.n_chans}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise TokenizerInputError(f"codes must lie in [0, {self.codebook_size}), "
                                      f"got [{int(codes.min())}, {int(codes.max())}]")
        return b, c, levels, frames

    def bits_per_second(self, n_q: int | None = None) -> float:
        """Per channel: frames/s × levels × log2 K."""
        return self.config.bits_per_second(self._levels(n_q))

    # ----------------------------------------------------------------------------------- the card
    def _card_title(self) -> str:
        return f"neurofm RVQ tokenizer `{self.config.name}`"

    def _card_summary(self) -> str:
        c = self.config
        n_params = sum(p.numel() for p in self.parameters())
        return (f"Per-channel M/EEG tokenizer ({n_params:,} parameters): {c.sfreq:g} Hz signals in µV → "
                f"{c.frames_per_second:g} frames/s × {c.n_q} levels of K={c.codebook_size} codes = "
                f"{c.bits_per_second():g} bits/s per channel at full depth "
                f"({c.bits_per_second(1):g} bits/s per level kept).")


@register_tokenizer("rvq_tiny")
def rvq_tiny(**overrides) -> RVQTokenizer:
    """Tests and the quickstart; trains on a CPU in minutes."""
    return RVQTokenizer(RVQConfig.from_name("tiny", **overrides))


@register_tokenizer("rvq_base")
def rvq_base(**overrides) -> RVQTokenizer:
    """Real training on a GPU."""
    return RVQTokenizer(RVQConfig.from_name("base", **overrides))
