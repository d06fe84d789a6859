"""Leaky integrate-and-fire neurons, multi-step over ``(T, B, *)`` and single-step.

The dynamics follow SLTT (Meng et al., ICCV 2023, Eq. 1-2). With ``v[t]`` the membrane potential
*after* the reset and ``u[t]`` the one before it::

    u[t] = λ · v[t-1] + x[t]                     (charge; λ = decay, v[-1] = 0)
    s[t] = H(u[t] - θ)                           (fire; surrogate backward)
    v[t] = u[t] - θ · s[t]                       (soft reset, "subtract")
    v[t] = u[t] · (1 - s[t])                     (hard reset, "to zero")

so ``u[t] = λ (u[t-1] - θ s[t-1]) + x[t]`` for the soft reset and
``u[t] = λ u[t-1] (1 - s[t-1]) + x[t]`` for the hard one. ``IF`` is ``λ = 1``; ``PLIF`` (Fang et
al., 2021) learns ``λ = sigmoid(w)``. ``detach_reset`` cuts the gradient through the reset term.

Every neuron is a :class:`StepModule`: in ``"multi"`` step mode ``forward`` takes a whole sequence
``(T, B, *)`` and starts from rest; in ``"single"`` mode it takes one step ``(B, *)`` and keeps its
potential in ``self.v`` until :func:`reset_states` (an input whose shape differs from the stored
state is an error, never a silent reset). SLTT training uses the single-step mode, see
:mod:`torchloom.snn.sltt`.

Backends for the multi-step path (chosen explicitly): ``"loop"`` runs the recurrence with ordinary
autograd; ``"fused"`` runs the same recurrence in one ``torch.autograd.Function`` whose backward
is the hand-written BPTT recurrence, saving only ``u`` (one tensor of shape ``(T, B, *)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from torchloom.core.autograd import Surrogate, heaviside, rectangular
from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "IF",
    "LIF",
    "PLIF",
    "StepModule",
    "detach_states",
    "lif_multistep",
    "lif_step",
    "reset_states",
    "set_step_mode",
    "step_mode",
]

Reset = Literal["soft", "hard"]
Backend = Literal["loop", "fused"]
StepMode = Literal["multi", "single"]
_RESETS = ("soft", "hard")
_BACKENDS = ("loop", "fused")
_MODES = ("multi", "single")


def _check_decay(decay: float, name: str = "decay") -> float:
    d = check_positive(decay, name)
    if d > 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {decay}")
    return d


def _check_reset(reset: str) -> Reset:
    if reset not in _RESETS:
        raise ValueError(f"reset must be one of {_RESETS}, got {reset!r}")
    return reset  # type: ignore[return-value]


def _check_surrogate(surrogate: Surrogate | None) -> Surrogate:
    s = rectangular(1.0) if surrogate is None else surrogate
    if not isinstance(s, Surrogate):
        raise TypeError(
            f"surrogate must be a torchloom.core.autograd.Surrogate, got {type(s).__name__}"
        )
    return s


def _decay_value(decay: float | torch.Tensor, ref: torch.Tensor) -> float | torch.Tensor:
    if isinstance(decay, torch.Tensor):
        if decay.dim() != 0:
            raise ValueError(f"decay must be a scalar (0-d) tensor, got shape {tuple(decay.shape)}")
        return decay.to(ref.dtype)
    return _check_decay(decay)


def _apply_reset(
    u: torch.Tensor, s: torch.Tensor, threshold: float, reset: Reset, detach_reset: bool
) -> torch.Tensor:
    r = s.detach() if detach_reset else s
    if reset == "soft":
        return u - threshold * r
    return u * (1.0 - r)


def lif_step(
    x: torch.Tensor,
    v: torch.Tensor | None = None,
    *,
    decay: float | torch.Tensor = 0.5,
    threshold: float = 1.0,
    reset: Reset = "soft",
    surrogate: Surrogate | None = None,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: ``u = λ v + x``, ``s = H(u - θ)``, ``v' = reset(u, s)``.

    Shapes: ``x`` and ``v`` are ``(B, *)`` (``v=None`` is rest, zeros). Returns
    ``(s, v')``, both ``(B, *)``. ``decay`` may be a 0-d tensor (learnable, as in PLIF).
    """
    check_floating(x, "x")
    check_positive(threshold, "threshold")
    reset = _check_reset(reset)
    sg = _check_surrogate(surrogate)
    lam = _decay_value(decay, x)
    if v is not None:
        check_floating(v, "v")
    return _lif_step(x, v, lam, float(threshold), reset, sg, detach_reset)


