"""Spatiotemporal any-montage transformer backbones (see the backbone issue)."""
