"""Pretrained weights for braindecode's networks from a local folder: strict, head excepted.

The harness never downloads (no hub ids here). A folder holds ``model.safetensors`` (what
braindecode's and Hugging Face's ``save_pretrained`` write) or, failing that, ``pytorch_model.bin``
read with ``torch.load(weights_only=True)`` (no pickled code runs). Every parameter and buffer of the
network except its classification head (braindecode's ``final_layer``, sized for the new task and
freshly initialised) must be in the file with the same shape, and the file may hold nothing else
but a head: a checkpoint that would load half-matched is an error listing what does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..hub import CheckpointMismatchError

HEAD_PREFIXES = ("final_layer.",)  # braindecode's name for every model's classification head
_FILES = ("model.safetensors", "pytorch_model.bin")
_SHOWN = 8  # keys listed per kind of mismatch


@dataclass(frozen=True)
class LoadReport:
    """What a load did: the file read, tensors loaded, and head tensors left freshly initialised."""

    file: Path
    n_loaded: int
    head_reinitialised: tuple[str, ...]


def weights_file(folder: str | Path) -> Path:
    """The weights file of a local folder; a clear error for a hub id or a folder without one."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"weights={folder!r} is not a local folder: pretrained weights are read from disk "
                                "only (this harness never downloads); save them there with save_pretrained")
    for name in _FILES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds none of {list(_FILES)}")


def read_state(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file} is not a state dict of tensors")
    return state


def _is_head(key: str) -> bool:
    return key.startswith(HEAD_PREFIXES)


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (f" ... ({len(keys)} in all)" if len(keys) > _SHOWN else "")


def load_pretrained(net: nn.Module, folder: str | Path) -> LoadReport:
    """Load ``folder``'s weights into ``net`` (in place): every non-head tensor, or an error naming the misfits."""
    file = weights_file(folder)
    state, own = read_state(file), net.state_dict()
    missing = sorted(k for k in own if k not in state and not _is_head(k))
    unexpected = sorted(k for k in state if k not in own and not _is_head(k))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                    if k in state and not _is_head(k) and state[k].shape != own[k].shape)
    problems = [f"{what}: {_listed(keys)}" for what, keys in
                (("missing from the file", missing), ("in the file, not in the network", unexpected),
                 ("shape in the file vs the network", shapes)) if keys]
    if problems:
        raise CheckpointMismatchError(f"{file} does not fit {type(net).__name__} built for this dataset (channels, "
                                      f"window length and sfreq come from the data): " + "; ".join(problems))
    body = {k: v for k, v in state.items() if not _is_head(k)}
    net.load_state_dict(body, strict=False)
    return LoadReport(file, len(body), tuple(sorted(k for k in own if _is_head(k))))


def drop_head(net: nn.Module) -> None:
    """Replace braindecode's ``final_layer`` by the identity: the network then returns its features."""
    if not isinstance(getattr(net, "final_layer", None), nn.Module):
        raise ValueError(f"{type(net).__name__} has no final_layer to remove for linear probing")
    net.final_layer = nn.Identity()
