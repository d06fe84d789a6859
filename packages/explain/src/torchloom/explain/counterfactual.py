"""Robust counterfactual explanations with probabilistic guarantees (Hamman, Noorani, Mishra,
Magazzeni & Dutta, ICML 2023): the Stability measure and the T-Rex search.

A counterfactual ``x'`` of an input classified ``0`` is a nearby point the model classifies ``1``.
Plain counterfactuals sit just across the decision boundary and become invalid as soon as the
model is retrained. The paper's *stability* of a point under the model's probability ``m`` is

    R̂_{k,σ²}(x, m) = (1/k) Σ_i [ m(x_i) − |m(x) − m(x_i)| ],   x_i ~ N(x, σ² I),

high when ``m`` is confidently high *and* flat around ``x``; counterfactuals with ``R̂ ≥ τ`` stay
valid under model changes with high probability. T-Rex moves a counterfactual by gradient ascent
on ``R̂`` until it reaches ``τ``.

Shapes: inputs ``(B, D)``; ``model`` maps ``(N, D)`` to probabilities of the target class ``(N,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torchloom.core import rng
from torchloom.core.checks import check_ndim, check_positive, check_probability

__all__ = [
    "DiceResult",
    "TRexResult",
    "dice_counterfactuals",
    "nearest_counterfactual",
    "stability",
    "stability_lipschitz_bound",
    "trex",
    "wachter_counterfactual",
]

ProbModel = Callable[[torch.Tensor], torch.Tensor]


def _probs(model: ProbModel, x: torch.Tensor) -> torch.Tensor:
    p = model(x)
    if p.shape != x.shape[:1]:
        raise ValueError(
            f"model must map (N, D) inputs to target-class probabilities (N,), "
            f"got output shape {tuple(p.shape)} for input {tuple(x.shape)}"
        )
    return p


def stability(
    model: ProbModel,
    x: torch.Tensor,
    sigma: float,
    k: int = 100,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's estimator ``R̂_{k,σ²}(x, m)`` for each row of ``x (B, D)`` -> ``(B,)``.

    ``noise (k, B, D)`` of standard normals may be passed to reuse the same samples (T-Rex does,
    so that its ascent is on a fixed, differentiable objective).
    """
    check_ndim(x, "x", 2, "(B, D)")
    check_positive(sigma, "sigma")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if noise is None:
        noise = rng.randn((k, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    elif noise.shape[1:] != x.shape:
        raise ValueError(
            f"noise must have shape (k, {x.shape[0]}, {x.shape[1]}), got {tuple(noise.shape)}"
        )
    kk, b, d = noise.shape
    samples = (x.unsqueeze(0) + sigma * noise).reshape(kk * b, d)
    m_i = _probs(model, samples).reshape(kk, b)
    m_x = _probs(model, x)
    return (m_i - (m_x.unsqueeze(0) - m_i).abs()).mean(0)


def stability_lipschitz_bound(
    m_x: torch.Tensor, lipschitz: float, sigma: float, dim: int
) -> torch.Tensor:
    """Lower bound on the expected stability of a model that is ``lipschitz``-Lipschitz:
    ``E[m(X) − |m(x) − m(X)|] ≥ m(x) − 2 L E‖X − x‖`` with ``E‖X − x‖ = σ√2 Γ((d+1)/2)/Γ(d/2)``
    (the chi mean), requiring no sampling. ``m_x (B,)`` -> ``(B,)``."""
    check_positive(lipschitz, "lipschitz", strict=False)
    check_positive(sigma, "sigma")
    chi_mean = sigma * math.sqrt(2) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))
    return m_x - 2 * lipschitz * chi_mean


