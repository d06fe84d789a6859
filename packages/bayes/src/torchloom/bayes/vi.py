"""Mean-field Gaussian variational inference for neural networks.

Every weight carries ``q(θ) = N(μ, σ²)`` (fully factorised); the prior is ``p(θ) = N(0, σ_p²)``.
The layers use the *local reparameterisation trick* (Kingma, Salimans & Welling, 2015): instead
of sampling a weight matrix, they sample the pre-activations, which are Gaussian given the input,

    b = x μᵀ + sqrt(x² (σ²)ᵀ) ⊙ ε,   ε ~ N(0, I),

so every example in a batch sees an independent weight draw at the cost of two dense products.

σ is kept positive through ``σ = softplus(ρ)`` (Blundell et al., 2015) or ``σ = exp(ρ)``
(``parametrization="log"``). A layer may carry a ``weight_mask`` (0/1) buffer: masked weights
are exactly zero in every sample and contribute nothing to the KL — this is how
:mod:`torchloom.bayes.ssvi` restricts ``q`` to a sparse subspace.

The objective is the negative ELBO per datum,
``−ELBO/N = E_q[−log p(y|x,θ)] + β KL(q‖p)/N`` (:func:`negative_elbo`); predictions are the
Monte-Carlo average of softmax outputs (:func:`predictive`), scored with the expected
calibration error (:func:`expected_calibration_error`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import (
    check_finite,
    check_floating,
    check_ndim,
    check_positive,
    check_tensor,
)

__all__ = [
    "MeanFieldLayer",
    "TrainingFlopCounter",
    "VariationalConv2d",
    "VariationalLinear",
    "expected_calibration_error",
    "gaussian_kl",
    "kl_divergence",
    "negative_elbo",
    "predictive",
    "variational_layers",
]

Parametrization = Literal["softplus", "log"]


def gaussian_kl(
    mu_q: torch.Tensor,
    sigma_q: torch.Tensor,
    mu_p: float | torch.Tensor = 0.0,
    sigma_p: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Elementwise ``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))`` in closed form (same shape as ``mu_q``):

    ``log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²) / (2σ_p²) − 1/2``.
    """
    check_floating(mu_q, "mu_q")
    check_floating(sigma_q, "sigma_q")
    if mu_q.shape != sigma_q.shape:
        raise ValueError(
            f"mu_q and sigma_q must have the same shape, got {tuple(mu_q.shape)} "
            f"and {tuple(sigma_q.shape)}"
        )
    sp = torch.as_tensor(sigma_p, dtype=mu_q.dtype, device=mu_q.device)
    mp = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    if bool((sp <= 0).any()):
        raise ValueError("sigma_p must be > 0")
    return torch.log(sp) - torch.log(sigma_q) + (sigma_q**2 + (mu_q - mp) ** 2) / (2 * sp**2) - 0.5


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class MeanFieldLayer(nn.Module):
    """Shared machinery of the mean-field Gaussian layers (weights + optional bias).

    Parameters ``weight_mu``, ``weight_rho`` (σ = softplus(ρ) or exp(ρ)), ``bias_mu``,
    ``bias_rho``; optional buffer ``weight_mask`` (same shape as the weight, 0/1).
    """

    weight_mask: torch.Tensor | None

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        fan_in: int,
        out_features: int,
        bias: bool,
        prior_sigma: float,
        sigma_init: float,
        parametrization: Parametrization,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        check_positive(prior_sigma, "prior_sigma")
        check_positive(sigma_init, "sigma_init")
        if parametrization not in ("softplus", "log"):
            raise ValueError(
                f"parametrization must be 'softplus' or 'log', got {parametrization!r}"
            )
        self.prior_sigma = float(prior_sigma)
        self.sigma_init = float(sigma_init)
        self.parametrization: Parametrization = parametrization
        factory = {"device": device, "dtype": dtype}
        self.weight_mu = nn.Parameter(torch.empty(weight_shape, **factory))  # type: ignore[arg-type]
        self.weight_rho = nn.Parameter(torch.empty(weight_shape, **factory))  # type: ignore[arg-type]
        if bias:
            self.bias_mu: nn.Parameter | None = nn.Parameter(
                torch.empty(out_features, **factory)  # type: ignore[arg-type]
            )
            self.bias_rho: nn.Parameter | None = nn.Parameter(
                torch.empty(out_features, **factory)  # type: ignore[arg-type]
            )
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.register_buffer("weight_mask", None)
        self._fan_in = fan_in
        # set by torchloom.bayes.ssvi on the step whose gradient chooses the weights to add
        self.capture_dense_grad = False
        self.dense_grad: torch.Tensor | None = None
        self.last_input_shape: torch.Size | None = None
        self.reset_parameters()

    # -- parametrisation -------------------------------------------------------------------
    def rho_for(self, sigma: float) -> float:
        """The raw parameter ρ that gives standard deviation ``sigma``."""
        return _inverse_softplus(sigma) if self.parametrization == "softplus" else math.log(sigma)

    def to_sigma(self, rho: torch.Tensor) -> torch.Tensor:
        return F.softplus(rho) if self.parametrization == "softplus" else torch.exp(rho)

    def reset_parameters(self) -> None:
        # means as PyTorch initialises a deterministic layer; σ small so training starts near it
        bound = 1.0 / math.sqrt(self._fan_in)
        nn.init.kaiming_uniform_(self.weight_mu, a=math.sqrt(5))
        nn.init.constant_(self.weight_rho, self.rho_for(self.sigma_init))
        if self.bias_mu is not None and self.bias_rho is not None:
            nn.init.uniform_(self.bias_mu, -bound, bound)
            nn.init.constant_(self.bias_rho, self.rho_for(self.sigma_init))
        if self.weight_mask is not None:
            with torch.no_grad():
                self.weight_mu.mul_(self.weight_mask)

    @property
    def weight_sigma(self) -> torch.Tensor:
        return self.to_sigma(self.weight_rho)

    @property
    def bias_sigma(self) -> torch.Tensor | None:
        return None if self.bias_rho is None else self.to_sigma(self.bias_rho)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict ``q`` to the weights where ``mask`` is 1; the others become exactly zero."""
        if mask is None:
            self.weight_mask = None
            return
        check_tensor(mask, "mask")
        if mask.shape != self.weight_mu.shape:
            raise ValueError(
                f"mask must have the weight's shape {tuple(self.weight_mu.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        m = (mask != 0).to(self.weight_mu.dtype)
        self.weight_mask = m
        with torch.no_grad():
            self.weight_mu.mul_(m)

    # -- moments of the effective weights ------------------------------------------------------
    def _weight_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        mu: torch.Tensor = self.weight_mu
        var = self.weight_sigma**2
        if self.weight_mask is not None:
            mu, var = mu * self.weight_mask, var * self.weight_mask
        if self.capture_dense_grad and mu.requires_grad:
            # ∂L/∂μ for *every* position, active or not (RigL-style growth signal)
            mu.register_hook(self._store_dense_grad)
        return mu, var

    def _store_dense_grad(self, grad: torch.Tensor) -> None:
        # summed over every forward of the step (several MC samples share one backward)
        g = grad.detach()
        self.dense_grad = g.clone() if self.dense_grad is None else self.dense_grad + g

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # a saved sparse layer carries its mask; a fresh layer has none yet, so adopt it
        key = prefix + "weight_mask"
        if key in state_dict and self.weight_mask is None:
            self.weight_mask = torch.empty_like(self.weight_mu)
        elif key not in state_dict and self.weight_mask is not None:
            self.weight_mask = None
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _bias_moments(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        sig = self.bias_sigma
        return self.bias_mu, None if sig is None else sig**2

    def kl(self) -> torch.Tensor:
        """``KL(q‖p)`` summed over the active weights and the bias (a scalar)."""
        w = gaussian_kl(self.weight_mu, self.weight_sigma, 0.0, self.prior_sigma)
        if self.weight_mask is not None:
            w = w * self.weight_mask
        total = w.sum()
        if self.bias_mu is not None and self.bias_rho is not None:
            b = gaussian_kl(self.bias_mu, self.to_sigma(self.bias_rho), 0.0, self.prior_sigma)
            total = total + b.sum()
        return total

    def num_active(self) -> int:
        """Number of weights carrying (μ, σ) — all of them without a mask."""
        if self.weight_mask is None:
            return self.weight_mu.numel()
        return int(self.weight_mask.sum().item())

    def num_variational_params(self) -> int:
        """Stored variational parameters: 2 per active weight and per bias entry."""
        nb = 0 if self.bias_mu is None else self.bias_mu.numel()
        return 2 * (self.num_active() + nb)

    def _sample(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        # the clamp keeps sqrt differentiable where an input column is all zero
        return mean + torch.sqrt(var.clamp_min(1e-16)) * torch.randn_like(mean)

    def forward_flops(self, input_shape: torch.Size) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def weight_grad_flops(self, input_shape: torch.Size) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class VariationalLinear(MeanFieldLayer):
    """Mean-field Gaussian ``Linear`` with the local reparameterisation trick.

    Shapes: input ``(*, in_features)``, output ``(*, out_features)``. ``sample=False`` in
    :meth:`forward` returns the mean pre-activation ``x μᵀ + μ_b`` (no noise).

    Args:
        prior_sigma: standard deviation σ_p of the prior ``N(0, σ_p²)``.
        sigma_init: initial σ of every weight.
        parametrization: ``"softplus"`` (σ = log(1+e^ρ)) or ``"log"`` (σ = e^ρ).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        prior_sigma: float = 1.0,
        sigma_init: float = 1e-3,
        parametrization: Parametrization = "softplus",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        super().__init__(
            (out_features, in_features),
            in_features,
            out_features,
            bias,
            prior_sigma,
            sigma_init,
            parametrization,
            device,
            dtype,
        )

    def forward(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        check_floating(x, "x")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (*, {self.in_features}), got {tuple(x.shape)}")
        w_mu, w_var = self._weight_moments()
        b_mu, b_var = self._bias_moments()
        mean = F.linear(x, w_mu, b_mu)
        if not sample:
            return mean
        var = F.linear(x * x, w_var, b_var)
        return self._sample(mean, var)

    def forward_flops(self, input_shape: torch.Size) -> int:
        """FLOPs of one sampled forward pass on ``input_shape`` counting only active weights:
        a multiply-add per active weight per example for the mean and again for the variance,
        plus the elementwise work (x², sqrt, noise, add)."""
        rows = math.prod(input_shape[:-1])
        nnz = self.num_active()
        return rows * (4 * nnz + self.in_features + 4 * self.out_features) + 2 * nnz

    def weight_grad_flops(self, input_shape: torch.Size) -> int:
        """FLOPs of ``∂L/∂μ`` for *all* weights (dense), one multiply-add per weight per row."""
        return 2 * math.prod(input_shape[:-1]) * self.weight_mu.numel()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias_mu is not None}, prior_sigma={self.prior_sigma}, "
            f"parametrization={self.parametrization!r}"
        )


