"""scripts/bench_eval.py on a tiny prepared dataset: both conditions run, the counts are exact.

No timing is asserted (timings are reported by the script, never tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from neurofm.eval import deep
from neurofm.pipelines.prepare import prepare
from scriptkit import load_script
from shardkit import TINY_MI_MANIFEST



@pytest.fixture(scope="module")
def bench():
    return load_script("bench_eval")


def test_main_times_both_conditions_and_counts_encoded_windows(bench, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(TINY_MI_MANIFEST))
    summary = prepare(str(tmp_path / "m.yaml"), str(tmp_path / "shards"), progress=False)  # 3 subjects
    cache_before = deep._FEATURES
    out = tmp_path / "bench.json"
    assert bench.main(["--dataset", str(tmp_path / "shards"), "--repeats", "1", "--json", str(out)]) == 0
    assert deep._FEATURES is cache_before  # the harness's own cache is put back
    data = json.loads(out.read_text())
    cached, uncached = data["conditions"]
    assert (cached["key"], uncached["key"], data["subjects"]) == ("cached", "uncached", 3)
    # LOSO shows every window in every fold: without the cache each of the 3 folds encodes all of them
    assert cached["encoded"] == [summary.n_samples] and uncached["encoded"] == [3 * summary.n_samples]
    assert data["ratios"]["windows_encoded"] == 3.0
    assert cached["scores"] == uncached["scores"]  # the cache never changes a result
    assert all(s > 0 for s in cached["seconds"] + uncached["seconds"])
