"""``ThroughputMonitor``: samples/s, tokens/s, achieved FLOP/s and model FLOPs utilisation (MFU).

A Lightning callback any training can add (``neurofm.training.build_callbacks`` always does).
Logged every ``log_every_n_steps`` training batches, as averages over the batches since the last log
(one CUDA synchronisation per log, none per step):

    perf/samples_per_s   windows per second, all devices
    perf/tokens_per_s    tokens per second, all devices, when the LightningModule has
                         ``tokens_in_batch(batch) -> int | Tensor`` (pretraining: real channel x patch tokens)
    perf/tflops          achieved model TFLOP/s per device: the FLOPs of one training batch (forward +
                         backward, counted once by ``torch.utils.flop_counter.FlopCounterMode``) / step time
    perf/mfu             on CUDA: achieved / the device's dense bf16 peak (``PEAK_BF16_FLOPS``), NaN for
                         a device not in the table. The peak is bf16 whatever the run's precision.

Counts under DDP are this rank's times the world size (ranks run equal numbers of batches).
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils import flop_counter

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, matched as substrings of
# torch.cuda.get_device_name(); the first match wins, so specific names come before general ones.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)



# FlopCounterMode counts the CUDA attention kernels but not the CPU flash kernel that
# scaled_dot_product_attention takes on CPU; the same formulas (the full L x L product, as on GPU).
# FlopCounterMode hands these the shapes of the op's arguments, in the op's order.
def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


_CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def peak_bf16_flops(device_name: str) -> float:
    """The dense bf16 peak FLOP/s of a GPU by its name; NaN when it is not in ``PEAK_BF16_FLOPS``."""
    return next((flops for name, flops in PEAK_BF16_FLOPS if name in device_name), math.nan)


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    return flop_counter.FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS)


class ThroughputMonitor(Callback):
    """See the module docstring.

    Args:
        log_every_n_steps: batches between logs (default: the trainer's ``log_every_n_steps``).
        flops_batch: the training batch whose FLOPs are counted (0-based, in this process). 1, not 0:
            the first step of a run may do one-off work (k-means codebook init in the RVQ tokenizer).
    """

    def __init__(self, log_every_n_steps: int | None = None, flops_batch: int = 1) -> None:
        self.log_every_n_steps, self.flops_batch = log_every_n_steps, flops_batch
        self.flops_per_batch: float | None = None
        self._counter: flop_counter.FlopCounterMode | None = None
        self._batches = 0  # training batches seen in this process
        self._reset_window()

    def _reset_window(self) -> None:
        self._t0: float | None = None
        self._n_batches, self._samples, self._tokens = 0, 0, 0

    def _sync(self, device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._batches == self.flops_batch and self.flops_per_batch is None:
            self._counter = flop_counter_mode()
            self._counter.__enter__()
        if self._t0 is None:  # the window starts here: it holds whole batches, loading excluded once
            self._sync(pl_module.device)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._batches += 1
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_batch = float(self._counter.get_total_flops())
            self._counter = None
            self._reset_window()  # counting slows that batch down: it is not timed
            return
        self._n_batches += 1
        self._samples += len(batch)
        count = getattr(pl_module, "tokens_in_batch", None)
        if count is not None:
            self._tokens += count(batch)  # may be a device tensor: read at the log, not per step
        if self._n_batches >= (self.log_every_n_steps or trainer.log_every_n_steps):
            self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync(pl_module.device)
        seconds = time.perf_counter() - self._t0
        world = trainer.world_size
        metrics = {"perf/samples_per_s": world * self._samples / seconds}
        if not isinstance(self._tokens, int) or self._tokens:
            metrics["perf/tokens_per_s"] = world * float(self._tokens) / seconds
        if self.flops_per_batch is not None:
            achieved = self.flops_per_batch * self._n_batches / seconds  # per device
            metrics["perf/tflops"] = achieved / 1e12
            if pl_module.device.type == "cuda":
                metrics["perf/mfu"] = achieved / peak_bf16_flops(torch.cuda.get_device_name(pl_module.device))
        for name, value in metrics.items():
            pl_module.log(name, value, on_step=True, on_epoch=False, batch_size=1)
        self._reset_window()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
