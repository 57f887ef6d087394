"""RVQ tokenizer: shapes, gradient through the quantiser, bitrates, bad inputs, strict save/load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neurofm.tokenizers.base import TOKENIZERS, TokenizerInputError, TokenizerOutput, build_tokenizer
from neurofm.tokenizers.hub import CheckpointMismatchError
from neurofm.tokenizers.losses import phase_loss, reconstruction_losses, spectral_losses, time_loss
from neurofm.tokenizers.lightning import code_stats, warmup_cosine
from neurofm.tokenizers.modules import ConvDecoder, ConvEncoder
from neurofm.tokenizers.rvq import RVQConfig, RVQTokenizer

# A preset small enough for unit tests (~20 k parameters, milliseconds per call).
MICRO = dict(channels=(4, 8, 8), strides=(4, 5), dilations=(1,), latent_dim=8, n_q=3, codebook_size=16,
             stem_kernels=(5, 25), stft_windows=(16, 64))

# Every registered RVQ preset and what it must give: (hop, n_q, K). A new preset needs a line here.
PRESET_CASES = {"rvq_tiny": (20, 4, 256), "rvq_base": (20, 8, 1024)}


def micro(**overrides) -> RVQTokenizer:
    torch.manual_seed(0)
    return RVQTokenizer(RVQConfig(name="micro", **{**MICRO, **overrides}))


def eeg(batch: int = 2, chans: int = 3, samples: int = 400, seed: int = 0) -> torch.Tensor:
    """Random-walk-ish signal in µV (RMS ~10), so the codec has structure to find."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, chans, samples, generator=g).cumsum(-1)
    x = x - x.mean(-1, keepdim=True)
    return 10 * x / x.std(-1, keepdim=True)


def trained(tok: RVQTokenizer, steps: int = 3) -> RVQTokenizer:
    """A few optimiser steps: k-means initialises every level's codebook (quantiser dropout off)."""
    opt = torch.optim.Adam(tok.parameters(), 1e-3)
    dropout, tok.quantizer.quantize_dropout = tok.quantizer.quantize_dropout, False
    tok.train()
    for i in range(steps):
        opt.zero_grad()
        tok(eeg(seed=i)).losses["total"].backward()
        opt.step()
    tok.quantizer.quantize_dropout = dropout
    return tok.eval()


@pytest.fixture(scope="module")
def tok() -> RVQTokenizer:
    return trained(micro())


# ----------------------------------------------------------------------------------- registry
def test_every_registered_rvq_preset_has_a_case() -> None:
    registered = {name for name in TOKENIZERS if name.startswith("rvq_")}
    assert registered == set(PRESET_CASES), "add the new preset to PRESET_CASES"


