"""Human-readable summaries (rich tables) of pipeline results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .prepare import PrepareSummary


def print_summary(s: PrepareSummary, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"prepare {s.dataset}", show_header=False)
    rows = [
        ("recordings (items)", f"{s.n_items}: {s.n_ok} prepared, {s.n_skipped} already complete, "
                               f"{s.n_failed} failed"),
        ("windows", f"{s.n_samples}"),
        ("subjects", f"{len(s.subjects)}: {', '.join(s.subjects[:12])}{' …' if len(s.subjects) > 12 else ''}"),
        ("channel sets", str(s.n_channel_sets)),
        ("preprocessing hash", s.preproc_hash),
        ("index", s.index),
        ("time", f"{s.seconds:.1f} s"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    for w in s.warnings[:10]:
        console.print(f"[yellow]warning[/]: {w}", soft_wrap=True)
    if len(s.warnings) > 10:
        console.print(f"[yellow]… {len(s.warnings) - 10} more warnings in {s.out}/report.json[/]")
    for f in s.failures:
        console.print(f"[red]failed[/]: {f.path or f.item}: {f.reason}", soft_wrap=True)
    if s.failures:
        console.print(f"[red]{s.n_failed} recording(s) failed[/]; details in {s.out}/errors*.jsonl", soft_wrap=True)
