"""Testing helpers for torchloom packages: devices, gradcheck, hypothesis strategies.

The pytest plugin (:mod:`torchloom.core.testing.plugin`, registered through ``pytest11``)
provides the ``device`` fixture, autouse seeding and the hypothesis profiles ``ci``, ``dev`` and
``thorough``. Hypothesis strategies live in :mod:`torchloom.core.testing.strategies` (they need
``hypothesis`` installed).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from torchloom.core.recipes import Recipe, Result, recipes_in, run_recipe

__all__ = [
    "assert_central_differences",
    "assert_gradcheck",
    "assert_matches_cpu",
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


def assert_central_differences(
    loss: Callable[[], torch.Tensor],
    param: torch.Tensor,
    indices: Sequence[tuple[int, ...]],
    eps: float,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-9,
) -> None:
    """Assert that the autograd gradient of ``loss()`` in ``param`` equals central differences.

    For losses :func:`assert_gradcheck` cannot take: a closure over modules whose forward runs
    an iterative solve (implicit gradients), where only a few entries can be afforded and the
    step ``eps`` must exceed the solver's own tolerance. Each entry ``param[idx]`` is set to
    ``± eps`` around its value in place and restored exactly; the check is
    ``|g − fd| <= max(rtol · |fd|, atol)`` (as ``pytest.approx``).

    Args:
        loss: evaluates the scalar loss (called ``2 len(indices) + 1`` times).
        param: a leaf tensor ``loss`` depends on (a parameter).
        indices: entries of ``param`` to check.
        eps: central-difference step.
        rtol: relative tolerance.
        atol: absolute tolerance.
    """
    (g,) = torch.autograd.grad(loss(), param)
    for idx in indices:
        with torch.no_grad():
            orig = param[idx].clone()
            param[idx] += eps
            lp = float(loss())
            param[idx] -= 2 * eps
            lm = float(loss())
            param[idx] = orig  # exactly: ``+ eps − 2 eps + eps`` can be off by an ulp
        fd, got = (lp - lm) / (2 * eps), float(g[idx])
        if not abs(got - fd) <= max(rtol * abs(fd), atol):
            raise AssertionError(
                f"gradient at {idx}: autograd {got:.8g}, central differences {fd:.8g} "
                f"(eps {eps:g}, rtol {rtol:g}, atol {atol:g})"
            )


def _to_device(obj: Any, dev: torch.device, grad: bool) -> Any:
    """A fresh copy of ``obj`` on ``dev``: tensors become leaves (floating ones track grad)."""
    if isinstance(obj, torch.nn.Module):
        return copy.deepcopy(obj).to(dev)
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to(dev)
        return t.requires_grad_(grad) if t.is_floating_point() else t
    if isinstance(obj, list | tuple):
        return type(obj)(_to_device(o, dev, grad) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, dev, grad) for k, v in obj.items()}
    return obj


def _leaves(obj: Any) -> list[tuple[str, torch.Tensor]]:
    """Named tensors whose gradients are compared: floating input tensors, module parameters."""
    if isinstance(obj, torch.nn.Module):
        return [(n, p) for n, p in obj.named_parameters() if p.requires_grad]
    if isinstance(obj, torch.Tensor):
        return [("", obj)] if obj.requires_grad else []
    if isinstance(obj, list | tuple):
        return [(f"[{i}]{n}", t) for i, o in enumerate(obj) for n, t in _leaves(o)]
    if isinstance(obj, dict):
        return [(f"[{k!r}]{n}", t) for k, o in obj.items() for n, t in _leaves(o)]
    return []


def _prefixed(prefix: str) -> Callable[[str], str]:
    return lambda message: f"{prefix}: {message}"


def assert_matches_cpu(
    fn: Callable[..., Any],
    args: Sequence[Any],
    device: torch.device | str,
    *,
    grad: bool = True,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> None:
    """Run ``fn(*args)`` on the CPU and on ``device`` and compare outputs and gradients.

    ``args`` may hold tensors, modules and nested lists/tuples/dicts of them (other values pass
    through); each run gets fresh copies (modules deep-copied, tensors detached, floating ones
    made leaves that track grad when ``grad``). Every tensor output must live on ``device`` and
    match the CPU output. With ``grad``, the sum of all floating outputs times fixed random
    weights is backpropagated and the gradients of floating inputs and module parameters
    compared (a leaf without gradient must lack one on both devices). Use float64 inputs and
    modules for tight tolerances. ``fn`` runs with the global seed set to 0 on both runs, so
    host draws agree; draws from a device's own generator do not. Catches CPU-only code paths:
    tensors created without ``device=``, host generators, kernels that refuse a mode on CUDA.

    Args:
        fn: the computation; its output is a tensor or a (nested) tuple/list/dict of tensors.
        args: positional arguments of ``fn``.
        device: the device to compare against the CPU (on ``cpu`` this checks determinism).
        grad: also compare gradients.
        atol: absolute tolerance.
        rtol: relative tolerance.

    Raises:
        AssertionError: naming the output or gradient that differs.
    """
    dev = torch.device(device)
    runs = []
    for d in (torch.device("cpu"), dev):
        call_args = [_to_device(a, d, grad) for a in args]
        state = torch.random.get_rng_state()
        torch.manual_seed(0)  # identical host draws inside fn on both runs
        try:
            out = fn(*call_args)
        finally:
            torch.random.set_rng_state(state)
        flat, _ = torch.utils._pytree.tree_flatten(out)
        outs = [o for o in flat if isinstance(o, torch.Tensor)]
        for i, o in enumerate(outs):
            if o.device.type != d.type:
                raise AssertionError(f"output {i} is on {o.device}, expected {d}")
        grads: dict[str, torch.Tensor | None] = {}
        if grad:
            weights = torch.Generator().manual_seed(1)
            terms = [
                (o * torch.rand(o.shape, generator=weights, dtype=o.dtype).to(d)).sum()
                for o in outs
                if o.is_floating_point() and o.requires_grad
            ]
            if terms:
                torch.autograd.backward(terms)
            grads = {n: t.grad for n, t in _leaves(call_args)}
        runs.append(([o.detach().cpu() for o in outs], grads))
    (cpu_outs, cpu_grads), (dev_outs, dev_grads) = runs
    if len(cpu_outs) != len(dev_outs):
        raise AssertionError(f"{len(dev_outs)} outputs on {dev}, {len(cpu_outs)} on the CPU")
    for i, (a, b) in enumerate(zip(cpu_outs, dev_outs, strict=True)):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=_prefixed(f"output {i}"))
    for name, g_cpu in cpu_grads.items():
        g_dev = dev_grads[name]
        if (g_cpu is None) != (g_dev is None):
            raise AssertionError(f"gradient of {name or 'input'}: None on one device only")
        if g_cpu is not None and g_dev is not None:
            torch.testing.assert_close(
                g_dev.cpu(), g_cpu, atol=atol, rtol=rtol, msg=_prefixed(f"grad {name}")
            )


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
