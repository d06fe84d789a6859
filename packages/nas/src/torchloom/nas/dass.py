"""DASS (Mousavi et al. 2022): differentiable architecture search for sparse networks.

DARTS searches cells for *dense* networks; pruned afterwards, they lose much accuracy. DASS
makes the search sparsity-aware in two ways:

1. **Sparse parametric operations** in the search space: :class:`SparseConv2d` and
   :class:`SparseLinear` hold a pruning mask ``m`` over their weights, either from the weight
   magnitude (``mask="magnitude"``: keep the largest ``(1 − s)`` fraction of ``|w|``) or from
   learnable importance scores (``mask="scores"``: keep the largest scores, HYDRA-style), with a
   straight-through estimator so that masked weights or scores still receive gradients. The
   sparsity ``s`` is an attribute, so it can follow a schedule. Registered as the ops
   ``sparse_conv_3x3``, ``sparse_conv_5x5`` and ``sparse_linear`` (a pointwise channel mixer)
   of :mod:`torchloom.nas.space`.
2. **A sparsity-aware objective**: the architecture is optimised for the validation loss of the
   *pruned* supernet, ``min_α L_val(w* ⊙ m(w*), α)`` with ``w* = argmin_w L_train(w ⊙ m(w), α)``;
   :class:`DASS` installs magnitude masks (straight-through) on every convolution and linear
   layer of the supernet (:func:`sparsify_`) and ramps their sparsity up to the target.

Evaluation is prune-then-finetune at a given ratio: :func:`magnitude_prune_` fixes layer-wise
magnitude masks on a trained network, :func:`finetune_pruned` retrains the surviving weights
(the masks stay applied), :func:`sparsity_of` reports the achieved ratio.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from torchloom.core.checks import check_floating, check_int, check_probability
from torchloom.nas.darts import DARTS
from torchloom.nas.search import Batch, train_network
from torchloom.nas.space import register_op

__all__ = [
    "DASS",
    "SPARSE_OPS",
    "MagnitudeMask",
    "SparseConv2d",
    "SparseLinear",
    "finetune_pruned",
    "magnitude_prune_",
    "sparsify_",
    "sparsity_of",
    "topk_mask",
]


def topk_mask(importance: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Binary mask keeping the ``round((1 − sparsity) · numel)`` largest entries of ``importance``.

    Args:
        importance: any shape ``(*)``, larger is more important.
        sparsity: fraction of entries to zero, in ``[0, 1]``.

    Returns:
        ``(*)`` mask of 0/1 in the dtype of ``importance`` (at least one entry kept).
    """
    check_floating(importance, "importance")
    sparsity = check_probability(sparsity, "sparsity")
    n = importance.numel()
    keep = max(1, round((1.0 - sparsity) * n))
    if keep >= n:
        return torch.ones_like(importance)
    idx = importance.detach().reshape(-1).topk(keep).indices
    return (
        torch.zeros(n, dtype=importance.dtype, device=importance.device)
        .scatter_(0, idx, 1.0)
        .reshape(importance.shape)
    )