class VariationalConv2d(MeanFieldLayer):
    """Mean-field Gaussian ``Conv2d`` with the local reparameterisation trick.

    Shapes: input ``(B, C_in, H, W)``, output ``(B, C_out, H', W')``; the output variance is
    ``conv2d(x², σ²)`` so each output location gets independent noise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        prior_sigma: float = 1.0,
        sigma_init: float = 1e-3,
        parametrization: Parametrization = "softplus",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(k) != 2 or min(k) < 1:
            raise ValueError(f"kernel_size must be a positive int or pair, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (int(k[0]), int(k[1]))
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        super().__init__(
            (out_channels, in_channels, *self.kernel_size),
            in_channels * self.kernel_size[0] * self.kernel_size[1],
            out_channels,
            bias,
            prior_sigma,
            sigma_init,
            parametrization,
            device,
            dtype,
        )

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        check_floating(x, "x")
        check_ndim(x, "x", 4, "(B, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels (B, C, H, W), got shape {tuple(x.shape)}"
            )
        w_mu, w_var = self._weight_moments()
        b_mu, b_var = self._bias_moments()
        mean = self._conv(x, w_mu, b_mu)
        if not sample:
            return mean
        var = self._conv(x * x, w_var, b_var)
        return self._sample(mean, var)

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        def pair(v: int | tuple[int, int]) -> tuple[int, int]:
            return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))

        s, p, d = pair(self.stride), pair(self.padding), pair(self.dilation)
        k = self.kernel_size
        return (
            (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1,
            (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1,
        )

    def forward_flops(self, input_shape: torch.Size) -> int:
        """FLOPs of one sampled forward pass: two multiply-adds (mean, variance) per active
        weight per output location, plus the elementwise work."""
        b, c, h, w = input_shape
        ho, wo = self._out_hw(h, w)
        nnz = self.num_active()
        locs = b * ho * wo
        return 4 * nnz * locs + b * c * h * w + 4 * locs * self.out_channels + 2 * nnz

    def weight_grad_flops(self, input_shape: torch.Size) -> int:
        """FLOPs of ``∂L/∂μ`` for *all* weights (dense), one multiply-add per weight per
        output location."""
        ho, wo = self._out_hw(input_shape[2], input_shape[3])
        return 2 * input_shape[0] * ho * wo * self.weight_mu.numel()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, prior_sigma={self.prior_sigma}, "
            f"parametrization={self.parametrization!r}"
        )


def variational_layers(model: nn.Module) -> Iterator[MeanFieldLayer]:
    """Every :class:`MeanFieldLayer` inside ``model`` (module order)."""
    for m in model.modules():
        if isinstance(m, MeanFieldLayer):
            yield m


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """``KL(q‖p)`` summed over every variational layer of ``model`` (scalar tensor)."""
    kls = [layer.kl() for layer in variational_layers(model)]
    if not kls:
        raise ValueError("model has no variational layers (VariationalLinear/VariationalConv2d)")
    return torch.stack(kls).sum()


def negative_elbo(
    logits: torch.Tensor,
    targets: torch.Tensor,
    kl: torch.Tensor,
    n_data: int,
    kl_weight: float = 1.0,
) -> torch.Tensor:
    """Negative ELBO per datum for classification, the minibatch estimate

    ``−ELBO/N ≈ mean_i CE(logits_i, y_i) + β · KL(q‖p) / N``.

    Shapes: ``logits (B, C)`` from one sampled forward pass, ``targets (B,)``; ``kl`` scalar;
    ``n_data`` the training-set size N; ``kl_weight`` β (1 is the true ELBO).
    """
    check_floating(logits, "logits")
    check_ndim(logits, "logits", 2, "(B, C)")
    check_ndim(targets, "targets", 1, "(B,)")
    if targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have length {logits.shape[0]} (one per logits row), "
            f"got {targets.shape[0]}"
        )
    if isinstance(n_data, bool) or not isinstance(n_data, int) or n_data < 1:
        raise ValueError(f"n_data must be a positive int, got {n_data!r}")
    check_positive(kl_weight, "kl_weight", strict=False)
    nll = F.cross_entropy(logits, targets)
    loss = nll + kl_weight * kl / n_data
    return check_finite(loss, "negative ELBO")


@torch.no_grad()
def predictive(model: nn.Module, x: torch.Tensor, n_samples: int = 16) -> torch.Tensor:
    """Posterior predictive ``p(y|x) ≈ (1/S) Σ_s softmax(f(x; θ_s))`` by Monte Carlo.

    ``model`` maps ``x (B, …)`` to logits ``(B, C)`` with a fresh weight draw per call.
    Returns probabilities ``(B, C)``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    probs = model(x).softmax(-1)
    for _ in range(n_samples - 1):
        probs += model(x).softmax(-1)
    return probs / n_samples