def wachter_counterfactual(
    model: ProbModel,
    x: torch.Tensor,
    threshold: float = 0.5,
    lam: float = 1.0,
    lr: float = 0.05,
    steps: int = 200,
    max_doublings: int = 8,
    prediction_loss: str = "squared",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wachter et al.'s counterfactual: ``argmin λ ℓ(m(x')) + ‖x' − x‖²``, doubling ``λ`` for
    rows still invalid. Returns ``x' (B, D)`` and validity ``m(x') > threshold`` ``(B,)``.

    ``prediction_loss="squared"`` is Wachter's ``ℓ = (m − 1)²``; its gradient vanishes where the
    model is saturated (``m ≈ 0``), so those queries get no counterfactual. ``"log"`` uses
    ``ℓ = −log m`` (cross-entropy towards the target class), whose gradient in the logit stays
    ``≈ 1`` there."""
    check_ndim(x, "x", 2, "(B, D)")
    check_probability(threshold, "threshold")
    if prediction_loss not in ("squared", "log"):
        raise ValueError(f"prediction_loss must be 'squared' or 'log', got {prediction_loss!r}")
    x0 = x.detach()
    cf = x0.clone()
    lam_row = torch.full((x.shape[0],), float(lam), dtype=x.dtype, device=x.device)
    valid = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(max_doublings + 1):
        z = cf.clone().requires_grad_()
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            p = _probs(model, z)
            if prediction_loss == "squared":
                pred = (p - 1) ** 2
            else:  # tiny floor: a probability that underflowed to 0 must not give inf
                pred = -p.clamp_min(torch.finfo(p.dtype).tiny).log()
            loss = (lam_row * pred + ((z - x0) ** 2).sum(1)).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            new_valid = _probs(model, z) > threshold
            # keep each row's first valid (closest) solution
            cf = torch.where(valid.unsqueeze(1), cf, z.detach())
            valid = valid | new_valid
        if bool(valid.all()):
            break
        lam_row = torch.where(valid, lam_row, 2 * lam_row)
    return cf, valid


def nearest_counterfactual(
    model: ProbModel,
    x: torch.Tensor,
    threshold: float = 0.5,
    margin: float = 0.01,
    iters: int = 30,
    **wachter_kw: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The closest counterfactual along Wachter's path: bisection on the segment ``x → x'`` for
    the point nearest ``x`` with ``m > threshold + margin``. This is the "plain" minimum-distance
    counterfactual that sits just across the boundary. Returns ``(x' (B, D), valid (B,))``."""
    cf, valid = wachter_counterfactual(model, x, threshold=threshold + margin, **wachter_kw)
    x0 = x.detach()
    lo = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
    hi = torch.ones_like(lo)
    with torch.no_grad():
        for _ in range(iters):
            mid = (lo + hi) / 2
            ok = (_probs(model, x0 + mid * (cf - x0)) > threshold + margin).unsqueeze(1)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
    return torch.where(valid.unsqueeze(1), x0 + hi * (cf - x0), cf), valid


@dataclass(frozen=True)
class TRexResult:
    """T-Rex output: moved counterfactuals ``x (B, D)``, their stability ``(B,)`` on the search's
    own estimator, whether they reached ``tau`` ``(B,)``, and the steps each took ``(B,)``."""

    x: torch.Tensor
    stability: torch.Tensor
    reached: torch.Tensor
    steps: torch.Tensor


def trex(
    model: ProbModel,
    x_cf: torch.Tensor,
    tau: float,
    sigma: float,
    k: int = 100,
    lr: float = 0.02,
    max_steps: int = 500,
    generator: torch.Generator | None = None,
) -> TRexResult:
    """T-Rex: gradient ascent on ``R̂_{k,σ²}`` from each counterfactual until ``R̂ ≥ τ``.

    Rows that reach ``τ`` stop moving (so the distance cost stays as small as the search allows);
    the noise samples are drawn once, making ``R̂`` a deterministic, differentiable objective.
    """
    check_ndim(x_cf, "x_cf", 2, "(B, D)")
    check_probability(tau, "tau")
    check_positive(sigma, "sigma")
    noise = rng.randn((k, *x_cf.shape), generator=generator, dtype=x_cf.dtype, device=x_cf.device)
    x = x_cf.detach().clone()
    steps = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(max_steps):
        z = x.clone().requires_grad_()
        r = stability(model, z, sigma, k, noise=noise)
        active = r.detach() < tau
        if not bool(active.any()):
            break
        (grad,) = torch.autograd.grad(r.sum(), z)
        # normalised ascent steps: progress does not stall where the gradient is tiny
        step = lr * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        x = torch.where(active.unsqueeze(1), x + step, x)
        steps += active.long()
    with torch.no_grad():
        r = stability(model, x, sigma, k, noise=noise)
    return TRexResult(x, r, r >= tau, steps)


