"""Helpers shared by every package's ``benchmarks/bench_*.py`` scripts.

A benchmark runs ours and a peer side by side on identical inputs in one process and reports
*ratios* (ours / peer), because the machines are shared and absolute times are noise. Every
script takes ``--quick`` and ``--out DIR`` (default: ``$TORCHLOOM_BENCH_DIR``, else
``benchmarks/results``) and writes ``DIR/<package>_<topic>.json`` =
``{"package", "topic", "peer", "rows": [{"case", "ours", "peer", "ratio", "unit"}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["bench_parser", "compare", "median_time", "median_times", "write_report"]


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the common ``--quick`` and ``--out`` options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    p.add_argument(
        "--out",
        default=os.environ.get("TORCHLOOM_BENCH_DIR", "benchmarks/results"),
        help="folder for the JSON report",
    )
    return p


def median_times(
    fns: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall time (s) of each function. Repeats run round-robin across the candidates so
    that load from other processes hits every one alike; CUDA is synchronised around each run."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def median_time(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs."""
    return median_times({"fn": fn}, repeat, warmup)["fn"]


def compare(case: str, ours: float, peer: float, unit: str = "s") -> dict[str, Any]:
    """One report row with ``ratio = ours / peer`` (NaN when the peer's figure is 0)."""
    ratio = ours / peer if peer else float("nan")
    return {"case": case, "ours": ours, "peer": peer, "ratio": ratio, "unit": unit}


def write_report(
    package: str,
    topic: str,
    peer: str,
    rows: Sequence[dict[str, Any]],
    out: str | Path,
    **extra: Any,
) -> Path:
    """Write ``out/<package>_<topic>.json`` (plus any ``extra`` fields, e.g. ``device``) and
    print the rows as a table; returns the path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{package}_{topic}.json"
    record = {"package": package, "topic": topic, "peer": peer, **extra, "rows": list(rows)}
    path.write_text(json.dumps(record, indent=2, default=float))
    width = max([len(str(r["case"])) for r in rows] + [4])
    print(f"{package}/{topic} vs {peer}")
    print(f"{'case':<{width}} {'ours':>11} {'peer':>11} {'ratio':>8} unit")

    def num(v: Any, width: int, spec: str) -> str:
        # rows may hold a non-number (e.g. None where a peer has no figure)
        return format(v, f">{width}{spec}") if isinstance(v, (int, float)) else f"{v!s:>{width}}"

    for r in rows:
        print(
            f"{r['case']:<{width}} {num(r['ours'], 11, '.4g')} {num(r['peer'], 11, '.4g')} "
            f"{num(r['ratio'], 8, '.3g')} {r.get('unit', '')}"
        )
    return path
