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
autograd; ``"fused"`` runs it as the ``torchloom_snn::lif_fwd`` custom op whose registered backward
is the hand-written BPTT recurrence, saving only ``u`` (one tensor of shape ``(T, B, *)``);
``"triton"`` is the same op with Triton kernels (CUDA tensors; CPU only under
``TRITON_INTERPRET=1``). See :mod:`torchloom.snn._lif_ops`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from torchloom.core.autograd import Surrogate, heaviside, rectangular
from torchloom.core.checks import check_floating, check_positive
from torchloom.snn._lif_ops import fused_lif

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
Backend = Literal["loop", "fused", "triton"]
StepMode = Literal["multi", "single"]
_RESETS = ("soft", "hard")
_BACKENDS = ("loop", "fused", "triton")
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
        if v.dtype != x.dtype:
            raise TypeError(f"v must have x's dtype {x.dtype}, got {v.dtype}")
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
    hand-written backward (identical gradients, less memory and time), ``"triton"`` the same
    with Triton kernels (CUDA).
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
        if v0.dtype != x.dtype or v0.device != x.device:
            raise TypeError(
                f"v0 must have x's dtype and device ({x.dtype}, {x.device}), "
                f"got ({v0.dtype}, {v0.device})"
            )
    if backend == "loop":
        return _lif_loop(x, v0, lam, float(threshold), reset, sg, detach_reset)
    lam_t = lam if isinstance(lam, torch.Tensor) else torch.tensor(lam, dtype=x.dtype)
    lam_t = lam_t.to(x.device)
    v_init = torch.zeros_like(x[0]) if v0 is None else v0
    impl = "triton" if backend == "triton" else "torch"
    return fused_lif(
        x, v_init, lam_t, float(threshold), reset == "soft", sg, bool(detach_reset), impl
    )


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
