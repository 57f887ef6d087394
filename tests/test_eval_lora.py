"""LoRA fine-tuning through peft: what is adapted, what trains, and a tiny fit through the harness."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from neurofm.eval.data import load_eval_data
from neurofm.eval.deep import NETS, DeepModel, TrainSettings, param_groups
from neurofm.eval.harness import run_benchmark
from neurofm.eval.lora import LORA_TARGETS, apply_lora
from neurofm.eval.models import build_model
from neurofm.eval.splits import make_folds
from neurofm.models.backbone import build_backbone
from test_eval_harness import mi_index  # noqa: F401 - the prepared synthetic MI fixture

FAST = {"max_epochs": 3, "fewshot_epochs": 3, "patience": 2, "batch_size": 16}
TARGETED = re.compile(r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(w13|w2))")


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("tiny", n_outputs=2, n_chans=3, chs_info=[
        {"ch_name": n, "loc": np.r_[p, np.zeros(9)]} for n, p in
        (("C3", [-0.05, 0, 0.05]), ("Cz", [0, 0, 0.09]), ("C4", [0.05, 0, 0.05]))])


def _window(net: torch.nn.Module) -> torch.Tensor:
    return torch.randn(4, 3, 2 * net.config.patch_size, generator=torch.Generator().manual_seed(1))


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name  # peft's adapter weights: <module>.lora_A.default.weight, lora_B, ...


class ParameterCount(NamedTuple):
    trainable: int
    total: int


def count_parameters(net: torch.nn.Module) -> ParameterCount:
    params = list(net.parameters())
    return ParameterCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def _trainable_owner(name: str) -> bool:
    return is_lora_parameter(name) or name.startswith(("head.", "pool."))


def test_lora_adapts_the_attention_and_mlp_linears_and_counts_add_up() -> None:
    rank = 2
    base = tiny()
    linears = {n: m for n, m in base.named_modules() if TARGETED.fullmatch(n)}
    head_and_pool = sum(p.numel() for n, p in base.named_parameters() if n.startswith(("head.", "pool.")))
    net = apply_lora(tiny(), "neurofm", rank)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in net.named_modules() if n.endswith(".lora_A")}
    assert adapted == set(linears) and len(adapted) == 4 * net.config.depth
    count = count_parameters(net)
    lora = sum(rank * (m.in_features + m.out_features) for m in linears.values())  # A: (r, in), B: (out, r)
    assert count.trainable == lora + head_and_pool
    assert count.total == sum(p.numel() for p in base.parameters()) + lora
    assert count.trainable < 0.15 * count.total
    assert all(_trainable_owner(n) == p.requires_grad for n, p in net.named_parameters())


def test_lora_starts_from_the_pretrained_function() -> None:
    """B = 0 at injection: the adapted network computes what the original did."""
    base, net = tiny(), apply_lora(tiny(), "neurofm", 4)
    x = _window(base)
    torch.testing.assert_close(net.eval()(x), base.eval()(x))


def test_a_training_step_changes_only_lora_head_and_pool() -> None:
    net = apply_lora(tiny(), "neurofm", 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(param_groups(net, TrainSettings(lora_rank=2)), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(net.train()(_window(net)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(_trainable_owner(k) for k in changed)
    assert any(".lora_B." in k for k in changed) and "head.weight" in changed


def test_lora_fine_tuning_through_the_harness_leaves_the_backbone_frozen(mi_index: Path) -> None:  # noqa: F811
    data = load_eval_data(mi_index)
    fold = make_folds(data, "fewshot", seeds=(0,), ks=(2,))[0]
    model = DeepModel("neurofm", "finetune", {"preset": "tiny"}, TrainSettings(**FAST, lora_rank=4, two_stage_epochs=1))
    assert model.model_id == "neurofm+lora4"
    model.fit(data.take(fold.train), None, seed=0)
    torch.manual_seed(0)  # DeepModel.fit seeds before building: the same initial weights
    start = NETS["neurofm"][0](data.take(fold.train), data.n_classes, {"preset": "tiny"}).state_dict()
    after = model.net.state_dict()
    for name, value in start.items():
        key = name if name in after else name.replace(".weight", ".base_layer.weight")
        same = torch.equal(after[key], value)
        assert same != name.startswith(("head.", "pool.")), name  # frozen backbone, trained head and pool
    count = count_parameters(model.net)
    assert count.trainable < 0.5 * count.total  # two-stage training restored LoRA + head only, not everything
    proba = model.predict_proba(data.x[fold.test])
    assert proba.shape == (fold.test.size, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_lora_runs_in_the_benchmark_with_validation(mi_index: Path, tmp_path: Path) -> None:  # noqa: F811
    summary = run_benchmark("neurofm", mi_index, "loso", adapt="finetune", seeds=(0,), out=tmp_path, progress=False,
                            model_options={"preset": "tiny", "settings": {**FAST, "lora_rank": 2}})
    assert summary.n_done == 4
    row = summary.rows[0]
    assert row["model"] == "neurofm+lora2" and row["adapt"] == "finetune" and row["config"]["train"]["lora_rank"] == 2


def test_lora_only_fine_tunes() -> None:
    for adapt in ("linear", "scratch"):
        with pytest.raises(ValueError, match="adapt must be 'finetune'"):
            build_model("neurofm", adapt=adapt, settings={"lora_rank": 2})
    with pytest.raises(ValueError, match="no LoRA targets"):
        apply_lora(torch.nn.Linear(2, 2), "eegnet", 2)


@pytest.mark.parametrize("name", sorted(set(LORA_TARGETS) - {"neurofm"}))
def test_lora_on_braindecode_foundation_models(name: str, mi_index: Path) -> None:  # noqa: F811
    """Every LORA_TARGETS entry is a registered net whose targets exist; only adapters and the head train."""
    data = load_eval_data(mi_index)  # 22 channels, 2 s at 200 Hz: a multiple of every model's patch length
    torch.manual_seed(0)
    base = NETS[name][0](data, 2, {})
    x = torch.from_numpy(data.x[:2] / data.x[:2].std())
    expected = base.eval()(x)
    net = apply_lora(base, name, 2)
    torch.testing.assert_close(net(x), expected)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert any(is_lora_parameter(n) for n in trainable)
    assert all(is_lora_parameter(n) or "final_layer" in n for n in trainable)
    assert count_parameters(net).trainable < 0.1 * count_parameters(net).total


def test_peft_import_keeps_braindecode_and_our_tokenizers() -> None:
    """peft imports transformers and Hugging Face's ``tokenizers``; ours is ``neurofm.tokenizers``."""
    code = ("import peft, braindecode.models, tokenizers, neurofm.tokenizers as ours\n"
            "from neurofm.tokenizers.base import build_tokenizer\n"
            "assert ours.__file__.endswith('neurofm/tokenizers/__init__.py') and tokenizers.__file__ != ours.__file__\n"
            "import neurofm.tokenizers.rvq\n"
            "assert build_tokenizer('rvq_tiny') is not None and braindecode.models.Labram\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
