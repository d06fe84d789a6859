"""Every recipe of torchloom.hypernet runs in quick mode and its checked claims hold."""

from __future__ import annotations

import pytest

import torchloom.hypernet.recipes
from torchloom.core.testing import assert_recipe_holds, recipes_of

# quick runs of these take minutes on 2 shared cores: `nox -s slow` checks them
_SLOW: set[str] = set()


@pytest.mark.parametrize(
    "r",
    [
        pytest.param(r, id=r.name, marks=[pytest.mark.slow] if r.name in _SLOW else [])
        for r in recipes_of(torchloom.hypernet.recipes)
    ],
)
def test_recipe_holds(r, tmp_path):
    assert_recipe_holds(r, tmp_path)