@pytest.mark.parametrize("name", sorted(PRESET_CASES))
def test_presets_build_and_state_their_bitrate(name: str) -> None:
    hop, n_q, k = PRESET_CASES[name]
    t = build_tokenizer(name)
    assert (t.hop, t.n_q, t.codebook_size, t.sfreq) == (hop, n_q, k, 200.0)
    assert t.bits_per_second() == pytest.approx(200.0 / hop * n_q * math.log2(k))
    x = eeg(1, 2, 400)
    assert t.encode(x).shape == (1, 2, n_q, 400 // hop)


def test_config_checks_and_presets_as_data() -> None:
    assert RVQConfig.from_name("tiny").name == "tiny"
    with pytest.raises(ValueError, match="channels"):
        RVQConfig(channels=(8, 16), strides=(2, 2))
    with pytest.raises(ValueError, match="odd"):
        RVQConfig(stem_kernels=(4,))
    with pytest.raises(ValueError, match="min_levels"):
        RVQConfig(n_q=2, min_levels=3)
    with pytest.raises(ValueError, match="not one of"):
        RVQConfig.from_name("huge")
    with pytest.raises(ValueError, match="unknown RVQConfig field"):
        RVQConfig.from_dict({"n_q": 2, "n_qq": 3})
    cfg = RVQConfig.from_name("base")
    assert RVQConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("strides, frames", [((2, 4, 5), 10), ((4, 5), 20), ((3,), 133), ((), 400)])
def test_encoder_and_decoder_shapes(strides: tuple[int, ...], frames: int) -> None:
    arch = dict(channels=(4,) * (len(strides) + 1), strides=strides, dilations=(1, 3), kernel_size=7, latent_dim=6)
    x = torch.randn(3, 1, 400 if strides != (3,) else 399)
    z = ConvEncoder(stem_kernels=(5, 11), **arch)(x)
    assert list(z.shape) == [3, 6, frames]
    assert list(ConvDecoder(**arch)(z).shape) == [3, 1, x.shape[-1]]


def test_forward_shapes_losses_and_usage() -> None:
    t = micro().train()
    x = eeg(2, 3, 390)  # not a multiple of the hop (20): padded to 20 frames, output cropped back
    out = t(x)
    assert isinstance(out, TokenizerOutput)
    assert out.codes.shape == (2, 3, 3, 20) and out.codes.dtype == torch.int64
    assert out.recon.shape == x.shape
    assert {"time", "stft", "phase", "commit", "total"} <= set(out.losses)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.losses.values())
    assert len(out.usage) == 3 and all(u.shape == (16,) for u in out.usage)
    used_levels = (out.codes[0, 0, :, 0] >= 0).sum()  # dropped levels are -1 in training
    assert all(int(u.sum()) == 2 * 3 * 20 for u in out.usage[:used_levels])


