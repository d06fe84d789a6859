"""Sparse Subspace Variational Inference (SSVI; Li, Miao, Qiu & Zhang, ICLR 2024).

SSVI restricts the mean-field posterior to a sparse subspace: an index set γ with |γ| = s of
the D weights carries ``q(θ_i) = N(μ_i, σ_i²)``; every other weight is exactly zero
(``q = δ₀``) in every sample, throughout training. The objective

    min_{γ, φ}  E_{q_{φ,γ}}[−log p(D|θ)] + KL(q_{φ,γ} ‖ p),   |γ| = s,

is optimised alternately (the paper's algorithm):

1. φ = (μ_γ, σ_γ) by ΔT steps of stochastic gradient descent on the negative ELBO;
2. γ by *removal-and-addition*: in every layer the ``ζ_t·s_l`` active weights with the lowest
   score under a weight-distribution criterion are removed (set exactly to zero), and as many
   inactive weights are added — those with the largest ``|∂L/∂μ|`` (``addition="gradient"``)
   or uniformly at random (``addition="random"``). New weights start at μ = 0 with σ
   re-initialised (``new_sigma``), so s_l — and the total subspace size s — never changes.

Removal criteria (higher = keep), for ``θ ~ N(μ, σ²)``:

- ``"mean"``: |μ|;
- ``"snr"``: SNR(θ) = |μ| / σ;
- ``"abs_mean"``: E|θ|, the folded-normal mean
  ``E|θ| = μ·erf(μ/(σ√2)) + σ√(2/π)·exp(−μ²/(2σ²))``;
- ``"snr_abs"``: SNR(|θ|) = E|θ| / sqrt(Var|θ|), ``Var|θ| = μ² + σ² − (E|θ|)²``
  (the paper's best criterion).

The removal fraction ζ_t follows a cosine decay ``ζ_t = ζ₀/2·(1 + cos(πt/T_end))`` and no
update happens after ``T_end = stop_fraction · total_steps`` (as in dynamic sparse training).
The subspace starts random, with per-layer sizes from the Erdős–Rényi-kernel rule or uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from torchloom.bayes.vi import MeanFieldLayer, TrainingFlopCounter, variational_layers
from torchloom.core import rng
from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "SSVI",
    "SubspaceUpdate",
    "check_density",
    "erk_densities",
    "folded_normal_mean",
    "folded_normal_var",
    "random_masks",
    "removal_score",
    "storage",
    "uniform_densities",
]

Criterion = Literal["mean", "snr", "abs_mean", "snr_abs"]
Addition = Literal["gradient", "random"]
NewSigma = Literal["init", "mean"]
Distribution = Literal["erk", "uniform"]
CRITERIA: tuple[str, ...] = ("mean", "snr", "abs_mean", "snr_abs")


def check_density(density: float, name: str = "density") -> float:
    """Return ``density`` (the kept fraction s/D) if it lies in (0, 1], else raise."""
    if isinstance(density, bool) or not isinstance(density, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1], got {type(density).__name__}")
    d = float(density)
    if not (math.isfinite(d) and 0.0 < d <= 1.0):
        raise ValueError(f"{name} (the kept fraction of weights) must lie in (0, 1], got {density}")
    return d


def _check_pair(mu: torch.Tensor, sigma: torch.Tensor) -> None:
    check_floating(mu, "mu")
    check_floating(sigma, "sigma")
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same shape, got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )


def folded_normal_mean(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``E|θ|`` for ``θ ~ N(μ, σ²)``: ``μ·erf(μ/(σ√2)) + σ√(2/π)·exp(−μ²/(2σ²))``."""
    _check_pair(mu, sigma)
    z = mu / sigma
    return mu * torch.erf(z / math.sqrt(2.0)) + sigma * math.sqrt(2.0 / math.pi) * torch.exp(
        -0.5 * z * z
    )


