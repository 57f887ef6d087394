"""``PresetConfig``: named presets and strict construction for config dataclasses (torch-free)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar


class PresetConfig:
    """Mixin for a config dataclass with a ``PRESETS`` table (name → field values) and a ``name`` field.

    ``from_dict`` is strict: a key that is not a field is an error, so a typo never falls back to a default.
    """

    PRESET_KIND: ClassVar[str] = "config"  # how errors name the presets ("RVQ", "backbone")
    PRESETS: ClassVar[dict[str, dict[str, Any]]]

    @classmethod
    def from_name(cls, name: str, **overrides: Any):
        """A named preset with fields overridden."""
        if name not in cls.PRESETS:
            raise ValueError(f"{cls.PRESET_KIND} preset {name!r} is not one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], "name": name, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
