"""Spatiotemporal any-montage transformer backbones (``backbone.py``) and their pretraining."""

from .config import BackboneConfig, resolve_backbone_config

__all__ = ["BackboneConfig", "resolve_backbone_config"]
