"""Pointer network: attention formula, masking, decoding consistency, padding invariance."""

import itertools

import pytest
import torch

from torchloom.ssm import PointerAttention, PointerNetwork


def test_attention_formula(device: torch.device) -> None:
    att = PointerAttention(4).to(device).double()
    enc = torch.randn(2, 5, 4, dtype=torch.float64, device=device)
    dec = torch.randn(2, 4, dtype=torch.float64, device=device)
    want = torch.einsum(
        "h,bjh->bj",
        att.v.weight[0],
        torch.tanh(enc @ att.w1.weight.T + (dec @ att.w2.weight.T)[:, None]),
    )
    torch.testing.assert_close(att(enc, dec), want)
    mask = torch.ones(2, 5, dtype=torch.bool, device=device)
    mask[0, 2] = False
    u = att(enc, dec, mask)
    assert u[0, 2] < -1e8 and torch.allclose(u[1], want[1])


def _sequence_logp(net: PointerNetwork, x: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    logp = net(x, seq)
    tgt = seq.clamp(min=0)
    lp = logp.gather(-1, tgt[..., None])[..., 0]
    return (lp * (seq >= 0)).sum(-1)


def test_no_repeat_masks_chosen_positions() -> None:
    net = PointerNetwork(2, 8, eos=False).double()
    x = torch.rand(3, 5, 2, dtype=torch.float64)
    seq = torch.stack([torch.randperm(5) for _ in range(3)])
    p = net(x, seq).exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 5, dtype=torch.float64))
    for t in range(1, 5):
        for b in range(3):
            assert p[b, t, seq[b, :t]].max() < 1e-12


def test_greedy_score_matches_teacher_forcing() -> None:
    for eos in (True, False):
        net = PointerNetwork(2, 16, eos=eos).double()
        x = torch.rand(4, 6, 2, dtype=torch.float64)
        seq, score = net.decode(x)
        torch.testing.assert_close(_sequence_logp(net, x, seq), score)
        if not eos:
            for row in seq.tolist():
                assert sorted(row) == list(range(6))  # a permutation


def test_exhaustive_beam_finds_best_permutation() -> None:
    net = PointerNetwork(2, 16, eos=False).double()
    x = torch.rand(2, 4, 2, dtype=torch.float64)
    seq, score = net.decode(x, beam_size=24)  # 4! = 24 permutations, beam = exhaustive search
    perms = torch.tensor(list(itertools.permutations(range(4))))
    for b in range(2):
        all_lp = _sequence_logp(net, x[b : b + 1].expand(24, -1, -1), perms)
        torch.testing.assert_close(score[b], all_lp.max())
        torch.testing.assert_close(_sequence_logp(net, x[b : b + 1], seq[b : b + 1])[0], score[b])
    greedy = net.decode(x)[1]
    assert bool((score >= greedy - 1e-12).all())


def test_padding_invariance(device: torch.device) -> None:
    net = PointerNetwork(2, 8, eos=True).to(device).double()
    a = torch.rand(1, 4, 2, dtype=torch.float64, device=device)
    b = torch.rand(1, 7, 2, dtype=torch.float64, device=device)
    padded = torch.cat([torch.cat([a, torch.zeros(1, 3, 2, device=device).double()], 1), b])
    lengths = torch.tensor([4, 7], device=device)
    seq, score = net.decode(padded, lengths, beam_size=3)
    seq_a, score_a = net.decode(a, beam_size=3)
    torch.testing.assert_close(score[0], score_a[0])
    assert seq[0, : seq_a.shape[1]].tolist() == seq_a[0].tolist()
    assert bool((seq[0] <= 4).all())  # never points at padding (positions 1..4 + EOS 0)
    tgt = torch.tensor([[2, 1, 0, -1, -1], [3, 5, 7, 1, 0]], device=device)
    lp = net(padded, tgt, lengths)
    lp_a = net(a, tgt[:1, :3])
    torch.testing.assert_close(lp[0, :3, :5], lp_a[0])


def test_loss_backward_and_state_dict() -> None:
    net = PointerNetwork(2, 8)
    x = torch.rand(3, 5, 2)
    tgt = torch.tensor([[1, 2, 3, 0], [2, 4, 0, -1], [5, 1, 2, 0]])
    net.loss(x, tgt).backward()
    assert all(p.grad is not None for p in net.parameters())
    other = PointerNetwork(2, 8)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(x, tgt), net(x, tgt))


def test_bad_input() -> None:
    net = PointerNetwork(2, 8)
    with pytest.raises(ValueError, match="x must"):
        net.decode(torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="lengths"):
        net.decode(torch.rand(2, 5, 2), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="beam_size"):
        net.decode(torch.rand(2, 5, 2), beam_size=0)
    with pytest.raises(ValueError, match="targets"):
        net(torch.rand(2, 5, 2), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="hidden"):
        PointerNetwork(2, 0)
