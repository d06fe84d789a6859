"""LPGNAS: learned low-precision graph neural networks (Zhao, Wang, Bates, Mullins, Jamnik &
Liò, 2020), a differentiable search over GNN architecture *and* quantisation.

Every layer of the super-network mixes, with softmax-relaxed architecture weights,

* the **attention** that weights a neighbour's message: ``"constant"`` (1), ``"gcn"``
  (``d_i^{-1/2} d_j^{-1/2}``) or ``"gat"`` (``softmax_j LeakyReLU(a_sᵀh_j + a_dᵀh_i)``);
* the **aggregation** of the weighted messages: ``"add"``, ``"mean"`` or ``"max"``;
* the **activation** (``"relu"``, ``"elu"``, ``"tanh"``, ``"identity"``) and the **hidden
  size**, relaxed as a soft channel mask ``Σ_s p_s [1]*s + [0]*(S_max−s)`` (hidden layers);
* the **bit widths** of the layer's weights (linear map and attention vectors) and of its input
  activations: ``Q(v) = Σ_b p_b Q_b(v)`` with ``Q_b`` the fake quantiser of
  :func:`torchloom.quantize.fake_uniform_quantize` (min–max uniform, straight-through gradient;
  weights per output row, activations per tensor; ``32`` bits means full precision).

Messages use self-loops and one shared linear map per layer, ``h = Q_a(x) Q_w(W)ᵀ``. The search
alternates (first-order DARTS) a weight step on the training loss with an architecture step on
``CE_val + γ · E[size] / size_ref``: the expected model size in bits, with independent choices
``E[bits · n_in · n_out] = E[bits] E[n_in] E[n_out]``, divided by the size of the largest
full-precision network of the space; ``γ`` (``size_weight``) sets where the searched network
lands on the size–accuracy frontier. :meth:`LPGNAS.derive` takes every argmax and
:class:`QuantGNN` is the resulting fixed network, retrained from scratch and sized exactly by
:meth:`QuantGNN.size_bits` (codes + per-bucket scales from
:func:`torchloom.quantize.quantized_size_bits`, biases at 32 bits).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.utils import add_self_loops, remove_self_loops, scatter, softmax

from torchloom.core.checks import check_int, check_positive
from torchloom.gnn.forward import check_graph
from torchloom.gnn.stable import _as_edge_index
from torchloom.quantize import fake_uniform_quantize, quantized_size_bits

__all__ = [
    "LPGNAS",
    "LayerChoice",
    "QuantGNN",
    "QuantGNNLayer",
    "SearchSpace",
    "propagate",
    "quantize_bits",
]

Attention = Literal["constant", "gcn", "gat"]
Aggregation = Literal["add", "mean", "max"]
Activation = Literal["relu", "elu", "tanh", "identity"]

_ACT = {
    "relu": torch.relu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "identity": lambda t: t,
}


@dataclass(frozen=True)
class SearchSpace:
    """The candidate values of every searched component.

    Args:
        attention: neighbour weighting options.
        aggregation: aggregator options.
        activation: activation options (hidden layers).
        hidden: hidden-size options (hidden layers).
        weight_bits: bit widths of weights (``>= 32`` = full precision).
        act_bits: bit widths of layer inputs (``>= 32`` = full precision).
    """

    attention: tuple[Attention, ...] = ("constant", "gcn", "gat")
    aggregation: tuple[Aggregation, ...] = ("add", "mean", "max")
    activation: tuple[Activation, ...] = ("relu", "elu", "tanh", "identity")
    hidden: tuple[int, ...] = (16, 32, 64, 128)
    weight_bits: tuple[int, ...] = (1, 2, 4, 8, 32)
    act_bits: tuple[int, ...] = (2, 4, 8, 32)

    def __post_init__(self) -> None:
        for name in ("attention", "aggregation", "activation", "hidden", "weight_bits", "act_bits"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"SearchSpace.{name} must hold at least one option")
        bad: list[str] = [a for a in self.attention if a not in ("constant", "gcn", "gat")]
        bad += [str(a) for a in self.aggregation if a not in ("add", "mean", "max")]
        bad += [str(a) for a in self.activation if a not in _ACT]
        if bad:
            raise ValueError(f"unknown SearchSpace options: {bad}")
        if any(b < 1 for b in (*self.weight_bits, *self.act_bits)) or min(self.hidden) < 1:
            raise ValueError("bit widths and hidden sizes must be >= 1")


@dataclass(frozen=True)
class LayerChoice:
    """One layer of a derived (discrete) architecture.

    Args:
        attention: neighbour weighting.
        aggregation: aggregator.
        activation: activation after the layer (ignored on the output layer).
        out_channels: output width.
        weight_bits: bit width of the weights (``>= 32`` = full precision).
        act_bits: bit width of the layer input (``>= 32`` = full precision).
    """

    attention: Attention = "gcn"
    aggregation: Aggregation = "add"
    activation: Activation = "relu"
    out_channels: int = 64
    weight_bits: int = 32
    act_bits: int = 32


def quantize_bits(x: Tensor, bits: int, bucket_size: int | None = None) -> Tensor:
    """Fake-quantise ``x`` to ``bits`` bits (min–max uniform per bucket, straight-through
    gradient); ``bits >= 32`` returns ``x`` unchanged.

    Args:
        x: any floating tensor ``(*)``.
        bits: bit width.
        bucket_size: consecutive entries sharing one scale (``None``: the whole tensor).

    Returns:
        Tensor of the shape of ``x``.
    """
    if bits >= 32:
        return x
    return fake_uniform_quantize(x, bits, bucket_size)


def _coefficients(
    h: Tensor,
    edge_index: Tensor,
    attention: str,
    att_src: Tensor | None,
    att_dst: Tensor | None,
) -> Tensor:
    src, dst = edge_index
    n = h.shape[0]
    if attention == "constant":
        return torch.ones(src.shape[0], dtype=h.dtype, device=h.device)
    if attention == "gcn":
        deg = scatter(torch.ones_like(src, dtype=h.dtype), dst, 0, dim_size=n, reduce="sum")
        d = deg.pow(-0.5)
        return d[src] * d[dst]
    if att_src is None or att_dst is None:
        raise ValueError("attention='gat' needs att_src and att_dst")
    e = F.leaky_relu((h * att_src).sum(1)[src] + (h * att_dst).sum(1)[dst], 0.2)
    return softmax(e, dst, num_nodes=n)


def propagate(
    h: Tensor,
    edge_index: Tensor,
    attention: str,
    aggregation: str,
    att_src: Tensor | None = None,
    att_dst: Tensor | None = None,
) -> Tensor:
    """One message-passing step ``out_i = AGG_{j ∈ N(i) ∪ {i}} c_ij h_j``.

    Args:
        h: transformed node features ``(N, D)``.
        edge_index: edges ``(2, E)`` (sources, targets); self-loops are added.
        attention: ``"constant"``, ``"gcn"`` or ``"gat"`` coefficients ``c_ij``.
        aggregation: ``"add"``, ``"mean"`` or ``"max"``.
        att_src: GAT source vector ``(D,)``.
        att_dst: GAT target vector ``(D,)``.

    Returns:
        Aggregated features ``(N, D)``.
    """
    n = h.shape[0]
    ei, _ = remove_self_loops(edge_index)
    ei, _ = add_self_loops(ei, num_nodes=n)
    c = _coefficients(h, ei, attention, att_src, att_dst)
    msg = c[:, None] * h[ei[0]]
    return scatter(msg, ei[1], 0, dim_size=n, reduce={"add": "sum"}.get(aggregation, aggregation))


class QuantGNNLayer(nn.Module):
    """A fixed (derived) LPGNAS layer: ``ACT(AGG_j c_ij (Q_a(x) Q_w(W)ᵀ)_j + b)``.

    Args:
        in_channels: input width.
        choice: the layer's :class:`LayerChoice`.
        last: output layer (no activation).

    Shapes:
        ``x (N, in_channels)``, ``edge_index (2, E)`` → ``(N, choice.out_channels)``.
    """

    def __init__(self, in_channels: int, choice: LayerChoice, last: bool = False) -> None:
        super().__init__()
        self.choice = choice
        self.last = last
        d = choice.out_channels
        self.lin = nn.Linear(in_channels, d, bias=False)
        self.bias = nn.Parameter(torch.zeros(d))
        if choice.attention == "gat":
            self.att_src: nn.Parameter | None = nn.Parameter(torch.randn(d) * d**-0.5)
            self.att_dst: nn.Parameter | None = nn.Parameter(torch.randn(d) * d**-0.5)
        else:
            self.att_src = self.att_dst = None

    def quantized_weight(self) -> Tensor:
        """The weight the forward uses ``(out, in)`` (fake-quantised per output row)."""
        w = self.lin.weight
        return quantize_bits(w, self.choice.weight_bits, w.shape[1])

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Apply the layer (see class docstring for shapes)."""
        c = self.choice
        xq = quantize_bits(x, c.act_bits)
        h = xq @ self.quantized_weight().T
        a_s = a_d = None
        if self.att_src is not None and self.att_dst is not None:
            a_s = quantize_bits(self.att_src, c.weight_bits)
            a_d = quantize_bits(self.att_dst, c.weight_bits)
        out = propagate(h, edge_index, c.attention, c.aggregation, a_s, a_d) + self.bias
        return out if self.last else _ACT[c.activation](out)

    def size_bits(self) -> int:
        """Storage in bits: quantised weights (codes + per-row scales), attention vectors at
        the weight bit width, bias at 32 bits."""
        b = self.choice.weight_bits
        w = self.lin.weight

        def size(numel: int, bucket: int | None) -> int:
            return numel * 32 if b >= 32 else quantized_size_bits(numel, b, bucket)

        total = size(w.numel(), w.shape[1]) + self.bias.numel() * 32
        if self.att_src is not None:
            total += 2 * size(self.att_src.numel(), None)
        return total


