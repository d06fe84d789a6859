"""The shared best-validation training loop restores the weights of the best epoch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchloom.gnn.training import fit_best_val, train_node_classifier


def test_fit_best_val_restores_best_epoch_weights() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(10, 3)
    scores = iter([0.1, 0.5, 0.3, 0.5, 0.2])  # best first reached at epoch 2
    snapshots: list[dict[str, torch.Tensor]] = []

    def loss() -> torch.Tensor:
        return model(x).pow(2).sum()

    def score() -> float:
        assert not model.training and not torch.is_grad_enabled()
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    best = fit_best_val(model, loss, score, epochs=5, lr=0.1)
    assert best == 0.5 and not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k])
        assert not torch.equal(v, snapshots[-1][k])


def test_train_node_classifier_returns_selected_accuracy() -> None:
    torch.manual_seed(0)
    x = torch.randn(40, 4)
    y = (x[:, 0] > 0).long()
    tr = torch.arange(40) < 20

    class Lin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    model = Lin()
    ei = torch.empty(2, 0, dtype=torch.long)
    acc = train_node_classifier(model, x, ei, y, tr, ~tr, epochs=50)
    with torch.no_grad():
        assert acc == float((model(x, ei).argmax(1) == y)[~tr].float().mean())
    with pytest.raises(TypeError, match="integer class labels"):
        train_node_classifier(model, x, ei, y.float(), tr)
    with pytest.raises(FloatingPointError):
        fit_best_val(model, lambda: torch.tensor(float("nan"), requires_grad=True), lambda: 0.0, 1)
