"""LoRA fine-tuning (Hu et al. 2022, arXiv:2106.09685) of a network's attention and MLP Linear layers via ``peft``.

``apply_lora`` injects rank-``r`` adapters ``W x + (alpha / r) B A x`` into the Linear layers that
``LORA_TARGETS`` names for a network, freezes every other weight, and leaves the head (and, for our
backbone, the pooling, which pretraining never trains) fully trainable. ``B`` starts at zero, so the
adapted network computes exactly what the pretrained one did until the first step.

``peft`` (which imports ``transformers``, seconds) is imported only when LoRA is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LoraTargets:
    """Where LoRA goes in one network: ``modules`` a regex ``peft`` full-matches against module names;
    ``trainable``: names of submodules (matched as a name or name suffix) that stay fully trainable."""

    modules: str
    trainable: tuple[str, ...]


# Module names from neurofm/models/layers.py (Block: attn.qkv, attn.proj, mlp.w13, mlp.w2) and from
# braindecode 1.8's modules (read with named_modules()). "(net\.)?": the harness wraps Labram.
LORA_TARGETS: dict[str, LoraTargets] = {
    "neurofm": LoraTargets(r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(w13|w2))", ("pool", "head")),
    "labram": LoraTargets(r"(net\.)?blocks\.\d+\.(attn\.(qkv|proj)|mlp\.[02])", ("final_layer",)),
    "eegpt": LoraTargets(r"target_encoder\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])", ("final_layer",)),
    "biot": LoraTargets(r"encoder\.transformer\.layers\.layers\.\d+\.\d\.fn\.(to_[qkv]|to_out|fn\.w[12])",
                        ("final_layer",)),
    # nn.MultiheadAttention reads its out_proj weight directly (a LoRA on out_proj alone would be skipped):
    # peft adapts the attention module as a whole.
    "cbramod": LoraTargets(r"encoder\.layers\.\d+\.(self_attn_[st]|linear[12])", ("final_layer",)),
}


def apply_lora(net: nn.Module, net_name: str, rank: int, alpha: float | None = None,
               dropout: float = 0.0) -> nn.Module:
    """Inject LoRA adapters into ``net`` in place; only adapters and ``trainable`` modules keep gradients."""
    from peft import LoraConfig, inject_adapter_in_model

    if net_name not in LORA_TARGETS:
        raise ValueError(f"no LoRA targets for {net_name!r}; known: {sorted(LORA_TARGETS)}")
    if rank <= 0:
        raise ValueError(f"lora_rank={rank} must be > 0")
    targets = LORA_TARGETS[net_name]
    config = LoraConfig(r=rank, lora_alpha=2 * rank if alpha is None else alpha, lora_dropout=dropout,
                        target_modules=targets.modules, bias="none")
    net = inject_adapter_in_model(config, net)  # freezes everything but the adapters
    for name, module in net.named_modules():
        if any(name == t or name.endswith(f".{t}") for t in targets.trainable):
            module.requires_grad_(True)
    return net
