"""SMA / SeqBoat: compression round trip, local attention vs dense, forced paths, linear cost."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from torch.utils.flop_counter import FlopCounterMode

from torchloom.ssm.sma import (
    LatentConfigurator,
    SeqBoat,
    SeqBoatLayer,
    compress_tokens,
    expand_tokens,
    local_attention,
)


@given(b=st.integers(1, 3), length=st.integers(1, 20), seed=st.integers(0, 1000))
def test_compress_expand_round_trip(b: int, length: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, 3, generator=g, dtype=torch.float64)
    mask = torch.rand(b, length, generator=g) < 0.5
    xc, valid, pos = compress_tokens(x, mask)
    assert xc.shape[1] == int(mask.sum(1).max())
    for i in range(b):
        torch.testing.assert_close(xc[i, valid[i]], x[i, mask[i]])
        assert pos[i, valid[i]].tolist() == torch.nonzero(mask[i])[:, 0].tolist()
        assert bool((xc[i, ~valid[i]] == 0).all())
    torch.testing.assert_close(expand_tokens(xc, mask), x * mask[..., None])


def _dense_attention(q, k, v, window, causal, activation, bias=None, pos=None):
    length = q.shape[1]
    i = torch.arange(length)
    delta = i[:, None] - i[None, :]
    allowed = (delta >= 0) & (delta < window) if causal else delta.abs() < window
    if activation == "softmax":
        sim = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    else:
        sim = q @ k.transpose(1, 2) / (window if causal else 2 * window)
    if bias is not None:
        sim = sim + bias(pos[:, :, None] - pos[:, None, :])
    if activation == "softmax":
        attn = torch.softmax(sim.masked_fill(~allowed, float("-inf")), -1)
    else:
        attn = F.relu(sim).square() * allowed
    return attn @ v


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("activation", ["softmax", "relu2"])
@given(length=st.integers(1, 30), window=st.integers(1, 8))
def test_local_attention_equals_dense_band(
    causal: bool, activation: str, length: int, window: int
) -> None:
    q, k, v = (torch.randn(2, length, 4, dtype=torch.float64) for _ in range(3))
    got = local_attention(q, k, v, window, causal=causal, activation=activation)  # type: ignore[arg-type]
    torch.testing.assert_close(got, _dense_attention(q, k, v, window, causal, activation))


def _layer(**kw) -> SeqBoatLayer:
    # full-size GAU outputs (gamma ~ 1) so that the equivalences below compare large numbers
    kw.setdefault("init", "unit_gamma")
    torch.manual_seed(0)
    return SeqBoatLayer(8, d_qk=6, state_dim=4, window=4, **kw).double()


def _dense_reference(layer: SeqBoatLayer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SeqBoat written densely per sequence: GAU over the activated tokens only."""
    xn = layer.norm(x) if layer.prenorm else x
    m = F.silu(layer.ssm(xn))
    u, hx = layer.hx_proj(m).split([2, layer.d_model], -1)
    p = layer.configurator(u)
    h = torch.zeros_like(hx)
    gau = layer.gau
    for b in range(x.shape[0]):
        idx = torch.nonzero(mask[b])[:, 0]
        if len(idx) == 0:
            continue
        z, r, v = F.silu(gau.proj(m[b, idx])).split([gau.d_qk, gau.d_hidden, gau.d_hidden], -1)
        q, k = (z[:, None, :] * gau.gamma + gau.beta).unbind(-2)
        a = _dense_attention(
            q[None],
            k[None],
            v[None],
            gau.window,
            gau.causal,
            gau.activation,
            gau.rel_bias,
            idx[None],
        )[0]
        h[b, idx] = gau.out(a * r)
    return h, hx, p


def test_all_activated_equals_dense_gau_path() -> None:
    layer = _layer()
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    out, mask, conf = layer.forward_with_gate(x, "all")
    assert bool(mask.all())
    h, hx, p = _dense_reference(layer, x, mask)
    torch.testing.assert_close(conf, p[..., 1])
    torch.testing.assert_close(out, F.silu(hx + h * p[..., 1:2] + x))