class QuantGNN(nn.Module):
    """A derived LPGNAS network: a stack of :class:`QuantGNNLayer`.

    Args:
        in_channels: feature size ``F``.
        n_classes: number of classes ``C`` (width of the last layer).
        choices: one :class:`LayerChoice` per layer (the last one's ``out_channels`` and
            ``activation`` are ignored: the output has ``C`` channels and no activation).
        dropout: dropout on every layer input.

    Shapes:
        ``x (N, F)``, ``edge_index (2, E)`` or sparse ``adj_t (N, N)`` → logits ``(N, C)``.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        choices: list[LayerChoice] | tuple[LayerChoice, ...],
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(choices) == 0:
            raise ValueError("choices must describe at least one layer")
        layers = []
        width = in_channels
        for i, c in enumerate(choices):
            last = i == len(choices) - 1
            if last:
                c = LayerChoice(
                    c.attention, c.aggregation, "identity", n_classes, c.weight_bits, c.act_bits
                )
            layers.append(QuantGNNLayer(width, c, last))
            width = c.out_channels
        self.layers = nn.ModuleList(layers)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Logits ``(N, C)``; ``edge_index`` may also be a sparse ``adj_t (N, N)``."""
        edge_index = _as_edge_index(edge_index)[0]
        check_graph(x, edge_index)
        for layer in self.layers:
            x = layer(F.dropout(x, self.dropout, self.training), edge_index)
        return x

    def size_bits(self) -> int:
        """Model storage in bits (sum over layers)."""
        return sum(layer.size_bits() for layer in self.layers)  # type: ignore[operator]


