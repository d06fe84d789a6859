"""Every gnn recipe runs in quick mode, its checked claims hold, and its outputs are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.gnn import recipes

# quick runs of these take minutes on 2 shared cores: `nox -s slow` checks them
_SLOW: set[str] = set()


@pytest.mark.parametrize(
    "r",
    [
        pytest.param(r, id=r.name, marks=[pytest.mark.slow] if r.name in _SLOW else [])
        for r in recipes_of(recipes)
    ],
)
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    assert_recipe_holds(r, tmp_path)
