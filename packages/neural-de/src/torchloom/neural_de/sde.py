"""Neural SDEs on torchsde: validated solve wrapper, a generic neural SDE and a latent SDE.

Solving is torchsde's (``sdeint``, ``sdeint_adjoint``, its Brownian interval, reversible Heun);
this module adds what users otherwise write by hand (Kidger 2022, *On Neural Differential
Equations*, ch. 4):

- :func:`sdeint` — one entry point with input validation naming shapes, a seeded
  ``BrownianInterval`` from a ``torch.Generator`` (reproducible paths), ``sensitivity="adjoint"``
  that pairs reversible Heun with its algebraically reversible adjoint (exact gradients at
  O(1) memory, Kidger et al. 2021).
- :class:`NeuralSDE` — ``dz = μ_θ(t, z) dt + σ_θ(t, z) ∘ dW`` from two modules.
- :class:`LatentSDE` — the latent SDE of Li et al. (2020): a GRU encoder gives a context,
  posterior ``dz = f(t, z, ctx) dt + g(t, z) dW``, prior ``dz = h(t, z) dt + g(t, z) dW``; the
  ELBO adds the path-space KL ``½∫‖(f − h)/g‖² dt`` (torchsde's ``logqp``) and the KL at ``t₀``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torchsde
from torch import Tensor, nn

from torchloom.core import rng
from torchloom.core.checks import check_finite, check_floating, check_ndim, check_positive

__all__ = [
    "CDEDiscriminator",
    "LatentSDE",
    "LipSwish",
    "NeuralSDE",
    "SDEGenerator",
    "brownian_interval",
    "marginal_wasserstein",
    "sde_gan_step",
    "sdeint",
    "wasserstein_losses",
]

SDEType = Literal["ito", "stratonovich"]
NoiseType = Literal["diagonal", "general", "scalar", "additive"]

_METHODS: dict[str, tuple[str, ...]] = {
    "ito": ("euler", "milstein", "srk"),
    "stratonovich": ("midpoint", "heun", "euler_heun", "milstein", "reversible_heun", "log_ode"),
}


def brownian_interval(
    t0: float,
    t1: float,
    size: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    generator: torch.Generator | None = None,
    levy_area: Literal["none", "space-time", "davie", "foster"] = "none",
) -> torchsde.BrownianInterval:
    """A torchsde ``BrownianInterval`` whose entropy comes from ``generator`` (or the global RNG).

    Same generator state, same Brownian path: solves (and the backward of an adjoint) are
    reproducible without touching global state.
    """
    entropy = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    return torchsde.BrownianInterval(
        t0=t0,
        t1=t1,
        size=size,
        dtype=dtype,
        device=device,
        entropy=entropy,
        levy_area_approximation=levy_area,
    )


def _sde_attr(sde: object, name: str) -> str:
    value = getattr(sde, name, None)
    if not isinstance(value, str):
        raise TypeError(f"sde must define the string attribute {name!r} (torchsde convention)")
    return value


def sdeint(
    sde: nn.Module,
    y0: Tensor,
    ts: Tensor,
    *,
    method: str | None = None,
    dt: float = 1e-2,
    adaptive: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-4,
    sensitivity: Literal["autograd", "adjoint"] = "autograd",
    bm: Any = None,
    generator: torch.Generator | None = None,
    brownian_size: int | None = None,
    logqp: bool = False,
    adjoint_params: tuple[Tensor, ...] | None = None,
) -> Any:
    """Solve ``sde`` (torchsde ``f``/``g`` methods) from ``y0`` ``(B, D)`` at times ``ts`` ``(T,)``.

    Returns ``ys`` ``(T, B, D)`` (and the log-ratio ``(T−1, B)`` with ``logqp=True``).
    ``method`` defaults to ``reversible_heun`` for Stratonovich SDEs and ``srk``/``euler`` for
    Itô (torchsde's defaults otherwise). ``sensitivity="adjoint"`` uses ``sdeint_adjoint``;
    with ``reversible_heun`` the adjoint is ``adjoint_reversible_heun``, whose gradient equals
    backprop's to float precision when ``dt`` divides the spacing of ``ts`` exactly (take
    ``dt`` a power of two, e.g. ``2**-6``; otherwise torchsde warns and it is approximate). The
    Brownian motion has size ``(B, brownian_size)`` (default ``D``; ``D + 1`` with ``logqp`` and
    diagonal noise, where torchsde appends the log-ratio channel) unless ``bm`` is given.
    """
    if not isinstance(sde, nn.Module):
        raise TypeError(f"sde must be an nn.Module with f and g methods, got {type(sde).__name__}")
    sde_type = _sde_attr(sde, "sde_type")
    noise_type = _sde_attr(sde, "noise_type")
    if sde_type not in _METHODS:
        raise ValueError(f"sde.sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
    y0 = check_floating(y0, "y0")
    check_ndim(y0, "y0", 2, "(B, D)")
    check_finite(y0, "y0")
    ts = check_floating(ts, "ts")
    check_ndim(ts, "ts", 1, "(T,)")
    if ts.numel() < 2 or not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError(f"ts must be strictly increasing with at least 2 times, got {ts.tolist()}")
    check_positive(dt, "dt")
    if method is None:
        method = (
            "reversible_heun"
            if sde_type == "stratonovich"
            else ("srk" if noise_type in ("diagonal", "scalar", "additive") else "euler")
        )
    if method not in _METHODS[sde_type]:
        raise ValueError(
            f"method {method!r} does not solve {sde_type} SDEs; "
            f"valid: {', '.join(_METHODS[sde_type])}"
        )
    if sensitivity not in ("autograd", "adjoint"):
        raise ValueError(f"sensitivity must be 'autograd' or 'adjoint', got {sensitivity!r}")
    if bm is None:
        m = y0.shape[1] if brownian_size is None else brownian_size
        if logqp and noise_type == "diagonal":
            m = y0.shape[1] + 1
        levy = "space-time" if method in ("srk", "log_ode") else "none"
        bm = brownian_interval(
            float(ts[0]),
            float(ts[-1]),
            (y0.shape[0], m),
            dtype=y0.dtype,
            device=y0.device,
            generator=generator,
            levy_area=levy,  # type: ignore[arg-type]
        )
    kwargs: dict[str, Any] = dict(
        bm=bm, method=method, dt=dt, adaptive=adaptive, rtol=rtol, atol=atol, logqp=logqp
    )
    if sensitivity == "adjoint":
        adjoint_method = "adjoint_reversible_heun" if method == "reversible_heun" else None
        return torchsde.sdeint_adjoint(
            sde, y0, ts, adjoint_method=adjoint_method, adjoint_params=adjoint_params, **kwargs
        )
    return torchsde.sdeint(sde, y0, ts, **kwargs)


class NeuralSDE(nn.Module):
    """``dz = μ(t, z) dt + σ(t, z) ∘ dW`` (Stratonovich by default) from two modules.

    ``drift(t, z)`` returns ``(B, D)``; ``diffusion(t, z)`` returns ``(B, D)`` for diagonal noise
    or ``(B, D, M)`` for general noise. Shapes are checked on every call.
    """

    def __init__(
        self,
        drift: nn.Module,
        diffusion: nn.Module,
        *,
        noise_type: NoiseType = "diagonal",
        sde_type: SDEType = "stratonovich",
    ) -> None:
        super().__init__()
        if sde_type not in _METHODS:
            raise ValueError(f"sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
        if noise_type not in ("diagonal", "general", "scalar", "additive"):
            raise ValueError(f"noise_type {noise_type!r} is not a torchsde noise type")
        self.drift, self.diffusion = drift, diffusion
        self.noise_type, self.sde_type = noise_type, sde_type

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.drift(t, y)
        if out.shape != y.shape:
            raise ValueError(f"drift returned shape {tuple(out.shape)} for state {tuple(y.shape)}")
        return out

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.diffusion(t, y)
        if self.noise_type == "diagonal" and out.shape != y.shape:
            raise ValueError(
                f"diagonal diffusion must return the state's shape {tuple(y.shape)}, "
                f"got {tuple(out.shape)}"
            )
        if self.noise_type in ("general", "scalar", "additive") and (
            out.dim() != 3 or out.shape[:2] != y.shape
        ):
            raise ValueError(
                f"{self.noise_type} diffusion must return (B, D, M) with (B, D) = "
                f"{tuple(y.shape)}, got {tuple(out.shape)}"
            )
        return out


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.Softplus(),
        nn.Linear(hidden, hidden),
        nn.Softplus(),
        nn.Linear(hidden, d_out),
    )


class LatentSDE(nn.Module):
    """Latent SDE (Li, Wong, Chen & Duvenaud, 2020) trained by the ELBO.

    Shapes: ``xs`` ``(T, B, data_size)`` observed at ``ts`` ``(T,)``.

    The encoder (GRU run backwards in time) gives ``ctx(t)`` and ``q(z₀|x)``; the posterior
    drift is ``f(t, z, ctx)``, the prior drift ``h(t, z)``, and the diagonal diffusion
    ``g(t, z)`` is shared (each latent coordinate has its own small network, so ``g`` is
    diagonal and the KL ``½∫‖(f − h)/g‖²dt`` is finite).
    """

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(
        self, data_size: int, latent_size: int, context_size: int, hidden_size: int
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(data_size, hidden_size)
        self.to_context = nn.Linear(hidden_size, context_size)
        self.qz0_net = nn.Linear(context_size, 2 * latent_size)
        self.f_net = _mlp(latent_size + context_size, latent_size, hidden_size)
        self.h_net = _mlp(latent_size, latent_size, hidden_size)
        self.g_nets = nn.ModuleList(
            nn.Sequential(
                nn.Linear(1, hidden_size), nn.Softplus(), nn.Linear(hidden_size, 1), nn.Sigmoid()
            )
            for _ in range(latent_size)
        )
        self.projector = nn.Linear(latent_size, data_size)
        self.pz0_mean = nn.Parameter(torch.zeros(1, latent_size))
        self.pz0_logstd = nn.Parameter(torch.zeros(1, latent_size))
        self._ctx: tuple[Tensor, Tensor] | None = None

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        if self._ctx is None:
            raise RuntimeError("the posterior drift needs a context: call forward(xs, ts)")
        ts, ctx = self._ctx
        i = min(int(torch.searchsorted(ts, t, right=True)), len(ts) - 1)
        return self.f_net(torch.cat([y, ctx[i]], 1))

    def h(self, t: Tensor, y: Tensor) -> Tensor:
        return self.h_net(y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.cat([net(y[:, i : i + 1]) for i, net in enumerate(self.g_nets)], 1)

    def forward(
        self,
        xs: Tensor,
        ts: Tensor,
        noise_std: float = 0.01,
        dt: float = 1e-2,
        generator: torch.Generator | None = None,
        method: str = "euler",
    ) -> tuple[Tensor, Tensor]:
        """``(log p(x|z) summed over time and data, KL)`` each averaged over the batch.

        The negative ELBO is ``−log_pxs + kl``.
        """
        xs = check_floating(xs, "xs")
        check_ndim(xs, "xs", 3, "(T, B, data_size)")
        if ts.dim() != 1 or ts.shape[0] != xs.shape[0]:
            raise ValueError(
                f"ts must have shape ({xs.shape[0]},) to match xs {tuple(xs.shape)}, got "
                f"{tuple(ts.shape)}"
            )
        check_positive(noise_std, "noise_std")
        out, _ = self.gru(torch.flip(xs, (0,)))
        ctx = torch.flip(self.to_context(out), (0,))
        self._ctx = (ts, ctx)
        try:
            qz0_mean, qz0_logstd = self.qz0_net(ctx[0]).chunk(2, dim=1)
            eps = rng.randn(qz0_mean.shape, generator=generator, dtype=xs.dtype, device=xs.device)
            z0 = qz0_mean + qz0_logstd.exp() * eps
            zs, log_ratio = sdeint(
                self, z0, ts, method=method, dt=dt, logqp=True, generator=generator
            )
        finally:
            self._ctx = None
        xs_mean = self.projector(zs)
        log_pxs = torch.distributions.Normal(xs_mean, noise_std).log_prob(xs).sum((0, 2)).mean()
        qz0 = torch.distributions.Normal(qz0_mean, qz0_logstd.exp())
        pz0 = torch.distributions.Normal(self.pz0_mean, self.pz0_logstd.exp())
        kl_z0 = torch.distributions.kl_divergence(qz0, pz0).sum(1).mean()
        kl_path = log_ratio.sum(0).mean()
        return log_pxs, kl_z0 + kl_path

    @torch.no_grad()
    def sample(
        self,
        batch_size: int,
        ts: Tensor,
        dt: float = 1e-2,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``(T, batch_size, data_size)`` from the prior SDE."""
        dev, dtype = self.pz0_mean.device, self.pz0_mean.dtype
        eps = torch.randn((batch_size, self.pz0_mean.shape[1]), generator=generator, dtype=dtype)
        z0 = self.pz0_mean + self.pz0_logstd.exp() * eps.to(dev)
        prior = _PriorSDE(self)
        zs = sdeint(prior, z0, ts, method="euler", dt=dt, generator=generator)
        return self.projector(zs)


