"""NAF-DPM parts: activation-free NAFNet, DPM-Solver on an exactly solvable Gaussian problem."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from torchloom.vision.nafdpm import (
    NAFBlock,
    NAFNet,
    ResidualDiffusion,
    dpm_solver_sample,
    linear_alpha_bars,
)

ACTIVATIONS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.Softplus,
    nn.PReLU,
    nn.Mish,
    nn.Hardswish,
)


def test_nafnet_has_no_activation_modules() -> None:
    net = NAFNet(2, 1, width=8, enc_blocks=(1, 2), dec_blocks=(1, 1), time_embedding=True)
    assert not [m for m in net.modules() if isinstance(m, ACTIVATIONS)]


def test_nafblock_is_identity_at_init_and_not_after(device: torch.device) -> None:
    blk = NAFBlock(8).to(device)
    x = torch.randn(2, 8, 6, 7, device=device)
    torch.testing.assert_close(blk(x), x)
    with torch.no_grad():
        blk.beta.fill_(0.5)
        blk.gamma.fill_(0.5)
    y = blk(x)
    assert not torch.allclose(y, x)
    # gates make it nonlinear although no activation exists: f(2x) != 2 f(x) - ...
    assert not torch.allclose(blk(2 * x) - 2 * x, 2 * (y - x), atol=1e-4)


def test_nafnet_shapes_time_embedding_and_state_dict(device: torch.device) -> None:
    net = NAFNet(2, 1, width=8, time_embedding=True).to(device)
    x = torch.randn(3, 2, 16, 12, device=device)
    t = torch.tensor([0, 5, 99], device=device)
    out = net(x, t)
    assert out.shape == (3, 1, 16, 12)
    clone = NAFNet(2, 1, width=8, time_embedding=True).to(device)
    clone.load_state_dict(net.state_dict())
    torch.testing.assert_close(clone(x, t), out)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 10, 12, device=device), t[:1])
    with pytest.raises(ValueError, match="t "):
        net(x)
    with pytest.raises(ValueError, match="same length"):
        NAFNet(enc_blocks=(1,), dec_blocks=(1, 1))


def _gaussian_problem(mu: float, s: float, ab: torch.Tensor):
    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ab[t].sqrt().view(-1, *([1] * (x.dim() - 1)))
        var = 1 - ab[t].view(-1, *([1] * (x.dim() - 1)))
        # exact posterior mean E[x0 | x_t] for x0 ~ N(mu, s^2)
        return mu + a * s**2 / (a**2 * s**2 + var) * (x - a * mu)

    def exact(x_T: torch.Tensor) -> torch.Tensor:
        # the probability-flow ODE maps x_T to t = 0 affinely
        a_T, a_0 = ab[-1].sqrt(), ab[0].sqrt()
        sd_T = torch.sqrt(a_T**2 * s**2 + 1 - ab[-1])
        sd_0 = torch.sqrt(a_0**2 * s**2 + 1 - ab[0])
        return a_0 * mu + sd_0 / sd_T * (x_T - a_T * mu)

    return denoise, exact


def test_dpm_solver_recovers_gaussian_data_distribution() -> None:
    ab = linear_alpha_bars(100)
    mu, s = 1.5, 0.5
    denoise, _ = _gaussian_problem(mu, s, ab)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    x0 = dpm_solver_sample(denoise, x_T, ab, steps=20)
    assert abs(float(x0.mean()) - mu) < 0.02
    assert abs(float(x0.std()) - math.sqrt(s**2 + (1 - float(ab[0])))) < 0.02


def test_dpm_solver_is_second_order() -> None:
    ab = linear_alpha_bars(1000)
    denoise, exact = _gaussian_problem(0.7, 0.3, ab)
    x_T = torch.linspace(-3, 3, 101, dtype=torch.float64).view(-1, 1)
    want = exact(x_T)
    errs = [float((dpm_solver_sample(denoise, x_T, ab, n) - want).abs().max()) for n in (40, 80)]
    # halving the step size divides the error by ~4 for a second-order method
    assert errs[0] / errs[1] > 3.0


def test_residual_diffusion_trains_and_restores(device: torch.device) -> None:
    pred = NAFNet(1, 1, width=8)
    den = NAFNet(2, 1, width=8, time_embedding=True)
    model = ResidualDiffusion(pred, den, num_steps=100).to(device)
    x = torch.rand(2, 1, 16, 16, device=device)
    y = x + 0.1 * torch.randn_like(x)
    g = torch.Generator().manual_seed(0)
    loss = model.loss(y, x, generator=g)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in den.parameters() if p.requires_grad)
    out = model.restore(y, steps=5, generator=g)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="steps"):
        dpm_solver_sample(lambda x, t: x, torch.zeros(2, 1), linear_alpha_bars(10), steps=10)
    with pytest.raises(ValueError, match="num_steps"):
        linear_alpha_bars(1)
    with pytest.raises(ValueError, match="channels"):
        NAFNet(1, 1)(torch.zeros(1, 3, 8, 8))


def test_synthetic_documents() -> None:
    from torchloom.vision.nafdpm import synthetic_documents

    clean, degraded = synthetic_documents(6, 48, seed=3)
    assert clean.shape == degraded.shape == (6, 1, 48, 48)
    for t in (clean, degraded):
        assert float(t.min()) >= 0 and float(t.max()) <= 1
    ink = (clean < 0.5).float().mean(dim=(1, 2, 3))
    assert bool((ink > 0.02).all()) and bool((ink < 0.4).all())
    mse = torch.mean((clean - degraded) ** 2, dim=(1, 2, 3))
    assert bool((10 * torch.log10(1 / mse) < 25).all())  # visibly degraded
    again = synthetic_documents(6, 48, seed=3)
    torch.testing.assert_close(again[0], clean)
    torch.testing.assert_close(again[1], degraded)
    with pytest.raises(ValueError, match="size"):
        synthetic_documents(2, 8)


def _levenshtein(a: str, b: str) -> int:

    @functools.cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_character_error_rate_matches_recursive_levenshtein() -> None:
    import random

    from torchloom.vision.nafdpm import character_error_rate

    rng = random.Random(0)
    preds = ["".join(rng.choice("ABC") for _ in range(rng.randint(0, 7))) for _ in range(40)]
    targets = ["".join(rng.choice("ABC") for _ in range(rng.randint(1, 7))) for _ in range(40)]
    want = sum(_levenshtein(p, t) for p, t in zip(preds, targets)) / sum(map(len, targets))
    assert character_error_rate(preds, targets) == pytest.approx(want)
    assert character_error_rate(targets, targets) == 0.0
    with pytest.raises(ValueError, match="same length"):
        character_error_rate(["A"], [])


def test_ctc_greedy_decode_and_loss_agree_on_a_known_path() -> None:
    from torchloom.vision.nafdpm import TEXT_ALPHABET, ctc_greedy_decode, encode_text

    word = "AAB1"
    # path: A A _ A B B _ 1 _ -> "AAB1" (the blank separates the repeated A)
    path = [1, 1, 0, 1, 2, 2, 0, TEXT_ALPHABET.index("1") + 1, 0]
    logits = torch.full((len(path), 1, len(TEXT_ALPHABET) + 1), -10.0)
    for t, k in enumerate(path):
        logits[t, 0, k] = 10.0
    log_probs = logits.log_softmax(-1)
    assert ctc_greedy_decode(log_probs) == [word]
    targets, lengths = encode_text([word])
    good = torch.nn.functional.ctc_loss(log_probs, targets, torch.tensor([9]), lengths)
    bad_t, bad_l = encode_text(["AB1"])
    bad = torch.nn.functional.ctc_loss(log_probs, bad_t, torch.tensor([9]), bad_l)
    assert float(good) < 1e-3 < float(bad)
    with pytest.raises(ValueError, match="alphabet"):
        encode_text(["a?"])


def test_synthetic_text_lines_and_crnn_shapes() -> None:
    from torchloom.vision.nafdpm import CRNN, TEXT_ALPHABET, synthetic_text_lines

    clean, degraded, texts = synthetic_text_lines(5, 24, 96, (4, 7), seed=1)
    assert clean.shape == degraded.shape == (5, 1, 24, 96) and len(texts) == 5
    assert all(4 <= len(t) <= 7 and set(t) <= set(TEXT_ALPHABET) for t in texts)
    # more characters -> more ink
    ink = (clean < 0.5).float().sum(dim=(1, 2, 3))
    assert (
        float(torch.corrcoef(torch.stack([ink, torch.tensor([len(t) for t in texts])]))[0, 1]) > 0
    )
    again = synthetic_text_lines(5, 24, 96, (4, 7), seed=1)
    torch.testing.assert_close(again[1], degraded)
    assert again[2] == texts
    crnn = CRNN(height=24)
    out = crnn(clean)
    assert out.shape == (24, 5, len(TEXT_ALPHABET) + 1)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(24, 5))
    with pytest.raises(ValueError, match="width"):
        synthetic_text_lines(2, 24, 40, (4, 7))
    with pytest.raises(ValueError, match="divisible by 8"):
        CRNN(height=20)


def test_ocr_aware_loss_reduces_to_diffusion_loss_and_trains_the_restorer() -> None:
    from torchloom.vision.nafdpm import CRNN, ocr_aware_loss

    torch.manual_seed(0)
    model = ResidualDiffusion(NAFNet(1, 1, width=8), NAFNet(2, 1, width=8, time_embedding=True))
    crnn = CRNN(height=24).eval().requires_grad_(False)
    x = torch.rand(2, 1, 24, 32)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    texts = ["AB", "C1"]
    plain = model.loss(y, x, generator=torch.Generator().manual_seed(4))
    same = ocr_aware_loss(model, crnn, y, x, texts, 0.0, torch.Generator().manual_seed(4))
    torch.testing.assert_close(same, plain)
    loss = ocr_aware_loss(model, crnn, y, x, texts, 1.0, torch.Generator().manual_seed(4))
    assert float(loss) > float(plain)
    loss.backward()
    assert all(p.grad is not None for p in model.denoiser.parameters())
    assert all(p.grad is None for p in crnn.parameters())


def test_nafnet_global_residual_switch() -> None:
    torch.manual_seed(0)
    with_res = NAFNet(2, 1, width=8, time_embedding=True)
    without = NAFNet(2, 1, width=8, time_embedding=True, global_residual=False)
    without.load_state_dict(with_res.state_dict())
    x = torch.randn(2, 2, 8, 8)
    t = torch.tensor([3, 50])
    # the only difference is the skip of the first input channel
    torch.testing.assert_close(with_res(x, t) - without(x, t), x[:, :1])
    NAFNet(1, 3, global_residual=False)  # more outputs than inputs is fine without the skip
    with pytest.raises(ValueError, match="out_channels"):
        NAFNet(1, 3)


def test_frozen_crnn_passes_input_gradients_on_every_device(device: torch.device) -> None:
    """OCR-aware fine-tuning backpropagates through a CRNN in eval mode (cuDNN refuses that)."""
    from torchloom.vision.nafdpm import CRNN

    torch.manual_seed(0)
    crnn = CRNN(height=24).eval().requires_grad_(False)
    x = torch.rand(2, 1, 24, 32, dtype=torch.float64)
    grads = []
    for dev in (torch.device("cpu"), device):
        xd = x.detach().to(dev).requires_grad_(True)
        model = crnn.to(device=dev, dtype=torch.float64)
        model.loss(xd, ["AB", "C1"]).backward()
        assert xd.grad is not None
        grads.append(xd.grad.cpu())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])