def _lif_step(
    x: torch.Tensor,
    v: torch.Tensor | None,
    lam: float | torch.Tensor,
    threshold: float,
    reset: Reset,
    surrogate: Surrogate,
    detach_reset: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    if v is None:
        u = x
    else:
        if v.shape != x.shape:
            raise ValueError(
                f"v must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}; "
                "call reset_states() before feeding a batch of a different shape"
            )
        u = lam * v + x
    s = heaviside(u - threshold, surrogate)
    return s, _apply_reset(u, s, threshold, reset, detach_reset)


def _lif_loop(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    decay: float | torch.Tensor,
    threshold: float,
    reset: Reset,
    surrogate: Surrogate,
    detach_reset: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.zeros_like(x[0]) if v0 is None else v0
    spikes = []
    for t in range(x.shape[0]):
        u = decay * v + x[t]
        s = heaviside(u - threshold, surrogate)
        v = _apply_reset(u, s, threshold, reset, detach_reset)
        spikes.append(s)
    return torch.stack(spikes), v


def _fused_forward_impl(
    x: torch.Tensor,
    v0: torch.Tensor,
    lam: torch.Tensor,
    threshold: float,
    reset: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # one fused op per stage (charge, fire, reset), charge and spikes written in place
    us = torch.empty_like(x)
    spikes = torch.empty_like(x)
    v = v0
    for t in range(x.shape[0]):
        u = torch.addcmul(x[t], v, lam, out=us[t])
        # comparisons straight into a float buffer: much faster on CPU than bool masks
        s = torch.ge(u, threshold, out=spikes[t])
        v = (
            torch.sub(u, s, alpha=threshold)
            if reset == "soft"
            else torch.addcmul(u, u, s, value=-1)
        )
    return spikes, v, us


class _FusedLIFFn(torch.autograd.Function):
    """Multi-step LIF with the BPTT recurrence written out by hand.

    Backward, with ``g = g(u[t] - θ)`` the surrogate derivative and ``δv[t]`` the gradient reaching
    ``v[t]`` from step ``t+1`` (``δv[T-1]`` from the returned final state)::

        δu[t] = δs[t] g + δv[t] ∂v[t]/∂u[t]
            soft: ∂v/∂u = 1 - θ g          (1 with detach_reset)
            hard: ∂v/∂u = (1 - s) - u g    (1 - s with detach_reset)
        δx[t] = δu[t],   δv[t-1] = λ δu[t],   δλ = Σ_t <δu[t], v[t-1]>
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        v0: torch.Tensor,
        decay: torch.Tensor,
        threshold: float,
        reset: str,
        kind: str,
        param: float,
        detach_reset: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = decay.to(x.dtype)
        spikes, v, us = _fused_forward_impl(x, v0, lam, threshold, reset)
        ctx.save_for_backward(us, v0, lam)
        ctx.threshold = threshold
        ctx.reset = reset
        ctx.surrogate = Surrogate(kind, param)  # type: ignore[arg-type]
        ctx.detach_reset = detach_reset
        return spikes, v

    @staticmethod
    def backward(
        ctx: Any, grad_s: torch.Tensor | None, grad_v: torch.Tensor | None
    ) -> tuple[Any, ...]:
        us, v0, lam = ctx.saved_tensors
        th: float = ctx.threshold
        soft = ctx.reset == "soft"
        keep_reset = not ctx.detach_reset
        n_steps = us.shape[0]
        if grad_s is None:
            grad_s = torch.zeros_like(us)
        g = ctx.surrogate.grad(us - th)  # all steps at once: one kernel instead of T
        s = torch.ge(us, th, out=torch.empty_like(us))
        # gradient w.r.t. u[t] excluding the route through v[t]
        gs = grad_s * g
        if soft:
            dv_du = 1.0 - th * g if keep_reset else None
        else:
            dv_du = (1.0 - s) - us * g if keep_reset else 1.0 - s
        gx = torch.empty_like(us)
        gv = torch.zeros_like(us[0]) if grad_v is None else grad_v
        for t in range(n_steps - 1, -1, -1):
            if dv_du is None:
                gu = torch.add(gs[t], gv, out=gx[t])
            else:
                gu = torch.addcmul(gs[t], gv, dv_du[t], out=gx[t])
            gv = gu * lam
        g_decay = None
        if ctx.needs_input_grad[2]:
            # v[t-1] for every t, recomputed from u: reset(u[t-1], s[t-1]), v[-1] = v0
            v_post = us - th * s if soft else us * (1.0 - s)
            v_prev = torch.cat([v0.unsqueeze(0), v_post[:-1]])
            g_decay = (gx * v_prev).sum()
        g_v0 = gv if ctx.needs_input_grad[1] else None
        return gx, g_v0, g_decay, None, None, None, None, None


def lif_multistep(
    x: torch.Tensor,
    v0: torch.Tensor | None = None,
    *,
    decay: float | torch.Tensor = 0.5,
    threshold: float = 1.0,
    reset: Reset = "soft",
    surrogate: Surrogate | None = None,
    detach_reset: bool = False,
    backend: Backend = "fused",
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF over a whole sequence.

    Shapes: ``x`` is ``(T, B, *)`` (time first), ``v0`` is ``(B, *)`` or ``None`` (rest).
    Returns spikes ``(T, B, *)`` and the final post-reset potential ``v[T-1]`` ``(B, *)``.
    ``backend="loop"`` differentiates the Python recurrence with autograd, ``"fused"`` uses the
    hand-written backward (identical gradients, less memory and time).
    """
    check_floating(x, "x")
    if x.dim() < 2:
        raise ValueError(
            f"x must have a time dimension first, shape (T, B, *), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("x must have at least one time step, got T = 0")
    check_positive(threshold, "threshold")
    reset = _check_reset(reset)
    sg = _check_surrogate(surrogate)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    lam = _decay_value(decay, x)
    if v0 is not None:
        check_floating(v0, "v0")
        if v0.shape != x.shape[1:]:
            raise ValueError(
                f"v0 must have shape {tuple(x.shape[1:])} (x without time), got {tuple(v0.shape)}"
            )
    if backend == "loop":
        return _lif_loop(x, v0, lam, float(threshold), reset, sg, detach_reset)
    lam_t = lam if isinstance(lam, torch.Tensor) else torch.tensor(lam, dtype=x.dtype)
    lam_t = lam_t.to(x.device)
    v_init = torch.zeros_like(x[0]) if v0 is None else v0
    out: tuple[torch.Tensor, torch.Tensor] = _FusedLIFFn.apply(
        x, v_init, lam_t, float(threshold), reset, sg.kind, sg.param, bool(detach_reset)
    )
    return out


class StepModule(nn.Module):
    """A module with a step mode: ``"multi"`` (input ``(T, B, *)``) or ``"single"`` (``(B, *)``)."""

    def __init__(self, step_mode: StepMode = "multi") -> None:
        super().__init__()
        self.step_mode = step_mode

    @property
    def step_mode(self) -> StepMode:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        if mode not in _MODES:
            raise ValueError(f"step_mode must be one of {_MODES}, got {mode!r}")
        self._step_mode = mode

    def reset_state(self) -> None:
        """Forget any state kept between single steps (no-op for stateless modules)."""

    def detach_state(self) -> None:
        """Cut the state kept between single steps from the autograd graph (no-op here)."""


class _Neuron(StepModule):
    """Shared machinery of :class:`LIF`, :class:`IF` and :class:`PLIF`."""

    v: torch.Tensor | None

    def __init__(
        self,
        threshold: float,
        reset: Reset,
        surrogate: Surrogate | None,
        detach_reset: bool,
        step_mode: StepMode,
        backend: Backend,
    ) -> None:
        super().__init__(step_mode)
        self.threshold = check_positive(threshold, "threshold")
        self.reset = _check_reset(reset)
        self.surrogate = _check_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.backend: Backend = backend
        self.v = None

    def _decay(self) -> float | torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes of the same shape as ``x``: ``(T, B, *)`` in multi-step mode, ``(B, *)`` in
        single-step mode (which updates ``self.v``)."""
        if self.step_mode == "multi":
            s, _ = lif_multistep(
                x,
                decay=self._decay(),
                threshold=self.threshold,
                reset=self.reset,
                surrogate=self.surrogate,
                detach_reset=self.detach_reset,
                backend=self.backend,
            )
            return s
        # parameters were validated at construction; the hot single-step path skips re-checks
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        s, self.v = _lif_step(
            x,
            self.v,
            _decay_value(self._decay(), x),
            self.threshold,
            self.reset,
            self.surrogate,
            self.detach_reset,
        )
        return s

    def reset_state(self) -> None:
        self.v = None

    def detach_state(self) -> None:
        if self.v is not None:
            self.v = self.v.detach()

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold}, reset={self.reset!r}, "
            f"surrogate={self.surrogate.kind}({self.surrogate.param:g}), "
            f"detach_reset={self.detach_reset}, step_mode={self.step_mode!r}"
        )


class LIF(_Neuron):
    """Leaky integrate-and-fire neuron with a fixed decay ``λ ∈ (0, 1]``.

    ``u[t] = λ (u[t-1] - θ s[t-1]) + x[t]`` (soft reset) or ``λ u[t-1] (1 - s[t-1]) + x[t]``
    (hard reset), ``s[t] = H(u[t] - θ)``. The default surrogate is SLTT's rectangle of width 1.
    SpikingJelly's ``LIFNode(tau, decay_input=False)`` is ``λ = 1 - 1/tau``.

    Shapes: ``(T, B, *)`` -> ``(T, B, *)`` (multi-step) or ``(B, *)`` -> ``(B, *)`` (single).
    """

    def __init__(
        self,
        decay: float = 0.5,
        threshold: float = 1.0,
        reset: Reset = "soft",
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "multi",
        backend: Backend = "fused",
    ) -> None:
        super().__init__(threshold, reset, surrogate, detach_reset, step_mode, backend)
        self.decay = _check_decay(decay)

    def _decay(self) -> float:
        return self.decay

    def extra_repr(self) -> str:
        return f"decay={self.decay}, " + super().extra_repr()


class IF(LIF):
    """Integrate-and-fire neuron: :class:`LIF` with ``λ = 1`` (no leak)."""

    def __init__(
        self,
        threshold: float = 1.0,
        reset: Reset = "soft",
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "multi",
        backend: Backend = "fused",
    ) -> None:
        super().__init__(1.0, threshold, reset, surrogate, detach_reset, step_mode, backend)


class PLIF(_Neuron):
    """Parametric LIF (Fang et al., ICCV 2021): one learnable decay ``λ = sigmoid(w)`` per layer,
    initialised at ``init_decay``. Same shapes and dynamics as :class:`LIF`."""

    def __init__(
        self,
        init_decay: float = 0.5,
        threshold: float = 1.0,
        reset: Reset = "soft",
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "multi",
        backend: Backend = "fused",
    ) -> None:
        super().__init__(threshold, reset, surrogate, detach_reset, step_mode, backend)
        d = _check_decay(init_decay, "init_decay")
        if d >= 1.0:
            raise ValueError(f"init_decay must lie in (0, 1) for PLIF, got {init_decay}")
        self.w = nn.Parameter(torch.tensor(math.log(d / (1.0 - d))))

    @property
    def decay(self) -> torch.Tensor:
        """The current decay ``sigmoid(w)`` (0-d tensor)."""
        return torch.sigmoid(self.w)

    def _decay(self) -> torch.Tensor:
        return torch.sigmoid(self.w)


def _step_modules(model: nn.Module) -> Iterator[StepModule]:
    for m in model.modules():
        if isinstance(m, StepModule):
            yield m


def reset_states(model: nn.Module) -> None:
    """Return every neuron of ``model`` to rest (forget single-step state)."""
    for m in _step_modules(model):
        m.reset_state()


def detach_states(model: nn.Module) -> None:
    """Detach every neuron's single-step state from the graph (SLTT's cut of the temporal route)."""
    for m in _step_modules(model):
        m.detach_state()


def set_step_mode(model: nn.Module, mode: StepMode) -> None:
    """Set ``mode`` (``"multi"`` or ``"single"``) on every :class:`StepModule` of ``model``."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    for m in _step_modules(model):
        m.step_mode = mode


@contextmanager
def step_mode(model: nn.Module, mode: StepMode) -> Iterator[nn.Module]:
    """Temporarily switch ``model`` to ``mode``; restores each module's previous mode on exit."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    previous = [(m, m.step_mode) for m in _step_modules(model)]
    try:
        for m, _ in previous:
            m.step_mode = mode
        yield model
    finally:
        for m, old in previous:
            m.step_mode = old
