"""Backbone: shapes for several montages, padding invariance, gradients, heads, strict hub round trip, errors."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest
import safetensors.torch
import torch

from neurofm.hub import CheckpointMismatchError
from neurofm.models.backbone import BackboneInputError, NeuroTransformer, build_backbone, list_backbones
from neurofm.models.config import BackboneConfig

TINY = dict(name="t", dim=32, depth=2, heads=4, patch_size=50, sfreq=100.0)


def montage_positions(names: list[str]) -> torch.Tensor:
    pos = mne.channels.make_standard_montage("colin27_1005").get_positions()["ch_pos"]
    return torch.tensor(np.array([pos[n] for n in names]), dtype=torch.float32)  # (C, 3) metres


TRAIN_MONTAGE = ["Fp1", "Fp2", "C3", "Cz", "C4", "P3", "P4", "O1"]
UNSEEN_MONTAGE = ["AF7", "FT8", "TP9", "PO10", "CPz", "Iz", "FC5", "F2", "P6", "T7", "T8"]


def batch(names: list[str], b: int = 3, n_times: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, len(names), n_times, generator=g) * 10
    return x, montage_positions(names)[None].expand(b, -1, -1).clone()


@pytest.fixture(params=["full", "criss_cross"])
def attention(request) -> str:
    return request.param


def test_registry_lists_the_presets() -> None:
    assert {"tiny", "small", "base", "large"} <= set(list_backbones())
    sizes = {n: sum(p.numel() for p in build_backbone(n).parameters()) for n in ("tiny", "small", "base")}
    assert sizes["tiny"] < sizes["small"] < sizes["base"]
    assert 5e6 < sizes["base"] < 7e6  # LaBraM-base / CBraMod scale
    with pytest.raises(ValueError, match="not one of"):
        build_backbone("huge")


@pytest.mark.parametrize("names", [TRAIN_MONTAGE, UNSEEN_MONTAGE, ["Cz"]])
def test_shapes_for_any_montage(attention: str, names: list[str]) -> None:
    model = NeuroTransformer({**TINY, "attention": attention}, n_outputs=3)
    x, pos = batch(names)
    feats = model.forward_features(x, pos=pos)
    assert feats.shape == (3, len(names), 4, 32)  # (B, C, P, D): 200 samples / 50
    logits = model(x, pos=pos)
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("pooling, mix", [("mean", False), ("attention", False), ("mean", True)])
def test_padding_does_not_change_real_windows(attention: str, pooling: str, mix: bool) -> None:
    """A window padded with junk channels (masked) gives what it gives alone: mixed montages batch safely."""
    torch.manual_seed(0)
    model = NeuroTransformer({**TINY, "attention": attention, "pooling": pooling, "neighbour_mix": mix},
                             n_outputs=2).eval()
    x, pos = batch(TRAIN_MONTAGE[:5], b=1)
    alone = model(x, pos=pos)
    pad = 6
    x_pad = torch.cat([x, torch.randn(1, pad, x.shape[-1]) * 1e3], dim=1)
    pos_pad = torch.cat([pos, torch.randn(1, pad, 3)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * pad])
    padded = model(x_pad, pos=pos_pad, chan_mask=mask)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_mixed_channel_counts_in_one_batch() -> None:
    model = NeuroTransformer(TINY, n_outputs=2)
    a, pa = batch(TRAIN_MONTAGE, b=2)
    b_, pb = batch(UNSEEN_MONTAGE, b=2, seed=1)
    c = len(UNSEEN_MONTAGE)
    x = torch.zeros(4, c, 200)
    pos = torch.zeros(4, c, 3)
    mask = torch.zeros(4, c, dtype=torch.bool)
    x[:2, :8], pos[:2, :8], mask[:2, :8] = a, pa, True
    x[2:], pos[2:], mask[2:] = b_, pb, True
    out = model(x, pos=pos, chan_mask=mask)
    assert out.shape == (4, 2) and torch.isfinite(out).all()


def test_unknown_positions_are_allowed() -> None:
    model = NeuroTransformer(TINY, n_outputs=2)
    x, pos = batch(TRAIN_MONTAGE)
    pos[:, 2] = float("nan")  # a channel with no known position
    assert torch.isfinite(model(x, pos=pos)).all()
    known = torch.ones(3, 8, dtype=torch.bool)
    known[:, 2] = False
    torch.testing.assert_close(model(x, pos=pos), model(x, pos=torch.nan_to_num(pos), pos_known=known))


@pytest.mark.parametrize("mix", [False, True])
def test_gradients_reach_every_parameter(attention: str, mix: bool) -> None:
    model = NeuroTransformer({**TINY, "attention": attention, "pooling": "attention", "neighbour_mix": mix},
                             n_outputs=2)
    x, pos = batch(TRAIN_MONTAGE)
    pos[:, 0] = float("nan")  # so the "unknown position" vector is used
    token_mask = torch.zeros(3, 8, 4, dtype=torch.bool)
    token_mask[:, :3, 1] = True  # so the mask embedding is used
    feats = model.forward_features(x, pos=pos, token_mask=token_mask)
    model.forward_head(feats).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_codes_input() -> None:
    cfg = {**TINY, "input": "codes", "n_q": 2, "codebook_size": 16, "frames_per_patch": 5}
    model = NeuroTransformer(cfg, n_outputs=2)
    codes = torch.randint(0, 16, (3, 8, 2, 20))  # 4 patches of 5 frames
    _, pos = batch(TRAIN_MONTAGE)
    assert model.forward_features(codes, pos=pos).shape == (3, 8, 4, 32)
    with pytest.raises(BackboneInputError, match="integer tensor"):
        model(codes.float(), pos=pos)


def test_heads_and_features() -> None:
    model = NeuroTransformer(TINY)  # no head: pooled features
    x, pos = batch(TRAIN_MONTAGE)
    assert model(x, pos=pos).shape == (3, 32)
    model.reset_head(5)
    assert model(x, pos=pos).shape == (3, 5) and model.n_outputs == 5 and model.config.n_outputs == 5


def test_fixed_montage_from_chs_info() -> None:
    info = mne.create_info(TRAIN_MONTAGE, 100.0, "eeg")
    info.set_montage(mne.channels.make_standard_montage("colin27_1005"))
    model = NeuroTransformer(TINY, n_outputs=2, n_chans=8, chs_info=info["chs"], n_times=200, sfreq=100.0)
    x, pos = batch(TRAIN_MONTAGE)
    torch.testing.assert_close(model(x), model(x, pos=torch.as_tensor(np.array([c["loc"][:3] for c in info["chs"]]),
                                                              dtype=torch.float32)[None].expand(3, -1, -1)))


def test_hub_round_trip_and_strict_loading(tmp_path: Path) -> None:
    model = NeuroTransformer({**TINY, "attention": "criss_cross"}, n_outputs=3).eval()
    x, pos = batch(TRAIN_MONTAGE)
    model.save_pretrained(tmp_path / "m")
    loaded = NeuroTransformer.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded(x, pos=pos), model(x, pos=pos), rtol=0, atol=0)
    assert loaded.config == model.config
    card = (tmp_path / "m" / "README.md").read_text()
    assert "backbone" in card and "criss_cross" in card

    weights = safetensors.torch.load_file(tmp_path / "m" / "model.safetensors")
    weights.pop("blocks.1.mlp.w2.weight")
    safetensors.torch.save_file(weights, tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1 of .*blocks\.1\.mlp\.w2\.weight"):
        NeuroTransformer.from_pretrained(tmp_path / "m")


def test_push_to_hub_uploads_the_folder_save_pretrained_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: the Hub client is replaced by one that keeps what would be uploaded."""
    import shutil

    import huggingface_hub.hub_mixin

    calls: dict[str, object] = {}

    class FakeApi:
        def __init__(self, token=None) -> None:
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
            shutil.copytree(folder_path, tmp_path / "uploaded")
            calls["commit_message"] = commit_message
            return "https://hub.example/commit"

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeApi)
    model = NeuroTransformer(TINY, n_outputs=2).eval()
    model.training_info = {"data": [{"dataset": "synthetic_mi", "windows": 10}]}
    assert model.push_to_hub("lab/neurofm-tiny", token="t", private=True) == "https://hub.example/commit"
    assert calls["repo"] == ("lab/neurofm-tiny", True, True) and calls["token"] == "t"
    assert {p.name for p in (tmp_path / "uploaded").iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    assert "synthetic_mi" in (tmp_path / "uploaded" / "README.md").read_text()
    x, pos = batch(TRAIN_MONTAGE)
    loaded = NeuroTransformer.from_pretrained(tmp_path / "uploaded")
    torch.testing.assert_close(loaded(x, pos=pos), model(x, pos=pos), rtol=0, atol=0)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="divisible by heads"):
        BackboneConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="attention='sparse'"):
        BackboneConfig(attention="sparse")
    with pytest.raises(ValueError, match=r"unknown BackboneConfig field\(s\) \['dimm'\]"):
        BackboneConfig.from_dict({"dimm": 3})


