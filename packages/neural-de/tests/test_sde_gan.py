"""SDE-GAN generator / discriminator (Kidger et al. 2021)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from torchloom.neural_de import odeint
from torchloom.neural_de.sde import CDEDiscriminator, SDEGenerator, wasserstein_losses


def _ts(n: int = 9) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64)


def test_generator_shapes_and_reproducible() -> None:
    torch.manual_seed(0)
    gen = SDEGenerator(2, 3, 4, 5, width=8).double()
    ts = _ts()
    a = gen(ts, 6, generator=torch.Generator().manual_seed(1))
    b = gen(ts, 6, generator=torch.Generator().manual_seed(1))
    c = gen(ts, 6, generator=torch.Generator().manual_seed(2))
    assert a.shape == (6, 9, 2)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_generator_without_noise_is_the_drift_ode() -> None:
    torch.manual_seed(0)
    gen = SDEGenerator(2, 3, 4, 5, width=8).double()
    with torch.no_grad():  # σ ≡ 0: the SDE is the ODE dX = μ(t, X) dt
        last = gen.sde.diffusion[-2]
        last.weight.zero_()
        last.bias.zero_()
    ts = _ts()
    ys = gen(ts, 4, dt=1 / 64, generator=torch.Generator().manual_seed(3))
    v = torch.randn(4, 3, generator=torch.Generator().manual_seed(3)).double()
    x0 = gen.initial(v)
    xs = odeint(lambda t, x: gen.sde.f(t, x), x0, ts, method="rk4", step_size=1 / 64)
    # Reversible Heun is second order on ODEs: agreement to O(dt²).
    torch.testing.assert_close(ys, gen.readout(xs).transpose(0, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("fused", [False, True])
def test_discriminator_heun_converges_at_order_two(fused: bool) -> None:
    torch.manual_seed(0)
    disc = CDEDiscriminator(2, 4, width=8, fused=fused).double()
    g = torch.Generator().manual_seed(0)
    ys, ts = torch.randn(3, 5, 2, generator=g, dtype=torch.float64), _ts(5)

    def refine(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The same piecewise-linear path with k samples per interval.
        s = torch.linspace(0, 1, k + 1, dtype=torch.float64)[:-1]
        y = (ys[:, :-1, None] + s.view(1, 1, -1, 1) * (ys[:, 1:, None] - ys[:, :-1, None])).flatten(
            1, 2
        )
        t = (ts[:-1, None] + s * (ts[1:, None] - ts[:-1, None])).flatten()
        return torch.cat([y, ys[:, -1:]], 1), torch.cat([t, ts[-1:]])

    with torch.no_grad():
        ref = disc(*refine(64))
        errs = [float((disc(*refine(k)) - ref).abs().max()) for k in (2, 4, 8)]
    assert errs[0] > 0
    for e1, e2 in itertools.pairwise(errs):
        assert 3.0 < e1 / e2 < 5.5  # halving the step quarters the error


def test_gradients_flow_through_the_gan() -> None:
    torch.manual_seed(0)
    gen = SDEGenerator(1, 2, 2, 4, width=8).double()
    disc = CDEDiscriminator(1, 4, width=8).double()
    ts = _ts()
    fake = gen(ts, 5, generator=torch.Generator().manual_seed(0))
    real = torch.cumsum(torch.randn(5, 9, 1, dtype=torch.float64), 1)
    d_loss, g_loss = wasserstein_losses(disc(real, ts), disc(fake, ts))
    torch.testing.assert_close(d_loss, disc(fake, ts).mean() - disc(real, ts).mean())
    g_loss.backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("fused", [False, True])
def test_clip_weights_bounds_every_linear(fused: bool) -> None:
    torch.manual_seed(0)
    disc = CDEDiscriminator(2, 4, width=8, fused=fused)
    with torch.no_grad():
        for p in disc.parameters():
            p.mul_(10)
    disc.clip_weights()
    for m in disc.modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.abs().max() <= 1.0 / m.out_features + 1e-7


def test_bad_input() -> None:
    disc = CDEDiscriminator(2, 4).double()
    with pytest.raises(ValueError, match="ys must be"):
        disc(torch.zeros(3, 5, 3, dtype=torch.float64), _ts(5))
    with pytest.raises(ValueError, match="batch_size"):
        SDEGenerator(1, 1, 1, 2).double()(_ts(), 0)


def test_sde_gan_step_is_descent_on_both_losses() -> None:
    """One step with SGD equals: critic descends E[D(fake)] − E[D(real)], generator descends
    −E[D(fake)] (same noise), then the critic's weights are clipped."""
    from torchloom.neural_de.sde import sde_gan_step

    torch.manual_seed(0)
    gen = SDEGenerator(1, 2, 2, 4, width=8).double()
    disc = CDEDiscriminator(1, 4, width=8).double()
    disc.clip_weights()
    ts = _ts()
    real = torch.cumsum(torch.randn(6, 9, 1, dtype=torch.float64), 1)
    lr = 0.1
    # reference: separate autograd of each loss at the initial parameters
    fake = gen(ts, 6, generator=torch.Generator().manual_seed(5))
    d_loss, g_loss = wasserstein_losses(disc(real, ts), disc(fake, ts))
    d_grads = torch.autograd.grad(d_loss, list(disc.parameters()), retain_graph=True)
    g_grads = torch.autograd.grad(g_loss, list(gen.parameters()))
    expect_g = [p.detach() - lr * gr for p, gr in zip(gen.parameters(), g_grads)]
    expect_d = [p.detach() - lr * gr for p, gr in zip(disc.parameters(), d_grads)]
    opt_g = torch.optim.SGD(gen.parameters(), lr=lr)
    opt_d = torch.optim.SGD(disc.parameters(), lr=lr)
    loss = sde_gan_step(gen, disc, real, ts, opt_g, opt_d, rng=torch.Generator().manual_seed(5))
    assert loss == pytest.approx(float(d_loss.detach()))
    for p, e in zip(gen.parameters(), expect_g):
        torch.testing.assert_close(p.detach(), e)
    for (name, p), e in zip(disc.named_parameters(), expect_d):
        if name.endswith("weight"):
            out = p.shape[0]
            e = e.clamp(-1.0 / out, 1.0 / out)
        torch.testing.assert_close(p.detach(), e)