def folded_normal_var(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``Var|θ| = μ² + σ² − (E|θ|)²`` for ``θ ~ N(μ, σ²)`` (clamped at 0 against round-off)."""
    m = folded_normal_mean(mu, sigma)
    return (mu * mu + sigma * sigma - m * m).clamp_min(0.0)


def removal_score(mu: torch.Tensor, sigma: torch.Tensor, criterion: Criterion) -> torch.Tensor:
    """Importance of each weight under ``criterion`` (``"mean"``, ``"snr"``, ``"abs_mean"``,
    ``"snr_abs"``); the lowest-scoring active weights are removed. Same shape as ``mu``."""
    _check_pair(mu, sigma)
    if criterion == "mean":
        return mu.abs()
    if criterion == "snr":
        return mu.abs() / sigma
    if criterion == "abs_mean":
        return folded_normal_mean(mu, sigma)
    if criterion == "snr_abs":
        m = folded_normal_mean(mu, sigma)
        # Var|θ| ≥ σ²(1 − 2/π) > 0 for μ = 0 and → σ² for |μ| ≫ σ; the floor only guards
        # against catastrophic cancellation in μ² + σ² − m² when |μ| ≫ σ.
        v = folded_normal_var(mu, sigma).clamp_min(torch.finfo(mu.dtype).tiny)
        return m / torch.sqrt(v)
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def erk_densities(shapes: Sequence[Sequence[int]], density: float) -> list[float]:
    """Per-layer densities by the Erdős–Rényi-kernel rule (Evci et al., 2020): layer l's
    density is ∝ (Σ dims)/(Π dims), scaled so the total kept count is ``density · D``; layers
    that would exceed 1 are kept dense and the budget is re-solved over the rest."""
    d = check_density(density)
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    budget = d * sum(sizes)
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        left = budget - sum(sizes[i] for i in dense)
        eps = left / sum(raw[i] * sizes[i] for i in free) if free else 0.0
        over = [i for i in free if eps * raw[i] > 1.0]
        if not over:
            break
        dense.update(over)
    return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]


def uniform_densities(shapes: Sequence[Sequence[int]], density: float) -> list[float]:
    """Per-layer densities of the "uniform" rule of dynamic sparse training (Evci et al., 2020):
    the first layer stays dense (it is tiny and sees the raw input), every other layer gets the
    same density, chosen so the total kept count is ``density · D``. When that budget cannot
    afford a dense first layer, every layer gets ``density``."""
    d = check_density(density)
    sizes = [math.prod(s) for s in shapes]
    rest = sum(sizes[1:])
    left = d * sum(sizes) - sizes[0]
    if len(shapes) == 1 or left <= 0:
        return [d] * len(shapes)
    return [1.0] + [min(1.0, left / rest)] * (len(shapes) - 1)


def random_masks(
    shapes: Sequence[Sequence[int]],
    density: float,
    distribution: Distribution = "erk",
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """A random sparse subspace: one 0/1 float mask per shape with exactly
    ``round(d_l · numel)`` ones (at least one), ``d_l`` from :func:`erk_densities` (``"erk"``)
    or :func:`uniform_densities` (``"uniform"``). Masks are on the CPU."""
    d = check_density(density)
    if distribution == "erk":
        dens = erk_densities(shapes, d)
    elif distribution == "uniform":
        dens = uniform_densities(shapes, d)
    else:
        raise ValueError(f"distribution must be 'erk' or 'uniform', got {distribution!r}")
    masks = []
    for shape, dl in zip(shapes, dens):
        n = math.prod(shape)
        k = min(n, max(1, round(dl * n)))
        flat = torch.zeros(n)
        flat[torch.randperm(n, generator=generator)[:k]] = 1.0
        masks.append(flat.reshape(tuple(shape)))
    return masks


def storage(model: nn.Module, index_bytes: int = 4) -> dict[str, int]:
    """What the variational layers of ``model`` must store.

    ``params``: μ and σ of every active weight and bias entry; ``bytes``: those values at the
    parameters' element size, plus one ``index_bytes`` integer per active weight of a masked
    layer (its position — a dense layer needs none).
    """
    params = 0
    nbytes = 0
    for layer in variational_layers(model):
        p = layer.num_variational_params()
        params += p
        nbytes += p * layer.weight_mu.element_size()
        if layer.weight_mask is not None:
            nbytes += layer.num_active() * index_bytes
    return {"params": params, "bytes": nbytes}


@dataclass(frozen=True)
class SubspaceUpdate:
    """One removal-and-addition: after optimizer step ``step``, with removal fraction
    ``fraction`` (ζ_t), ``swapped`` weights removed and as many added; ``active`` = s after."""

    step: int
    fraction: float
    swapped: int
    active: int


class SSVI:
    """Drives SSVI training of a model built from variational layers.

    Usage::

        ssvi = SSVI(model, optimizer, density=0.1, total_steps=n_steps)
        for x, y in batches:
            optimizer.zero_grad()
            loss = negative_elbo(model(x), y, kl_divergence(model), n_data)
            loss.backward()
            ssvi.step()          # optimizer step, then (every ΔT steps) the subspace update

    Args:
        model: contains :class:`~torchloom.bayes.vi.VariationalLinear` /
            :class:`~torchloom.bayes.vi.VariationalConv2d` layers; their weights get masks.
        optimizer: updates the variational parameters (μ, ρ) — e.g. SGD or Adam.
        density: kept fraction s/D of the weights, in (0, 1] (biases stay dense).
        total_steps: training length in optimizer steps (sets the ζ_t schedule).
        update_interval: ΔT, optimizer steps between subspace updates.
        removal_fraction: ζ₀, the fraction of each layer's subspace swapped at the first update.
        criterion: removal criterion (see module docstring); ``"snr_abs"`` by default.
        addition: ``"gradient"`` (largest |∂L/∂μ| of the inactive weights, one dense weight
            gradient per update) or ``"random"``.
        new_sigma: σ of an added weight — ``"init"`` (the layer's ``sigma_init``) or ``"mean"``
            (mean σ of the layer's remaining active weights).
        distribution: per-layer sizes of the initial random subspace, ``"erk"`` or ``"uniform"``.
        stop_fraction: no subspace update after ``stop_fraction · total_steps``.
        schedule: ``"cosine"`` decay of ζ_t or ``"constant"``.
        generator: randomness of the initial subspace and of random addition.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        density: float,
        total_steps: int,
        update_interval: int = 100,
        removal_fraction: float = 0.3,
        criterion: Criterion = "snr_abs",
        addition: Addition = "gradient",
        new_sigma: NewSigma = "init",
        distribution: Distribution = "erk",
        stop_fraction: float = 0.75,
        schedule: Literal["cosine", "constant"] = "cosine",
        generator: torch.Generator | None = None,
    ) -> None:
        self.density = check_density(density)
        for name, v in (("total_steps", total_steps), ("update_interval", update_interval)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        check_positive(removal_fraction, "removal_fraction", strict=False)
        if removal_fraction >= 1:
            raise ValueError(f"removal_fraction must lie in [0, 1), got {removal_fraction}")
        check_positive(stop_fraction, "stop_fraction", strict=False)
        if stop_fraction > 1:
            raise ValueError(f"stop_fraction must lie in [0, 1], got {stop_fraction}")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if addition not in ("gradient", "random"):
            raise ValueError(f"addition must be 'gradient' or 'random', got {addition!r}")
        if new_sigma not in ("init", "mean"):
            raise ValueError(f"new_sigma must be 'init' or 'mean', got {new_sigma!r}")
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        self.layers: list[MeanFieldLayer] = list(variational_layers(model))
        if not self.layers:
            raise ValueError("model has no variational layers (VariationalLinear/Conv2d)")
        self.model = model
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.update_interval = update_interval
        self.removal_fraction = float(removal_fraction)
        self.criterion: Criterion = criterion
        self.addition: Addition = addition
        self.new_sigma: NewSigma = new_sigma
        self.stop_step = int(stop_fraction * total_steps)
        self.schedule = schedule
        self.generator = generator
        self.step_count = 0
        self.history: list[SubspaceUpdate] = []
        self.flops = TrainingFlopCounter(model)

        shapes = [tuple(layer.weight_mu.shape) for layer in self.layers]
        for layer, mask in zip(self.layers, random_masks(shapes, density, distribution, generator)):
            layer.set_mask(mask.to(device=layer.weight_mu.device, dtype=layer.weight_mu.dtype))
        self._arm_capture()

    # -- schedule -------------------------------------------------------------------------
    def fraction_at(self, step: int) -> float:
        """ζ_t, the fraction of each layer's subspace swapped at ``step``."""
        if self.schedule == "constant":
            return self.removal_fraction
        if self.stop_step <= 0:
            return 0.0
        return 0.5 * self.removal_fraction * (1.0 + math.cos(math.pi * step / self.stop_step))

    def update_due(self, step: int) -> bool:
        """Whether the subspace is updated after optimizer step number ``step`` (1-based)."""
        return step % self.update_interval == 0 and step < self.stop_step

    def _arm_capture(self) -> None:
        # the dense gradient is only needed on the backward right before an update
        want = self.addition == "gradient" and self.update_due(self.step_count + 1)
        for layer in self.layers:
            layer.capture_dense_grad = want
            layer.dense_grad = None

    # -- training -------------------------------------------------------------------------
    def step(self) -> SubspaceUpdate | None:
        """One optimizer step on (μ_γ, σ_γ); then, every ΔT steps, a subspace update.

        Returns the update when one happened."""
        self.optimizer.step()
        self.apply_masks()
        self.step_count += 1
        update = None
        if self.update_due(self.step_count):
            update = self.update_subspace()
        self._arm_capture()
        return update

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Force the weights outside the subspace to exactly zero (μ = 0)."""
        for layer in self.layers:
            if layer.weight_mask is not None:
                layer.weight_mu.mul_(layer.weight_mask)

    @torch.no_grad()
    def update_subspace(self) -> SubspaceUpdate:
        """Removal-and-addition in every layer; the subspace size stays the same."""
        frac = self.fraction_at(self.step_count)
        swapped = 0
        for layer in self.layers:
            swapped += self._update_layer(layer, frac)
        upd = SubspaceUpdate(self.step_count, frac, swapped, self.num_active())
        self.history.append(upd)
        return upd

    def _update_layer(self, layer: MeanFieldLayer, frac: float) -> int:
        mask = layer.weight_mask
        if mask is None:  # pragma: no cover - every layer got a mask in __init__
            return 0
        flat_mask = mask.reshape(-1)
        active = flat_mask > 0
        n_active = int(active.sum())
        n_inactive = flat_mask.numel() - n_active
        k = min(int(frac * n_active), n_inactive)
        if k <= 0:
            return 0
        mu = layer.weight_mu.reshape(-1)
        sigma = layer.weight_sigma.reshape(-1)
        # removal: the k active weights with the lowest score
        score = removal_score(mu, sigma, self.criterion)
        score = torch.where(active, score, torch.full_like(score, math.inf))
        removed = torch.topk(score, k, largest=False).indices
        # addition: among the weights that were inactive before this update
        if self.addition == "gradient":
            if layer.dense_grad is None:
                raise RuntimeError(
                    "gradient-based addition needs the dense gradient of the last backward; "
                    "call loss.backward() before SSVI.step()"
                )
            grow = layer.dense_grad.reshape(-1).abs().to(mu.dtype)
            if layer.last_input_shape is not None:
                self.flops.add(layer.weight_grad_flops(layer.last_input_shape))
        else:
            grow = rng.rand(
                (mu.numel(),), generator=self.generator, device=mu.device, dtype=mu.dtype
            )
        grow = torch.where(active, torch.full_like(grow, -math.inf), grow)
        added = torch.topk(grow, k, largest=True).indices

        if self.new_sigma == "mean":
            keep = active.clone()
            keep[removed] = False
            sigma_new = float(sigma[keep].mean()) if bool(keep.any()) else layer.sigma_init
        else:
            sigma_new = layer.sigma_init
        new_mask = flat_mask.clone()
        new_mask[removed] = 0.0
        new_mask[added] = 1.0
        rho = layer.weight_rho.reshape(-1)
        mu[removed] = 0.0
        mu[added] = 0.0
        rho[removed] = layer.rho_for(layer.sigma_init)
        rho[added] = layer.rho_for(sigma_new)
        layer.weight_mask = new_mask.reshape(mask.shape)
        changed = torch.cat([removed, added])
        self._reset_optimizer_state(layer.weight_mu, changed)
        self._reset_optimizer_state(layer.weight_rho, changed)
        return k

    def _reset_optimizer_state(self, param: torch.Tensor, flat_idx: torch.Tensor) -> None:
        # stale momentum would move a removed weight off zero, or kick a fresh one
        state: dict[str, Any] = self.optimizer.state.get(param, {})
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.view(-1)[flat_idx] = 0.0

    # -- accounting -----------------------------------------------------------------------
    def num_active(self) -> int:
        """Total subspace size s (active weights over all layers)."""
        return sum(layer.num_active() for layer in self.layers)

    def num_weights(self) -> int:
        """Total number D of weights in the variational layers."""
        return sum(layer.weight_mu.numel() for layer in self.layers)

    @property
    def training_flops(self) -> int:
        """Training FLOPs so far: sparse forward/backward plus dense growth gradients."""
        return self.flops.training_flops

    def state_dict(self) -> dict[str, Any]:
        """The driver's own state (the masks live in the model's ``state_dict``)."""
        return {
            "step_count": self.step_count,
            "flops": self.flops.forward_flops,
            "extra_flops": self.flops.extra_flops,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.flops.forward_flops = int(state["flops"])
        self.flops.extra_flops = int(state["extra_flops"])
        self._arm_capture()
