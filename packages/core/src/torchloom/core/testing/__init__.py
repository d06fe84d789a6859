"""Testing helpers for torchloom packages: devices, gradcheck, hypothesis strategies.

The pytest plugin (:mod:`torchloom.core.testing.plugin`, registered through ``pytest11``)
provides the ``device`` fixture, autouse seeding and the hypothesis profiles ``ci``, ``dev`` and
``thorough``. Hypothesis strategies live in :mod:`torchloom.core.testing.strategies` (they need
``hypothesis`` installed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from torchloom.core.recipes import Recipe, Result, recipes_in, run_recipe

__all__ = [
    "assert_gradcheck",
    "assert_recipe_holds",
    "available_devices",
    "recipe_params",
    "recipes_of",
]


def available_devices() -> list[str]:
    """Devices to test on: ``TORCHLOOM_DEVICE`` (comma separated) or every available one."""
    env = os.environ.get("TORCHLOOM_DEVICE", "").strip()
    if env:
        devices = [d.strip() for d in env.split(",") if d.strip()]
        for d in devices:
            if d.startswith("cuda") and not torch.cuda.is_available():
                raise RuntimeError(f"TORCHLOOM_DEVICE={env!r} asks for CUDA, which is unavailable")
        return devices
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def assert_gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[torch.Tensor],
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    check_grad_dtypes: bool = True,
) -> None:
    """``torch.autograd.gradcheck`` in float64 that raises ``AssertionError`` with details.

    Floating inputs are cast to float64 (keeping ``requires_grad``).
    """
    cast = tuple(
        x.detach().double().requires_grad_(x.requires_grad) if x.is_floating_point() else x
        for x in inputs
    )
    ok = torch.autograd.gradcheck(
        fn,
        cast,
        eps=eps,
        atol=atol,
        rtol=rtol,
        check_grad_dtypes=check_grad_dtypes,
        raise_exception=True,
    )
    if not ok:  # pragma: no cover - raise_exception=True raises first
        raise AssertionError("gradcheck failed")


def recipes_of(module: Any) -> list[Recipe]:
    """The recipes defined at the top level of ``module`` (for parametrising tests)."""
    return list(recipes_in(module).values())


def recipe_params(*modules: Any, slow: Sequence[str] = ()) -> list[Any]:
    """``pytest.param`` per recipe of ``modules`` (id = recipe name), marked ``slow`` when the
    name is in ``slow``. A name in ``slow`` that is no recipe of ``modules`` raises ``ValueError``,
    so a renamed recipe cannot silently leave the slow set stale.

    Use: ``@pytest.mark.parametrize("r", recipe_params(recipes, slow={"pkg.big"}))``.
    """
    import pytest  # only test code calls this; the library must not need pytest

    found = [r for m in modules for r in recipes_of(m)]
    unknown = set(slow) - {r.name for r in found}
    if unknown:
        raise ValueError(f"slow names recipes that do not exist here: {sorted(unknown)}")
    return [
        pytest.param(r, id=r.name, marks=[pytest.mark.slow] if r.name in slow else [])
        for r in found
    ]


def assert_recipe_holds(r: Recipe, out_dir: str | Path) -> Result:
    """Run ``r`` in quick mode and assert every checked claim holds, ``result.json`` is written
    and every figure it lists exists. Returns the result for further checks."""
    res = run_recipe(r, quick=True, out_dir=out_dir, show_progress=False)
    failed = [c.to_json() for c in res.claims if c.checked and not c.holds]
    if failed:
        raise AssertionError(f"{r.name}: claims did not hold in quick mode: {failed}")
    data = json.loads((Path(out_dir) / r.name / "result.json").read_text())
    if not data["ok"]:
        raise AssertionError(f"{r.name}: result.json says ok=false")
    missing = [p for p in data["figures"] if not Path(p).exists()]
    if missing:
        raise AssertionError(f"{r.name}: figures listed but not written: {missing}")
    return res