class _SearchLayer(nn.Module):
    """Super-network layer mixing every option of ``space`` with softmax weights."""

    def __init__(self, in_channels: int, out_max: int, space: SearchSpace, last: bool) -> None:
        super().__init__()
        self.space = space
        self.last = last
        self.lin = nn.Linear(in_channels, out_max, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_max))
        self.att_src = nn.Parameter(torch.randn(out_max) * out_max**-0.5)
        self.att_dst = nn.Parameter(torch.randn(out_max) * out_max**-0.5)
        s = space
        self.alpha = nn.ParameterDict(
            {
                "attention": nn.Parameter(torch.zeros(len(s.attention))),
                "aggregation": nn.Parameter(torch.zeros(len(s.aggregation))),
                "weight_bits": nn.Parameter(torch.zeros(len(s.weight_bits))),
                "act_bits": nn.Parameter(torch.zeros(len(s.act_bits))),
            }
        )
        if not last:
            self.alpha["activation"] = nn.Parameter(torch.zeros(len(s.activation)))
            self.alpha["hidden"] = nn.Parameter(torch.zeros(len(s.hidden)))
            masks = torch.zeros(len(s.hidden), out_max)
            for i, h in enumerate(s.hidden):
                masks[i, :h] = 1.0
            self.register_buffer("masks", masks)

    def probs(self, name: str, tau: float) -> Tensor:
        return torch.softmax(self.alpha[name] / tau, 0)

    def expected_width(self, tau: float) -> Tensor:
        if self.last:
            return torch.tensor(float(self.lin.out_features))
        return (
            self.probs("hidden", tau) * torch.tensor(self.space.hidden, dtype=torch.float32)
        ).sum()

    def expected_bits(self, tau: float) -> Tensor:
        bits = torch.tensor(self.space.weight_bits, dtype=torch.float32).clamp(max=32)
        return (self.probs("weight_bits", tau) * bits).sum()

    def forward(self, x: Tensor, edge_index: Tensor, tau: float) -> Tensor:
        s = self.space
        pa = self.probs("act_bits", tau)
        xq = sum(p * quantize_bits(x, b) for p, b in zip(pa, s.act_bits))
        pw = self.probs("weight_bits", tau)
        w = self.lin.weight
        wq = sum(p * quantize_bits(w, b, w.shape[1]) for p, b in zip(pw, s.weight_bits))
        a_s = sum(p * quantize_bits(self.att_src, b) for p, b in zip(pw, s.weight_bits))
        a_d = sum(p * quantize_bits(self.att_dst, b) for p, b in zip(pw, s.weight_bits))
        h = xq @ wq.T  # type: ignore[union-attr]
        p_att, p_agg = self.probs("attention", tau), self.probs("aggregation", tau)
        out = torch.zeros_like(h)
        for (i, att), (j, agg) in itertools.product(
            enumerate(s.attention), enumerate(s.aggregation)
        ):
            out = out + p_att[i] * p_agg[j] * propagate(h, edge_index, att, agg, a_s, a_d)  # type: ignore[arg-type]
        out = out + self.bias
        if self.last:
            return out
        p_act = self.probs("activation", tau)
        out = sum(p * _ACT[a](out) for p, a in zip(p_act, s.activation))
        return out * (self.probs("hidden", tau) @ self.masks)  # type: ignore[operator]

    def derive(self) -> LayerChoice:
        s = self.space

        def arg(name: str) -> int:
            return int(self.alpha[name].argmax())

        return LayerChoice(
            attention=s.attention[arg("attention")],
            aggregation=s.aggregation[arg("aggregation")],
            activation=s.activation[arg("activation")] if not self.last else "identity",
            out_channels=s.hidden[arg("hidden")] if not self.last else self.lin.out_features,
            weight_bits=s.weight_bits[arg("weight_bits")],
            act_bits=s.act_bits[arg("act_bits")],
        )


