"""scripts/bench_backbone.py at tiny sizes: matched configurations, FLOP counting, the report.

No timing is asserted (timings are reported by the script, never tested).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from scriptkit import load_script



@pytest.fixture(scope="module")
def bench():
    return load_script("bench_backbone")


@pytest.mark.parametrize("preset, patch_size", [("tiny", 32), ("small", 128), ("base", 200), ("large", 200)])
def test_matched_configs_give_labram_the_same_width(bench, preset, patch_size):
    matched = bench.matched_configs(preset)
    assert matched.patch_size == patch_size
    kw = matched.labram_kwargs
    # braindecode's temporal conv (stride 8) sets Labram's width to conv channels x ceil(patch / 8)
    assert kw["conv_out_channels"] * math.ceil(kw["patch_size"] / 8) == matched.config.dim
    assert (kw["embed_dim"], kw["num_layers"], kw["num_heads"]) == (matched.config.dim, matched.config.depth,
                                                                    matched.config.heads)


def test_width_and_heads_can_be_overridden_for_both_models(bench):
    matched = bench.matched_configs("base", dim=192, heads=12)  # head dimension 16
    assert (matched.config.dim, matched.config.heads, matched.config.head_dim, matched.config.depth) == (192, 12, 16, 12)
    assert (matched.labram_kwargs["embed_dim"], matched.labram_kwargs["num_heads"]) == (192, 12)
    odd = bench.matched_configs("tiny", heads=1)  # criss-cross needs two halves: only full attention
    setting = bench.Setting(22, 2, bench.MONTAGES[22])
    batch = bench.make_batch(setting, odd.patch_size, 2, torch.device("cpu"))
    assert [c.key for c in bench.build_cases(odd, setting, batch, torch.device("cpu"))] == ["labram", "full"]
    with pytest.raises(ValueError, match="Labram width"):
        bench.matched_configs("tiny", dim=30, heads=2)
    args = bench.parse_args(["--compile-mode", "reduce-overhead", "--dim", "192", "--heads", "12"])
    assert args.compile and args.compile_mode == "reduce-overhead" and args.warmup == 3


@pytest.mark.parametrize("n_chans", [22, 62])
def test_montages_have_positions_and_labram_embeddings(bench, n_chans):
    from braindecode.models.labram import LABRAM_CHANNEL_ORDER

    names = bench.MONTAGES[n_chans]
    assert len(names) == len(set(names)) == n_chans
    assert {n.upper() for n in names} <= set(LABRAM_CHANNEL_ORDER)
    pos = bench.electrode_positions(names)
    assert pos.shape == (n_chans, 3)
    assert 0.05 < float(abs(pos).max()) < 0.15  # metres, head-sized


def test_cases_step_and_count_flops(bench):
    matched = bench.matched_configs("tiny")
    setting = bench.Setting(22, 2, bench.MONTAGES[22])
    device = torch.device("cpu")
    batch = bench.make_batch(setting, matched.patch_size, 2, device)
    cases = bench.build_cases(matched, setting, batch, device)
    assert [c.key for c in cases] == ["labram", "full", "criss_cross"]
    assert [c.n_tokens for c in cases] == [45, 44, 44]  # Labram adds a [CLS] token
    for case in cases:
        assert case.forward().shape == (2, bench.N_CLASSES)
        assert abs(case.params / cases[0].params - 1) <= bench.PARAMS_TOLERANCE
        opt = torch.optim.AdamW(case.model.parameters())
        before = [p.detach().clone() for p in case.model.parameters()]
        flops = bench.count_flops(lambda: bench.train_step(case.eager_forward, batch.y, case.model, opt, device,
                                                           "fp32"))
        assert flops > 0
        assert any(not torch.equal(a, b) for a, b in zip(before, case.model.parameters()))  # the step trained
        assert all(p.grad is None for p in case.model.parameters())  # gradients cleared for the next step
    full, cc = cases[1], cases[2]
    for case in (full, cc):
        case.flops = bench.count_flops(lambda c=case: bench.train_step(c.eager_forward, batch.y, c.model, None,
                                                                       device, "fp32"))
    assert cc.flops < full.flops  # criss-cross attends over C + P keys instead of C * P


def test_main_writes_json(bench, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny", "--quick", "--patches", "2", "--batch-size", "2", "--breakdown",
                       "--adamw", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["adamw"] and data["dtype"] == "fp32" and data["batch_size"] == 2
    (result,) = data["results"]
    assert result["n_chans"] == 22 and {m["key"] for m in result["models"]} == {"labram", "full", "criss_cross"}
    assert all(m["flops_per_step"] > 0 and m["mfu"] is None for m in result["models"])  # no bf16 peak on CPU
    # the CPU flash kernel takes boolean masks and any head dimension
    assert [m["attention"] for m in result["models"]] == ["explicit softmax", "SDPA, fused", "SDPA, fused"]
    assert {r["target"] for r in result["ratios"]} == {bench.THROUGHPUT_TARGET}
    assert set(result["breakdown_s_per_step"]["full"]) == {"embedding", "attention", "mlp"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_path_reports_mfu(bench, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny", "--quick", "--device", "cuda", "--batch-size", "4", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["dtype"] == "bf16"
    models = data["results"][0]["models"]
    if math.isnan(bench.peak_bf16_flops(data["device"])):
        assert all(m["mfu"] is None for m in models)
    else:
        assert all(0 < m["mfu"] < 1 for m in models)