def test_a_seed_gives_the_same_tokenizer_and_training_step() -> None:
    a, b = trained(micro(), steps=2), trained(micro(), steps=2)
    x = eeg(seed=9)
    torch.testing.assert_close(a.encode(x), b.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(a(x).losses["total"], b(x).losses["total"])


def test_codes_lie_in_the_codebook(tok: RVQTokenizer) -> None:
    codes = tok.encode(eeg(2, 3, 400))
    assert codes.shape == (2, 3, 3, 20) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 16


def test_decode_of_encode_is_the_forward_reconstruction(tok: RVQTokenizer) -> None:
    x = eeg(2, 3, 400, seed=5)
    out = tok(x)  # eval mode: every level, no codebook update
    torch.testing.assert_close(out.codes, tok.encode(x))
    torch.testing.assert_close(tok.decode(tok.encode(x), n_samples=400), out.recon, rtol=1e-4, atol=1e-4)


def test_channels_are_coded_independently(tok: RVQTokenizer) -> None:
    x = eeg(1, 4, 400, seed=7)
    torch.testing.assert_close(tok.encode(x)[:, 1:3], tok.encode(x[:, 1:3]))


def test_masked_channels_are_skipped(tok: RVQTokenizer) -> None:
    x = eeg(2, 3, 400, seed=3)
    x[0, 1] = float("nan")  # a masked (padded or bad) channel is never read
    mask = torch.tensor([[True, False, True], [True, True, False]])
    out = tok(x, mask)
    assert (out.codes[~mask] == -1).all() and (out.recon[~mask] == 0).all()
    torch.testing.assert_close(out.codes[0, 2], tok.encode(x[:1, 2:3])[0, 0])
    with pytest.raises(TokenizerInputError, match="no channel"):
        tok(x, torch.zeros(2, 3, dtype=torch.bool))


# ------------------------------------------------------------------------------------ gradient
@pytest.mark.parametrize("rotation_trick", [True, False], ids=["rotation_trick", "straight_through"])
def test_gradient_reaches_the_encoder_through_the_quantiser(rotation_trick: bool) -> None:
    t = micro(rotation_trick=rotation_trick, quantize_dropout=False).train()
    t(eeg())  # first call: k-means initialisation of the codebooks
    t.zero_grad()
    out = t(eeg(seed=1))
    out.losses["time"].backward()  # a reconstruction term only: its path to the encoder is the STE
    for name, p in t.encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert t.encoder.stem.branches[0].weight.grad.abs().sum() > 0
    # EMA codebooks are buffers: the optimiser never sees them
    assert not [n for n, _ in t.quantizer.named_parameters() if "embed" in n]


# ------------------------------------------------------------------------ bitrates / dropout
def test_fewer_levels_decode_and_bitrate_scales(tok: RVQTokenizer) -> None:
    x = eeg(2, 3, 400, seed=11)
    full = tok.encode(x)
    errors = []
    for k in (1, 2, 3):
        codes = tok.encode(x, n_q=k)
        assert codes.shape == (2, 3, k, 20)
        torch.testing.assert_close(codes, full[:, :, :k])  # residual levels are a prefix
        y = tok.decode(codes, n_samples=400)
        assert y.shape == x.shape and torch.isfinite(y).all()
        errors.append(float((x - y).square().mean().detach()))
        assert tok.bits_per_second(k) == pytest.approx(k * tok.bits_per_second(1))
    assert tok.bits_per_second() == pytest.approx(10 * 3 * 4)  # 10 frames/s × 3 levels × log2(16)
    assert len(set(errors)) == 3, "each level changes the reconstruction"


def test_quantizer_dropout_trains_on_fewer_levels() -> None:
    t = micro(quantize_dropout=True).train()
    kept = {int((t(eeg(seed=i)).codes[0, 0, :, 0] >= 0).sum()) for i in range(12)}
    assert kept <= {1, 2, 3} and len(kept) > 1


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("x, match", [
    (torch.full((1, 2, 400), float("nan")), "NaN"),
    (torch.zeros(1, 2, 10), "at least 20"),
    (torch.zeros(2, 400), "batch, channels, samples"),
])
def test_bad_signals_are_clear_errors(tok: RVQTokenizer, x: torch.Tensor, match: str) -> None:
    with pytest.raises(TokenizerInputError, match=match):
        tok.encode(x)
    with pytest.raises(TokenizerInputError, match=match):
        tok(x)


def test_fixed_channel_preset_rejects_other_counts() -> None:
    t = micro(n_chans=3)
    assert t.encode(eeg(1, 3, 400)).shape[1] == 3
    with pytest.raises(TokenizerInputError, match="4 channels; this tokenizer was built for 3"):
        t.encode(eeg(1, 4, 400))


@pytest.mark.parametrize("codes, match", [
    (torch.full((1, 2, 3, 5), 16), r"\[0, 16\)"),
    (torch.zeros(1, 2, 4, 5, dtype=torch.long), "levels"),
    (torch.zeros(2, 3, 5, dtype=torch.long), "batch, channels, n_q, frames"),
    (torch.zeros(1, 2, 3, 5), "integers"),
])
def test_bad_codes_are_clear_errors(tok: RVQTokenizer, codes: torch.Tensor, match: str) -> None:
    with pytest.raises(TokenizerInputError, match=match):
        tok.decode(codes)


def test_bad_level_counts_and_lengths(tok: RVQTokenizer) -> None:
    with pytest.raises(ValueError, match="n_q=4"):
        tok.encode(eeg(), n_q=4)
    with pytest.raises(TokenizerInputError, match="n_samples=401"):
        tok.decode(tok.encode(eeg()), n_samples=401)


# ---------------------------------------------------------------------------------- save/load
def test_save_load_round_trip_gives_identical_codes(tok: RVQTokenizer, tmp_path: Path) -> None:
    tok.training_info = {"data": [{"dataset": "synthetic_x", "role": "train", "preproc_hash": "abc123"}], "steps": 3}
    tok.save_pretrained(tmp_path / "tok")
    assert {p.name for p in (tmp_path / "tok").iterdir()} == {"config.json", "model.safetensors", "README.md"}
    card = (tmp_path / "tok" / "README.md").read_text()
    assert "synthetic_x" in card and "abc123" in card and "120 bits/s per channel" in card  # 10 × 3 × 4
    loaded = RVQTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.config == tok.config and not loaded.training
    x = eeg(2, 3, 400, seed=21)
    torch.testing.assert_close(loaded.encode(x), tok.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))