def test_none_activated_equals_ssm_path() -> None:
    layer = _layer()
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    out, mask, _ = layer.forward_with_gate(x, "none")
    assert not bool(mask.any())
    _, hx, _ = _dense_reference(layer, x, mask)
    torch.testing.assert_close(out, F.silu(hx + x))


@pytest.mark.parametrize("causal", [True, False])
def test_learned_sparse_activation_equals_dense_on_subset(causal: bool) -> None:
    layer = _layer(causal=causal)
    with torch.no_grad():  # option 1 wins where a random projection of m is positive
        layer.hx_proj.weight[:2] = 0.0
        layer.hx_proj.weight[1] = 5 * torch.randn(8, dtype=torch.float64)
        layer.hx_proj.bias[:2] = 0.0
    x = torch.randn(3, 17, 8, dtype=torch.float64)
    out, mask, conf = layer.forward_with_gate(x)
    assert 0 < int(mask.sum()) < mask.numel()
    h, hx, p = _dense_reference(layer, x, mask)
    torch.testing.assert_close(conf, p.max(-1).values)
    torch.testing.assert_close(out, F.silu(hx + h * (conf * mask)[..., None] + x))


def test_gradient_reaches_configurator_and_is_finite() -> None:
    model = SeqBoat(2, 3, d_model=8, n_layers=2, d_qk=4, state_dim=4, window=3)
    x = torch.randn(2, 11, 2)
    out, masks = model.forward_with_gates(x)
    out.sum().backward()
    assert len(masks) == 2
    for name, p in model.named_parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all()), name
    layer = model.layers[0]
    assert layer.hx_proj.weight.grad is not None
    assert layer.configurator.log_temp.grad is not None


def test_latent_configurator_temperature() -> None:
    # the authors' default: tau_0 = 0.3 sqrt(d)
    c = LatentConfigurator(16)
    torch.testing.assert_close(c.log_temp.exp(), torch.tensor(1.2))
    c = LatentConfigurator(16, init_temp_scale=1.0)
    torch.testing.assert_close(c.log_temp.exp(), torch.tensor(4.0))
    u = torch.tensor([[0.0, 8.0]])
    torch.testing.assert_close(c(u), torch.softmax(u / 4.0, -1))


def _flops(layer: SeqBoatLayer, length: int) -> int:
    x = torch.randn(1, length, 8, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        layer(x, "all")
    return counter.get_total_flops()


def test_cost_is_linear_in_length() -> None:
    layer = _layer()
    f1, f4 = _flops(layer, 128), _flops(layer, 512)
    assert f4 / f1 <= 5.0, (f1, f4)
    # dense attention would be quadratic: the band keeps the ratio near 4
    assert f4 / f1 >= 3.0


def test_state_dict_and_device(device: torch.device) -> None:
    a = SeqBoat(1, 2, d_model=8, n_layers=1, d_qk=4, state_dim=4, window=3).to(device)
    b = SeqBoat(1, 2, d_model=8, n_layers=1, d_qk=4, state_dim=4, window=3).to(device)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 9, 1, device=device)
    torch.testing.assert_close(a(x), b(x))
    assert a(x).device.type == device.type


def test_bad_input() -> None:
    layer = SeqBoatLayer(8, window=4)
    with pytest.raises(ValueError, match="x must"):
        layer(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="activate"):
        layer(torch.randn(2, 5, 8), "some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window"):
        SeqBoatLayer(8, window=0)
    with pytest.raises(ValueError, match="attention"):
        SeqBoatLayer(8, attention="linear")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["learned", "all", "none"])