class _StraightThroughMask(torch.autograd.Function):
    """``w ⊙ m`` in the forward, identity gradient to ``w`` in the backward."""

    @staticmethod
    def forward(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return w * mask

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class _ScoreMask(torch.autograd.Function):
    """HYDRA's GetSubnet: top-k mask of the scores, gradient passed straight to the scores."""

    @staticmethod
    def forward(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        return topk_mask(scores.abs(), sparsity)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class MagnitudeMask(nn.Module):
    """A weight parametrisation ``w ↦ w ⊙ m``: magnitude top-k mask (recomputed each forward,
    straight-through gradient) or a fixed mask (after :meth:`freeze`, plain ``w ⊙ m`` so pruned
    weights get no gradient).

    Args:
        sparsity: fraction of weights zeroed, in ``[0, 1]`` (assign to schedule it).
        straight_through: pass the gradient to masked weights too (search) or not.
    """

    def __init__(self, sparsity: float = 0.0, straight_through: bool = True) -> None:
        super().__init__()
        self.sparsity = check_probability(sparsity, "sparsity")
        self.straight_through = bool(straight_through)
        self.register_buffer("fixed", None)

    def freeze(self, w: torch.Tensor) -> None:
        """Fix the mask to the current magnitude top-k of ``w``.

        Args:
            w: the (unmasked) weight.
        """
        self.fixed = topk_mask(w.detach().abs(), self.sparsity)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Masked weight.

        Args:
            w: weight ``(*)``.

        Returns:
            ``w ⊙ m``.
        """
        fixed = self.fixed
        if isinstance(fixed, torch.Tensor):
            return w * fixed
        mask = topk_mask(w.detach().abs(), self.sparsity)
        if self.straight_through:
            out: torch.Tensor = _StraightThroughMask.apply(w, mask)
            return out
        return w * mask


def _masked_weight(
    weight: torch.Tensor, scores: torch.Tensor | None, sparsity: float
) -> torch.Tensor:
    if scores is None:
        out: torch.Tensor = _StraightThroughMask.apply(
            weight, topk_mask(weight.detach().abs(), sparsity)
        )
        return out
    return weight * _ScoreMask.apply(scores, sparsity)


def _check_mask_mode(mask: str) -> Literal["magnitude", "scores"]:
    if mask not in ("magnitude", "scores"):
        raise ValueError(f"mask must be 'magnitude' or 'scores', got {mask!r}")
    return mask  # type: ignore[return-value]


class SparseConv2d(nn.Conv2d):
    """DASS SparseConv: a convolution whose weight is pruned to ``sparsity`` by a mask.

    ``mask="magnitude"``: keep the largest ``|w|``, straight-through gradient to every weight
    (pruned weights can grow back). ``mask="scores"``: learnable importance scores (initialised
    to ``|w|``), keep the top scores, straight-through gradient to the scores (HYDRA).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size.
        stride: stride.
        padding: padding.
        groups: groups.
        bias: learn a bias.
        sparsity: fraction of weights zeroed (assign ``.sparsity`` to schedule it).
        mask: ``"magnitude"`` or ``"scores"``.

    Shapes:
        x: ``(B, in_channels, H, W)``; output: ``(B, out_channels, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        sparsity: float = 0.5,
        mask: Literal["magnitude", "scores"] = "magnitude",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias
        )
        self.sparsity = check_probability(sparsity, "sparsity")
        self.mask_mode = _check_mask_mode(mask)
        self.scores: nn.Parameter | None = (
            nn.Parameter(self.weight.detach().abs().clone()) if mask == "scores" else None
        )

    def effective_weight(self) -> torch.Tensor:
        """The pruned weight ``w ⊙ m``.

        Returns:
            ``(out_channels, in_channels / groups, k, k)``.
        """
        return _masked_weight(self.weight, self.scores, self.sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the pruned weight.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, out_channels, H', W')``.
        """
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SparseLinear(nn.Linear):
    """DASS SparseLinear: a linear layer whose weight is pruned to ``sparsity`` by a mask
    (see :class:`SparseConv2d` for the two mask modes).

    Args:
        in_features: input features.
        out_features: output features.
        bias: learn a bias.
        sparsity: fraction of weights zeroed.
        mask: ``"magnitude"`` or ``"scores"``.

    Shapes:
        x: ``(*, in_features)``; output: ``(*, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        sparsity: float = 0.5,
        mask: Literal["magnitude", "scores"] = "magnitude",
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.sparsity = check_probability(sparsity, "sparsity")
        self.mask_mode = _check_mask_mode(mask)
        self.scores: nn.Parameter | None = (
            nn.Parameter(self.weight.detach().abs().clone()) if mask == "scores" else None
        )

    def effective_weight(self) -> torch.Tensor:
        """The pruned weight ``w ⊙ m``.

        Returns:
            ``(out_features, in_features)``.
        """
        return _masked_weight(self.weight, self.scores, self.sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the pruned linear map.

        Args:
            x: ``(*, in_features)``.

        Returns:
            ``(*, out_features)``.
        """
        return F.linear(x, self.effective_weight(), self.bias)


class _PointwiseSparseLinear(nn.Module):
    """``sparse_linear`` op: ReLU → (stride-subsample) → SparseLinear over channels → BN."""

    def __init__(self, C: int, stride: int, affine: bool) -> None:
        super().__init__()
        self.stride = stride
        self.linear = SparseLinear(C, C, bias=False)
        self.bn = nn.BatchNorm2d(C, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x)
        if self.stride > 1:
            h = h[:, :, :: self.stride, :: self.stride]
        h = self.linear(h.movedim(1, -1)).movedim(-1, 1)
        out: torch.Tensor = self.bn(h)
        return out


def _sparse_conv_op(k: int) -> Any:
    def factory(C: int, stride: int, affine: bool) -> nn.Module:
        return nn.Sequential(
            nn.ReLU(inplace=False),
            SparseConv2d(C, C, k, stride, k // 2),
            nn.BatchNorm2d(C, affine=affine),
        )

    return factory


SPARSE_OPS: tuple[str, ...] = ("sparse_conv_3x3", "sparse_conv_5x5", "sparse_linear")
"""The DASS operations added to the search space."""

for _name, _factory in (
    ("sparse_conv_3x3", _sparse_conv_op(3)),
    ("sparse_conv_5x5", _sparse_conv_op(5)),
    ("sparse_linear", lambda C, stride, affine: _PointwiseSparseLinear(C, stride, affine)),
):
    register_op(_name, _factory, overwrite=True)


def _weight_params(m: nn.Module) -> Any:
    """The parametrisation list of ``m.weight`` (``m.parametrizations["weight"]``)."""
    plist: Any = m.parametrizations
    return plist["weight"]


def _prunable(model: nn.Module, skip: Iterable[nn.Module] = ()) -> Iterator[nn.Module]:
    skipped = {id(m) for m in skip}
    for m in model.modules():
        if id(m) in skipped or isinstance(m, (SparseConv2d, SparseLinear)):
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            yield m


def sparsify_(
    model: nn.Module,
    sparsity: float,
    skip: Iterable[nn.Module] = (),
    straight_through: bool = True,
) -> list[MagnitudeMask]:
    """Install magnitude masks on every ``Conv2d``/``Linear`` weight of ``model`` (in place) and
    set the sparsity of its :class:`SparseConv2d`/:class:`SparseLinear` modules.

    Args:
        model: the network.
        sparsity: fraction of each layer's weights zeroed.
        skip: modules left dense (e.g. the stem and the classifier).
        straight_through: gradients reach masked weights too (search) or not.

    Returns:
        The installed :class:`MagnitudeMask` parametrisations (assign ``.sparsity`` to
        schedule them).
    """
    sparsity = check_probability(sparsity, "sparsity")
    masks = []
    for m in list(_prunable(model, skip)):
        if parametrize.is_parametrized(m, "weight"):
            for p in _weight_params(m):
                if isinstance(p, MagnitudeMask):
                    p.sparsity = sparsity
                    masks.append(p)
            continue
        mask = MagnitudeMask(sparsity, straight_through)
        parametrize.register_parametrization(m, "weight", mask)
        masks.append(mask)
    for m in model.modules():
        if isinstance(m, (SparseConv2d, SparseLinear)):
            m.sparsity = sparsity
    return masks


def magnitude_prune_(
    model: nn.Module, sparsity: float, skip: Iterable[nn.Module] = ()
) -> list[MagnitudeMask]:
    """Prune ``model`` in place: layer-wise magnitude masks at ``sparsity``, fixed from now on.

    Sparse ops' own masks are frozen too (their current masked weight is pruned again at the
    same ratio, which keeps exactly their mask).

    Args:
        model: a trained network.
        sparsity: fraction of each prunable layer's weights zeroed.
        skip: modules left dense.

    Returns:
        The fixed masks.
    """
    masks = sparsify_(model, sparsity, skip, straight_through=False)
    for m in model.modules():
        if isinstance(m, (SparseConv2d, SparseLinear)):
            with torch.no_grad():
                m.weight.copy_(m.effective_weight().detach())
            m.scores = None
            fixed = MagnitudeMask(sparsity, False)
            parametrize.register_parametrization(m, "weight", fixed)
            masks.append(fixed)
            m.sparsity = 0.0  # the parametrisation now holds the mask
    for m in list(_prunable(model, skip)) + [
        x for x in model.modules() if isinstance(x, (SparseConv2d, SparseLinear))
    ]:
        if parametrize.is_parametrized(m, "weight"):
            original = _weight_params(m).original
            for p in _weight_params(m):
                if isinstance(p, MagnitudeMask):
                    p.freeze(original)
    return masks


def sparsity_of(model: nn.Module, skip: Iterable[nn.Module] = ()) -> float:
    """Fraction of zero weights over the prunable layers (as the forward uses them).

    Args:
        model: the network.
        skip: modules excluded from the count.

    Returns:
        Zeros / total over every ``Conv2d``/``Linear`` weight not in ``skip``.
    """
    skipped = {id(m) for m in skip}
    zeros = total = 0
    with torch.no_grad():
        for m in model.modules():
            if id(m) in skipped or not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            w = m.effective_weight() if isinstance(m, (SparseConv2d, SparseLinear)) else m.weight
            zeros += int((w == 0).sum())
            total += w.numel()
    if total == 0:
        raise ValueError("model has no Conv2d/Linear weights to count")
    return zeros / total


def finetune_pruned(
    model: nn.Module, train: Iterable[Batch], epochs: int, lr: float = 0.02, **kwargs: Any
) -> nn.Module:
    """Fine-tune a pruned network (after :func:`magnitude_prune_`); the fixed masks keep
    pruned weights at zero.

    Args:
        model: the pruned network.
        train: ``(x, y)`` batches.
        epochs: fine-tuning epochs.
        lr: initial SGD learning rate (cosine).
        kwargs: more :func:`~torchloom.nas.search.train_network` options.

    Returns:
        The model.
    """
    check_int(epochs, "epochs")
    return train_network(model, train, epochs, lr=lr, **kwargs)


class DASS(DARTS):
    """DASS search: first-order DARTS on a supernet that is pruned in the loop.

    :meth:`setup` installs straight-through magnitude masks on every convolution and linear
    layer of the supernet's cells (stem and classifier stay dense) and the sparse ops'
    sparsity; the sparsity ramps linearly from 0 to ``sparsity`` over ``ramp_epochs`` (the
    scheduled pruning mask), so both the weight step and the architecture step see the pruned
    network: the architecture is chosen for its accuracy *after* pruning. Put the sparse ops in
    the space with ``Supernet(ops=PRIMITIVES + SPARSE_OPS)``.

    Args:
        sparsity: target pruning ratio.
        ramp_epochs: epochs of the linear sparsity ramp (0: the target from the start).
        kwargs: :class:`~torchloom.nas.darts.DARTS` options (``order`` defaults to 1).
    """

    def __init__(self, sparsity: float = 0.9, ramp_epochs: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("order", 1)
        super().__init__(**kwargs)
        self.sparsity = check_probability(sparsity, "sparsity")
        self.ramp_epochs = check_int(ramp_epochs, "ramp_epochs", minimum=0)
        self.masks: list[MagnitudeMask] = []
        self._skip: list[nn.Module] = []

    def sparsity_at(self, epoch: int) -> float:
        """The scheduled sparsity of ``epoch``.

        Args:
            epoch: 0-based epoch.

        Returns:
            ``sparsity · min(1, (epoch + 1) / (ramp_epochs + 1))``.
        """
        if self.ramp_epochs == 0:
            return self.sparsity
        return self.sparsity * min(1.0, (epoch + 1) / (self.ramp_epochs + 1))

    def setup(self, model: Any, epochs: int) -> None:
        """Install the masks, then create the optimisers.

        Args:
            model: the supernet.
            epochs: length of the run.
        """
        self._skip = [
            m
            for m in (getattr(model, "stem", None), getattr(model, "classifier", None))
            if isinstance(m, nn.Module)
        ]
        self.masks = sparsify_(model, self.sparsity_at(0), self._skip)
        super().setup(model, epochs)

    def on_epoch_start(self, model: Any, epoch: int) -> None:
        """Schedule the sparsity and the weight learning rate.

        Args:
            model: the supernet.
            epoch: 0-based epoch.
        """
        super().on_epoch_start(model, epoch)
        sparsify_(model, self.sparsity_at(epoch), self._skip)

    def on_epoch_end(self, model: Any, epoch: int) -> dict[str, float]:
        """Report the current sparsity.

        Args:
            model: the supernet.
            epoch: 0-based epoch.

        Returns:
            ``{"sparsity"}``.
        """
        return {"sparsity": self.sparsity_at(epoch)}