class _PriorSDE(nn.Module):
    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(self, latent: LatentSDE) -> None:
        super().__init__()
        self.latent = latent

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.latent.h(t, y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.latent.g(t, y)


# ---------------------------------------------------------------------------------------------
# SDE-GAN (Kidger, Foster, Li, Oberhauser & Lyons 2021)
# ---------------------------------------------------------------------------------------------


class LipSwish(nn.Module):
    """``0.909·x·sigmoid(x)``: SiLU scaled to be 1-Lipschitz (Chen et al. 2019)."""

    def forward(self, x: Tensor) -> Tensor:
        """Elementwise; any shape."""
        return 0.909 * nn.functional.silu(x)


def _lip_mlp(
    d_in: int, d_out: int, width: int, depth: int = 1, tanh: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, width), LipSwish()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), LipSwish()]
    layers.append(nn.Linear(width, d_out))
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class _GeneratorSDE(nn.Module):
    sde_type = "stratonovich"
    noise_type = "general"

    def __init__(self, hidden: int, noise: int, width: int, depth: int) -> None:
        super().__init__()
        self.hidden, self.noise = hidden, noise
        self.drift = _lip_mlp(1 + hidden, hidden, width, depth, tanh=True)
        self.diffusion = _lip_mlp(1 + hidden, hidden * noise, width, depth, tanh=True)

    def _inp(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.cat([t.to(x.dtype).expand(x.shape[0], 1), x], 1)

    def f(self, t: Tensor, x: Tensor) -> Tensor:
        return self.drift(self._inp(t, x))

    def g(self, t: Tensor, x: Tensor) -> Tensor:
        return self.diffusion(self._inp(t, x)).view(x.shape[0], self.hidden, self.noise)


class SDEGenerator(nn.Module):
    """SDE-GAN generator (Kidger et al. 2021): ``X₀ = ζ(V)``, ``V ~ N(0, I)``,
    ``dX = μ(t, X) dt + σ(t, X) ∘ dW``, ``Y = ℓ(X)``.

    ``μ`` and ``σ`` are LipSwish MLPs with a final tanh (bounded fields); the Stratonovich SDE
    with general noise (``W`` of size ``noise_size``) is solved by torchsde's reversible Heun.

    Args:
        data_size: channels ``D`` of the generated series.
        initial_noise_size: size of ``V``.
        noise_size: size of the Brownian motion ``W``.
        hidden_size: size of the hidden state ``X``.
        width: hidden width of every MLP.
        depth: hidden layers of every MLP.

    Shapes: ``forward(ts, batch_size)`` -> ``(B, T, D)``.
    """

    def __init__(
        self,
        data_size: int,
        initial_noise_size: int,
        noise_size: int,
        hidden_size: int,
        width: int = 32,
        depth: int = 1,
    ) -> None:
        super().__init__()
        self.initial_noise_size = initial_noise_size
        self.initial = _lip_mlp(initial_noise_size, hidden_size, width, depth)
        self.sde = _GeneratorSDE(hidden_size, noise_size, width, depth)
        self.readout = nn.Linear(hidden_size, data_size)

    def forward(
        self,
        ts: Tensor,
        batch_size: int,
        *,
        dt: float | None = None,
        generator: torch.Generator | None = None,
        sensitivity: Literal["autograd", "adjoint"] = "autograd",
    ) -> Tensor:
        """Sample ``batch_size`` paths at the times ``ts``.

        Args:
            ts: ``(T,)`` strictly increasing times.
            batch_size: number of paths ``B``.
            dt: solver step (default: the smallest spacing of ``ts``).
            generator: source of ``V`` and of the Brownian motion (reproducible samples).
            sensitivity: ``"autograd"`` or ``"adjoint"`` (reversible Heun's exact adjoint).

        Returns:
            ``(B, T, D)`` samples.
        """
        ts = check_floating(ts, "ts")
        check_ndim(ts, "ts", 1, "(T,)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        gen_device = generator.device if generator is not None else torch.device("cpu")
        v = torch.randn(
            batch_size, self.initial_noise_size, generator=generator, device=gen_device
        ).to(device=ts.device, dtype=ts.dtype)
        x0 = self.initial(v)
        if dt is None:
            dt = float(torch.diff(ts).min()) if ts.numel() > 1 else 1.0
        xs = sdeint(
            self.sde,
            x0,
            ts,
            method="reversible_heun",
            dt=dt,
            generator=generator,
            brownian_size=self.sde.noise,
            sensitivity=sensitivity,
        )
        return self.readout(xs).transpose(0, 1)


class CDEDiscriminator(nn.Module):
    """SDE-GAN discriminator (Kidger et al. 2021): a neural CDE on the path ``Y``:
    ``H₀ = ξ(t₀, Y₀)``, ``dH = f(t, H) dt + g(t, H) dY``, score ``D = m·H_T``.

    ``Y`` is interpolated linearly between its samples, so ``dY`` is constant on each interval
    and each interval is one Heun (trapezoidal RK2) step of the CDE — the same scheme as
    reversible Heun's Stratonovich limit. ``clip_weights()`` enforces the Lipschitz constraint
    of a Wasserstein critic by clamping each linear layer's weight to ``±1/out_features`` (the
    choice of the authors' torchsde example); the LipSwish activations are 1-Lipschitz.

    Args:
        data_size: channels ``D`` of the series.
        hidden_size: size of the hidden state ``H``.
        width: hidden width of every MLP.
        depth: hidden layers of every MLP.
        fused: one MLP outputs the whole ``(H, 1 + D)`` matrix ``(f, g)``, the field of
            ``dH = (f, g)(t, H) d(t, Y)`` with time as a channel of the path (the authors'
            torchsde example; ``f`` and ``g`` share their hidden layers); ``False``: separate
            MLPs for ``f`` and ``g``.

    Shapes: ``forward(ys, ts)`` with ``ys`` ``(B, T, D)``, ``ts`` ``(T,)`` -> ``(B,)``.
    """

    def __init__(
        self,
        data_size: int,
        hidden_size: int,
        width: int = 32,
        depth: int = 1,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.data_size, self.hidden_size, self.fused = data_size, hidden_size, fused
        self.initial = _lip_mlp(1 + data_size, hidden_size, width, depth)
        self.fg: nn.Sequential | None = None
        self.f: nn.Sequential | None = None
        self.g: nn.Sequential | None = None
        if fused:
            self.fg = _lip_mlp(1 + hidden_size, hidden_size * (1 + data_size), width, depth, True)
        else:
            self.f = _lip_mlp(1 + hidden_size, hidden_size, width, depth, tanh=True)
            self.g = _lip_mlp(1 + hidden_size, hidden_size * data_size, width, depth, tanh=True)
        self.readout = nn.Linear(hidden_size, 1)

    def _field(self, t: Tensor, h: Tensor, dt: Tensor, dy: Tensor) -> Tensor:
        inp = torch.cat([t.to(h.dtype).expand(h.shape[0], 1), h], 1)
        if self.fg is not None:
            fg = self.fg(inp).view(h.shape[0], self.hidden_size, 1 + self.data_size)
            dty = torch.cat([dt.to(dy.dtype).expand(dy.shape[0], 1), dy], 1)
            return (fg @ dty.unsqueeze(-1)).squeeze(-1)
        assert self.f is not None and self.g is not None
        g = self.g(inp).view(h.shape[0], self.hidden_size, self.data_size)
        return self.f(inp) * dt + (g @ dy.unsqueeze(-1)).squeeze(-1)

    def forward(self, ys: Tensor, ts: Tensor) -> Tensor:
        """Score every path.

        Args:
            ys: ``(B, T, D)`` paths.
            ts: ``(T,)`` strictly increasing times.

        Returns:
            ``(B,)`` scores.
        """
        ys = check_floating(ys, "ys")
        check_ndim(ys, "ys", 3, "(B, T, D)")
        ts = check_floating(ts, "ts")
        check_ndim(ts, "ts", 1, "(T,)")
        if ys.shape[1] != ts.shape[0] or ys.shape[2] != self.data_size:
            raise ValueError(
                f"ys must be (B, {ts.shape[0]}, {self.data_size}) for ts of shape "
                f"{tuple(ts.shape)}, got {tuple(ys.shape)}"
            )
        if ts.numel() > 1 and not bool((torch.diff(ts) > 0).all()):
            raise ValueError("ts must be strictly increasing")
        b = ys.shape[0]
        h = self.initial(torch.cat([ts[0].expand(b, 1), ys[:, 0]], 1))
        for i in range(ts.shape[0] - 1):
            dt, dy = ts[i + 1] - ts[i], ys[:, i + 1] - ys[:, i]
            k1 = self._field(ts[i], h, dt, dy)
            k2 = self._field(ts[i + 1], h + k1, dt, dy)
            h = h + 0.5 * (k1 + k2)
        return self.readout(h).squeeze(-1)

    @torch.no_grad()
    def clip_weights(self) -> None:
        """Clamp every linear layer's weight to ``±1/out_features`` in place (Lipschitz)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                lim = 1.0 / module.out_features
                module.weight.clamp_(-lim, lim)


def wasserstein_losses(real_score: Tensor, fake_score: Tensor) -> tuple[Tensor, Tensor]:
    """The Wasserstein-GAN losses of an SDE-GAN from critic scores.

    Args:
        real_score: ``(B,)`` discriminator scores of data paths.
        fake_score: ``(B',)`` discriminator scores of generated paths.

    Returns:
        ``(discriminator_loss, generator_loss)`` = ``(E[D(fake)] − E[D(real)], −E[D(fake)])``;
        minimise the first over the discriminator, the second over the generator.
    """
    return fake_score.mean() - real_score.mean(), -fake_score.mean()


def sde_gan_step(
    generator: SDEGenerator,
    discriminator: CDEDiscriminator,
    real: Tensor,
    ts: Tensor,
    generator_optimizer: torch.optim.Optimizer,
    discriminator_optimizer: torch.optim.Optimizer,
    *,
    rng: torch.Generator | None = None,
    gradient_penalty: float | None = None,
) -> float:
    """One simultaneous SDE-GAN update (Kidger et al. 2021, the authors' torchsde example).

    Both networks are differentiated through the same Wasserstein loss
    ``L = E[D(fake)] − E[D(real)]``: the discriminator descends ``L``, the generator descends
    ``−E[D(fake)]`` (its gradient of ``L`` negated), both optimisers step, then the
    discriminator's weights are clipped (:meth:`CDEDiscriminator.clip_weights`, the Lipschitz
    constraint of the critic without a gradient penalty, so no double backprop).

    With ``gradient_penalty=λ`` the critic is instead kept 1-Lipschitz softly, as in WGAN-GP
    (Gulrajani et al. 2017; the alternative Kidger et al. discuss): ``L + λ·E[(‖∇D(Ŷ)‖ − 1)²]``
    at ``Ŷ = εY_real + (1 − ε)Y_fake``, ``ε ~ U(0, 1)`` per path (the fake paths detached
    there), differentiated by double backprop through the critic's discrete solve; no
    clipping.

    Args:
        generator: the generator.
        discriminator: the critic.
        real: ``(B, T, D)`` data paths at ``ts``.
        ts: ``(T,)`` times.
        generator_optimizer: optimiser over the generator's parameters.
        discriminator_optimizer: optimiser over the discriminator's parameters.
        rng: source of the generated batch's noise (and of ``ε``).
        gradient_penalty: ``λ > 0`` for WGAN-GP instead of weight clipping; ``None`` = clip.

    Returns:
        the discriminator loss ``L`` before the step (an estimate of minus the Wasserstein
        distance, up to the critic's Lipschitz constant).
    """
    real = check_floating(real, "real")
    check_ndim(real, "real", 3, "(B, T, D)")
    if gradient_penalty is not None:
        check_positive(gradient_penalty, "gradient_penalty")
    fake = generator(ts, real.shape[0], generator=rng)
    d_loss, _ = wasserstein_losses(discriminator(real, ts), discriminator(fake, ts))
    total = d_loss
    if gradient_penalty is not None:
        eps = torch.rand(
            real.shape[0], 1, 1, generator=rng, device="cpu" if rng is None else rng.device
        ).to(real)
        mix = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(mix, ts).sum(), mix, create_graph=True)
        norm = grad.flatten(1).norm(dim=1)
        total = d_loss + gradient_penalty * ((norm - 1) ** 2).mean()
    generator_optimizer.zero_grad()
    discriminator_optimizer.zero_grad()
    # the penalty does not reach the generator (fake detached in Ŷ): negating its gradient of
    # the total leaves -∇L, i.e. the generator descends -E[D(fake)]
    total.backward()
    for p in generator.parameters():
        if p.grad is not None:
            p.grad.neg_()
    generator_optimizer.step()
    discriminator_optimizer.step()
    if gradient_penalty is None:
        discriminator.clip_weights()
    return float(d_loss.detach())


def marginal_wasserstein(a: Tensor, b: Tensor) -> Tensor:
    """Wasserstein-1 distance between the per-time, per-channel marginals of two path samples,
    averaged over times and channels.

    With equal sample sizes the 1-D ``W₁`` is the mean absolute difference of the sorted
    samples (the optimal coupling of two empirical measures on the line is monotone).

    Args:
        a: ``(N, T, D)`` paths.
        b: ``(N, T, D)`` paths (same shape).

    Returns:
        scalar tensor.
    """
    a = check_floating(a, "a")
    b = check_floating(b, "b")
    check_ndim(a, "a", 3, "(N, T, D)")
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return (a.sort(0).values - b.sort(0).values).abs().mean()
