"""Every recipe of torchloom.hypernet runs in quick mode and its checked claims hold."""

from __future__ import annotations

import pytest

import torchloom.hypernet.recipes
from torchloom.core.testing import assert_recipe_holds, recipes_of


@pytest.mark.parametrize("r", recipes_of(torchloom.hypernet.recipes), ids=lambda r: r.name)
def test_recipe_holds(r, tmp_path):
    assert_recipe_holds(r, tmp_path)
