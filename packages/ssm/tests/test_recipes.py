"""Every recipe of the package runs in quick mode, its checked claims hold, files are written."""

import json

import pytest

from torchloom.core.recipes import Recipe, recipes_in
from torchloom.core.testing import assert_recipe_holds
from torchloom.ssm import recipes as ssm_recipes

RECIPES = recipes_in(ssm_recipes)


def test_recipes_registered() -> None:
    assert set(RECIPES) == {"ssm.lssl", "ssm.pointer", "ssm.seqboat"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name: str, tmp_path) -> None:
    r: Recipe = RECIPES[name]
    result = assert_recipe_holds(r, tmp_path)
    assert any(c.checked for c in result.claims), "each recipe checks a claim in quick mode"
    record = json.loads((tmp_path / name / "result.json").read_text())
    assert record["recipe"] == name and result.figures
    assert result.tables and all(rows for rows in result.tables.values())


def test_marked_recall_targets_by_brute_force() -> None:
    import torch

    x, y, retrieval = ssm_recipes.marked_recall(50, 17, 3, 5, torch.Generator().manual_seed(0))
    assert x.shape == (50, 17, 6) and y.shape == retrieval.shape == (50, 17)
    for b in range(50):
        marked = [t for t in range(17) if x[b, t, 0] > 0]
        values = x[b, :, 1:].argmax(-1).tolist()
        assert len(marked) == 3
        for t in range(17):
            is_retrieval = t in marked and t != marked[0]
            assert bool(retrieval[b, t]) == is_retrieval
            if is_retrieval:
                prev = max(s for s in marked if s < t)
                assert int(y[b, t]) == values[prev]
            else:
                assert int(y[b, t]) == values[t]


def test_delayed_recall_cue_only_at_step_zero() -> None:
    import torch

    x, y = ssm_recipes.delayed_recall(40, 30, 4, torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 0].argmax(-1), y) and bool((x[:, 0].sum(-1) == 1).all())
    assert float(x[:, 1:].abs().max()) < 0.1  # only small noise after the cue


def test_param_groups_split_ssm_parameters() -> None:
    from torchloom.ssm import LSSLModel

    model = LSSLModel(2, 3, d_model=4, n_layers=2, state_dim=5, train_A=True)
    fast, slow = ssm_recipes._param_groups(model, 1e-2, 1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in slow["params"]} == {"A", "B", "log_dt"}
    assert slow["lr"] == 1e-3 and slow["weight_decay"] == 0.0 and fast["lr"] == 1e-2
    assert len(fast["params"]) + len(slow["params"]) == len(list(model.parameters()))


def test_matmul_flops_match_flop_counter() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lin = torch.nn.Linear(5, 7)
    a, b = torch.randn(3, 4, 6), torch.randn(3, 6, 2)

    def fn() -> object:
        return lin(torch.randn(9, 5)).sum() + (a @ b).sum() + torch.baddbmm(a @ b, a, b).sum()

    with FlopCounterMode(display=False) as counter:
        fn()
    assert ssm_recipes._matmul_flops(fn) == counter.get_total_flops()
