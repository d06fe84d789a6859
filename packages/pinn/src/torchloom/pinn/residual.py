"""Residual building blocks and the Adam → L-BFGS training loop shared by every PINN here.

- Derivatives of network outputs with respect to their inputs (:func:`gradient`,
  :func:`partial`, :func:`laplacian`) via ``torch.autograd.grad`` with ``create_graph=True``,
  so residuals can be trained on.
- Boundary conditions: soft (:func:`soft_boundary_loss`, a mean squared misfit added to the
  loss) and hard (:func:`hard_dirichlet`, ``u = g + d · N`` with ``d`` vanishing on the
  boundary, so the condition holds exactly whatever the network outputs).
- :func:`train_pinn`: Adam, then L-BFGS with a strong-Wolfe line search and tolerances set so
  that it does not stop after a handful of iterations (a common complaint with default
  settings); a per-term loss history; a non-finite loss term stops training with a
  :class:`NonFiniteLossError` that names the term and the step instead of propagating NaN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive

__all__ = [
    "MLP",
    "NonFiniteLossError",
    "TrainHistory",
    "gradient",
    "hard_dirichlet",
    "laplacian",
    "partial",
    "soft_boundary_loss",
    "train_pinn",
]


class MLP(nn.Module):
    """Fully connected network ``R^d_in → R^d_out`` with a smooth activation (``tanh``).

    Args:
        d_in: input dimension.
        d_out: output dimension.
        width: hidden width.
        depth: number of hidden layers.
        activation: element-wise nonlinearity (default ``torch.tanh``).

    Shapes:
        x: ``(N, d_in)`` → ``(N, d_out)``.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int = 32,
        depth: int = 3,
        activation: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
    ) -> None:
        super().__init__()
        check_int(d_in, "d_in")
        check_int(d_out, "d_out")
        check_int(width, "width")
        check_int(depth, "depth")
        dims = [d_in] + [width] * depth + [d_out]
        linears = [nn.Linear(a, b) for a, b in itertools.pairwise(dims)]
        for layer in linears:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(linears)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network.

        Args:
            x: inputs ``(N, d_in)``.

        Returns:
            Outputs ``(N, d_out)``.
        """
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        out: torch.Tensor = self.layers[-1](x)
        return out


def gradient(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of a pointwise field ``y(x)`` with respect to the inputs, keeping the graph.

    Args:
        y: field values ``(N,)`` or ``(N, 1)``, computed from ``x`` row by row.
        x: inputs ``(N, D)`` with ``requires_grad=True``.

    Returns:
        ``∂y/∂x`` of shape ``(N, D)`` (zeros when ``y`` does not depend on ``x``).
    """
    check_floating(y, "y")
    check_floating(x, "x")
    if not x.requires_grad:
        raise ValueError("x must require grad to differentiate a field with respect to it")
    if (y.dim() == 2 and y.shape[1] != 1) or y.dim() > 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape (N,) or (N, 1) with N = {x.shape[0]} rows of x, "
            f"got {tuple(y.shape)}"
        )
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def partial(y: torch.Tensor, x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Mixed partial derivative ``∂^k y / ∂x_{d1} … ∂x_{dk}``.

    Args:
        y: field values ``(N,)`` or ``(N, 1)``.
        x: inputs ``(N, D)`` with ``requires_grad=True``.
        dims: input coordinates to differentiate by, in order (e.g. ``(0, 0)`` for ``u_xx``).

    Returns:
        The derivative, shape ``(N, 1)``.
    """
    out = y.reshape(-1, 1)
    for d in dims:
        if not 0 <= d < x.shape[1]:
            raise ValueError(f"dims entries must lie in [0, {x.shape[1]}), got {d}")
        out = gradient(out, x)[:, d : d + 1]
    return out


def laplacian(y: torch.Tensor, x: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
    """Laplacian ``Σ_d ∂²y/∂x_d²`` over ``dims`` (all coordinates by default).

    Args:
        y: field values ``(N,)`` or ``(N, 1)``.
        x: inputs ``(N, D)`` with ``requires_grad=True``.
        dims: coordinates to include (e.g. the spatial ones only).

    Returns:
        Shape ``(N, 1)``.
    """
    g = gradient(y.reshape(-1, 1), x)
    use = range(x.shape[1]) if dims is None else dims
    return sum(
        (gradient(g[:, d : d + 1], x)[:, d : d + 1] for d in use), torch.zeros_like(g[:, :1])
    )


def hard_dirichlet(
    net_out: torch.Tensor, distance: torch.Tensor, boundary_value: torch.Tensor
) -> torch.Tensor:
    """Hard Dirichlet constraint ``u = g + d · N``.

    With ``d = 0`` exactly on the boundary and ``g`` equal to the prescribed value there, the
    condition holds for any network output ``N``.

    Args:
        net_out: raw network output ``N(x)``, shape ``(N, 1)``.
        distance: a function vanishing on the constrained boundary, e.g. ``(x − a)(b − x)``,
            shape ``(N, 1)``.
        boundary_value: an extension ``g(x)`` of the boundary data, shape ``(N, 1)``.

    Returns:
        ``u(x)`` of shape ``(N, 1)``.
    """
    for name, t in (
        ("net_out", net_out),
        ("distance", distance),
        ("boundary_value", boundary_value),
    ):
        check_floating(t, name)
    if not net_out.shape == distance.shape == boundary_value.shape:
        raise ValueError(
            "net_out, distance and boundary_value must have the same shape, got "
            f"{tuple(net_out.shape)}, {tuple(distance.shape)}, {tuple(boundary_value.shape)}"
        )
    return boundary_value + distance * net_out


def soft_boundary_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft boundary (or data) condition: mean squared misfit ``mean((u − g)²)``.

    Args:
        predicted: model values at boundary points, ``(N, …)``.
        target: prescribed values, same shape.

    Returns:
        Scalar loss.
    """
    check_floating(predicted, "predicted")
    check_floating(target, "target")
    if predicted.shape != target.shape:
        raise ValueError(
            f"predicted and target must have the same shape, got {tuple(predicted.shape)} "
            f"and {tuple(target.shape)}"
        )
    return ((predicted - target) ** 2).mean()


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN/Inf during PINN training.

    Attributes:
        term: name of the offending loss term.
        step: global optimisation step (Adam steps first, then L-BFGS iterations).
        phase: ``"adam"`` or ``"lbfgs"``.
    """

    def __init__(self, term: str, step: int, phase: str, value: float) -> None:
        super().__init__(
            f"loss term {term!r} is {value} at {phase} step {step}; training stopped "
            + ("before the update" if phase == "adam" else "at a line-search trial point")
            + " (try float64, a smaller learning rate, or check the residual's closures for "
            "negative arguments of sqrt/log/pow)"
        )
        self.term = term
        self.step = step
        self.phase = phase


@dataclass
class TrainHistory:
    """Per-step loss history of :func:`train_pinn`.

    Attributes:
        total: weighted total loss per step.
        terms: unweighted value of every loss term per step.
        phase: ``"adam"`` or ``"lbfgs"`` for each step.
    """

    total: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    phase: list[str] = field(default_factory=list)

    def last(self) -> dict[str, float]:
        """The last recorded values.

        Returns:
            ``{term: value}`` for every term, plus ``"total"``.
        """
        out = {k: v[-1] for k, v in self.terms.items() if v}
        if self.total:
            out["total"] = self.total[-1]
        return out

    def breakdown(self) -> str:
        """The last step's loss breakdown as one log line.

        Returns:
            ``"total=… | term=… …"``.
        """
        last = self.last()
        parts = [f"{k}={v:.3e}" for k, v in last.items() if k != "total"]
        return f"total={last.get('total', float('nan')):.3e} | " + " ".join(parts)


def _weighted(
    terms: Mapping[str, torch.Tensor], weights: Mapping[str, float], step: int, phase: str
) -> torch.Tensor:
    total: torch.Tensor | None = None
    for name, value in terms.items():
        if value.dim() != 0:
            raise ValueError(f"loss term {name!r} must be a scalar, got shape {tuple(value.shape)}")
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLossError(name, step, phase, v)
        w = weights.get(name, 1.0)
        total = value * w if total is None else total + value * w
    if total is None:
        raise ValueError("loss_fn must return at least one loss term")
    return total


def _record(
    hist: TrainHistory, terms: Mapping[str, torch.Tensor], total: float, phase: str
) -> None:
    hist.total.append(total)
    hist.phase.append(phase)
    for k, v in terms.items():
        hist.terms.setdefault(k, []).append(float(v.detach()))


def train_pinn(
    loss_fn: Callable[[], Mapping[str, torch.Tensor]],
    params: Iterable[torch.nn.Parameter] | Iterable[torch.Tensor],
    *,
    adam_steps: int = 1000,
    lbfgs_steps: int = 0,
    lr: float = 1e-3,
    weights: Mapping[str, float] | None = None,
    lr_decay: float = 1.0,
    progress: Callable[..., Iterator[int]] | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 0,
    lbfgs_lr: float = 1.0,
) -> TrainHistory:
    """Minimise ``Σ_k w_k · L_k`` with Adam, then L-BFGS.

    ``loss_fn()`` evaluates every loss term (it resamples collocation points itself if it
    wants to). Each term is checked before the update: a NaN/Inf raises
    :class:`NonFiniteLossError` naming the term and the step.

    Args:
        loss_fn: returns a mapping ``name → scalar tensor``.
        params: trainable tensors.
        adam_steps: number of Adam steps.
        lbfgs_steps: number of L-BFGS iterations after Adam (0 to skip); ``tolerance_grad`` and
            ``tolerance_change`` are set to 0, so it runs its iterations unless the line search
            can no longer decrease the loss.
        lr: Adam learning rate.
        weights: weight per term name (default 1).
        lr_decay: multiplicative Adam learning-rate decay per step (exponential schedule).
        progress: optional wrapper ``progress(iterable, total=…, description=…)`` drawing a
            progress bar (e.g. ``RunContext.progress``).
        log: optional line logger for the loss-term breakdown.
        log_every: log the breakdown every this many steps (0: only at the end of each phase).
        lbfgs_lr: L-BFGS step length scale.

    Returns:
        The :class:`TrainHistory`: one entry per Adam step (the loss before that step), one per
        L-BFGS iteration (the loss at the iterate it started from) and one for the final
        iterate.
    """
    params = [p for p in params]
    if not params:
        raise ValueError("params must contain at least one tensor")
    check_int(adam_steps, "adam_steps", minimum=0)
    check_int(lbfgs_steps, "lbfgs_steps", minimum=0)
    check_positive(lr, "lr")
    check_positive(lr_decay, "lr_decay")
    w = dict(weights or {})
    hist = TrainHistory()

    def steps(n: int, desc: str) -> Iterable[int]:
        return progress(range(n), total=n, description=desc) if progress else range(n)

    def maybe_log(i: int, phase: str) -> None:
        if log is not None and log_every and (i + 1) % log_every == 0:
            log(f"[{phase} {i + 1}] {hist.breakdown()}")

    if adam_steps:
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay)
        for i in steps(adam_steps, "adam"):
            opt.zero_grad(set_to_none=True)
            terms = loss_fn()
            total = _weighted(terms, w, i, "adam")
            total.backward()
            opt.step()
            sched.step()
            _record(hist, terms, float(total.detach()), "adam")
            maybe_log(i, "adam")
        if log is not None:
            log(f"[adam done] {hist.breakdown()}")
    if lbfgs_steps:
        lbfgs = torch.optim.LBFGS(
            params,
            lr=lbfgs_lr,
            max_iter=1,
            max_eval=25,  # with max_iter=1 the default (max_iter·5/4 = 1) disables the line search
            history_size=50,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
        counter = [adam_steps]
        evals: list[tuple[dict[str, torch.Tensor], float]] = []

        def closure() -> torch.Tensor:
            lbfgs.zero_grad(set_to_none=True)
            terms = dict(loss_fn())
            total = _weighted(terms, w, counter[0], "lbfgs")
            total.backward()
            evals.append((terms, float(total.detach())))
            return total

        for i in steps(lbfgs_steps, "l-bfgs"):
            counter[0] = adam_steps + i
            evals.clear()
            lbfgs.step(closure)
            _record(hist, evals[0][0], evals[0][1], "lbfgs")  # the iterate the step started from
            maybe_log(i, "lbfgs")
        counter[0] = adam_steps + lbfgs_steps
        terms = dict(loss_fn())  # the final iterate
        _record(hist, terms, float(_weighted(terms, w, counter[0], "lbfgs").detach()), "lbfgs")
        if log is not None:
            log(f"[lbfgs done] {hist.breakdown()}")
    return hist
