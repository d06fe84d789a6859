"""The hardware-aware recipes (ProxylessNAS memory, FBNet, DASS) run in quick mode and hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.testing import assert_recipe_holds
from torchloom.nas.recipes import hardware


def test_proxyless_memory_quick(tmp_path: Path) -> None:
    res = assert_recipe_holds(hardware.proxyless_memory, tmp_path)
    rows = res.tables["saved_bytes"]
    assert rows[0]["N"] == 2 and rows[-1]["N"] == 8
    # the growth metrics are read off the table's end points
    assert res.metrics["darts_growth"] == rows[-1]["darts"] / rows[0]["darts"]


def test_fbnet_quick(tmp_path: Path) -> None:
    res = assert_recipe_holds(hardware.fbnet, tmp_path)
    m = res.metrics
    assert 0.0 <= m["fbnet_accuracy"] <= 1.0
    # the claim's ratio is the target-network latency from the lookup table (fixed layers
    # included), the same table for both searches
    assert m["latency_ratio"] == pytest.approx(m["fbnet_target_ms"] / m["darts_target_ms"])
    for k in ("darts", "fbnet", "fbnet_latency_heavy"):
        assert m[f"{k}_target_ms"] >= m["target_fixed_ms"] > 1.0


def test_dass_quick(tmp_path: Path) -> None:
    res = assert_recipe_holds(hardware.dass, tmp_path)
    assert res.metrics["dass_sparsity"] == pytest.approx(0.9, abs=0.02)
