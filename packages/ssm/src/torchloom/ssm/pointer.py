"""Pointer Networks (Vinyals, Fortunato, Jaitly, NeurIPS 2015).

An LSTM encoder reads the inputs ``P_1..P_n``; an LSTM decoder, fed the input it pointed at on
the previous step, scores every input position with content-based attention (paper eq. 3)::

    u^i_j = v^T tanh(W_1 e_j + W_2 d_i),     p(C_i | C_1..C_{i−1}, P) = softmax(u^i)

and the softmax itself is the output distribution, a *pointer* to an input position — so the
output dictionary grows with the input. With ``eos=True`` a learnt end-of-sequence key is
position 0 and the points are positions ``1..n`` (convex hull: stop by pointing at 0); with
``no_repeat=True`` positions already chosen are masked (permutations, TSP). Padding positions of
shorter sequences are masked (``lengths``). Decoding is greedy or by beam search.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_floating, check_ndim

__all__ = ["PointerAttention", "PointerNetwork"]

_NEG = -1e9  # finite so that a fully masked row still gives a defined softmax


class PointerAttention(nn.Module):
    """Additive attention scores ``u_j = v^T tanh(W_1 e_j + W_2 d)`` used as pointer logits.

    Shapes: ``enc`` ``(B, n, H)``, ``dec`` ``(B, H)``, ``mask`` ``(B, n)`` bool (True = allowed)
    → logits ``(B, n)``, masked entries set to a large negative number.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, hidden, bias=False)
        self.w2 = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(
        self, enc: torch.Tensor, dec: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.score(self.w1(enc), dec, mask)

    def score(
        self, enc_proj: torch.Tensor, dec: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """As :meth:`forward` with ``W_1 e`` precomputed (it is the same at every step)."""
        u: torch.Tensor = self.v(torch.tanh(enc_proj + self.w2(dec)[:, None, :])).squeeze(-1)
        if mask is not None:
            u = u.masked_fill(~mask, _NEG)
        return u


class PointerNetwork(nn.Module):
    """Ptr-Net: LSTM encoder, LSTM decoder, pointer attention.

    Args:
        d_input: features per input element (2 for planar points).
        hidden: LSTM and attention width.
        eos: add an end-of-sequence position 0 (outputs of variable length).
        no_repeat: mask positions already pointed at.

    Shapes:
        forward (teacher forcing): ``x`` ``(B, n, d_input)``, ``targets`` ``(B, T)`` pointer
        indices (``-1`` pads) → log-probabilities ``(B, T, n + eos)``.
        decode: → indices ``(B, T_max)`` padded with ``-1`` and sequence log-probabilities ``(B,)``.
    """

    def __init__(
        self, d_input: int = 2, hidden: int = 128, *, eos: bool = True, no_repeat: bool = True
    ) -> None:
        super().__init__()
        for name, v in (("d_input", d_input), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.d_input, self.hidden, self.eos, self.no_repeat = d_input, hidden, eos, no_repeat
        self.embed = nn.Linear(d_input, hidden)
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.decoder = nn.LSTMCell(hidden, hidden)
        self.attention = PointerAttention(hidden)
        self.start = nn.Parameter(torch.zeros(hidden).uniform_(-0.1, 0.1))
        self.eos_key = nn.Parameter(torch.zeros(hidden).uniform_(-0.1, 0.1)) if eos else None

    @property
    def offset(self) -> int:
        """Index of the first input element among the pointer positions (1 with ``eos``)."""
        return 1 if self.eos else 0

    def _check(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        check_floating(x, "x")
        check_ndim(x, "x", 3, "(B, n, d_input)")
        if x.shape[-1] != self.d_input or x.shape[1] < 1:
            raise ValueError(f"x must have shape (B, n >= 1, {self.d_input}), got {tuple(x.shape)}")
        b, n = x.shape[:2]
        if lengths is None:
            return torch.full((b,), n, dtype=torch.long, device=x.device)
        if lengths.shape != (b,) or lengths.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"lengths must be an integer tensor of shape ({b},), got {lengths}")
        if bool((lengths < 1).any()) or bool((lengths > n).any()):
            raise ValueError(f"lengths must lie in [1, {n}], got {lengths.tolist()}")
        return lengths.to(x.device).long()

    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Keys ``(B, P, H)`` (EOS first), embedded inputs, decoder init state, valid mask."""
        b, n = x.shape[:2]
        e = self.embed(x)
        packed = nn.utils.rnn.pack_padded_sequence(
            e, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h, c) = self.encoder(packed)
        keys, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=n)
        valid = torch.arange(n, device=x.device)[None, :] < lengths[:, None]
        if self.eos_key is not None:
            keys = torch.cat([self.eos_key.expand(b, 1, -1), keys], 1)
            valid = torch.cat([valid.new_ones(b, 1), valid], 1)
        return keys, e, (h[0], c[0]), valid

    def _inputs_for(self, emb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        # decoder input: the embedded element pointed at (EOS/pad -> start vector)
        j = (idx - self.offset).clamp(min=0)
        picked = emb.gather(1, j[:, None, None].expand(-1, 1, emb.shape[-1]))[:, 0]
        is_point = idx >= self.offset
        return torch.where(is_point[:, None], picked, self.start.expand_as(picked))

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        lengths = self._check(x, lengths)
        if targets.dim() != 2 or targets.shape[0] != x.shape[0]:
            raise ValueError(
                f"targets must have shape ({x.shape[0]}, T), got {tuple(targets.shape)}"
            )
        keys, emb, state, valid = self.encode(x, lengths)
        proj = self.attention.w1(keys)
        inp = self.start.expand(x.shape[0], -1)
        chosen = torch.zeros_like(valid)
        out = []
        for t in range(targets.shape[1]):
            state = self.decoder(inp, state)
            mask = valid & ~chosen if self.no_repeat else valid
            if self.eos:
                mask = mask.clone()
                mask[:, 0] = True
            out.append(F.log_softmax(self.attention.score(proj, state[0], mask), -1))
            tgt = targets[:, t].clamp(min=0)
            chosen = chosen | F.one_hot(tgt, keys.shape[1]).bool() & (targets[:, t : t + 1] >= 0)
            inp = self._inputs_for(emb, targets[:, t].clamp(min=0))
        return torch.stack(out, 1)

    def loss(
        self, x: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean negative log-likelihood of ``targets`` (``-1`` entries ignored)."""
        logp = self(x, targets, lengths)
        return F.nll_loss(logp.flatten(0, 1), targets.flatten(), ignore_index=-1)

    @torch.no_grad()
    def decode(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        beam_size: int = 1,
        max_steps: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy (``beam_size=1``) or beam-search decoding.

        Without EOS a sequence ends after ``length`` steps (a permutation when ``no_repeat``);
        with EOS it ends when position 0 is chosen. Returned indices include the EOS pointer.
        """
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
        lengths = self._check(x, lengths)
        b, n = x.shape[:2]
        k = beam_size
        steps = max_steps if max_steps is not None else n + self.offset
        keys, emb, (h, c), valid = self.encode(x, lengths)

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.repeat_interleave(k, 0)

        keys, emb, h, c, valid = rep(keys), rep(emb), rep(h), rep(c), rep(valid)
        lens = rep(lengths)
        proj = self.attention.w1(keys)
        p = keys.shape[1]
        scores = torch.full((b, k), float("-inf"), device=x.device, dtype=keys.dtype)
        scores[:, 0] = 0.0
        chosen = torch.zeros_like(valid)
        done = torch.zeros(b * k, dtype=torch.bool, device=x.device)
        history = torch.full((b * k, 0), -1, dtype=torch.long, device=x.device)
        inp = self.start.expand(b * k, -1)
        for _ in range(steps):
            if bool(done.all()):
                break
            h, c = self.decoder(inp, (h, c))
            mask = valid & ~chosen if self.no_repeat else valid.clone()
            if self.eos:
                mask[:, 0] = True
            logp = F.log_softmax(self.attention.score(proj, h, mask), -1)
            logp = logp.masked_fill(~mask, float("-inf"))
            # a finished beam continues with exactly one zero-cost "pad" move
            pad = torch.full_like(logp, float("-inf"))
            pad[:, 0] = 0.0
            logp = torch.where(done[:, None], pad, logp)
            cand = (scores.reshape(-1, 1) + logp).reshape(b, k * p)
            scores, flat = cand.topk(k, dim=-1)
            beam = flat // p
            pos = flat % p
            src = (beam + torch.arange(b, device=x.device)[:, None] * k).reshape(-1)
            pos = pos.reshape(-1)
            h, c, chosen, done, history = h[src], c[src], chosen[src], done[src], history[src]
            step_idx = torch.where(done, torch.full_like(pos, -1), pos)
            history = torch.cat([history, step_idx[:, None]], 1)
            chosen = chosen | (F.one_hot(pos, p).bool() & ~done[:, None])
            newly = (pos == 0) if self.eos else torch.zeros_like(done)
            done = done | newly | (history.ge(0).sum(1) >= lens + self.offset)
            inp = self._inputs_for(emb, pos)
        best = scores.argmax(-1)
        rows = best + torch.arange(b, device=x.device) * k
        return history[rows], scores[torch.arange(b, device=x.device), best]