class LPGNAS(nn.Module):
    """The LPGNAS super-network and its differentiable search.

    Args:
        in_channels: feature size ``F``.
        n_classes: number of classes ``C``.
        n_layers: number of message-passing layers.
        space: the :class:`SearchSpace`.
        dropout: dropout on every layer input.

    Shapes:
        ``forward``: ``x (N, F)``, ``edge_index (2, E)`` → logits ``(N, C)`` of the relaxed
        (mixed) network.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        n_layers: int = 2,
        space: SearchSpace | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_int(n_layers, "n_layers", 1)
        self.space = space or SearchSpace()
        self.in_channels = in_channels
        self.n_classes = n_classes
        h = max(self.space.hidden)
        dims = [in_channels] + [h] * (n_layers - 1) + [n_classes]
        self.layers = nn.ModuleList(
            _SearchLayer(a, b, self.space, last=i == n_layers - 1)
            for i, (a, b) in enumerate(itertools.pairwise(dims))
        )
        self.dropout = dropout
        self.tau = 1.0

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Logits ``(N, C)`` of the mixed network at temperature ``self.tau``."""
        edge_index = _as_edge_index(edge_index)[0]
        for layer in self.layers:
            x = layer(F.dropout(x, self.dropout, self.training), edge_index, self.tau)
        return x

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture (choice) logits."""
        return [p for layer in self.layers for p in layer.alpha.values()]  # type: ignore[operator]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (weights, biases, attention vectors)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def expected_size_bits(self) -> Tensor:
        """Differentiable expected weight storage in bits, ``Σ_l E[bits_l] E[n_in] E[n_out]``
        (scalar)."""
        total = torch.zeros(())
        width_in = torch.tensor(float(self.in_channels))
        for layer in self.layers:
            width_out = layer.expected_width(self.tau)  # type: ignore[operator]
            total = total + layer.expected_bits(self.tau) * width_in * width_out  # type: ignore[operator]
            width_in = width_out
        return total

    def reference_size_bits(self) -> float:
        """Size of the largest full-precision network of the space (normaliser of the cost)."""
        h = max(self.space.hidden)
        dims = [self.in_channels] + [h] * (len(self.layers) - 1) + [self.n_classes]
        return float(sum(32 * a * b for a, b in itertools.pairwise(dims)))

    def derive(self) -> list[LayerChoice]:
        """The discrete architecture: the argmax of every choice, one :class:`LayerChoice` per
        layer."""
        return [layer.derive() for layer in self.layers]  # type: ignore[operator]

    def search(
        self,
        x: Tensor,
        edge_index: Tensor,
        y: Tensor,
        train_mask: Tensor,
        val_mask: Tensor,
        epochs: int = 100,
        size_weight: float = 0.0,
        lr: float = 0.01,
        arch_lr: float = 0.01,
        weight_decay: float = 5e-4,
        tau_final: float = 0.3,
        warmup: int = 0,
    ) -> list[dict[str, float]]:
        """First-order bilevel search: per epoch one weight step on the training loss and one
        architecture step on ``CE_val + size_weight · E[size] / size_ref``; the softmax
        temperature anneals geometrically from 1 to ``tau_final``.

        Args:
            x: features ``(N, F)``.
            edge_index: edges ``(2, E)``.
            y: integer labels ``(N,)``.
            train_mask: boolean ``(N,)`` nodes for the weight step.
            val_mask: boolean ``(N,)`` nodes for the architecture step.
            epochs: search epochs.
            size_weight: ``γ``, the price of model size.
            lr: weight learning rate (Adam).
            arch_lr: architecture learning rate (Adam).
            weight_decay: weight decay of the weights.
            tau_final: final softmax temperature.
            warmup: initial epochs with weight steps only (the architecture stays uniform), so
                that fast-fitting options are not favoured before the weights have trained.

        Returns:
            Per-epoch history: training and validation loss, expected size in bits.
        """
        check_graph(x, edge_index, y)
        check_int(epochs, "epochs", 1)
        check_positive(size_weight, "size_weight", strict=False)
        check_positive(tau_final, "tau_final")
        check_int(warmup, "warmup", 0)
        w_opt = torch.optim.Adam(self.weight_parameters(), lr=lr, weight_decay=weight_decay)
        a_opt = torch.optim.Adam(self.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999))
        ref = self.reference_size_bits()
        history = []
        for epoch in range(epochs):
            self.tau = tau_final ** (max(epoch - warmup, 0) / max(epochs - warmup - 1, 1))
            self.train()
            w_opt.zero_grad()
            train_loss = F.cross_entropy(self(x, edge_index)[train_mask], y[train_mask])
            if not torch.isfinite(train_loss):
                raise FloatingPointError(f"LPGNAS training loss is {float(train_loss.detach())}")
            train_loss.backward()
            w_opt.step()
            a_opt.zero_grad()
            size = self.expected_size_bits()
            val_loss = F.cross_entropy(self(x, edge_index)[val_mask], y[val_mask])
            if epoch >= warmup:
                (val_loss + size_weight * size / ref).backward()
                a_opt.step()
            history.append(
                {
                    "train_loss": float(train_loss.detach()),
                    "val_loss": float(val_loss.detach()),
                    "expected_size_bits": float(size.detach()),
                }
            )
        self.eval()
        return history
