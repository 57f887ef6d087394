"""``tokenizer_report`` end to end on a tiny prepared dataset: μ-law and a stand-in residual tokenizer."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from neurofm.tokenizers.base import TOKENIZERS, Tokenizer, check_signal
from neurofm.tokenizers.report import TokenizerReportError, tokenizer_report
from shardkit import DEFAULT_RECORDINGS, make_dataset

SFREQ = 100.0  # shardkit's default
FIGURE_PX = (1000, 1500)  # (height, width): report_figure.FIGSIZE_IN at its DPI


class ResidualScalar(nn.Module, Tokenizer):
    """A stand-in for an RVQ tokenizer: averages ``stride`` samples into a frame, then level q codes
    the residual left by levels < q with a uniform quantiser whose step shrinks K-fold per level."""

    def __init__(self, sfreq: float = SFREQ, n_q: int = 3, codebook_size: int = 8, stride: int = 2,
                 range_uv: float = 4.0) -> None:
        super().__init__()
        self.sfreq, self.n_q, self.codebook_size = sfreq, n_q, codebook_size
        self.stride, self.range_uv = stride, range_uv

    def _step(self, q: int) -> float:
        return 2 * self.range_uv / self.codebook_size ** (q + 1)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        check_signal(x, min_samples=self.stride)
        residual = nn.functional.avg_pool1d(x, self.stride)  # (B, C, F)
        half, codes = self.codebook_size // 2, []
        for q in range(n_q or self.n_q):
            c = torch.floor(residual / self._step(q)).clamp(-half, half - 1)
            residual = residual - (c + 0.5) * self._step(q)
            codes.append(c.long() + half)
        return torch.stack(codes, 2)  # (B, C, n_q, F)

    def decode(self, codes: Tensor, n_samples: int | None = None) -> Tensor:
        half = self.codebook_size // 2
        frames = sum((codes[:, :, q].float() - half + 0.5) * self._step(q) for q in range(codes.shape[2]))
        x = frames.repeat_interleave(self.stride, -1)  # (B, C, F * stride)
        return x[..., : n_samples or x.shape[-1]]

    def bits_per_second(self, n_q: int | None = None) -> float:
        return self.sfreq / self.stride * math.log2(self.codebook_size) * (n_q or self.n_q)


@pytest.fixture
def standin() -> Iterator[str]:
    """Registers the stand-in as a preset for the test only."""
    TOKENIZERS["test_standin"] = lambda sfreq=SFREQ: ResidualScalar(sfreq)
    TOKENIZERS["test_standin_200hz"] = lambda: ResidualScalar(200.0)  # takes no sfreq: fixed at 200 Hz
    yield "test_standin"
    del TOKENIZERS["test_standin"], TOKENIZERS["test_standin_200hz"]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 subjects with 8, 12 and 5 channels (padding), one bad channel; 60 windows of 64 samples."""
    return make_dataset(tmp_path_factory.mktemp("heldout"))


def test_report_writes_json_md_and_png(index: Path, standin: str, tmp_path: Path):
    rep = tokenizer_report([standin, "mulaw_tiny"], [str(index)], out=str(tmp_path), max_windows=40,
                           bitrates=[800.0], batch_size=16)
    ds = rep.datasets[0]
    assert ds.n_windows == 40 and ds.n_chans == 12 and ds.sfreq == SFREQ
    mine = [p for p in ds.points if p.tokenizer == standin]
    assert [p.n_q for p in mine] == [1, 2, 3]
    assert [p.bits_per_second for p in mine] == [150.0, 300.0, 450.0]
    assert mine[2].metrics.pcc > mine[0].metrics.pcc  # more levels, better reconstruction
    assert all(len(p.levels) == p.n_q for p in mine)
    # every point has its μ-law match at the same or the nearest lower bitrate
    assert [c.n_q for c in ds.comparisons] == [1, 2, 3]
    assert all(c.baseline_bits_per_second <= c.bits_per_second for c in ds.comparisons)
    names = {p.tokenizer for p in ds.points if p.role == "baseline"}
    assert {c.baseline for c in ds.comparisons} | {"mulaw 4b/2", "mulaw 8b/1"} <= names  # preset, bitrates
    # padded channels and the bad channel are never scored (exact counts: the next test)
    assert all(p.metrics.n_excluded > 0 for p in ds.points)
    assert len({p.metrics.n_pairs for p in ds.points}) == 1
    # files
    saved = json.loads(Path(rep.json_path).read_text())
    assert saved["datasets"][0]["comparisons"][0]["better"] in (True, False)
    assert {"pcc_ok", "usage_ok", "better_ok"} <= set(saved["datasets"][0]["targets"][0])
    md = Path(rep.md_path).read_text()
    assert "| tokenizer | n_q | bits/s |" in md and standin in md and f"{Path(ds.figure).name}" in md
    import matplotlib.image

    assert matplotlib.image.imread(ds.figure).shape[:2] == FIGURE_PX


def test_scored_pairs_are_the_good_real_channels(index: Path, tmp_path: Path):
    rep = tokenizer_report(["mulaw"], [str(index)], out=str(tmp_path), max_windows=1000, figures=False)
    point = rep.datasets[0].points[0]
    specs = {s.subject: s for s in DEFAULT_RECORDINGS}
    good = sum(s.n_windows * (s.n_chans - len(s.bad_channels)) for s in specs.values())
    padded = sum(s.n_windows * 12 for s in specs.values())
    assert point.metrics.n_pairs == good and point.metrics.n_excluded == padded - good
    assert point.metrics.pcc > 0.99  # 8 bits, every sample


def test_only_baselines_still_draws_the_figure(index: Path, tmp_path: Path):
    rep = tokenizer_report(["mulaw_tiny"], [str(index)], out=str(tmp_path), max_windows=10)
    assert Path(rep.datasets[0].figure).is_file() and not rep.datasets[0].comparisons


def test_unknown_tokenizer_and_wrong_sampling_rate_are_clear_errors(index: Path, standin: str, tmp_path: Path):
    with pytest.raises(TokenizerReportError, match="neither a registered preset"):
        tokenizer_report(["no_such_tokenizer"], [str(index)], out=str(tmp_path))
    with pytest.raises(TokenizerReportError, match="200 Hz, the data is at 100 Hz"):
        tokenizer_report(["test_standin_200hz"], [str(index)], out=str(tmp_path))
    with pytest.raises(TokenizerReportError, match="none of n_q"):
        tokenizer_report([standin], [str(index)], out=str(tmp_path), n_q=[7])


def test_calibration_data_chooses_the_baseline(index: Path, standin: str, tmp_path: Path):
    rep = tokenizer_report([standin], [str(index)], out=str(tmp_path), max_windows=20, n_q=[2],
                           calibration=[str(index)], figures=False)
    (comparison,) = rep.datasets[0].comparisons
    assert comparison.n_q == 2 and comparison.baseline_bits_per_second <= 300.0


def _cli(*args: str) -> int:
    from neurofm.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code


def test_cli_runs_the_report(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """In this process (the CLI's import time is tested in test_cli.py)."""
    assert _cli("tokenizer", "report", "mulaw_tiny", "--data", str(index), "--out", str(tmp_path),
                "--max_windows", "8") == 0
    assert (tmp_path / "report.json").is_file() and "mulaw 4b/2" in capsys.readouterr().out
    assert _cli("tokenizer", "report", "nope", "--data", str(index), "--out", str(tmp_path)) == 2
    assert "neither a registered preset" in capsys.readouterr().err