def test_sde_gan_step_gradient_penalty() -> None:
    """WGAN-GP variant: the critic descends L + λ·E[(‖∇D(Ŷ)‖ − 1)²] at Ŷ = εY + (1 − ε)Ŷ_fake,
    the generator's step is unchanged (the penalty does not reach it), no clipping."""
    from torchloom.neural_de.sde import sde_gan_step

    torch.manual_seed(0)
    gen = SDEGenerator(1, 2, 2, 4, width=8).double()
    disc = CDEDiscriminator(1, 4, width=8).double()
    ts = _ts()
    real = torch.cumsum(torch.randn(6, 9, 1, dtype=torch.float64), 1)
    lr, lam = 0.1, 3.0
    rng = torch.Generator().manual_seed(5)
    fake = gen(ts, 6, generator=rng)
    eps = torch.rand(6, 1, 1, generator=rng).to(real)
    d_loss, g_loss = wasserstein_losses(disc(real, ts), disc(fake, ts))
    mix = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(mix, ts).sum(), mix, create_graph=True)
    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    d_grads = torch.autograd.grad(
        d_loss + lam * penalty, list(disc.parameters()), retain_graph=True
    )
    plain = torch.autograd.grad(d_loss, list(disc.parameters()), retain_graph=True)
    g_grads = torch.autograd.grad(g_loss, list(gen.parameters()))
    expect_g = [p.detach() - lr * gr for p, gr in zip(gen.parameters(), g_grads)]
    expect_d = [p.detach() - lr * gr for p, gr in zip(disc.parameters(), d_grads)]
    assert any(not torch.allclose(a, b) for a, b in zip(d_grads, plain))  # the penalty acts
    opt_g = torch.optim.SGD(gen.parameters(), lr=lr)
    opt_d = torch.optim.SGD(disc.parameters(), lr=lr)
    loss = sde_gan_step(
        gen,
        disc,
        real,
        ts,
        opt_g,
        opt_d,
        rng=torch.Generator().manual_seed(5),
        gradient_penalty=lam,
    )
    assert loss == pytest.approx(float(d_loss.detach()))
    for p, e in zip(gen.parameters(), expect_g):
        torch.testing.assert_close(p.detach(), e)
    for p, e in zip(disc.parameters(), expect_d):  # not clipped
        torch.testing.assert_close(p.detach(), e)
    with pytest.raises(ValueError, match="gradient_penalty"):
        sde_gan_step(gen, disc, real, ts, opt_g, opt_d, gradient_penalty=0.0)


