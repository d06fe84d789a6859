"""Sparse Modular Activation and SeqBoat (Ren, Liu, Wang, Xu, Zhu, Zhai, NeurIPS 2023).

SeqBoat layer (paper Sec. 3–4), for ``x ∈ R^{L×d}``:

1. ``m = SiLU(SSM(Norm(x)))`` — a state-space layer (here :class:`~torchloom.ssm.lssl.LSSL`)
   gives every token a representation of its whole history;
2. ``[u, h_x] = W_h m`` — two option logits ``u`` and the SSM path ``h_x``;
3. **latent configurator**: ``p = softmax(u / τ)`` with a learnt temperature
   ``τ = exp(θ)`` (initialised to ``0.3 sqrt(d)``, the authors' ``init_temp_scale``); a token
   *activates* the sub-module when option 1 wins, ``a = [argmax p = 1]``, and its module output
   is scaled by the winning probability ``p_max`` — the discrete choice is made in the forward
   pass while the gradient reaches the configurator through that confidence (SMA's
   differentiable sparse activation). As in the authors' code (renll/SeqBoat, learned-temperature
   path), there is no Gumbel noise and no auxiliary sparsity loss: how many tokens activate is
   decided by the task loss alone (Gumbel sampling with an annealed 2 → 0.5 temperature is only
   their fixed-temperature alternative);
4. the activated tokens are **compressed** (gathered in order), a Gated Attention Unit with
   **local** attention over windows of ``w`` *activated* tokens runs on them, and the result is
   scattered back (skipped tokens get 0);
5. ``y = SiLU(h_x + a · p_max · GAU(m) + x)``.

Because the attention is local on the compressed sequence the cost is ``O(L w)``, linear in
``L``, while an attention window can span arbitrarily many skipped tokens.

Where sparsity comes from (task loss only): an activated token's confidence ``p_max`` gets the
gradient ``<∂L/∂y, GAU(m)>``; where the GAU output does not help the token, the loss lowers the
activate option until it loses the argmax, and a skipped token sends no gradient back (it can
come back only through the shared ``W_h``). This needs the authors' initialisation
(``init="authors"``): every GAU weight and ``γ`` drawn from a truncated ``N(0, 0.02²)``, so the
GAU output starts ``≈ 0`` — with a full-size random GAU output at the start, the loss switches
every token off before the attention has learnt anything.

GAU (Hua et al., 2022): ``[z, r, v] = SiLU(W m)``, ``q = z γ_q + β_q``, ``k = z γ_k + β_k``,
``o = W_o((A v) ⊙ r)`` with ``A = softmax(q k^T / sqrt(d_qk) + b_rel)`` (or
``relu(q k^T / w + b_rel)^2``) restricted to the window; ``b_rel`` is a learnt bias on the
*original* token distance.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_floating, check_ndim
from torchloom.ssm.lssl import LSSL

__all__ = [
    "GatedAttentionUnit",
    "LatentConfigurator",
    "SeqBoat",
    "SeqBoatLayer",
    "compress_tokens",
    "expand_tokens",
    "local_attention",
]

Activation = Literal["learned", "all", "none"]
Init = Literal["authors", "unit_gamma"]


def _trunc_normal_(t: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """In place ``N(0, std²)`` truncated at ``±2 std`` (the authors' ``Normal`` initialiser)."""
    with torch.no_grad():
        return nn.init.trunc_normal_(t, 0.0, std, -2.0 * std, 2.0 * std)


class LatentConfigurator(nn.Module):
    """Tempered softmax over options, ``p = softmax(u / exp(θ))``, ``θ₀ = log(scale·sqrt(d))``.

    Shapes: ``u`` ``(..., K)`` → probabilities ``(..., K)``.
    """

    def __init__(self, d_model: int, init_temp_scale: float = 0.3) -> None:
        super().__init__()
        self.log_temp = nn.Parameter(torch.tensor(math.log(init_temp_scale * math.sqrt(d_model))))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return F.softmax(u / self.log_temp.exp(), dim=-1)


def compress_tokens(
    x: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather the ``mask``-ed tokens of each row to the front, in order.

    Shapes: ``x`` ``(B, L, D)``, ``mask`` ``(B, L)`` bool → ``(B, L_c, D)`` (zero padded,
    ``L_c`` the largest count), valid ``(B, L_c)`` and original positions ``(B, L_c)``.
    """
    b, length, d = x.shape
    counts = mask.sum(1)
    lc = int(counts.max()) if b > 0 else 0
    # activated token -> its rank; skipped tokens go to a dump slot lc that is cut off
    slot = torch.where(mask, mask.long().cumsum(1) - 1, torch.full_like(counts[:, None], lc))
    out = x.new_zeros(b, lc + 1, d).scatter(1, slot[..., None].expand(-1, -1, d), x)
    pos = torch.arange(length, device=x.device).expand(b, -1)
    positions = torch.zeros(b, lc + 1, dtype=torch.long, device=x.device).scatter(1, slot, pos)
    valid = torch.arange(lc, device=x.device)[None, :] < counts[:, None]
    return out[:, :lc], valid, positions[:, :lc]


def expand_tokens(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`compress_tokens`: scatter ``h`` ``(B, L_c, D)`` back to ``(B, L, D)``,
    zeros where ``mask`` is False."""
    slot = (mask.long().cumsum(1) - 1).clamp(min=0)
    padded = F.pad(h, (0, 0, 0, 1))  # guards slot 0 when a row has no activated token
    out = padded.gather(1, slot[..., None].expand(-1, -1, h.shape[-1]))
    return out * mask[..., None].to(h.dtype)


def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    *,
    causal: bool = True,
    valid: torch.Tensor | None = None,
    bias: nn.Module | None = None,
    positions: torch.Tensor | None = None,
    activation: Literal["softmax", "relu2"] = "softmax",
) -> torch.Tensor:
    """Sliding-window attention in ``O(L · window)`` by chunking.

    Query ``i`` attends to keys ``j`` with ``0 ≤ i − j < window`` (causal) or
    ``|i − j| < window``; ``valid`` ``(B, L)`` masks padded keys; ``bias(delta)`` adds a bias for
    the original distance ``positions_i − positions_j``.

    Shapes: ``q``, ``k`` ``(B, L, E)``, ``v`` ``(B, L, F)`` → ``(B, L, F)``.
    """
    b, length, e = q.shape
    if length == 0:
        return v.new_zeros(b, 0, v.shape[-1])
    w = window
    n_chunks = -(-length // w)
    pad = n_chunks * w - length
    if valid is None:
        valid = torch.ones(b, length, dtype=torch.bool, device=q.device)
    if positions is None:
        positions = torch.arange(length, device=q.device).expand(b, -1)
    qp, kp, vp = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    validp = F.pad(valid, (0, pad), value=False)
    posp = F.pad(positions, (0, pad))
    idx = torch.arange(n_chunks * w, device=q.device)

    def chunks(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, n_chunks, w, *t.shape[2:])

    def around(t: torch.Tensor, fill: float | bool) -> torch.Tensor:
        # keys of chunk c: chunks c-1, c (and c+1 when not causal)
        c = chunks(t)
        prev = F.pad(c, (0, 0) * (c.dim() - 2) + (1, 0), value=fill)[:, :-1]
        parts = [prev, c]
        if not causal:
            parts.append(F.pad(c, (0, 0) * (c.dim() - 2) + (0, 1), value=fill)[:, 1:])
        return torch.cat(parts, 2)

    qc = chunks(qp)  # (B, C, w, E)
    kc, vc = around(kp, 0.0), around(vp, 0.0)  # (B, C, S, E)
    key_valid = around(validp, False)
    key_idx = around(idx.expand(b, -1), -(10**9))
    key_pos = around(posp, 0)
    q_idx = chunks(idx.expand(b, -1))
    delta = q_idx[..., :, None] - key_idx[..., None, :]
    allowed = (delta >= 0) & (delta < w) if causal else delta.abs() < w
    allowed = allowed & key_valid[..., None, :]
    scale = 1.0 / math.sqrt(e) if activation == "softmax" else 1.0 / (w if causal else 2 * w)
    sim = torch.einsum("bcie,bcje->bcij", qc, kc) * scale
    if bias is not None:
        sim = sim + bias(chunks(posp)[..., :, None] - key_pos[..., None, :])
    if activation == "softmax":
        # finite fill + multiply: a padded query (no allowed key) gets a zero row, no NaN grads
        sim = sim.masked_fill(~allowed, torch.finfo(sim.dtype).min)
        attn = torch.softmax(sim, -1) * allowed
    elif activation == "relu2":
        attn = F.relu(sim).square() * allowed
    else:
        raise ValueError(f"activation must be 'softmax' or 'relu2', got {activation!r}")
    out = torch.einsum("bcij,bcjf->bcif", attn, vc)
    return out.reshape(b, n_chunks * w, -1)[:, :length]


class RelativePositionBias(nn.Module):
    """Learnt scalar bias per token distance, clipped to ``±max_distance``."""

    def __init__(self, max_distance: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Parameter(_trunc_normal_(torch.empty(2 * max_distance + 1)))

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.bias[delta.clamp(-self.max_distance, self.max_distance) + self.max_distance]


class GatedAttentionUnit(nn.Module):
    """GAU with local attention, applied to an (already compressed) sequence.

    Args:
        d_model: features ``d``.
        d_qk: query/key width.
        d_hidden: value width.
        window: local attention window (tokens of the sequence it is given).
        causal: causal or bidirectional window.
        activation: ``"softmax"`` or ``"relu2"``.
        max_distance: relative position bias clipped at this distance.
        init: ``"authors"`` (renll/SeqBoat ``reset_parameters``): the input and output
            projections and ``γ`` drawn from ``N(0, 0.02²)`` truncated at ``±2σ``, zero biases
            and ``β = 0`` — ``q, k ≈ 0`` and a GAU output ``≈ 0`` at initialisation.
            ``"unit_gamma"``: ``γ = 1 + N(0, 0.02²)`` and PyTorch's default ``Linear`` init
            (this package's earlier choice; the GAU output starts at full size).

    Shapes: ``m`` ``(B, L, d)``, ``valid``/``positions`` ``(B, L)`` → ``(B, L, d)``.
    """

    def __init__(
        self,
        d_model: int,
        d_qk: int,
        d_hidden: int,
        window: int,
        *,
        causal: bool = True,
        activation: Literal["softmax", "relu2"] = "softmax",
        max_distance: int = 1024,
        init: Init = "authors",
    ) -> None:
        super().__init__()
        if init not in ("authors", "unit_gamma"):
            raise ValueError(f"init must be 'authors' or 'unit_gamma', got {init!r}")
        self.d_qk, self.d_hidden, self.window = d_qk, d_hidden, window
        self.causal, self.activation = causal, activation
        self.proj = nn.Linear(d_model, d_qk + 2 * d_hidden)
        self.gamma = nn.Parameter(torch.zeros(2, d_qk).normal_(0.0, 0.02) + 1.0)
        self.beta = nn.Parameter(torch.zeros(2, d_qk))
        self.out = nn.Linear(d_hidden, d_model)
        self.rel_bias = RelativePositionBias(max_distance)
        if init == "authors":
            for lin in (self.proj, self.out):
                _trunc_normal_(lin.weight)
                nn.init.zeros_(lin.bias)
            _trunc_normal_(self.gamma)

    def forward(
        self,
        m: torch.Tensor,
        valid: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        z, r, v = F.silu(self.proj(m)).split([self.d_qk, self.d_hidden, self.d_hidden], -1)
        q, k = (z[..., None, :] * self.gamma + self.beta).unbind(-2)
        a = local_attention(
            q,
            k,
            v,
            self.window,
            causal=self.causal,
            valid=valid,
            bias=self.rel_bias,
            positions=positions,
            activation=self.activation,
        )
        out: torch.Tensor = self.out(a * r)
        return out


class SeqBoatLayer(nn.Module):
    """One SeqBoat layer: SSM → latent configurator → sparse local GAU → residual.

    Args:
        d_model: features ``d``.
        d_qk, d_hidden: GAU query/key and value widths (paper: ``d_hidden = 2 d``).
        state_dim: SSM state size.
        window: local attention window over *activated* tokens.
        causal: causal (left-to-right) or bidirectional attention.
        attention: ``"softmax"`` or ``"relu2"``.
        prenorm: LayerNorm before (True) or after the layer.
        init_temp_scale: initial temperature ``τ₀ = scale · sqrt(d)`` of the configurator.
        init_gate_bias: initial bias of the "activate" option logit (the authors use ``0``:
            about half the tokens start activated, decided by tiny random logits). A positive
            value starts every token activated — the ratchet of SMA (skipped tokens get no
            gradient) can then only switch tokens off, so a layer cannot die at initialisation
            before its attention has learnt anything. Not part of the paper, and not needed
            with ``init="authors"``, where the GAU output starts near zero.
        init: parameter initialisation of the GAU and the option/SSM-path projection
            ``W_h``: ``"authors"`` (default; renll/SeqBoat: truncated ``N(0, 0.02²)`` weights,
            ``γ ≈ 0``, so the GAU output starts ``≈ 0`` and the configurator is not driven by
            the noise of an untrained attention) or ``"unit_gamma"`` (``γ ≈ 1``, default
            ``Linear`` init of the GAU; see :class:`GatedAttentionUnit`).

    Shapes: ``x`` ``(B, L, d)`` → ``(B, L, d)``. :meth:`forward_with_gate` also returns the
    activation mask ``(B, L)`` and the confidence ``p_max`` ``(B, L)``.
    """

    def __init__(
        self,
        d_model: int,
        d_qk: int = 32,
        d_hidden: int | None = None,
        state_dim: int = 16,
        window: int = 32,
        *,
        causal: bool = True,
        attention: Literal["softmax", "relu2"] = "softmax",
        prenorm: bool = True,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        init_temp_scale: float = 0.3,
        max_distance: int = 1024,
        init_gate_bias: float = 0.0,
        init: Init = "authors",
    ) -> None:
        super().__init__()
        for name, val in (("d_model", d_model), ("d_qk", d_qk), ("window", window)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an int >= 1, got {val!r}")
        if attention not in ("softmax", "relu2"):
            raise ValueError(f"attention must be 'softmax' or 'relu2', got {attention!r}")
        if init not in ("authors", "unit_gamma"):
            raise ValueError(f"init must be 'authors' or 'unit_gamma', got {init!r}")
        self.d_model, self.prenorm = d_model, prenorm
        d_hidden = 2 * d_model if d_hidden is None else d_hidden
        self.norm = nn.LayerNorm(d_model)
        self.ssm = LSSL(d_model, state_dim, 1, dt_min, dt_max)
        self.hx_proj = nn.Linear(d_model, 2 + d_model)
        # small weights and no bias: at initialisation the option logits depend on the token,
        # so about half the tokens activate and the configurator receives a learning signal
        if init == "authors":
            _trunc_normal_(self.hx_proj.weight)
        else:
            nn.init.normal_(self.hx_proj.weight, 0.0, 0.02)
        nn.init.zeros_(self.hx_proj.bias)
        with torch.no_grad():
            self.hx_proj.bias[1] = float(init_gate_bias)
        self.configurator = LatentConfigurator(d_model, init_temp_scale)
        self.gau = GatedAttentionUnit(
            d_model,
            d_qk,
            d_hidden,
            window,
            causal=causal,
            activation=attention,
            max_distance=max_distance,
            init=init,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, activate: Activation = "learned") -> torch.Tensor:
        return self.forward_with_gate(x, activate)[0]

    def forward_with_gate(
        self, x: torch.Tensor, activate: Activation = "learned"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Output, activation mask and confidence. ``activate`` forces every token through the
        GAU (``"all"``, scaled by ``p_1``) or none (``"none"``, the SSM path alone)."""
        check_floating(x, "x")
        check_ndim(x, "x", 3, "(B, L, d)")
        if x.shape[-1] != self.d_model or x.shape[1] < 1:
            raise ValueError(f"x must have shape (B, L >= 1, {self.d_model}), got {tuple(x.shape)}")
        if activate not in ("learned", "all", "none"):
            raise ValueError(f"activate must be 'learned', 'all' or 'none', got {activate!r}")
        residual = x
        if self.prenorm:
            x = self.norm(x)
        m = self.dropout(F.silu(self.ssm(x)))
        u, hx = self.hx_proj(m).split([2, self.d_model], -1)
        p = self.configurator(u)
        if activate == "learned":
            conf, choice = p.max(-1)
            mask = choice == 1
        else:
            conf = p[..., 1]
            mask = torch.full_like(conf, activate == "all", dtype=torch.bool)
        h = torch.zeros_like(hx)
        if bool(mask.any()):
            mc, valid, pos = compress_tokens(m, mask)
            h = expand_tokens(self.gau(mc, valid, pos), mask)
        h = h * (conf * mask)[..., None]
        out = F.silu(self.dropout(hx + h) + residual)
        if not self.prenorm:
            out = self.norm(out)
        return out, mask, conf


class SeqBoat(nn.Module):
    """Stack of :class:`SeqBoatLayer` with a linear encoder and decoder.

    Shapes: ``x`` ``(B, L, d_input)`` → ``(B, d_output)`` (``pool="mean"``/``"last"``) or
    ``(B, L, d_output)`` (``pool="none"``). :meth:`forward_with_gates` also returns each layer's
    activation mask.
    """

    def __init__(
        self,
        d_input: int,
        d_output: int,
        d_model: int = 64,
        n_layers: int = 2,
        *,
        pool: Literal["mean", "last", "none"] = "mean",
        **layer_kwargs: object,
    ) -> None:
        super().__init__()
        if pool not in ("mean", "last", "none"):
            raise ValueError(f"pool must be 'mean', 'last' or 'none', got {pool!r}")
        self.pool, self.d_input = pool, d_input
        self.encoder = nn.Linear(d_input, d_model)
        self.layers = nn.ModuleList(
            SeqBoatLayer(d_model, **layer_kwargs)  # type: ignore[arg-type]
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x: torch.Tensor, activate: Activation = "learned") -> torch.Tensor:
        return self.forward_with_gates(x, activate)[0]

    def forward_with_gates(
        self, x: torch.Tensor, activate: Activation = "learned"
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Output and each layer's activation mask ``(B, L)`` (bool)."""
        out, masks, _ = self.forward_with_probs(x, activate)
        return out, masks

    def forward_with_probs(
        self, x: torch.Tensor, activate: Activation = "learned"
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Output, each layer's activation mask ``(B, L)`` and its activation probability
        ``p_1`` ``(B, L)`` (the configurator's soft probability of the "activate" option,
        differentiable for every token, activated or not).

        Args:
            x: input ``(B, L, d_input)``.
            activate: ``"learned"`` (the configurator decides), ``"all"`` or ``"none"``.

        Returns:
            ``(out, masks, probs)``.
        """
        check_floating(x, "x")
        check_ndim(x, "x", 3, "(B, L, d_input)")
        if x.shape[-1] != self.d_input:
            raise ValueError(f"x must have {self.d_input} features, got {tuple(x.shape)}")
        h = self.encoder(x)
        masks, probs = [], []
        for layer in self.layers:
            if not isinstance(layer, SeqBoatLayer):  # pragma: no cover - narrows the type
                raise TypeError(f"layers must hold SeqBoatLayer, got {type(layer).__name__}")
            h, mask, conf = layer.forward_with_gate(h, activate)
            masks.append(mask)
            # two options: p_1 is the confidence where option 1 won, else 1 − p_max
            probs.append(torch.where(mask, conf, 1.0 - conf) if activate == "learned" else conf)
        h = self.final_norm(h)
        if self.pool == "mean":
            h = h.mean(1)
        elif self.pool == "last":
            h = h[:, -1]
        out: torch.Tensor = self.decoder(h)
        return out, masks, probs
