"""Forward learning of graph neural networks (ForwardGNN; Park, Sheng, Wen et al., ICLR 2024).

Every layer is trained by its *own* loss on *detached* inputs, so no gradient crosses layers and
only one layer's activations are held for a backward pass at a time.

* **SF (single forward)**: one virtual node per class is added and linked to the training nodes
  of that class; layer ``l``'s loss is ``CE(h_train · h_virtualᵀ / τ, y)`` on the normalised
  embeddings. Prediction sums every layer's ``softmax(h · h_virtualᵀ / τ)``.
* **FF (forward-forward)**: the label is appended to the features (one-hot); a *positive* graph
  carries the true labels of training nodes, a *negative* graph wrong random ones; each layer
  pushes the goodness ``Σ h²`` above ``θ`` on positive and below on negative nodes (BCE on
  ``goodness − θ``). Prediction tries every label and keeps the one with the largest total
  goodness.

Layers are PyG convolutions (``"gcn"``, ``"sage"``, ``"gat"``) taking ``x (N, F)`` and
``edge_index (2, E)``.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from torchloom.core import rng
from torchloom.core.checks import check_positive

__all__ = ["ForwardGNN", "add_virtual_nodes", "check_graph"]

ConvKind = Literal["gcn", "sage", "gat"]


def check_graph(x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Raise ``ValueError``/``TypeError`` for malformed graph inputs."""
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, F), got {tuple(x.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise TypeError(f"edge_index must be int64, got {edge_index.dtype}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.shape[0]):
        raise ValueError(
            f"edge_index holds node ids outside [0, {x.shape[0]}): "
            f"min {int(edge_index.min())}, max {int(edge_index.max())}"
        )
    if y is not None:
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer class labels, got {y.dtype}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")


def add_virtual_nodes(
    x: torch.Tensor,
    edge_index: torch.Tensor,
    y: torch.Tensor,
    train_mask: torch.Tensor,
    n_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append one virtual node per class (features: the class's mean training features) linked
    both ways to that class's training nodes. Returns ``(x (N+K, F), edge_index)``; virtual node
    ``c`` has index ``N + c``."""
    n = x.shape[0]
    train = torch.nonzero(train_mask).squeeze(1)
    virt = n + y[train]
    extra = torch.cat([torch.stack([train, virt]), torch.stack([virt, train])], 1)
    feats = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, device=x.device)
    feats.index_add_(0, y[train], x[train])
    counts = torch.bincount(y[train], minlength=n_classes).clamp_min(1).to(x.dtype)
    return torch.cat([x, feats / counts[:, None]]), torch.cat([edge_index, extra], 1)


def _conv(kind: ConvKind, d_in: int, d_out: int) -> nn.Module:
    if kind == "gcn":
        return GCNConv(d_in, d_out)
    if kind == "sage":
        return SAGEConv(d_in, d_out)
    if kind == "gat":
        return GATConv(d_in, d_out, heads=1)
    raise ValueError(f"conv must be 'gcn', 'sage' or 'gat', got {kind!r}")


class ForwardGNN(nn.Module):
    """A stack of graph convolutions trained layer by layer without backprop across layers.

    Args:
        in_channels, hidden, n_layers, n_classes: sizes. conv: ``"gcn"``, ``"sage"`` or ``"gat"``.
        mode: ``"sf"`` (virtual class nodes) or ``"ff"`` (forward-forward goodness).
        tau: temperature of the SF similarity; theta: FF goodness threshold (per unit).
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        n_layers: int,
        n_classes: int,
        conv: ConvKind = "gcn",
        mode: Literal["sf", "ff"] = "sf",
        tau: float = 0.5,
        theta: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if mode not in ("sf", "ff"):
            raise ValueError(f"mode must be 'sf' or 'ff', got {mode!r}")
        check_positive(tau, "tau")
        self.mode = mode
        self.n_classes = n_classes
        self.tau = tau
        self.theta = theta
        self.dropout = dropout
        d_in = in_channels + (n_classes if mode == "ff" else 0)
        dims = [d_in] + [hidden] * n_layers
        self.convs = nn.ModuleList(_conv(conv, a, b) for a, b in itertools.pairwise(dims))

    # -- shared -------------------------------------------------------------------------------
    def _layer(self, i: int, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = nn.functional.dropout(h, self.dropout, self.training)
        return torch.relu(self.convs[i](h, edge_index))

    def layer_outputs(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output ``(N, hidden)``; each layer reads the previous one *detached*,
        so a loss on layer ``l`` only reaches layer ``l``'s parameters."""
        outs, h = [], x
        for i in range(len(self.convs)):
            h = self._layer(i, h.detach(), edge_index)
            outs.append(h)
            if self.mode == "ff":  # FF normalises between layers so goodness cannot leak upward
                h = h / (h.norm(dim=1, keepdim=True) + 1e-8)
        return outs

    # -- losses -------------------------------------------------------------------------------
    def _sf_logits(self, h: torch.Tensor, n: int) -> torch.Tensor:
        z = nn.functional.normalize(h, dim=1)
        return z[:n] @ z[n:].T / self.tau

    def _with_labels(
        self, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        onehot = torch.zeros(x.shape[0], self.n_classes, dtype=x.dtype, device=x.device)
        onehot[mask] = nn.functional.one_hot(labels[mask], self.n_classes).to(x.dtype)
        return torch.cat([x, onehot], 1)

    def _ff_loss(self, hp: torch.Tensor, hn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gp = hp.pow(2).mean(1)[mask] - self.theta
        gn = hn.pow(2).mean(1)[mask] - self.theta
        return nn.functional.softplus(-gp).mean() + nn.functional.softplus(gn).mean()

    def _inputs(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor,
        train_mask: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        if self.mode == "sf":
            xa, ea = add_virtual_nodes(x, edge_index, y, train_mask, self.n_classes)
            return [xa], ea
        shift = rng.randint(1, self.n_classes, y.shape, generator=generator, device=y.device)
        wrong = (y + shift) % self.n_classes
        return [
            self._with_labels(x, y, train_mask),
            self._with_labels(x, wrong, train_mask),
        ], edge_index

    def layer_losses(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor,
        train_mask: torch.Tensor,
        generator: torch.Generator | None = None,
        opts: list[torch.optim.Optimizer] | None = None,
    ) -> list[float]:
        """One pass of layer-local training: layer ``l`` runs on the detached output of layer
        ``l − 1``, computes its own loss and, when ``opts`` is given, steps and frees its graph
        before layer ``l + 1`` runs, so only one layer's activations are ever saved."""
        hs, ei = self._inputs(x, edge_index, y, train_mask, generator)
        n = x.shape[0]
        values = []
        for i in range(len(self.convs)):
            outs = [self._layer(i, h.detach(), ei) for h in hs]
            if self.mode == "sf":
                loss = nn.functional.cross_entropy(
                    self._sf_logits(outs[0], n)[train_mask], y[train_mask]
                )
            else:
                loss = self._ff_loss(outs[0], outs[1], train_mask)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"ForwardGNN layer {i} loss is {float(loss.detach())}")
            if opts is not None:
                opts[i].zero_grad()
                loss.backward()
                opts[i].step()
            values.append(float(loss.detach()))
            hs = [o.detach() for o in outs]
            if self.mode == "ff":  # normalise so goodness cannot simply be passed upward
                hs = [h / (h.norm(dim=1, keepdim=True) + 1e-8) for h in hs]
        return values

    # -- training and prediction ------------------------------------------------------------
    def fit(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor,
        train_mask: torch.Tensor,
        epochs: int = 100,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        generator: torch.Generator | None = None,
    ) -> list[float]:
        """Train every layer with its own Adam optimiser on its own loss. Returns the summed
        per-layer loss per epoch."""
        check_graph(x, edge_index, y)
        opts: list[torch.optim.Optimizer] = [
            torch.optim.Adam(c.parameters(), lr=lr, weight_decay=weight_decay) for c in self.convs
        ]
        history = []
        self.train()
        for _ in range(epochs):
            history.append(sum(self.layer_losses(x, edge_index, y, train_mask, generator, opts)))
        self.eval()
        self._train_graph = (y, train_mask)
        return history

    @torch.no_grad()
    def predict_proba(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor | None = None,
        train_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class scores ``(N, K)``: SF sums the layers' softmax similarities to the virtual
        nodes; FF the normalised goodness of each candidate label."""
        check_graph(x, edge_index)
        if y is None or train_mask is None:
            if not hasattr(self, "_train_graph"):
                raise RuntimeError("call fit first, or pass y and train_mask")
            y, train_mask = self._train_graph
        n = x.shape[0]
        if self.mode == "sf":
            xa, ea = add_virtual_nodes(x, edge_index, y, train_mask, self.n_classes)
            probs = [torch.softmax(self._sf_logits(h, n), 1) for h in self.layer_outputs(xa, ea)]
            return torch.stack(probs).sum(0) / len(probs)
        scores = []
        for c in range(self.n_classes):
            labels = torch.where(train_mask, y, torch.full_like(y, c))
            outs = self.layer_outputs(
                self._with_labels(x, labels, torch.ones_like(train_mask)), edge_index
            )
            scores.append(torch.stack([h.pow(2).mean(1) for h in outs]).sum(0))
        return torch.softmax(torch.stack(scores, 1), 1)

    def predict(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor | None = None,
        train_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.predict_proba(x, edge_index, y, train_mask).argmax(1)