def test_marginal_wasserstein_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    from torchloom.neural_de.sde import marginal_wasserstein

    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, 2, generator=g, dtype=torch.float64)
    b = 0.5 + 2 * torch.rand(50, 4, 2, generator=g, dtype=torch.float64)
    ref = (
        sum(
            scipy_stats.wasserstein_distance(a[:, i, j].numpy(), b[:, i, j].numpy())
            for i in range(4)
            for j in range(2)
        )
        / 8
    )
    assert float(marginal_wasserstein(a, b)) == pytest.approx(ref, rel=1e-10)
    assert float(marginal_wasserstein(a, a[torch.randperm(50, generator=g)])) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        marginal_wasserstein(a, b[:10])


def test_ou_paths_match_the_exact_moments() -> None:
    """The recipe's data: E[X_t] = μ(1 − e^{−θt}), Var X_t = s0²e^{−2θt} + σ²(1 − e^{−2θt})/(2θ)."""
    import math

    from torchloom.neural_de.recipes import ou_paths

    ts = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    y = ou_paths(200_000, ts, torch.Generator().manual_seed(0)).squeeze(-1)
    for k, t in enumerate(ts.tolist()):
        mean = 1.0 * (1 - math.exp(-2 * t))
        var = 0.09 * math.exp(-4 * t) + 0.25 * (1 - math.exp(-4 * t)) / 4
        assert float(y[:, k].mean()) == pytest.approx(mean, abs=5e-3)
        assert float(y[:, k].var()) == pytest.approx(var, rel=2e-2)


def test_fused_discriminator_matches_torchcde() -> None:
    """The fused critic ``dH = (f, g)(t, H) d(t, Y)`` (the authors' torchsde example) equals
    torchcde's ``cdeint`` on the linear interpolation of ``(t, Y)`` with Heun steps on the
    sample grid (the same trapezoidal scheme)."""
    torchcde = pytest.importorskip("torchcde")
    torch.manual_seed(0)
    disc = CDEDiscriminator(2, 4, width=8, fused=True).double()
    ts = torch.tensor([0.0, 0.3, 1.0, 1.2, 2.0], dtype=torch.float64)
    ys = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = torch.cat([ts.view(1, -1, 1).expand(3, -1, 1), ys], 2)
    spline = torchcde.LinearInterpolation(torchcde.linear_interpolation_coeffs(path), t=ts)

    def field(t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        assert disc.fg is not None
        inp = torch.cat([t.expand(h.shape[0], 1), h], 1)
        return disc.fg(inp).view(h.shape[0], 4, 3)

    h0 = disc.initial(torch.cat([ts[0].expand(3, 1), ys[:, 0]], 1))
    hs = torchcde.cdeint(spline, field, h0, ts, method="heun2", options={"perturb": True})
    with torch.no_grad():
        ours = disc(ys, ts)
    torch.testing.assert_close(ours, disc.readout(hs[:, -1]).squeeze(-1).detach())
    unfused = CDEDiscriminator(2, 4, width=8).double()
    assert unfused.fg is None and disc.f is None  # the two layouts are distinct


def test_sde_gan_seed_rejects_unknown_training(tmp_path: Path) -> None:
    from torchloom.core.recipes import RunContext
    from torchloom.neural_de.recipes.generative import _sde_gan_seed

    ctx = RunContext(quick=True, out_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="training"):
        _sde_gan_seed(ctx, _ts(4).float(), 1, 4, 8, 0, training="sgd")