def test_forward_with_probs_is_the_configurator_softmax(mode: str) -> None:
    torch.manual_seed(1)
    model = SeqBoat(2, 3, d_model=8, n_layers=2, d_qk=4, state_dim=4, window=3).double()
    with torch.no_grad():  # spread the option logits so both choices occur
        for layer in model.layers:
            layer.hx_proj.weight[1] = 5 * torch.randn(8, dtype=torch.float64)
    x = torch.randn(2, 11, 2, dtype=torch.float64)
    out, masks, probs = model.forward_with_probs(x, mode)  # type: ignore[arg-type]
    torch.testing.assert_close(out, model(x, mode))  # type: ignore[arg-type]
    # recompute p_1 = softmax(u / tau)[..., 1] layer by layer
    h = model.encoder(x)
    for layer, mask, p1 in zip(model.layers, masks, probs):
        m = F.silu(layer.ssm(layer.norm(h)))
        u = layer.hx_proj(m)[..., :2]
        want = torch.softmax(u / layer.configurator.log_temp.exp(), -1)[..., 1]
        torch.testing.assert_close(p1, want)
        if mode == "learned":
            assert torch.equal(mask, want > 0.5)
        h = layer(h, mode)  # type: ignore[arg-type]


def test_init_gate_bias_starts_every_token_activated() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 20, 8)
    on = SeqBoatLayer(8, d_qk=4, state_dim=4, window=4, init_gate_bias=5.0)
    assert bool(on.forward_with_gate(x)[1].all())
    off = SeqBoatLayer(8, d_qk=4, state_dim=4, window=4, init_gate_bias=-5.0)
    assert not bool(off.forward_with_gate(x)[1].any())
    # the bias only moves the "activate" logit
    torch.testing.assert_close(on.hx_proj.bias[2:], torch.zeros(8))
    assert float(on.hx_proj.bias[0].detach()) == 0.0


def test_authors_init_truncated_normal_and_near_zero_gau_output() -> None:
    torch.manual_seed(0)
    layer = SeqBoatLayer(32, d_qk=16, state_dim=4, window=4)  # init="authors"
    gau = layer.gau
    for name, w in (
        ("proj", gau.proj.weight),
        ("out", gau.out.weight),
        ("gamma", gau.gamma),
        ("hx_proj", layer.hx_proj.weight),
    ):
        w = w.detach()
        assert float(w.abs().max()) <= 0.04 + 1e-7, name  # truncated at 2 std
        # std of N(0, 0.02^2) truncated at +-2 std: 0.02 * 0.880
        assert abs(float(w.std()) - 0.0176) < 0.003, name
    for b in (gau.proj.bias, gau.out.bias, gau.beta, layer.hx_proj.bias):
        assert bool((b == 0).all())
    m = torch.randn(2, 20, 32)
    big = SeqBoatLayer(32, d_qk=16, state_dim=4, window=4, init="unit_gamma").gau
    # the GAU starts (almost) silent with the authors' init, at full size with gamma ~ 1
    with torch.no_grad():
        assert float(gau(m).norm()) < 0.05 * float(big(m).norm())
    with pytest.raises(ValueError, match="init"):
        SeqBoatLayer(8, init="xavier")  # type: ignore[arg-type]


def test_skipped_tokens_send_no_gradient_to_their_option_logits() -> None:
    layer = _layer()
    with torch.no_grad():  # a mix of activated and skipped tokens
        layer.hx_proj.weight[1] = 5 * torch.randn(8, dtype=torch.float64)
    saved: dict[str, torch.Tensor] = {}

    def keep(_mod: object, _inp: object, out: torch.Tensor) -> None:
        out.retain_grad()
        saved["hu"] = out

    handle = layer.hx_proj.register_forward_hook(keep)
    x = torch.randn(3, 15, 8, dtype=torch.float64)
    out, mask, _ = layer.forward_with_gate(x)
    handle.remove()
    (out * torch.randn_like(out)).sum().backward()
    g_u = saved["hu"].grad[..., :2].abs().sum(-1)
    assert 0 < int(mask.sum()) < mask.numel()
    # SMA: the choice gets a gradient only through the confidence of an activated token
    assert bool((g_u[~mask] == 0).all())
    assert bool((g_u[mask] > 0).all())
