"""RARTS: relaxed architecture search (Xue & Xin, 2021), single-level, first-order.

Instead of DARTS's bilevel problem, RARTS minimises one relaxed objective over the weights
``w`` of the search network, the weights ``y`` of a second network and the shared architecture
``α``:

    L(w, y, α) = L_train(w, α) + β · L_val(y, α) + (λ / 2) ‖w − y‖²

with *data splitting* (``w`` sees the training split, ``y`` the validation split) and *network
splitting* (``y`` may be a narrower copy of the supernet; the coupling then compares ``y`` with
the leading channels of ``w``). One step is a Gauss–Seidel sweep, with no second derivatives:

    w ← w − η_w (∇_w L_train(w, α) + λ (w − y))
    y ← y − η_y (β ∇_y L_val(y, α) + λ (y − w))
    α ← α − η_α (∇_α L_train(w, α) + β ∇_α L_val(y, α))

(each with the latest values of the others). :class:`RARTS` runs it inside
:func:`torchloom.nas.search.search`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchloom.core.checks import check_positive
from torchloom.nas.search import Batch, GradientStrategy, _check_loss
from torchloom.nas.supernet import Supernet

__all__ = ["RARTS", "coupling_pairs", "coupling_penalty"]


def coupling_pairs(model: Supernet, y_model: Supernet) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs ``(w_slice, y)`` of corresponding weights of two supernets of the same topology.

    Parameters are matched by name; when ``y_model`` is narrower, ``y`` is paired with the leading
    slice of ``w`` along every dimension.

    Args:
        model: the search network ``w``.
        y_model: the second network ``y`` (same ``layers``, ``steps``, ops; ``C`` ≤ ``model.C``).

    Returns:
        One pair per weight tensor of ``y_model``.
    """
    return [(w[idx], y) for w, idx, y in _coupling(model, y_model)]


Index = tuple[slice, ...]


def _coupling(model: Supernet, y_model: Supernet) -> list[tuple[nn.Parameter, Index, nn.Parameter]]:
    w_params = dict(model.named_parameters())
    arch = {id(p) for p in y_model.arch_parameters()}
    out: list[tuple[nn.Parameter, Index, nn.Parameter]] = []
    for name, y in y_model.named_parameters():
        if id(y) in arch:
            continue
        if name not in w_params:
            raise ValueError(f"y_model parameter {name!r} has no counterpart in model")
        w = w_params[name]
        if w.dim() != y.dim() or any(a < b for a, b in zip(w.shape, y.shape)):
            raise ValueError(
                f"y_model parameter {name!r} {tuple(y.shape)} must fit inside the model's "
                f"{tuple(w.shape)}"
            )
        out.append((w, tuple(slice(0, s) for s in y.shape), y))
    return out


def coupling_penalty(model: Supernet, y_model: Supernet) -> torch.Tensor:
    """``½ ‖w − y‖²`` over :func:`coupling_pairs`.

    Args:
        model: the search network.
        y_model: the second network.

    Returns:
        A scalar tensor, differentiable in both.
    """
    pairs = coupling_pairs(model, y_model)
    total = sum(((w - y) ** 2).sum() for w, y in pairs)
    return 0.5 * torch.as_tensor(total)


