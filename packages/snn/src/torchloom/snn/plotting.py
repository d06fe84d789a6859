"""Spike raster plot of a ``(T, N)`` or ``(T, B, *)`` spike tensor."""

from __future__ import annotations

from typing import Any

import torch

from torchloom.core.checks import check_tensor

__all__ = ["raster_plot"]


def raster_plot(
    spikes: torch.Tensor, ax: Any = None, max_neurons: int = 200, title: str = ""
) -> Any:
    """Draw a raster (time on x, neuron index on y) and return the matplotlib ``Axes``.

    ``spikes`` is ``(T, N)``, or ``(T, B, *)`` of which the first sample is shown; at most
    ``max_neurons`` neurons are drawn.
    """
    check_tensor(spikes, "spikes")
    if spikes.dim() < 2:
        raise ValueError(f"spikes must be (T, N) or (T, B, *), got shape {tuple(spikes.shape)}")
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be >= 1, got {max_neurons}")
    s = spikes.detach().float().cpu()
    if s.dim() > 2:
        s = s[:, 0].reshape(s.shape[0], -1)
    s = s[:, :max_neurons]
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 3))
    t_idx, n_idx = torch.nonzero(s > 0, as_tuple=True)
    ax.scatter(t_idx.numpy(), n_idx.numpy(), marker="|", s=20, color="black")
    ax.set_xlim(-0.5, s.shape[0] - 0.5)
    ax.set_ylim(-0.5, s.shape[1] - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    if title:
        ax.set_title(title)
    return ax
