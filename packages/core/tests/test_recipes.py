"""The recipe API: claims are judged by the runner from measured metrics, JSON is written."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from torchloom.core.recipes import Claim, Result, RunContext, recipe, recipes_in, run_recipe


@recipe(name="toy.pass", papers=(7,), claims=[Claim("acc", ">=", 0.5, paper="0.9 (Tab. 1)")])
def _passing(ctx: RunContext) -> Result:
    """A toy recipe whose metric depends on the mode (quick 0.75, full 0.8)."""
    acc = ctx.pick(0.75, 0.8)
    return Result(metrics={"acc": acc})


@recipe(
    name="toy.mixed",
    papers=(1, 2),
    claims=[Claim("loss", "<", 1.0), Claim("full_only", ">", 10.0, quick=False)],
)
def _mixed(ctx: RunContext) -> Result:
    return Result(metrics={"loss": 2.0, "full_only": 0.0})


def test_claim_comparisons() -> None:
    assert Claim("m", "<=", 1.0).check(1.0)
    assert not Claim("m", "<", 1.0).check(1.0)
    assert Claim("m", ">", 1.0).check(1.5)
    assert not Claim("m", ">=", 1.0).check(None)
    assert not Claim("m", ">=", 1.0).check(math.nan)
    with pytest.raises(ValueError, match="op must be one of"):
        Claim("m", "~", 1.0)  # type: ignore[arg-type]


def test_run_judges_claims_and_writes_json(tmp_path: Path) -> None:
    res = run_recipe(_passing, quick=True, out_dir=tmp_path, seed=3, show_progress=False)
    assert res.ok and res.claims[0].holds and res.claims[0].measured == 0.75
    data = json.loads((tmp_path / "toy.pass" / "result.json").read_text())
    assert data["ok"] is True
    assert data["config"]["seed"] == 3 and data["config"]["papers"] == [7]
    assert data["claims"][0]["paper"] == "0.9 (Tab. 1)"


def test_failing_claim_and_quick_only_checking(tmp_path: Path) -> None:
    res = run_recipe(_mixed, quick=True, out_dir=tmp_path, show_progress=False)
    loss, full_only = res.claims
    assert not loss.holds and loss.checked
    assert not full_only.checked  # reported but not judged in quick mode
    assert not res.ok
    res_full = run_recipe(_mixed, quick=False, out_dir=tmp_path, show_progress=False)
    assert res_full.claims[1].checked and not res_full.claims[1].holds


def test_claim_on_a_missing_peer_is_reported_not_checked(tmp_path: Path) -> None:
    @recipe(
        name="toy.peer",
        papers=(1,),
        claims=[
            Claim("vs_absent_peer", "<", 1.0, requires="no_such_peer_module_xyz"),
            Claim("vs_installed_peer", "<", 1.0, requires="torch"),
        ],
    )
    def r(ctx: RunContext) -> Result:
        return Result(metrics={"vs_installed_peer": 2.0})

    res = run_recipe(r, quick=False, out_dir=tmp_path, show_progress=False)
    absent, installed = res.claims
    assert not absent.checked and "no_such_peer_module_xyz" in absent.why_unchecked
    assert installed.checked and not installed.holds  # an installed peer is judged as usual
    assert not res.ok
    data = json.loads((tmp_path / "toy.peer" / "result.json").read_text())
    assert data["claims"][0]["why_unchecked"] == absent.why_unchecked


def test_missing_metric_fails_claim(tmp_path: Path) -> None:
    @recipe(name="toy.missing", papers=(1,), claims=[Claim("absent", ">", 0.0)])
    def r(ctx: RunContext) -> Result:
        return Result(metrics={"other": 1.0})

    res = run_recipe(r, out_dir=tmp_path, show_progress=False)
    assert res.claims[0].measured is None and not res.ok


def test_recipe_declaration_errors() -> None:
    with pytest.raises(ValueError, match="package.method"):
        recipe(name="nodot", papers=(1,), claims=[Claim("a", ">", 0)])
    with pytest.raises(ValueError, match="at least one paper"):
        recipe(name="a.b", papers=(), claims=[Claim("a", ">", 0)])
    with pytest.raises(ValueError, match="at least one claim"):
        recipe(name="a.b", papers=(1,), claims=[])


def test_recipe_must_return_result(tmp_path: Path) -> None:
    @recipe(name="toy.bad", papers=(1,), claims=[Claim("a", ">", 0)])
    def r(ctx: RunContext) -> Result:
        return {"a": 1}  # type: ignore[return-value]

    with pytest.raises(RuntimeError, match="returned dict, not Result"):
        run_recipe(r, out_dir=tmp_path, show_progress=False)


def test_context_seeding_is_reproducible(tmp_path: Path) -> None:
    draws = []
    for _ in range(2):
        ctx = RunContext(seed=11, out_dir=tmp_path, show_progress=False)
        draws.append(torch.rand(3, generator=ctx.generator))
    torch.testing.assert_close(draws[0], draws[1])
    ctx = RunContext(out_dir=tmp_path, show_progress=True)
    assert list(ctx.progress(range(4), description="x")) == [0, 1, 2, 3]


def test_recipes_in_module_collects_instances() -> None:
    found = recipes_in(sys.modules[__name__])
    assert {"toy.pass", "toy.mixed"} <= set(found)


def test_assert_recipe_holds(tmp_path: Path) -> None:
    from torchloom.core.testing import assert_recipe_holds, recipes_of

    assert {r.name for r in recipes_of(sys.modules[__name__])} >= {"toy.pass", "toy.mixed"}
    assert assert_recipe_holds(_passing, tmp_path).ok
    with pytest.raises(AssertionError, match="claims did not hold"):
        assert_recipe_holds(_mixed, tmp_path)


def test_recipe_params_marks_slow_and_rejects_unknown_names() -> None:
    from torchloom.core.testing import recipe_params

    this = sys.modules[__name__]
    params = recipe_params(this, slow={"toy.mixed"})
    by_id = {p.id: p for p in params}
    assert set(by_id) == {"toy.pass", "toy.mixed"}
    assert [m.name for m in by_id["toy.mixed"].marks] == ["slow"]
    assert not by_id["toy.pass"].marks
    with pytest.raises(ValueError, match="toy.renamed"):
        recipe_params(this, slow={"toy.renamed"})