def test_saving_again_rewrites_the_model_card(tok: RVQTokenizer, tmp_path: Path) -> None:
    tok.training_info = {"data": [{"dataset": "first", "role": "train"}]}
    tok.save_pretrained(tmp_path)
    tok.training_info = {"data": [{"dataset": "second", "role": "train"}]}
    tok.save_pretrained(tmp_path)
    assert "second" in (tmp_path / "README.md").read_text() and "first" not in (tmp_path / "README.md").read_text()


def _edit_weights(folder: Path, edit) -> None:
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors")


@pytest.fixture
def saved(tok: RVQTokenizer, tmp_path: Path) -> Path:
    tok.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_strict_load_names_a_missing_key(saved: Path) -> None:
    key = "encoder.stem.mix.weight"
    _edit_weights(saved, lambda w: w.pop(key))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1 of \d+\).*encoder\.stem\.mix\.weight"):
        RVQTokenizer.from_pretrained(saved)


def test_strict_load_names_an_unexpected_key(saved: Path) -> None:
    _edit_weights(saved, lambda w: w.update({"head.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\).*head\.extra\.weight"):
        RVQTokenizer.from_pretrained(saved)


def test_strict_load_rejects_a_shape_mismatch_and_unknown_config(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "latent_dim": 6}))
    with pytest.raises(CheckpointMismatchError, match="size mismatch"):
        RVQTokenizer.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({**config, "codebook_sise": 8}))
    with pytest.raises(CheckpointMismatchError, match="codebook_sise"):
        RVQTokenizer.from_pretrained(saved)
    with pytest.raises(ValueError, match="non-strict"):
        RVQTokenizer.from_pretrained(saved, strict=False)


def test_offline_mode_loads_a_local_folder_and_never_downloads(saved: Path, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    assert RVQTokenizer.from_pretrained(str(saved)).n_q == 3
    with pytest.raises((LocalEntryNotFoundError, CheckpointMismatchError, OSError)):
        RVQTokenizer.from_pretrained("neurofm/no-such-tokenizer", cache_dir=str(tmp_path / "empty_cache"))


# ------------------------------------------------------------------------------------- losses
def test_losses_vanish_on_a_perfect_reconstruction() -> None:
    x = eeg(1, 4, 400).reshape(4, 400) / 10
    terms = reconstruction_losses(x, x.clone(), stft_windows=(16, 64))
    assert set(terms) == {"time", "stft", "phase"}
    assert all(float(v) == pytest.approx(0.0, abs=1e-5) for v in terms.values())


def test_phase_and_log_magnitude_see_different_errors() -> None:
    t = torch.arange(400) / 200.0
    x = torch.sin(2 * math.pi * 10 * t)[None]
    flipped = spectral_losses(x, -x, (64,))  # same magnitudes, every phase off by pi
    assert float(flipped["stft"]) == pytest.approx(0.0, abs=1e-6) and float(flipped["phase"]) > 2.0
    quieter = spectral_losses(x, 0.3 * x, (64,))  # same phases, smaller magnitudes
    assert float(quieter["phase"]) == pytest.approx(0.0, abs=1e-5) and float(quieter["stft"]) > 0.2
    assert float(time_loss(x, -x, "huber")) < float(time_loss(x, -x, "l1"))
    X = torch.stft(x, 64, return_complex=True, window=torch.hann_window(64))
    assert float(phase_loss(X, X)) == pytest.approx(0.0, abs=1e-6)


def test_code_stats_and_schedule() -> None:
    assert code_stats(torch.tensor([5, 5, 0, 0])) == pytest.approx((0.5, 2.0))
    assert code_stats(torch.zeros(4, dtype=torch.long)) == (0.0, 0.0)
    lrs = [warmup_cosine(s, warmup_steps=10, max_steps=110, min_lr_ratio=0.1) for s in (0, 9, 10, 60, 110, 500)]
    assert lrs == pytest.approx([0.1, 1.0, 1.0, 0.55, 0.1, 0.1])
