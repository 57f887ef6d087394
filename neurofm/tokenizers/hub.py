"""Strict hub loading lives in ``neurofm.hub`` (shared with the backbones); re-exported here."""

from ..hub import (CheckpointMismatchError, StrictHubMixin, check_state_dict, load_safetensors_strict,
                   model_card_text)

__all__ = ["CheckpointMismatchError", "StrictHubMixin", "check_state_dict", "load_safetensors_strict",
           "model_card_text"]
