"""DARTS (Liu, Simonyan & Yang, 2019): bilevel search, first- and second-order.

The architecture ``α`` minimises the validation loss of weights trained on the training set,
``min_α L_val(w*(α), α)`` with ``w*(α) = argmin_w L_train(w, α)``. DARTS approximates ``w*`` by
one virtual SGD step ``w' = w − ξ ∇_w L_train(w, α)`` and differentiates through it:

    ∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) · ∇_{w'} L_val(w', α)

(Eq. 7). The mixed second derivative times a vector is the finite difference

    ∇²_{α,w} L_train(w, α) · v ≈ (∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / (2ε),
    w^± = w ± ε v,  ε = 0.01 / ‖v‖

(Eq. 8). ``ξ = 0`` is first-order DARTS. :func:`darts_hypergradient` computes the finite-
difference estimate, or the exact one by differentiating through the virtual step with autograd
(``exact=True``), which the tests use as the reference. As in the authors' code the virtual step
includes the weight optimiser's momentum and weight decay: ``w' = w − ξ (μ·buf + ∇_w L + λ w)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from torchloom.core.checks import check_positive
from torchloom.nas.search import Batch, GradientStrategy, _check_loss
from torchloom.nas.supernet import Supernet

__all__ = ["DARTS", "darts_hypergradient"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _split(model: Supernet) -> tuple[list[str], list[torch.Tensor], list[str], list[torch.Tensor]]:
    arch = {id(p) for p in model.arch_parameters()}
    wn: list[str] = []
    an: list[str] = []
    w: list[torch.Tensor] = []
    a: list[torch.Tensor] = []
    for name, p in model.named_parameters():
        if id(p) in arch:
            an.append(name)
            a.append(p)
        else:
            wn.append(name)
            w.append(p)
    return wn, w, an, a


def _loss_fn(
    model: Supernet, criterion: Criterion
) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], Batch], torch.Tensor]:
    wn, _, an, _ = _split(model)
    buffers = dict(model.named_buffers())

    def loss(w: Sequence[torch.Tensor], a: Sequence[torch.Tensor], batch: Batch) -> torch.Tensor:
        # fresh copies of the buffers: virtual forwards must not move the BatchNorm statistics
        state: dict[str, torch.Tensor] = {k: b.clone() for k, b in buffers.items()}
        state.update(zip(wn, w))
        state.update(zip(an, a))
        x, y = batch
        return criterion(functional_call(model, state, (x,)), y)

    return loss


def darts_hypergradient(
    model: Supernet,
    train: Batch,
    val: Batch,
    xi: float,
    *,
    momentum: float = 0.0,
    momentum_buffers: Sequence[torch.Tensor | None] | None = None,
    weight_decay: float = 0.0,
    eps: float = 0.01,
    exact: bool = False,
    criterion: Criterion | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The second-order DARTS architecture gradient (Eq. 7), by finite differences or exactly.

    Args:
        model: the supernet (its parameters are not modified).
        train: training batch ``(x, y)`` for the virtual step.
        val: validation batch ``(x, y)``.
        xi: virtual learning rate ``ξ`` (0 gives the first-order gradient).
        momentum: weight optimiser momentum ``μ``.
        momentum_buffers: the optimiser's momentum buffers, aligned with
            ``model.weight_parameters()`` (``None`` entries count as zero).
        weight_decay: weight decay ``λ`` of the virtual step.
        eps: finite-difference scale; the step is ``ε = eps / ‖∇_{w'} L_val‖``.
        exact: differentiate through the virtual step with autograd instead (reference).
        criterion: ``criterion(logits, y)``, cross-entropy by default.

    Returns:
        ``(grads, val_loss)``: one gradient per ``model.arch_parameters()`` and ``L_val(w', α)``.
    """
    xi = check_positive(xi, "xi", strict=False)
    crit = criterion or F.cross_entropy
    loss = _loss_fn(model, crit)
    _, w, _, a = _split(model)
    bufs = list(momentum_buffers) if momentum_buffers is not None else [None] * len(w)
    if len(bufs) != len(w):
        raise ValueError(f"momentum_buffers must have {len(w)} entries, got {len(bufs)}")

    def virtual_step(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for p, g, b in zip(w, grads, bufs):
            v = g + weight_decay * p
            if b is not None and momentum:
                v = v + momentum * b
            out.append(p - xi * v)
        return out

    if exact:
        g_train = torch.autograd.grad(loss(w, a, train), w, create_graph=True, allow_unused=True)
        w1 = virtual_step([torch.zeros_like(p) if g is None else g for p, g in zip(w, g_train)])
        val_loss = loss(w1, a, val)
        grads = torch.autograd.grad(val_loss, a, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(a, grads)], (
            val_loss.detach()
        )

    g_train = torch.autograd.grad(loss(w, a, train), w, allow_unused=True)
    with torch.no_grad():
        w1 = virtual_step([torch.zeros_like(p) if g is None else g for p, g in zip(w, g_train)])
    w1 = [t.detach().requires_grad_(True) for t in w1]
    val_loss = loss(w1, a, val)
    _check_loss(val_loss, "validation")
    g_all = torch.autograd.grad(val_loss, [*a, *w1], allow_unused=True)
    d_alpha = [torch.zeros_like(p) if g is None else g for p, g in zip(a, g_all[: len(a)])]
    if xi == 0.0:
        return d_alpha, val_loss.detach()
    dw = [torch.zeros_like(p) if g is None else g for p, g in zip(w, g_all[len(a) :])]
    norm = torch.sqrt(sum((g * g).sum() for g in dw))  # type: ignore[arg-type]
    r = eps / float(norm) if float(norm) > 0 else 0.0
    if r == 0.0:
        return d_alpha, val_loss.detach()
    with torch.no_grad():
        w_plus = [p + r * g for p, g in zip(w, dw)]
        w_minus = [p - r * g for p, g in zip(w, dw)]
    g_plus = torch.autograd.grad(loss(w_plus, a, train), a, allow_unused=True)
    g_minus = torch.autograd.grad(loss(w_minus, a, train), a, allow_unused=True)
    out = []
    for d, gp, gm, p in zip(d_alpha, g_plus, g_minus, a):
        gp_ = torch.zeros_like(p) if gp is None else gp
        gm_ = torch.zeros_like(p) if gm is None else gm
        out.append(d - xi * (gp_ - gm_) / (2 * r))
    return out, val_loss.detach()


class DARTS(GradientStrategy):
    """The DARTS strategy: alternate an architecture step on a validation batch and a weight
    step on a training batch.

    Args:
        order: 1 (first-order, ``ξ = 0``) or 2 (unrolled, finite-difference Hessian-vector
            product).
        xi: virtual step size of the second-order gradient; ``None`` uses the weight
            optimiser's current learning rate, as the DARTS code does.
        eps: finite-difference scale (``ε = eps / ‖∇_{w'} L_val‖``).
        kwargs: optimiser settings of :class:`~torchloom.nas.search.GradientStrategy`.
    """

    def __init__(
        self, order: int = 1, xi: float | None = None, eps: float = 0.01, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        self.order = order
        self.xi = xi
        self.eps = check_positive(eps, "eps")

    def _momentum_buffers(self, model: Supernet) -> list[torch.Tensor | None]:
        opt = self._w_opt()
        return [opt.state.get(p, {}).get("momentum_buffer") for p in model.weight_parameters()]

    def arch_step(self, model: Supernet, train: Batch, val: Batch) -> dict[str, float]:
        """One Adam step of ``α`` along the (first- or second-order) hypergradient.

        Args:
            model: the supernet.
            train: a training batch (used by the second-order virtual step).
            val: a validation batch.

        Returns:
            ``{"val_loss"}``.
        """
        opt = self._a_opt()
        opt.zero_grad(set_to_none=True)
        arch = model.arch_parameters()
        if self.order == 1:
            x, y = val
            loss = self.criterion(model(x), y)
            _check_loss(loss, "validation")
            grads = list(torch.autograd.grad(loss, arch, allow_unused=True))
            val_loss = loss.detach()
        else:
            xi = self.current_lr if self.xi is None else self.xi
            grads_, val_loss = darts_hypergradient(
                model,
                train,
                val,
                xi,
                momentum=self.w_momentum,
                momentum_buffers=self._momentum_buffers(model),
                weight_decay=self.w_weight_decay,
                eps=self.eps,
                criterion=self.criterion,
            )
            grads = list(grads_)
        for p, g in zip(arch, grads):
            p.grad = torch.zeros_like(p) if g is None else g.detach()
        self.sync(arch)
        opt.step()
        return {"val_loss": float(val_loss)}
