"""``export_checkpoint``: a pretraining checkpoint (Lightning ``.ckpt``) → a backbone hub folder.

The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects, so a checkpoint from elsewhere cannot run code. The backbone is
rebuilt from ``hyper_parameters["backbone"]`` (a plain dict that ``PretrainModule`` stores) and
loaded strictly: every backbone weight must be in the checkpoint (``backbone.*``) and every
``backbone.*`` entry must be a weight of the backbone. Other entries (the objective's decoder head,
a frozen tokenizer) are not part of the backbone and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..hub import CheckpointMismatchError, check_state_dict
from .backbone import NeuroTransformer
from .config import BackboneConfig

PREFIX = "backbone."


@dataclass
class ExportResult:
    hub_dir: Path  # save_pretrained folder
    steps: int  # the checkpoint's global step
    n_weights: int  # backbone tensors written
    config: BackboneConfig


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as plain data; a clear error for a missing or non-checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling refused or a corrupt file: name both
        raise CheckpointMismatchError(f"{path} cannot be read as a plain-data checkpoint "
                                      f"(torch.load weights_only=True): {err}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointMismatchError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def backbone_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> NeuroTransformer:
    """The pretrained backbone in ``ckpt``, strictly loaded, in eval mode."""
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams.get("backbone"), dict):
        raise CheckpointMismatchError(f"{source} has no backbone config (hyper_parameters['backbone']); "
                                      "was it written by neurofm pretrain?")
    try:
        config = BackboneConfig.from_dict(hparams["backbone"])
    except (TypeError, ValueError) as err:
        raise CheckpointMismatchError(f"{source}: backbone config: {err}") from err
    model = NeuroTransformer(config)
    state = {k.removeprefix(PREFIX): v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    expected = set(model.state_dict())
    check_state_dict(model, sorted(expected - set(state)), sorted(set(state) - expected), source)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointMismatchError(f"{source}: {err}") from err
    return model.eval()


def export_checkpoint(ckpt_path: str | Path, to: str | Path, extra_info: dict[str, Any] | None = None) -> ExportResult:
    """Write ``to`` (config.json, model.safetensors, README.md with the training data) from ``ckpt_path``."""
    ckpt = read_checkpoint(ckpt_path)
    model = backbone_from_checkpoint(ckpt, str(ckpt_path))
    info = dict((ckpt.get("hyper_parameters") or {}).get("training_info") or {})
    model.training_info = {**info, "steps": int(ckpt.get("global_step", 0)), "checkpoint": str(ckpt_path),
                           **(extra_info or {})}
    model.save_pretrained(Path(to))
    return ExportResult(hub_dir=Path(to), steps=int(ckpt.get("global_step", 0)), n_weights=len(model.state_dict()),
                        config=model.config)
