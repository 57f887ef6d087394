"""Saving and loading models (tokenizers, backbones) as Hugging Face Hub folders, strictly.

``huggingface_hub.PyTorchModelHubMixin`` loads safetensors with ``strict=False`` by default and
builds a config dataclass while ignoring fields it does not know: braindecode once loaded 0 of 99
BENDR weights this way without an error. Here every missing or unexpected weight, a shape mismatch,
and an unknown config field are errors naming the offending keys.

A folder holds ``config.json`` (the architecture's config dataclass), ``model.safetensors`` and a
model card ``README.md`` listing the training data (manifests, their hashes, the preprocessing
hash), the steps and the config. ``HF_HUB_OFFLINE=1`` is honoured by ``huggingface_hub`` itself: a
local folder loads, a hub id loads only from the local cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

from huggingface_hub import ModelCard, PyTorchModelHubMixin, constants, hf_hub_download
from torch import nn


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights or config do not match the model that loads them."""


def check_state_dict(model: nn.Module, missing: list[str], unexpected: list[str], source: str) -> None:
    """Raise ``CheckpointMismatchError`` naming every missing and unexpected key."""
    if not missing and not unexpected:
        return
    n_expected = len(model.state_dict())
    parts = [f"missing keys ({len(missing)} of {n_expected}): {sorted(missing)}" if missing else "",
             f"unexpected keys ({len(unexpected)}): {sorted(unexpected)}" if unexpected else ""]
    raise CheckpointMismatchError(f"{source} does not match {type(model).__name__}: "
                                  + "; ".join(p for p in parts if p))


def load_safetensors_strict(model: nn.Module, path: str, map_location: str = "cpu") -> None:
    """Load ``path`` into ``model``; any key or shape mismatch is a ``CheckpointMismatchError``."""
    import safetensors.torch

    try:
        # strict=False so that we get the key lists and name them ourselves (safetensors also
        # resolves tensors that were de-duplicated on save because they share storage).
        missing, unexpected = safetensors.torch.load_model(model, path, strict=False, device=map_location)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointMismatchError(f"{path}: {err}") from err
    check_state_dict(model, missing, unexpected, path)


def _markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


TOKENIZER_USAGE = ("from neurofm.tokenizers.rvq import RVQTokenizer",
                   "tok = RVQTokenizer.from_pretrained(\"<this folder or hub id>\")",
                   "codes = tok.encode(x)  # x: (batch, channels, samples) in µV at config.sfreq",
                   "x_hat = tok.decode(codes, n_samples=x.shape[-1])")


def model_card_text(title: str, config: dict[str, Any], training: dict[str, Any] | None, summary: str,
                    usage: tuple[str, ...] = TOKENIZER_USAGE, kind: str = "tokenizer") -> str:
    """A model card: YAML header, what the model is, how to load it, training data and provenance, config."""
    datasets = [d["dataset"] for d in (training or {}).get("data", []) if "train" in d.get("role", "train")]
    header = {"library_name": "neurofm", "tags": ["neurofm", "eeg", "meg", kind, "pytorch_model_hub_mixin"]}
    if datasets:
        header["datasets"] = datasets
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in header.items()), "---", "", f"# {title}", "",
             summary, "", "```python", *usage, "```", "", "## Training data", ""]
    if training and training.get("data"):
        lines += [_markdown_table(training["data"], list(training["data"][0])), ""]
        extra = {k: v for k, v in training.items() if k != "data"}
        lines += ["## Training", "", "```json", json.dumps(extra, indent=2, sort_keys=True, default=str), "```", ""]
    else:
        lines += ["Not recorded (saved outside a neurofm training command).", ""]
    lines += ["## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


class StrictHubMixin(PyTorchModelHubMixin):
    """``PyTorchModelHubMixin`` whose loading is strict and whose card records the training data.

    A subclass sets ``config_class`` (a dataclass with a strict ``from_dict``) and takes one
    ``config`` argument; ``training_info`` (a dict, set by the training job) goes into the card.
    """

    config_class: ClassVar[type]
    training_info: dict[str, Any] | None = None

    def _card_title(self) -> str:
        return type(self).__name__

    def _card_summary(self) -> str:
        return ""

    def _card_usage(self) -> tuple[str, ...]:
        return TOKENIZER_USAGE

    def _card_kind(self) -> str:
        return "tokenizer"

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        config = self._hub_mixin_config
        config = asdict(config) if is_dataclass(config) else dict(config or {})
        return ModelCard(model_card_text(self._card_title(), config, self.training_info, self._card_summary(),
                                         self._card_usage(), self._card_kind()))

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> str | None:
        """As the mixin's, but the model card is always rewritten (the mixin keeps a stale one)."""
        (Path(save_directory) / "README.md").unlink(missing_ok=True)
        return super().save_pretrained(save_directory, **kwargs)

    @classmethod
    def _decode_config(cls, value: Any) -> Any:
        if isinstance(value, cls.config_class):
            return value
        if not isinstance(value, dict):
            raise CheckpointMismatchError(f"config.json holds {type(value).__name__}, expected an object")
        try:
            return cls.config_class.from_dict(value)
        except (TypeError, ValueError) as err:
            raise CheckpointMismatchError(f"config.json: {err}") from err

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs: Any):
        if not strict:
            raise ValueError("non-strict loading is not supported: a partial load must be an error")
        if "config" not in model_kwargs:
            raise CheckpointMismatchError(f"{model_id}: no config.json found")
        model = cls(config=cls._decode_config(model_kwargs.pop("config")), **model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise FileNotFoundError(f"{model_id}: no {constants.SAFETENSORS_SINGLE_FILE}")
        else:
            model_file = hf_hub_download(repo_id=model_id, filename=constants.SAFETENSORS_SINGLE_FILE,
                                         revision=revision, cache_dir=cache_dir, force_download=force_download,
                                         token=token, local_files_only=local_files_only)
        load_safetensors_strict(model, model_file, map_location)
        model.eval()
        return model
