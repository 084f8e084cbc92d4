"""Shared timing harness: medians of repeats, thread control, Markdown and JSON output.

Every figure a benchmark prints is measured in the same run as its baseline, so the ratios
stay meaningful on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Row:
    """One measured configuration: a name per column, then the times of each implementation."""

    config: dict[str, object]
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per entry")
    return parser.parse_args(argv)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_line() -> str:
    return (
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads available to torch by default"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, name: str, rows: Sequence[Row], meta: dict[str, object]) -> None:
    if not path:
        return
    with open(path, "w") as fh:
        json.dump(
            {"benchmark": name, "meta": meta, "rows": [asdict(r) for r in rows]}, fh, indent=2
        )
