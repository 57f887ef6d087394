"""The generator's oracle score for a synthetic dataset: the ceiling a benchmark on it can reach."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..pipelines.loader import load_index


@lru_cache(maxsize=16)
def _oracle(index_path: str) -> dict[str, float] | None:
    from ..pipelines.synthetic import PARADIGMS, SyntheticConfig, oracle_score

    raw = load_index(index_path).raw
    generator = raw.get("synthetic_generator")
    if generator is None or raw.get("task", "classification") != "classification":
        return None  # seizure: the latents are whole spans, not windows, and the table ranks by event F1
    if PARADIGMS[generator.get("paradigm", "motor_imagery")].target is not None:
        return None  # regression paradigms: the oracle is a balanced accuracy, undefined there
    result = oracle_score(SyntheticConfig(**generator))
    return {f"{s + 1:02d}": float(v) for s, v in result.per_subject.items()}  # subject ids as sources.py writes them


def oracle_by_subject(index_path: str | Path) -> dict[str, float] | None:
    """Per test subject, the balanced accuracy of LDA on the true generating features (leave-one-subject-out);
    None for recorded data (or a synthetic dataset prepared before the index recorded its generator)."""
    return _oracle(str(Path(index_path).resolve()))
