"""Shared training loop: Adam with model selection on the best validation score.

Every node classifier of the package (STABLE's advanced GCN, the latent-graph GNN, the GCN
baselines of the recipes, LPGNAS's retrained networks) is trained the same way as in the
papers' code: full-batch Adam on the training nodes, evaluating after every step and keeping
the weights of the best validation accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchloom.core.checks import check_int

__all__ = ["fit_best_val", "train_node_classifier"]


def fit_best_val(
    model: nn.Module,
    loss_fn: Callable[[], Tensor],
    score_fn: Callable[[], float],
    epochs: int,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
) -> float:
    """Full-batch Adam on ``loss_fn`` keeping the weights with the best ``score_fn``.

    Each epoch puts ``model`` in train mode, takes one Adam step on ``loss_fn()``, then puts it
    in eval mode and calls ``score_fn()`` under ``torch.no_grad``; the state dict of the first
    epoch reaching the highest score is restored at the end (ties keep the earlier epoch).

    Args:
        model: the module whose parameters are optimised.
        loss_fn: computes the scalar training loss (called in train mode).
        score_fn: the selection score, higher is better (called in eval mode, no grad).
        epochs: Adam steps (>= 1).
        lr: learning rate.
        weight_decay: Adam's L2 weight decay.

    Returns:
        The best score. ``model`` holds the matching weights and is left in eval mode.

    Raises:
        FloatingPointError: when the loss becomes non-finite.
    """
    check_int(epochs, "epochs", 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, state = -float("inf"), None
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {float(loss.detach())}")
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            score = float(score_fn())
        if score > best:
            best = score
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    return best


def train_node_classifier(
    model: nn.Module,
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    train_mask: Tensor,
    val_mask: Tensor | None = None,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
) -> float:
    """Cross-entropy training of ``model(x, edge_index) -> logits (N, C)`` on the training
    nodes with :func:`fit_best_val` selection on validation accuracy.

    Args:
        model: a node classifier called as ``model(x, edge_index)``.
        x: features ``(N, F)``.
        edge_index: the graph ``(2, E)`` (or whatever ``model`` accepts).
        y: integer labels ``(N,)``.
        train_mask: boolean ``(N,)`` training nodes.
        val_mask: boolean ``(N,)`` selection nodes (default: the training nodes).
        epochs: Adam steps.
        lr: learning rate.
        weight_decay: weight decay.

    Returns:
        The best validation accuracy (training accuracy when ``val_mask`` is None).
    """
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got {y.dtype}")
    mask = train_mask if val_mask is None else val_mask

    def loss() -> Tensor:
        return F.cross_entropy(model(x, edge_index)[train_mask], y[train_mask])

    def score() -> float:
        return float((model(x, edge_index).argmax(1) == y)[mask].float().mean())

    return fit_best_val(model, loss, score, epochs, lr, weight_decay)
