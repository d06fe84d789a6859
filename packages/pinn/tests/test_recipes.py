"""Every recipe of the package runs in quick mode and its checked claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipe_params
from torchloom.pinn import recipes


@pytest.mark.parametrize("r", recipe_params(recipes))
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    assert_recipe_holds(r, tmp_path)