@dataclass(frozen=True)
class DiceResult:
    """DiCE output on ``B`` queries: counterfactuals ``x (B, D)`` (the query itself where DiCE
    returned none), ``found (B,)`` (DiCE returned a counterfactual) and the wall time in seconds
    of the whole call (``seconds / B`` per instance)."""

    x: torch.Tensor
    found: torch.Tensor
    seconds: float


def dice_counterfactuals(
    model: ProbModel,
    x_train: torch.Tensor,
    queries: torch.Tensor,
    method: str = "genetic",
    seed: int = 0,
) -> DiceResult:
    """One DiCE counterfactual (Mothilal, Sharma & Tan, FAT* 2020; the ``dice-ml`` package) of
    the opposite class for each row of ``queries (B, D)``, on the same probability ``model``.

    DiCE's model-agnostic ``method`` (``"genetic"`` or ``"random"``) is run through a
    scikit-learn-style ``predict_proba`` wrapper around ``model``; ``x_train (N, D)`` is the
    data DiCE draws feature ranges (and, for ``"genetic"``, its KD-tree initialisation) from.
    ``dice-ml`` is optional: ``ImportError`` is raised when it is not installed.

    Args:
        model: maps ``(N, D)`` inputs to target-class probabilities ``(N,)``.
        x_train: ``(N, D)`` training inputs.
        queries: ``(B, D)`` instances to explain.
        method: ``"genetic"`` or ``"random"``.
        seed: seed of numpy's and Python's global generators during the call (DiCE draws from
            them); the caller's global states are restored afterwards.

    Returns:
        A :class:`DiceResult`; ``found`` rows need not be valid, check ``model(x) > 0.5``.
    """
    import random
    import time

    import numpy as np

    check_ndim(x_train, "x_train", 2, "(N, D)")
    check_ndim(queries, "queries", 2, "(B, D)")
    if queries.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"queries must have D={x_train.shape[1]} features like x_train, got {queries.shape[1]}"
        )
    if method not in ("genetic", "random"):
        raise ValueError(f"method must be 'genetic' or 'random', got {method!r}")
    import dice_ml
    import pandas as pd
    from raiutils.exceptions import UserConfigValidationException

    cols = [f"x{i}" for i in range(x_train.shape[1])]
    yp = (_probs(model, x_train) > 0.5).long().cpu().numpy()
    frame = pd.DataFrame(x_train.detach().cpu().double().numpy(), columns=cols)
    frame["label"] = yp

    class _Wrapped:
        def predict_proba(self, values: Any) -> Any:
            arr = np.array(values, dtype=np.float64)  # a writable copy
            with torch.no_grad():
                z = torch.as_tensor(arr, dtype=queries.dtype, device=queries.device)
                p = _probs(model, z).double().cpu().numpy()
            return np.stack([1 - p, p], 1)

        def predict(self, values: Any) -> Any:
            return (self.predict_proba(values)[:, 1] > 0.5).astype(np.int64)

    data = dice_ml.Data(dataframe=frame, continuous_features=cols, outcome_name="label")
    wrapped = dice_ml.Model(model=_Wrapped(), backend="sklearn")
    explainer = dice_ml.Dice(data, wrapped, method=method)
    out = queries.detach().clone()
    found = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
    # DiCE draws from numpy's legacy global generator and Python's `random`: seed both and
    # restore the caller's states afterwards
    state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)
    start = time.perf_counter()
    try:
        for i in range(len(queries)):
            q = pd.DataFrame(queries[i : i + 1].detach().cpu().double().numpy(), columns=cols)
            kw: dict[str, Any] = {"random_seed": seed + i} if method == "random" else {}
            try:
                res = explainer.generate_counterfactuals(
                    q, total_CFs=1, desired_class="opposite", verbose=False, **kw
                )
            except UserConfigValidationException:  # raised when DiCE finds none
                continue
            cfs = res.cf_examples_list[0].final_cfs_df
            if cfs is None or len(cfs) == 0:
                continue
            row = torch.as_tensor(cfs[cols].to_numpy(np.float64)[0], dtype=queries.dtype)
            out[i] = row.to(queries.device)
            found[i] = True
    finally:
        seconds = time.perf_counter() - start
        np.random.set_state(state)  # noqa: NPY002
        random.setstate(py_state)
    return DiceResult(out, found, seconds)