def test_bad_input_gets_a_clear_error() -> None:
    model = NeuroTransformer(TINY, n_outputs=2)
    x, pos = batch(TRAIN_MONTAGE)
    with pytest.raises(BackboneInputError, match="multiple of patch_size=50"):
        model(x[..., :120], pos=pos)
    with pytest.raises(BackboneInputError, match="no electrode positions"):
        model(x)
    with pytest.raises(BackboneInputError, match="no usable channel"):
        model(x, pos=pos, chan_mask=torch.zeros(3, 8, dtype=torch.bool))
    with pytest.raises(BackboneInputError, match="sfreq=250"):
        NeuroTransformer(TINY, sfreq=250)
    with pytest.raises(BackboneInputError, match="built for n_chans=4"):
        NeuroTransformer(TINY, n_chans=4)(x, pos=pos)


@pytest.mark.parametrize("attention, mix", [("full", False), ("criss_cross", False), ("full", True)])
def test_causal_features_see_no_later_patch(attention: str, mix: bool) -> None:
    torch.manual_seed(0)
    model = NeuroTransformer(BackboneConfig.from_name("tiny", attention=attention, neighbour_mix=mix)).eval()
    ps = model.config.patch_size
    x, pos = torch.randn(2, 5, 4 * ps) * 10, torch.randn(2, 5, 3) * 0.05
    changed = x.clone()
    changed[..., 2 * ps:] = torch.randn(2, 5, 2 * ps) * 10  # patches 2 and 3 only
    causal, causal_changed = model.forward_features(x, pos, causal=True), model.forward_features(changed, pos, causal=True)
    torch.testing.assert_close(causal[:, :, :2], causal_changed[:, :, :2])  # patches 0-1 unchanged
    assert not torch.allclose(causal[:, :, 2:], causal_changed[:, :, 2:])
    full = model.forward_features(changed, pos)
    assert not torch.allclose(full[:, :, :2], causal_changed[:, :, :2])  # without causal the past sees the future


