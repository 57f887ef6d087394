"""The generator's oracle score for a synthetic dataset: the ceiling a benchmark on it can reach.

Per test subject, in the dataset task's primary metric (``tasks.py``), so the leaderboard sets it next
to the same score: balanced accuracy of LDA on the true generating features (classification), R² of a
ridge regression of the target on them (regression: ``synthetic.RegressionOracleResult``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..pipelines.loader import load_index
from .tasks import DEFAULT_TASK

ORACLE_TASKS = ("classification", "regression")  # seizure: the latents are whole spans, not windows


@lru_cache(maxsize=16)
def _oracle(index_path: str) -> dict[str, float] | None:
    from ..pipelines.synthetic import SyntheticConfig, oracle_score

    raw = load_index(index_path).raw
    generator = raw.get("synthetic_generator")
    if generator is None or raw.get("task", DEFAULT_TASK) not in ORACLE_TASKS:
        return None
    result = oracle_score(SyntheticConfig(**generator))
    return {f"{s + 1:02d}": float(v) for s, v in result.per_subject.items()}  # subject ids as sources.py writes them


def oracle_by_subject(index_path: str | Path) -> dict[str, float] | None:
    """Per test subject, the oracle's leave-one-subject-out score in the task's primary metric (balanced
    accuracy; R² for regression); None for recorded data, seizure datasets (or a synthetic dataset
    prepared before the index recorded its generator)."""
    return _oracle(str(Path(index_path).resolve()))
