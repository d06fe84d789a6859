"""Cross-check of the analytic and empirical kernels against Google's neural-tangents.

neural-tangents needs JAX + TensorFlow, which cannot live in the workspace env nor in a torch
process, so ``benchmarks/neural_tangents_reference.py`` runs in a subprocess with the python
named by ``$TORCHLOOM_NT_PYTHON``. Without it this test is skipped (CI never downloads
TensorFlow). To run it::

    uv venv /tmp/ntv -p 3.11
    uv pip install --python /tmp/ntv/bin/python neural-tangents "jax[cpu]==0.4.30" tf2jax==0.3.6
    TORCHLOOM_NT_PYTHON=/tmp/ntv/bin/python pytest -m slow \\
        packages/theory/tests/test_neural_tangents_crosscheck.py
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "nt_crosscheck.py"


def _crosscheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torchloom_theory_nt_crosscheck", _BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def crosscheck() -> tuple[list[dict[str, Any]], dict[str, float]]:
    if not os.environ.get("TORCHLOOM_NT_PYTHON"):
        pytest.skip("set TORCHLOOM_NT_PYTHON to a python with neural-tangents to run this")
    mod = _crosscheck_module()
    runner = mod.find_runner(allow_uv=False)
    analytic, empirical, _ = mod.crosscheck(runner, n=10, width=64, emp_depth=3, repeats=1)
    return analytic, empirical


def test_analytic_kernels_match_neural_tangents(
    crosscheck: tuple[list[dict[str, Any]], dict[str, float]],
) -> None:
    analytic, _ = crosscheck
    # ReLU and erf, depths 1-4, with biases: NNGP and NTK.
    assert {(r["case"], r["kind"]) for r in analytic} == {
        (f"{act} depth {d}", kind)
        for act in ("relu", "erf")
        for d in (1, 2, 3, 4)
        for kind in ("nngp", "ntk")
    }
    for row in analytic:
        # Identical inputs put the ReLU NTK at arccos(1), conditioned like sqrt(eps): both
        # libraries are ~1e-8 off the exact value there, so allow 1e-7 on those entries only.
        loose = row["case"].startswith("relu") and row["kind"] == "ntk"
        assert row["rel_diff"] <= (1e-7 if loose else 1e-8), row
        assert row["rel_diff_distinct"] <= 1e-10, row


def test_empirical_ntk_matches_neural_tangents_with_same_weights(
    crosscheck: tuple[list[dict[str, Any]], dict[str, float]],
) -> None:
    _, empirical = crosscheck
    assert empirical["rel_diff"] <= 1e-8, empirical
