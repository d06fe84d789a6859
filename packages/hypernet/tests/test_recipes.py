"""Every recipe of torchloom.hypernet runs in quick mode and its checked claims hold."""

from __future__ import annotations

import pytest

import torchloom.hypernet.recipes
from torchloom.core.testing import assert_recipe_holds, recipe_params


@pytest.mark.parametrize("r", recipe_params(torchloom.hypernet.recipes))
def test_recipe_holds(r, tmp_path):
    assert_recipe_holds(r, tmp_path)