def expected_calibration_error(
    probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15
) -> torch.Tensor:
    """Expected calibration error (Guo et al., 2017) with equal-width confidence bins:

    ``ECE = Σ_b (|B_b|/n) · |acc(B_b) − conf(B_b)|``, confidence = max class probability;
    bin b holds confidences in ``((b−1)/M, b/M]``. Shapes: ``probs (N, C)``, ``targets (N,)``.
    """
    check_floating(probs, "probs")
    check_ndim(probs, "probs", 2, "(N, C)")
    check_ndim(targets, "targets", 1, "(N,)")
    if targets.shape[0] != probs.shape[0]:
        raise ValueError(f"targets must have length {probs.shape[0]}, got {targets.shape[0]}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    conf, pred = probs.max(dim=1)
    correct = (pred == targets).to(probs.dtype)
    # bin index: ceil(conf·M) − 1, so conf == 1 lands in the last bin and conf == 0 in the first
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device)
    count.index_add_(0, idx, torch.ones_like(conf))
    acc_sum = torch.zeros_like(count).index_add_(0, idx, correct)
    conf_sum = torch.zeros_like(count).index_add_(0, idx, conf)
    return (acc_sum - conf_sum).abs().sum() / probs.shape[0]


class TrainingFlopCounter:
    """Counts the training FLOPs of the variational layers of ``model`` analytically.

    A forward hook adds each layer's :meth:`~MeanFieldLayer.forward_flops` (which counts only
    *active* weights, so a sparse layer costs what a sparse kernel would) while the counter is
    attached and the model is in training mode. A training step costs forward + backward, the
    backward taken as twice the forward (activation and weight gradients), so
    ``training = 3 × forward``. Other modules (ReLU, pooling) are not counted; they are the
    same for dense and sparse models.
    """

    def __init__(self, model: nn.Module) -> None:
        self.forward_flops = 0
        self.extra_flops = 0
        self._handles = [
            layer.register_forward_hook(self._hook) for layer in variational_layers(model)
        ]
        if not self._handles:
            raise ValueError("model has no variational layers to count")

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled() and isinstance(module, MeanFieldLayer):
            module.last_input_shape = args[0].shape
            self.forward_flops += module.forward_flops(args[0].shape)

    def add(self, flops: int) -> None:
        """Add FLOPs spent outside forward/backward (e.g. a dense gradient for growth)."""
        self.extra_flops += int(flops)

    @property
    def training_flops(self) -> int:
        return 3 * self.forward_flops + self.extra_flops

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
