"""Recurrent baselines for irregular time series: ODE-RNN and GRU-Δt.

- :class:`ODERNN` (Rubanova, Chen & Duvenaud 2019, Alg. 1): between observation times the
  hidden state follows a neural ODE, ``h'_i = ODESolve(f_θ, h_{i-1}, (t_{i-1}, t_i))``; at an
  observation a GRU cell updates it, ``h_i = GRUCell(h'_i, [x_i ⊙ m_i, m_i])``. Missing values
  enter as zeros with their mask ``m`` (as in the paper's PhysioNet setup); a time with no
  observed channel skips the update.
- :class:`GRUDelta` (the "GRU-Δt" baseline of Kidger et al. 2020): a GRU over
  ``[x (last observation carried forward), m, δ]`` with ``δ`` the per-channel time since that
  channel was last observed (Che et al. 2018's δ).

Both read a series ``x`` of shape ``(B, N, C)`` with NaN for missing values and its times
``t`` of shape ``(N,)`` shared by the batch, and return ``(B, output_channels)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_ndim
from torchloom.neural_de.ode import odeint

__all__ = ["ODERNN", "GRUDelta", "time_since_observed"]


def _check(x: object, t: object, channels: int) -> tuple[Tensor, Tensor]:
    x = check_ndim(check_floating(x, "x"), "x", 3, "(B, N, C)")
    t = check_ndim(check_floating(t, "t"), "t", 1, "(N,)")
    if x.shape[1] != t.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} times (x.shape={tuple(x.shape)}) but t has {t.shape[0]}"
        )
    if x.shape[2] != channels:
        raise ValueError(f"x has {x.shape[2]} channels but the model expects {channels}")
    if t.shape[0] > 1 and not bool((torch.diff(t) > 0).all()):
        raise ValueError("t must be strictly increasing")
    return x, t


def time_since_observed(x: Tensor, t: Tensor) -> Tensor:
    """Per channel, the time since the channel's last observation (``δ`` of GRU-D).

    Args:
        x: ``(B, N, C)`` series, NaN = missing.
        t: ``(N,)`` strictly increasing times.

    Returns:
        ``(B, N, C)``: ``δ_0 = 0``; ``δ_i = t_i − t_{i−1}`` if the channel was observed at
        ``t_{i−1}``, else ``δ_{i−1} + t_i − t_{i−1}``.
    """
    mask = ~torch.isnan(x)
    deltas = [torch.zeros_like(x[:, 0])]
    for i in range(1, x.shape[1]):
        gap = t[i] - t[i - 1]
        prev = deltas[-1]
        deltas.append(torch.where(mask[:, i - 1], gap.expand_as(prev), prev + gap))
    return torch.stack(deltas, 1)


class _ODEFunc(nn.Module):
    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, width), nn.Tanh(), nn.Linear(width, hidden), nn.Tanh()
        )

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return self.net(h)


class ODERNN(nn.Module):
    """ODE-RNN (Rubanova et al. 2019): neural-ODE evolution between observations, GRU update at
    them.

    Args:
        input_channels: ``C`` of the series.
        hidden_channels: hidden size ``H``.
        output_channels: readout size.
        width: hidden width of the ODE function.
        method: ``odeint`` method between observations (fixed-step by default).
        steps_per_interval: solver steps per gap (fixed-step methods).

    Shapes: ``forward(x, t)`` with ``x`` ``(B, N, C)`` (NaN = missing), ``t`` ``(N,)`` ->
    ``(B, output_channels)``.
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        output_channels: int,
        width: int = 64,
        method: str = "rk4",
        steps_per_interval: int = 1,
    ) -> None:
        super().__init__()
        if steps_per_interval < 1:
            raise ValueError(f"steps_per_interval must be >= 1, got {steps_per_interval}")
        self.input_channels, self.hidden_channels = input_channels, hidden_channels
        self.method, self.steps = method, steps_per_interval
        self.func = _ODEFunc(hidden_channels, width)
        self.cell = nn.GRUCell(2 * input_channels, hidden_channels)
        self.readout = nn.Linear(hidden_channels, output_channels)

    def hidden_states(self, x: Tensor, t: Tensor) -> Tensor:
        """Hidden state after the update at every time, ``(B, N, H)``.

        Args:
            x: ``(B, N, C)`` series, NaN = missing.
            t: ``(N,)`` strictly increasing times.

        Returns:
            ``(B, N, H)``.
        """
        x, t = _check(x, t, self.input_channels)
        mask = ~torch.isnan(x)
        inputs = torch.cat([torch.nan_to_num(x), mask.to(x.dtype)], -1)
        observed = mask.any(-1, keepdim=True)
        h = x.new_zeros(x.shape[0], self.hidden_channels)
        out = []
        for i in range(x.shape[1]):
            if i > 0:
                span = t[i - 1 : i + 1]
                kw: dict[str, object] = {"method": self.method}
                if self.method in ("euler", "midpoint", "heun", "rk4"):
                    kw["step_size"] = float(span[1] - span[0]) / self.steps
                h = odeint(self.func, h, span, **kw)[-1]  # type: ignore[arg-type]
            h = torch.where(observed[:, i], self.cell(inputs[:, i], h), h)
            out.append(h)
        return torch.stack(out, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Classify/regress from the last hidden state.

        Args:
            x: ``(B, N, C)`` series, NaN = missing.
            t: ``(N,)`` strictly increasing times.

        Returns:
            ``(B, output_channels)``.
        """
        return self.readout(self.hidden_states(x, t)[:, -1])


class GRUDelta(nn.Module):
    """GRU-Δt: a GRU over ``[x carried forward, mask, time since observed]``.

    Args:
        input_channels: ``C`` of the series.
        hidden_channels: hidden size ``H``.
        output_channels: readout size.

    Shapes: ``forward(x, t)`` with ``x`` ``(B, N, C)`` (NaN = missing), ``t`` ``(N,)`` ->
    ``(B, output_channels)``.
    """

    def __init__(self, input_channels: int, hidden_channels: int, output_channels: int) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.gru = nn.GRU(3 * input_channels, hidden_channels, batch_first=True)
        self.readout = nn.Linear(hidden_channels, output_channels)

    def features(self, x: Tensor, t: Tensor) -> Tensor:
        """The GRU's inputs ``[x carried forward (0 before the first observation), m, δ]``.

        Args:
            x: ``(B, N, C)`` series, NaN = missing.
            t: ``(N,)`` strictly increasing times.

        Returns:
            ``(B, N, 3C)``.
        """
        x, t = _check(x, t, self.input_channels)
        mask = ~torch.isnan(x)
        rows = [torch.nan_to_num(x[:, 0])]
        for i in range(1, x.shape[1]):
            rows.append(torch.where(mask[:, i], x[:, i], rows[-1]))
        filled = torch.nan_to_num(torch.stack(rows, 1))
        return torch.cat([filled, mask.to(x.dtype), time_since_observed(x, t)], -1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Classify/regress from the GRU's last hidden state.

        Args:
            x: ``(B, N, C)`` series, NaN = missing.
            t: ``(N,)`` strictly increasing times.

        Returns:
            ``(B, output_channels)``.
        """
        _, h = self.gru(self.features(x, t))
        return self.readout(h[-1])
