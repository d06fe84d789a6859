"""Training modes for spiking networks: BPTT, SLTT and SLTT-K (Meng et al., ICCV 2023).

All three compute gradients into ``.grad`` of ``model``'s parameters for one mini-batch of
time-first inputs ``(T, B, *)`` and a target; the caller owns the optimiser. Each runs ``model``
one time step at a time (single-step mode) from rest, with the instantaneous loss
``L = (1/T) Σ_t ℓ(o[t], y)`` of SLTT Eq. 9.

- :func:`bptt` keeps the whole graph over the T steps and backpropagates once: gradients flow
  through the spatial route (layer to layer) *and* the temporal route ``u[t-1] -> u[t]`` (decay and
  reset). Memory grows linearly with T.
- :func:`sltt` (Spatial Learning Through Time, Alg. 1) drops the temporal route: every neuron's
  state is detached between steps, so ``∂u[t]/∂u[t-1]`` terms vanish (Eq. 12-13), and the
  step's loss ``ℓ(o[t], y)/T`` is backpropagated at once. Only one step's graph is alive at any
  moment, so memory is independent of T; gradients accumulate over the steps.
- :func:`sltt_k` (Alg. 2) backpropagates at only ``K`` time steps drawn uniformly without
  replacement (loss ``ℓ(o[t], y)/K`` there); the other steps run forward without a graph.
  ``K = T`` is :func:`sltt`.

Batch norm inside the model sees one time step at a time in all three modes (see
:mod:`torchloom.snn.models`). Outside that comparison, ordinary BPTT is faster by calling the model
in multi-step mode on the whole ``(T, B, *)`` sequence (fused LIF backend) and backpropagating
the loss once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_finite, check_tensor
from torchloom.snn.neurons import StepModule, reset_states, step_mode

__all__ = ["StepOutput", "bptt", "predict", "sltt", "sltt_k"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepOutput:
    """Result of one training step.

    Attributes:
        loss: ``(1/T) Σ_t ℓ(o[t], y)`` over all T steps (a float, for logging).
        outputs: detached per-step outputs ``o[t]``, shape ``(T, B, C)``.
        backward_steps: the time steps whose loss was backpropagated.
    """

    loss: float
    outputs: torch.Tensor
    backward_steps: tuple[int, ...]


def _check_inputs(inputs: torch.Tensor, target: torch.Tensor) -> int:
    check_tensor(inputs, "inputs")
    check_tensor(target, "target")
    if inputs.dim() < 2:
        raise ValueError(
            f"inputs must be time-first (T, B, *) with T >= 1, got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] < 1:
        raise ValueError("inputs must have at least one time step, got T = 0")
    if target.shape[0] != inputs.shape[1]:
        raise ValueError(
            f"target must have batch size {inputs.shape[1]} (inputs.shape[1]) in its first "
            f"dimension, got shape {tuple(target.shape)}"
        )
    return int(inputs.shape[0])


def _finite(loss: torch.Tensor, t: int) -> None:
    if not bool(torch.isfinite(loss)):
        check_finite(loss.detach(), f"loss at time step {t}")


def bptt(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
) -> StepOutput:
    """Backpropagation through time with the instantaneous loss ``(1/T) Σ_t ℓ(o[t], y)``.

    Shapes: ``inputs`` ``(T, B, *)``, ``target`` ``(B, *)``; outputs ``(T, B, C)``.
    """
    steps = _check_inputs(inputs, target)
    outputs = []
    total = inputs.new_zeros(())
    with step_mode(model, "single"):
        reset_states(model)
        try:
            for t in range(steps):
                o = model(inputs[t])
                loss_t = loss_fn(o, target)
                _finite(loss_t, t)
                total = total + loss_t / steps
                outputs.append(o.detach())
            torch.autograd.backward(total)
        finally:
            reset_states(model)
    return StepOutput(float(total.detach()), torch.stack(outputs), tuple(range(steps)))


def _online(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    loss_fn: LossFn,
    chosen: set[int],
    scale: float,
) -> StepOutput:
    steps = int(inputs.shape[0])
    neurons = [m for m in model.modules() if isinstance(m, StepModule)]
    outputs = []
    with step_mode(model, "single"):
        reset_states(model)
        try:
            for t in range(steps):
                if t in chosen:
                    o = model(inputs[t])
                    loss_t = loss_fn(o, target)
                    _finite(loss_t, t)
                    torch.autograd.backward(loss_t * scale)
                else:
                    with torch.no_grad():
                        o = model(inputs[t])
                outputs.append(o.detach())
                # the temporal route u[t] -> u[t+1] is not differentiated (SLTT, Eq. 12)
                for m in neurons:
                    m.detach_state()
        finally:
            reset_states(model)
    out = torch.stack(outputs)
    with torch.no_grad():
        total = sum(float(loss_fn(out[t], target)) for t in range(steps)) / steps
    return StepOutput(total, out, tuple(sorted(chosen)))


def sltt(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
) -> StepOutput:
    """Spatial Learning Through Time: backward of ``ℓ(o[t], y)/T`` at every step, with each
    neuron's state detached between steps. Peak memory is that of one step, whatever ``T``.

    Shapes: ``inputs`` ``(T, B, *)``, ``target`` ``(B, *)``; outputs ``(T, B, C)``.
    """
    steps = _check_inputs(inputs, target)
    return _online(model, inputs, target, loss_fn, set(range(steps)), 1.0 / steps)


def sltt_k(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    k: int,
    loss_fn: LossFn = F.cross_entropy,
    generator: torch.Generator | None = None,
) -> StepOutput:
    """SLTT-K: SLTT's backward at ``k`` time steps drawn without replacement (from
    ``generator``), with loss ``ℓ(o[t], y)/k``; the other steps only run forward.

    Shapes: ``inputs`` ``(T, B, *)``, ``target`` ``(B, *)``; outputs ``(T, B, C)``.
    """
    steps = _check_inputs(inputs, target)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= steps:
        raise ValueError(f"k must satisfy 1 <= k <= T = {steps}, got k = {k}")
    chosen = set(torch.randperm(steps, generator=generator)[:k].tolist())
    return _online(model, inputs, target, loss_fn, chosen, 1.0 / k)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Time-averaged output ``(1/T) Σ_t o[t]`` ``(B, C)`` of ``model`` on ``(T, B, *)`` inputs,
    run step by step from rest (the same per-step batch norm as training)."""
    check_tensor(inputs, "inputs")
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be time-first (T, B, *), got shape {tuple(inputs.shape)}")
    acc: torch.Tensor | None = None
    with step_mode(model, "single"):
        reset_states(model)
        try:
            for t in range(inputs.shape[0]):
                o = model(inputs[t])
                acc = o if acc is None else acc + o
        finally:
            reset_states(model)
    if acc is None:
        raise ValueError("inputs must have at least one time step, got T = 0")
    return acc / inputs.shape[0]
