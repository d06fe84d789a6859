"""The dynamics recipes run in quick mode and their checked claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.theory.recipes import dynamics

RECIPES = recipes_of(dynamics)


# quick runs of these take minutes on 2 shared cores: `nox -s slow` checks them
_SLOW = {
    "theory.info-plane",
    "theory.opposing-signals",
    "theory.grokking",
    "theory.convergent",
    "theory.geometry",
}


@pytest.mark.parametrize(
    "r",
    [
        pytest.param(r, id=r.name, marks=[pytest.mark.slow] if r.name in _SLOW else [])
        for r in RECIPES
    ],
)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    res = assert_recipe_holds(r, tmp_path)
    assert set(res.metrics) >= {c.metric for c in r.claims}
