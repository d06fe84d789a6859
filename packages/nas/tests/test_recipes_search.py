"""Every search recipe (RARTS, DARTS-PT, sharpDARTS, SD-DARTS) runs in quick mode and its
checked claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchloom.core.recipes import Recipe
from torchloom.core.testing import assert_recipe_holds, recipes_of
from torchloom.nas.recipes import search

RECIPES = recipes_of(search)


def test_all_search_recipes_are_registered() -> None:
    assert {r.name for r in RECIPES} == {
        "nas.rarts",
        "nas.selection",
        "nas.sharpdarts",
        "nas.sd-darts",
    }


@pytest.mark.parametrize("r", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_quick(r: Recipe, tmp_path: Path) -> None:
    assert_recipe_holds(r, tmp_path)


def test_cifar_path_feeds_a_cifar_supernet(tmp_path: Path) -> None:
    import pickle

    import numpy as np
    import torch

    from torchloom.nas.supernet import Supernet

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, 8).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    task = search.cifar_batches(tmp_path, batch_size=4)
    assert task.in_channels == 3
    assert sum(len(y) for _, y in task.search_train + task.search_val) == 40
    x, _ = task.search_train[0]
    assert x.shape == (4, 3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    net = Supernet(C=4, layers=3, steps=2, in_channels=3, ops=search.SEARCH_OPS)
    assert net(x).shape == (4, 10)
    assert torch.isfinite(net(x)).all()
