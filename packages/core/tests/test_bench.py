"""Benchmark helpers: median timing, ratio rows, the JSON report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from torchloom.core.bench import bench_parser, compare, median_time, median_times, write_report


def test_median_time_counts_calls_and_is_positive() -> None:
    calls = []
    t = median_time(lambda: calls.append(1), repeat=5, warmup=2)
    assert len(calls) == 7 and t >= 0
    with pytest.raises(ValueError, match="repeat must be >= 1"):
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
