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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from torchloom.core.checks import check_int

__all__ = [
    "CLOCKS",
    "STATISTICS",
    "bench_parser",
    "compare",
    "median_time",
    "median_times",
    "times",
    "torch_threads",
    "write_report",
]


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


STATISTICS = ("min", "median")
"""Reductions of :func:`times` over the timed repeats."""

CLOCKS = ("wall", "cpu")
"""Clocks of :func:`times`: wall time, or the calling thread's CPU time."""


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count after it.

    Args:
        n: intra-op threads inside the block (``None``: leave the setting alone).

    Yields:
        Nothing; the previous thread count is restored on exit, also on an exception.

    Raises:
        ValueError: when ``n`` is not ``None`` or an integer ``>= 1``.
    """
    if n is None:
        yield
        return
    check_int(n, "n")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def times(
    fns: Mapping[str, Callable[[], Any]],
    repeat: int = 5,
    warmup: int = 1,
    *,
    statistic: str = "median",
    threads: int | None = None,
    clock: str = "wall",
) -> dict[str, float]:
    """Time (s) of each callable: ``warmup`` untimed runs each, then ``repeat`` timed rounds,
    round-robin over the callables, reduced by ``statistic``.

    Round-robin timing makes a burst of load from other processes hit every candidate alike.
    ``statistic="min"`` estimates an op's intrinsic cost under such interference (load only
    adds time); the median is the typical run. CUDA is synchronised around each run.
    ``clock="cpu"`` times the calling thread's CPU time instead of wall time: for a
    single-threaded CPU op, its latency on a dedicated core, without the time the scheduler
    gave to other processes (nor any GPU time: use it for CPU work only).

    Args:
        fns: ``{name: fn}``; each ``fn()`` runs the op once.
        repeat: timed runs per callable.
        warmup: untimed runs per callable first (steady state: allocator, caches).
        statistic: ``"median"`` (default) or ``"min"`` over the repeats.
        threads: intra-op threads while timing (:func:`torch_threads`; ``None``: unchanged).
        clock: ``"wall"`` (default) or ``"cpu"`` (needs a single intra-op thread, else the
            other threads' work would be missed).

    Returns:
        ``{name: seconds}``.

    Raises:
        ValueError: on an empty mapping, ``repeat < 1``, ``warmup < 0``, an unknown
            ``statistic`` or ``clock``, or ``clock="cpu"`` with more than one intra-op thread.
    """
    if not fns:
        raise ValueError("fns must hold at least one callable, got an empty mapping")
    check_int(repeat, "repeat")
    check_int(warmup, "warmup", minimum=0)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    reduce: Callable[[list[float]], float] = min if statistic == "min" else statistics.median
    now = time.perf_counter if clock == "wall" else time.thread_time
    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    taken: dict[str, list[float]] = {name: [] for name in fns}
    with torch_threads(threads):
        if clock == "cpu" and torch.get_num_threads() != 1:
            raise ValueError(
                f"clock='cpu' times the calling thread only and needs one intra-op thread, got "
                f"{torch.get_num_threads()} (pass threads=1 or clock='wall')"
            )
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        for _ in range(repeat):
            for name, fn in fns.items():
                sync()
                start = now()
                fn()
                sync()
                taken[name].append(now() - start)
    return {name: reduce(ts) for name, ts in taken.items()}


def median_times(
    fns: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall time (s) of each function, round-robin (:func:`times` with its defaults)."""
    return times(fns, repeat, warmup)


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
