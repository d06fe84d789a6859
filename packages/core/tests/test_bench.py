"""Benchmark helpers: median timing, ratio rows, the JSON report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from torchloom.core.bench import (
    bench_parser,
    compare,
    median_time,
    median_times,
    times,
    torch_threads,
    write_report,
)


def test_median_time_counts_calls_and_is_positive() -> None:
    calls = []
    t = median_time(lambda: calls.append(1), repeat=5, warmup=2)
    assert len(calls) == 7 and t >= 0
    with pytest.raises(ValueError, match="repeat must be an int >= 1"):
        median_time(lambda: None, repeat=0)


def test_compare_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [compare("a", 2.0, 4.0), compare("zero peer", 1.0, 0.0, unit="bytes")]
    assert rows[0]["ratio"] == 0.5 and math.isnan(rows[1]["ratio"])
    path = write_report("pkg", "topic", "peerlib", rows, tmp_path / "out")
    data = json.loads(path.read_text())
    assert path.name == "pkg_topic.json" and data["peer"] == "peerlib"
    assert data["rows"][0] == {"case": "a", "ours": 2.0, "peer": 4.0, "ratio": 0.5, "unit": "s"}
    assert "peerlib" in capsys.readouterr().out


def test_parser_defaults_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHLOOM_BENCH_DIR", "/x/y")
    args = bench_parser("d").parse_args(["--quick"])
    assert args.quick and args.out == "/x/y"


def test_median_times_interleaves_candidates() -> None:
    order: list[str] = []
    out = median_times(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeat=3, warmup=1
    )
    assert set(out) == {"a", "b"}
    assert order[2:] == ["a", "b"] * 3  # round-robin after the warm-ups


def _busy(seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_min_recovers_the_cost_under_interference() -> None:
    # a 2 ms op that, in 3 of every 5 runs, also loses 20 ms to "another process": the median
    # reports the interference, the minimum the op's cost
    calls = {"n": 0}

    def op() -> None:
        calls["n"] += 1
        time.sleep(0.002 + (0.02 if calls["n"] % 5 < 3 else 0.0))

    lo = times({"op": op}, repeat=10, warmup=0, statistic="min")["op"]
    med = times({"op": op}, repeat=10, warmup=0, statistic="median")["op"]
    assert 2e-3 <= lo < 8e-3
    assert med > 15e-3


def test_cpu_clock_excludes_time_off_the_cpu() -> None:
    # 3 ms of CPU work, then 15 ms descheduled (sleeping): the CPU clock sees the work only
    def op() -> None:
        _busy(0.003)
        time.sleep(0.015)

    cpu = times({"op": op}, repeat=3, warmup=0, clock="cpu", threads=1)["op"]
    wall = times({"op": op}, repeat=3, warmup=0, clock="wall")["op"]
    assert 2.9e-3 <= cpu < 9e-3
    assert wall >= 18e-3 - 1e-4


def test_torch_threads_sets_and_restores_the_count() -> None:
    seen: list[int] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        times({"probe": lambda: seen.append(torch.get_num_threads())}, 2, 1, threads=1)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with torch_threads(None):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_times_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="statistic"):
        times({"f": lambda: None}, statistic="mean")
    with pytest.raises(ValueError, match="clock"):
        times({"f": lambda: None}, clock="gpu")
    with pytest.raises(ValueError, match="empty"):
        times({})
    with pytest.raises(ValueError, match="warmup must be an int >= 0"):
        times({"f": lambda: None}, warmup=-1)
    with pytest.raises(ValueError, match="n must be an int"):
        times({"f": lambda: None}, threads=0)
    # the CPU clock times the calling thread: refused when ops may run on several threads
    with pytest.raises(ValueError, match="one intra-op thread"):
        times({"f": lambda: None}, threads=2, clock="cpu")
