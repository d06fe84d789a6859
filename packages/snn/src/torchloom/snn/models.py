"""Small spiking networks built from :mod:`torchloom.snn.neurons`.

Every model is a :class:`~torchloom.snn.neurons.StepModule` tree: in ``"multi"`` step mode it maps
``(T, B, *)`` to ``(T, B, C)``, in ``"single"`` mode ``(B, *)`` to ``(B, C)`` one step at a time
(what SLTT trains). The read-out is a non-spiking linear layer giving ``o[t]`` at every step, and
the prediction is the time average of ``o[t]`` (SLTT, Sec. 3).

Batch norm: :class:`MultiStep` applies a stateless layer to each step. In single-step mode a
``BatchNorm`` therefore normalises each time step with that step's batch statistics (shared affine
parameters, running statistics updated at every step) — the online-training convention SLTT uses,
and the one :func:`~torchloom.snn.sltt.bptt` uses too so BPTT and SLTT see the same network. In
multi-step mode the ``T·B`` samples are normalised together (tdBN style), which differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from torchloom.core.checks import check_floating
from torchloom.snn.neurons import LIF, StepMode, StepModule

__all__ = ["MultiStep", "SpikingCNN", "SpikingMLP", "SpikingResBlock"]

NeuronFactory = Callable[[], nn.Module]


def _default_neuron() -> nn.Module:
    return LIF(decay=0.5, threshold=1.0, reset="soft")


class MultiStep(StepModule):
    """Apply a stateless ``module`` at every time step.

    Multi-step mode folds time into the batch, ``(T, B, *) -> (T·B, *) -> (T, B, *')``; single-step
    mode calls ``module`` on ``(B, *)`` directly.
    """

    def __init__(self, module: nn.Module, step_mode: StepMode = "multi") -> None:
        super().__init__(step_mode)
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "single":
            out: torch.Tensor = self.module(x)
            return out
        if x.dim() < 2:
            raise ValueError(
                f"x must have shape (T, B, *) in multi-step mode, got {tuple(x.shape)}"
            )
        t, b = x.shape[:2]
        y: torch.Tensor = self.module(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


def _check_input(x: torch.Tensor, mode: StepMode, feature_dims: int, layout: str) -> None:
    check_floating(x, "x")
    want = feature_dims + (2 if mode == "multi" else 1)
    if x.dim() != want:
        lead = "(T, B, " if mode == "multi" else "(B, "
        raise ValueError(
            f"x must have {want} dimensions {lead}{layout}) in {mode}-step mode, "
            f"got shape {tuple(x.shape)}"
        )


class _SpikingNet(StepModule):
    """Root of a model: validates the input rank for the current step mode."""

    feature_dims = 1
    layout = "F"

    @property
    def step_mode(self) -> StepMode:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        if mode not in ("multi", "single"):
            raise ValueError(f"step_mode must be 'multi' or 'single', got {mode!r}")
        self._step_mode = mode
        # the whole tree follows the root, so `model.step_mode = "single"` is enough
        for m in self.modules():
            if m is not self and isinstance(m, StepModule):
                m.step_mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.step_mode, self.feature_dims, self.layout)
        out: torch.Tensor = self.body(x)
        return out

    body: nn.Module


class SpikingMLP(_SpikingNet):
    """Fully connected spiking network: ``[Linear -> (BatchNorm1d) -> neuron] × L -> Linear``.

    Shapes: ``(T, B, in_features) -> (T, B, num_classes)`` (multi-step) or
    ``(B, in_features) -> (B, num_classes)`` (single-step).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (128, 128),
        neuron: NeuronFactory = _default_neuron,
        batch_norm: bool = False,
    ) -> None:
        super().__init__("multi")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(MultiStep(nn.Linear(width, h, bias=not batch_norm)))
            if batch_norm:
                layers.append(MultiStep(nn.BatchNorm1d(h)))
            layers.append(neuron())
            width = h
        layers.append(MultiStep(nn.Linear(width, num_classes)))
        self.body = nn.Sequential(*layers)


class SpikingResBlock(StepModule):
    """Spiking residual block: ``s = neuron(BN(conv(neuron(BN(conv(x))))) + x)``.

    Shapes ``(T, B, C, H, W)`` (multi) or ``(B, C, H, W)`` (single), unchanged by the block.
    """

    def __init__(self, channels: int, neuron: NeuronFactory = _default_neuron) -> None:
        super().__init__("multi")
        self.branch = nn.Sequential(
            MultiStep(nn.Conv2d(channels, channels, 3, padding=1, bias=False)),
            MultiStep(nn.BatchNorm2d(channels)),
            neuron(),
            MultiStep(nn.Conv2d(channels, channels, 3, padding=1, bias=False)),
            MultiStep(nn.BatchNorm2d(channels)),
        )
        self.out = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.branch(x) + x)
        return out


class SpikingCNN(_SpikingNet):
    """Small spiking CNN: ``[conv3x3 -> BN -> neuron -> (res block) -> avgpool2] × L -> Linear``.

    Shapes: ``(T, B, C, H, W) -> (T, B, num_classes)`` or ``(B, C, H, W) -> (B, num_classes)``;
    ``H`` and ``W`` must be divisible by ``2**len(channels)``.
    """

    feature_dims = 3
    layout = "C, H, W"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: Sequence[int] = (16, 32),
        neuron: NeuronFactory = _default_neuron,
        residual: bool = False,
    ) -> None:
        super().__init__("multi")
        if image_size % (2 ** len(channels)) != 0:
            raise ValueError(
                f"image_size must be divisible by 2**len(channels) = {2 ** len(channels)}, "
                f"got {image_size}"
            )
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [
                MultiStep(nn.Conv2d(c_in, c, 3, padding=1, bias=False)),
                MultiStep(nn.BatchNorm2d(c)),
                neuron(),
            ]
            if residual:
                layers.append(SpikingResBlock(c, neuron))
            layers.append(MultiStep(nn.AvgPool2d(2)))
            c_in = c
        side = image_size // 2 ** len(channels)
        layers += [MultiStep(nn.Flatten()), MultiStep(nn.Linear(c_in * side * side, num_classes))]
        self.body = nn.Sequential(*layers)
