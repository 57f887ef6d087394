"""Building blocks of the RVQ codecs: a multi-scale stem, SEANet-style residual units, strided
encoder and transposed-conv decoder stacks. Plain typed arguments only; ``rvq.py`` assembles them.

Every tensor is ``(N, channels, time)`` where ``N`` counts independent signal rows (one M/EEG
channel of one window each for a per-channel tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class MultiScaleConv1d(nn.Module):
    """Parallel convolutions with different kernel lengths, concatenated then mixed by a 1×1 conv.

    As NeuroRVQ's inception branches: each branch covers about one period of one EEG band, so the
    first layer already separates slow (delta) from fast (gamma) activity.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int]) -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes={tuple(kernel_sizes)} must be odd (same-length output)")
        self.branches = nn.ModuleList(
            nn.Conv1d(in_channels, out_channels, k, padding=k // 2) for k in kernel_sizes
        )
        self.mix = nn.Conv1d(out_channels * len(kernel_sizes), out_channels, 1)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:  # (N, Cin, T) -> (N, Cout, T)
        h = torch.cat([branch(x) for branch in self.branches], dim=1)  # (N, Cout * n_branches, T)
        return self.mix(self.act(h))


class ResidualUnit(nn.Module):
    """``x + conv1x1(act(conv_k,dilated(act(x))))``: widens the receptive field at one resolution."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2)),
            nn.GELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:  # (N, C, T) -> (N, C, T)
        return x + self.block(x)


def _residual_stack(channels: int, kernel_size: int, dilations: Sequence[int]) -> list[nn.Module]:
    return [ResidualUnit(channels, kernel_size, d) for d in dilations]


class EncoderBlock(nn.Sequential):
    """Residual units at ``in_channels``, then a strided conv down by ``stride`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int,
                 dilations: Sequence[int]) -> None:
        # Kernel 2·stride with padding ceil(stride/2): T -> T / stride exactly when stride divides T.
        down = nn.Conv1d(in_channels, out_channels, 2 * stride, stride=stride, padding=(stride + 1) // 2)
        super().__init__(*_residual_stack(in_channels, kernel_size, dilations), nn.GELU(), down)


class DecoderBlock(nn.Sequential):
    """A transposed conv up by ``stride`` to ``out_channels``, then residual units."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int,
                 dilations: Sequence[int]) -> None:
        # Inverse of EncoderBlock's down-sampling: F frames -> F · stride samples.
        up = nn.ConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride,
                                padding=(stride + 1) // 2, output_padding=stride % 2)
        super().__init__(nn.GELU(), up, *_residual_stack(out_channels, kernel_size, dilations))


class ConvEncoder(nn.Module):
    """One signal row to latent frames: ``(N, 1, T) -> (N, latent_dim, T / prod(strides))``."""

    def __init__(self, *, stem_kernels: Sequence[int], channels: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int], kernel_size: int, latent_dim: int) -> None:
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError(f"channels={tuple(channels)} needs one entry more than strides={tuple(strides)}")
        self.stem = MultiScaleConv1d(1, channels[0], stem_kernels)
        self.blocks = nn.Sequential(*(
            EncoderBlock(channels[i], channels[i + 1], s, kernel_size, dilations) for i, s in enumerate(strides)
        ))
        self.head = nn.Sequential(*_residual_stack(channels[-1], kernel_size, dilations), nn.GELU(),
                                  nn.Conv1d(channels[-1], latent_dim, kernel_size, padding=kernel_size // 2))

    def forward(self, x: Tensor) -> Tensor:  # (N, 1, T) -> (N, D, F)
        return self.head(self.blocks(self.stem(x)))


class ConvDecoder(nn.Module):
    """Latent frames back to one signal row: ``(N, latent_dim, F) -> (N, 1, F · prod(strides))``."""

    def __init__(self, *, channels: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int], kernel_size: int, latent_dim: int) -> None:
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError(f"channels={tuple(channels)} needs one entry more than strides={tuple(strides)}")
        self.head = nn.Sequential(nn.Conv1d(latent_dim, channels[-1], kernel_size, padding=kernel_size // 2),
                                  *_residual_stack(channels[-1], kernel_size, dilations))
        self.blocks = nn.Sequential(*(
            DecoderBlock(channels[i + 1], channels[i], s, kernel_size, dilations)
            for i, s in reversed(list(enumerate(strides)))
        ))
        # A plain output conv, not a mirror of the multi-scale stem: a depthwise 101-tap bank at the
        # sample rate took 40 ms of a 140 ms CPU training step of tiny (more than the rest of the
        # decoder); what it would add to quality was not measured.
        self.out = nn.Sequential(nn.GELU(), nn.Conv1d(channels[0], 1, kernel_size, padding=kernel_size // 2))

    def forward(self, z: Tensor) -> Tensor:  # (N, D, F) -> (N, 1, F * hop)
        return self.out(self.blocks(self.head(z)))