class RARTS(GradientStrategy):
    """The RARTS strategy.

    Args:
        y_model: the second network ``y`` (a :class:`Supernet` with the same topology and ops, as
            wide as the search network or narrower); its own ``α`` is ignored, the search
            network's ``α`` is shared.
        beta: weight ``β`` of the validation loss.
        lam: coupling strength ``λ``.
        y_lr: learning rate ``η_y`` of ``y`` (default: the weight learning rate, same schedule).
        kwargs: optimiser settings of :class:`~torchloom.nas.search.GradientStrategy`.
    """

    def __init__(
        self,
        y_model: Supernet,
        beta: float = 1.0,
        lam: float = 1.0,
        y_lr: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(y_model, Supernet):
            raise TypeError(f"y_model must be a Supernet, got {type(y_model).__name__}")
        self.y_model = y_model
        self.beta = check_positive(beta, "beta", strict=False)
        self.lam = check_positive(lam, "lam", strict=False)
        self.y_lr = y_lr
        self.y_opt: torch.optim.Optimizer | None = None

    def setup(self, model: Supernet, epochs: int) -> None:
        """Create the optimisers of ``w``, ``α`` and ``y``.

        Args:
            model: the search network.
            epochs: run length.
        """
        if model.op_names != self.y_model.op_names or model.steps != self.y_model.steps:
            raise ValueError("y_model must have the model's ops and steps")
        coupling_pairs(model, self.y_model)  # validates shapes
        super().setup(model, epochs)
        self.y_model.to(next(model.parameters()).device)
        self.y_opt = torch.optim.SGD(
            list(self.y_model.weight_parameters()),
            lr=self.w_lr if self.y_lr is None else self.y_lr,
            momentum=self.w_momentum,
            weight_decay=self.w_weight_decay,
        )

    def on_epoch_start(self, model: Supernet, epoch: int) -> None:
        """Cosine learning rates of ``w`` and ``y``.

        Args:
            model: the search network.
            epoch: 0-based epoch.
        """
        super().on_epoch_start(model, epoch)
        scale = self.lr_at(epoch) / self.w_lr
        base = self.w_lr if self.y_lr is None else self.y_lr
        for group in self._y_opt().param_groups:
            group["lr"] = base * scale

    def _y_opt(self) -> torch.optim.Optimizer:
        if self.y_opt is None:
            raise RuntimeError("call setup(model, epochs) before stepping the strategy")
        return self.y_opt

    def _add_coupling_grad(self, model: Supernet, to_w: bool) -> None:
        # ∇_w ½λ‖w − y‖² = λ (w − y) on the overlapping slice (and its negative for y), added
        # to the gradients in place: the same update as differentiating the penalty, without
        # building an autograd graph over every parameter.
        with torch.no_grad():
            for w, idx, y in _coupling(model, self.y_model):
                target, diff = (w, w[idx] - y) if to_w else (y, y - w[idx])
                if target.grad is None:
                    target.grad = torch.zeros_like(target)
                target.grad[idx if to_w else ()].add_(diff, alpha=self.lam)

    def weight_step(self, model: Supernet, batch: Batch) -> dict[str, float]:
        """``w ← w − η_w (∇_w L_train(w, α) + λ (w − y))`` with ``y`` and ``α`` fixed.

        Args:
            model: the search network.
            batch: a training batch.

        Returns:
            ``{"train_loss", "train_acc"}``.
        """
        opt = self._w_opt()
        opt.zero_grad(set_to_none=True)
        x, t = batch
        logits = model(x)
        loss = self.criterion(logits, t)
        _check_loss(loss, "training")
        params = list(model.weight_parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        self._add_coupling_grad(model, to_w=True)
        self.sync(params)
        if self.w_grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.w_grad_clip)
        opt.step()
        acc = (logits.argmax(-1) == t).float().mean()
        return {"train_loss": float(loss.detach()), "train_acc": float(acc)}

    def y_step(self, model: Supernet, batch: Batch) -> dict[str, float]:
        """``y ← y − η_y ∇_y (β L_val(y, α) + λ ½ ‖w − y‖²)`` with ``w`` and ``α`` fixed.

        Args:
            model: the search network (gives ``α`` and ``w``).
            batch: a validation batch.

        Returns:
            ``{"val_loss"}``.
        """
        opt = self._y_opt()
        opt.zero_grad(set_to_none=True)
        x, t = batch
        weights = {k: m.weights.detach() for k, m in model.mixtures().items()}
        loss = self.criterion(self.y_model(x, weights=weights), t)
        _check_loss(loss, "validation")
        params = list(self.y_model.weight_parameters())
        grads = torch.autograd.grad(self.beta * loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        self._add_coupling_grad(model, to_w=False)
        self.sync(params)
        if self.w_grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.w_grad_clip)
        opt.step()
        return {"val_loss": float(loss.detach())}

    def arch_step(self, model: Supernet, train: Batch, val: Batch) -> dict[str, float]:
        """``α ← α − η_α ∇_α (L_train(w, α) + β L_val(y, α))`` (first order only).

        Args:
            model: the search network.
            train: a training batch.
            val: a validation batch.

        Returns:
            ``{"arch_loss"}``.
        """
        opt = self._a_opt()
        opt.zero_grad(set_to_none=True)
        arch = model.arch_parameters()
        x, t = train
        loss_w = self.criterion(model(x), t)
        vx, vt = val
        loss_y = self.criterion(self.y_model(vx, weights=model.mixtures()), vt)
        total = loss_w + self.beta * loss_y
        _check_loss(total, "architecture")
        grads = torch.autograd.grad(total, arch, allow_unused=True)
        for p, g in zip(arch, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        self.sync(arch)
        opt.step()
        return {"arch_loss": float(total.detach())}

    def step(self, model: Supernet, train: Batch, val: Batch, epoch: int) -> dict[str, float]:
        """One Gauss–Seidel sweep: ``w``, then ``y``, then ``α``.

        Args:
            model: the search network.
            train: a training batch (for ``w``).
            val: a validation batch (for ``y``).
            epoch: 0-based epoch.

        Returns:
            The merged metrics.
        """
        self.y_model.train(model.training)
        metrics = self.weight_step(model, train)
        metrics.update(self.y_step(model, val))
        if epoch >= self.arch_start_epoch:
            metrics.update(self.arch_step(model, train, val))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Optimiser states and the second network.

        Returns:
            The state.
        """
        state = super().state_dict()
        state["y_opt"] = self._y_opt().state_dict()
        state["y_model"] = self.y_model.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state: from :meth:`state_dict`.
        """
        super().load_state_dict(state)
        self.y_model.load_state_dict(state["y_model"])
        self._y_opt().load_state_dict(state["y_opt"])