def test_neighbour_weights_follow_distance_and_skip_self_padding_and_unknown() -> None:
    from neurofm.models.layers import NeighbourMix

    names = ["C3", "C1", "Cz", "C4", "Oz"]
    pos = montage_positions(names)[None]  # (1, 5, 3)
    known = torch.tensor([[True, True, True, True, False]])  # Oz: position unknown
    real = torch.tensor([[True, True, True, False, True]])  # C4: a padded / bad channel
    w = NeighbourMix(8, sigma=0.03).weights(pos, known, real)[0]  # (5, 5)
    assert torch.all(w.diagonal() == 0)
    assert torch.all(w[:, 3] == 0) and torch.all(w[:, 4] == 0)  # nobody mixes in C4 or Oz
    torch.testing.assert_close(w[:3].sum(-1), torch.ones(3))
    assert torch.all(w[3:] == 0)  # C4 and Oz themselves get nothing (padded / unplaced)
    assert w[0, 1] > w[0, 2]  # C3: C1 is nearer than Cz
    assert w[2, 1] > w[2, 0]  # Cz: C1 is nearer than C3


def test_neighbour_mix_gives_a_masked_token_its_neighbours_signal() -> None:
    """At initialisation, a masked token's features depend on its neighbours' patch only with the mix.

    (Without it, on average-referenced data uniform attention averages the other channels to ~0:
    the masked-reconstruction plateau of docs/pretraining.md.)"""
    names = ["C3", "C1", "Cz", "C2", "C4"]
    x, pos = batch(names, b=1, n_times=100)
    token_mask = torch.zeros(1, 5, 2, dtype=torch.bool)
    token_mask[0, 2, 0] = True  # Cz, patch 0 masked
    changed = x.clone()
    changed[0, 1, :50] += 20.0  # C1's patch 0 (Cz's nearest neighbour)

    def moved(mix: bool) -> float:
        """How much the masked token entering the first block moves when C1's patch changes."""
        torch.manual_seed(0)
        model = NeuroTransformer({**TINY, "neighbour_mix": mix}).eval()
        seen = []
        model.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0][0, 2, 0].clone()))
        model.forward_features(x, pos=pos, token_mask=token_mask)
        model.forward_features(changed, pos=pos, token_mask=token_mask)
        return float((seen[0] - seen[1]).norm() / seen[0].norm())

    assert moved(False) == 0.0  # the masked token is the mask embedding + its position, nothing else
    assert moved(True) > 0.05
