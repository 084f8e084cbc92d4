"""What every example script shares: the common flags, the timed run and the closing lines.

Each example adds its own flags to :func:`example_parser`, calls :func:`timed_run` and prints
its table, then :func:`finish`. Kept beside the examples (not in the package): it is about
running scripts, not about models.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch


def example_parser(
    description: str, *, seed: int, threads: int, seed_help: str
) -> argparse.ArgumentParser:
    """A parser with the flags every example takes: ``--seed``, ``--threads``, ``--smoke``,
    ``--progress/--no-progress`` and ``--json``; the caller adds its own."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--seed", type=int, default=seed, help=seed_help)
    p.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    p.add_argument("--smoke", action="store_true", help="tiny run for the test suite (seconds)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show tqdm progress bars",
    )
    p.add_argument("--json", metavar="PATH", default=None, help="write the results to PATH")
    return p


def timed_run(
    run: Callable[[], dict[str, Any]], cfg: Any, argv: list[str] | None
) -> tuple[dict[str, Any], float]:
    """Run the experiment; returns its results, with the command line, the configuration and
    the versions added so the JSON alone says how it was produced, and the wall time."""
    command = shlex.join([sys.executable, *sys.argv] if argv is None else ["...", *argv])
    start = time.perf_counter()
    results = run()
    wall = time.perf_counter() - start
    results.update(
        command=command,
        config=asdict(cfg),
        wall_seconds=wall,
        torch=torch.__version__,
        python=platform.python_version(),
    )
    print(f"command: {command}")
    return results, wall


def finish(results: dict[str, Any], json_path: str | None) -> int:
    """Print the wall time and write the results to ``json_path`` when given; returns 0."""
    print(f"wall time {results['wall_seconds']:.1f} s")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"results written to {json_path}")
    return 0
