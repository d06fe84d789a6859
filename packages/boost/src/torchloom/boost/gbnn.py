"""Gradient-boosted neural networks (GB-NN), Emami & Martínez-Muñoz (2023).

A one-hidden-layer network is trained *sequentially*: ``F₀`` is the constant minimising the
loss; at each of ``T`` steps a block of ``J`` new hidden units (with their output weights) is fit
by least squares to the pseudo-residuals ``r = −∂L/∂F`` on a subsample, a line search finds the
step ``ρ_t`` and the model becomes ``F_t = F_{t−1} + ν ρ_t h_t``. Because every block reads the same
input, the ``T`` blocks merge into one network with ``T·J`` hidden units whose forward pass *is*
the boosted sum. The units trained last carry the smallest corrections, so they can be switched
off (:meth:`GBNNRegressor.switch_off`) for cheaper inference at little cost.

Shapes: inputs ``(N, D)``; regression targets ``(N,)`` or ``(N, K)``; class labels ``(N,)``.

Devices: the estimators take ``device`` (default ``None``). ``fit`` runs on ``device`` when it is
given, otherwise on the device of ``X`` when ``X`` is a tensor, otherwise on the CPU; the device
used is stored as ``device_``. Inputs (NumPy arrays, lists or tensors on any device) are moved
there, every tensor made during fitting and prediction lives there, and ``predict``,
``predict_proba``, ``decision_function`` and ``staged_decision_function`` return tensors on
``device_`` (call ``.cpu()`` for NumPy/scikit-learn code). Random draws come from a CPU generator
seeded with ``random_state`` (through :mod:`torchloom.core.rng`), so a fit is the same on every
device up to floating-point rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from torchloom.core import rng
from torchloom.core.checks import check_positive, check_probability

__all__ = ["GBNNClassifier", "GBNNRegressor", "MergedNetwork", "Stage", "merge_stages"]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


@dataclass
class Stage:
    """One boosting step: ``J`` hidden units and their (already step-scaled) output weights.

    ``w1 (J, D)``, ``b1 (J,)``, ``w2 (K, J)``, ``b2 (K,)``; the stage adds
    ``act(x w1ᵀ + b1) w2ᵀ + b2`` to the model output.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor

    def __call__(
        self, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        return act(x @ self.w1.T + self.b1) @ self.w2.T + self.b2


class MergedNetwork(nn.Module):
    """``act(x W1ᵀ + b1) W2ᵀ + b2`` with ``T·J`` hidden units, ordered by training step.

    The layers are built on the device and dtype of ``w1`` / ``w2``.
    """

    def __init__(
        self,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        activation: str,
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(w1.shape[1], w1.shape[0], dtype=w1.dtype, device=w1.device)
        self.out = nn.Linear(w2.shape[1], w2.shape[0], dtype=w2.dtype, device=w2.device)
        with torch.no_grad():
            self.hidden.weight.copy_(w1)
            self.hidden.bias.copy_(b1)
            self.out.weight.copy_(w2)
            self.out.bias.copy_(b2)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(_ACTIVATIONS[self.activation](self.hidden(x)))


def merge_stages(f0: torch.Tensor, stages: list[Stage], activation: str) -> MergedNetwork:
    """One network equal to ``F₀ + Σ_t stage_t(x)``: hidden layers stacked, output biases summed.

    ``f0`` has shape ``(K,)``. Returns an ``nn.Module`` mapping ``(N, D) -> (N, K)``, on the
    device of the stages' tensors.
    """
    if not stages:
        raise ValueError("stages must hold at least one Stage")
    w1 = torch.cat([s.w1 for s in stages])
    b1 = torch.cat([s.b1 for s in stages])
    w2 = torch.cat([s.w2 for s in stages], dim=1)
    b2 = f0 + torch.stack([s.b2 for s in stages]).sum(0)
    return MergedNetwork(w1, b1, w2, b2, activation)


def _as_tensor(x: Any) -> torch.Tensor:
    """A tensor (kept on its device) or the NumPy view of array-likes, as a CPU tensor."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _check_device(device: Any) -> None:
    """``ValueError``/``TypeError`` naming ``device`` unless it is ``None``, a ``torch.device``
    or a device string PyTorch parses (a CUDA device also needs CUDA available)."""
    if device is None:
        return
    if not isinstance(device, torch.device | str):
        raise TypeError(
            f"device must be None, a str or a torch.device, got {type(device).__name__}"
        )
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must name a torch device, got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {device!r} but CUDA is not available")


class _GBNNBase:
    """Shared boosting loop; subclasses define the loss, ``F₀`` and target encoding."""

    n_features_in_: int
    device_: torch.device

    def __init__(
        self,
        n_steps: int = 50,
        units_per_step: int = 2,
        learning_rate: float = 0.5,
        subsample: float = 0.8,
        epochs: int = 200,
        fit_lr: float = 0.05,
        activation: str = "relu",
        weight_decay: float = 0.0,
        random_state: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        for name, v in (
            ("n_steps", n_steps),
            ("units_per_step", units_per_step),
            ("epochs", epochs),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        check_positive(learning_rate, "learning_rate")
        check_probability(subsample, "subsample")
        if subsample == 0:
            raise ValueError("subsample must lie in (0, 1], got 0")
        check_positive(fit_lr, "fit_lr")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.n_steps = n_steps
        self.units_per_step = units_per_step
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.epochs = epochs
        self.fit_lr = fit_lr
        self.activation = activation
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.dtype = dtype
        self.device = device
        _check_device(device)

    # --- subclass hooks -------------------------------------------------------------------
    def _loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # summed loss
        raise NotImplementedError

    def _init_constant(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode(self, y: Any) -> torch.Tensor:
        raise NotImplementedError

    # --- boosting -------------------------------------------------------------------------
    def pseudo_residuals(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``−∂L/∂F`` at the current outputs ``f (N, K)``; closed forms in the subclasses."""
        raise NotImplementedError

    def _as_x(self, x: Any) -> torch.Tensor:
        t = _as_tensor(x)
        if t.dim() != 2:
            raise ValueError(f"X must have shape (N, D), got {tuple(t.shape)}")
        if hasattr(self, "n_features_in_") and t.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} features, got {t.shape[1]}")
        return t.to(device=self._device(), dtype=self.dtype)

    def _device(self) -> torch.device:
        """The fitted ``device_`` (during and after ``fit``)."""
        if not hasattr(self, "device_"):
            raise RuntimeError("call fit before predicting")
        dev: torch.device = self.device_
        return dev

    def _fit_block(self, x: torch.Tensor, r: torch.Tensor, g: torch.Generator) -> Stage:
        """Least-squares fit of ``J`` hidden units + linear output to residuals ``r (n, K)``.

        Variable projection: for fixed hidden units the output layer's least-squares solution
        is closed form (ridge-regularised normal equations), so Adam only moves the hidden
        weights, through that solution. This converges in far fewer epochs than fitting both.
        """
        d, j = x.shape[1], self.units_per_step
        act = _ACTIVATIONS[self.activation]
        # Kaiming-uniform-like init from our generator keeps fits reproducible
        bound = 1.0 / d**0.5
        dev = x.device
        w1 = rng.rand((j, d), generator=g, device=dev, dtype=self.dtype)
        b1 = rng.rand((j,), generator=g, device=dev, dtype=self.dtype)
        w1 = ((w1 * 2 - 1) * bound).requires_grad_()
        b1 = ((b1 * 2 - 1) * bound).requires_grad_()
        opt = torch.optim.Adam([w1, b1], lr=self.fit_lr)
        ones = torch.ones(x.shape[0], 1, dtype=self.dtype, device=dev)
        for _ in range(self.epochs):
            opt.zero_grad()
            h = torch.cat([act(x @ w1.T + b1), ones], 1)
            pred = h @ self._output_lstsq(h, r)
            loss = ((pred - r) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            w_out = self._output_lstsq(torch.cat([act(x @ w1.T + b1), ones], 1), r)
        return Stage(w1.detach(), b1.detach(), w_out[:j].T.contiguous(), w_out[j].clone())

    def _output_lstsq(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``argmin_w ‖h w − r‖² + λ‖w‖²`` for ``h (n, J+1)``, ``r (n, K)`` -> ``(J+1, K)``."""
        gram = h.T @ h
        eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
        ridge = (self.weight_decay + 1e-8) * h.shape[0] * eye
        return torch.linalg.solve(gram + ridge, h.T @ r)

    def _line_search(self, f: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> float:
        """``ρ = argmin_ρ L(y, f + ρh)``: Newton's method on the scalar ``ρ``, safeguarded by
        step halving so the loss never increases (Newton alone overshoots on the flat tails
        of the cross-entropy)."""

        def loss_at(rho: torch.Tensor) -> torch.Tensor:
            return self._loss(f + rho * h, y)

        rho = torch.zeros((), dtype=self.dtype, device=f.device)
        current = float(loss_at(rho))
        for _ in range(20):
            r = rho.clone().requires_grad_()
            (g1,) = torch.autograd.grad(loss_at(r), r, create_graph=True)
            (g2,) = torch.autograd.grad(g1, r)
            g1 = g1.detach()
            step = g1 / g2 if float(g2) > 1e-12 else g1
            t = 1.0
            while t > 1e-8:
                cand = rho - t * step
                value = float(loss_at(cand))
                if value <= current:
                    break
                t /= 2
            else:
                break
            if abs(float(cand - rho)) < 1e-10:
                rho = cand
                break
            rho, current = cand, value
        return float(rho)

    def fit(self, X: Any, y: Any) -> _GBNNBase:
        """Boost ``n_steps`` blocks of ``units_per_step`` hidden units on ``(X, y)``.

        Args:
            X: inputs ``(N, D)`` (tensor on any device, NumPy array or nested lists).
            y: targets ``(N,)`` / ``(N, K)`` (regression) or labels ``(N,)`` (classification).

        Returns:
            ``self``, fitted on ``device_`` (``device``, else ``X``'s device, else the CPU).
        """
        if self.device is not None:
            self.device_ = torch.device(self.device)
        elif isinstance(X, torch.Tensor):
            self.device_ = X.device
        else:
            self.device_ = torch.device("cpu")
        if hasattr(self, "n_features_in_"):
            del self.n_features_in_  # refitting may change the number of features
        x = self._as_x(X)
        self.n_features_in_ = x.shape[1]
        yt = self._encode(y)
        if yt.shape[0] != x.shape[0]:
            raise ValueError(
                f"X and y must have the same length, got {x.shape[0]} and {yt.shape[0]}"
            )
        g = torch.Generator().manual_seed(self.random_state)
        self.f0_ = self._init_constant(yt)
        f = self.f0_.expand(x.shape[0], -1).clone()
        act = _ACTIVATIONS[self.activation]
        self.stages_: list[Stage] = []
        self.train_loss_: list[float] = [float(self._loss(f, yt)) / x.shape[0]]
        n_sub = max(1, round(self.subsample * x.shape[0]))
        for _ in range(self.n_steps):
            r = self.pseudo_residuals(f, yt)
            idx = rng.randperm(x.shape[0], generator=g, device=x.device)[:n_sub]
            block = self._fit_block(x[idx], r[idx], g)
            h = block(x, act)
            rho = self.learning_rate * self._line_search(f, h, yt)
            stage = Stage(block.w1, block.b1, rho * block.w2, rho * block.b2)
            self.stages_.append(stage)
            f = f + stage(x, act)
            self.train_loss_.append(float(self._loss(f, yt)) / x.shape[0])
        self.network_: MergedNetwork = merge_stages(self.f0_, self.stages_, self.activation)
        return self

    def decision_function(self, X: Any) -> torch.Tensor:
        """Model outputs ``F(x)`` of shape ``(N, K)`` from the merged network, on ``device_``."""
        if not hasattr(self, "network_"):
            raise RuntimeError("call fit before predicting")
        with torch.no_grad():
            out: torch.Tensor = self.network_(self._as_x(X))
        return out

    def staged_decision_function(self, X: Any) -> torch.Tensor:
        """``F₀ + Σ_{t ≤ s} stage_t(x)`` for every ``s``: shape ``(T + 1, N, K)`` on ``device_``.

        Args:
            X: inputs ``(N, D)``.

        Returns:
            The staged outputs ``(T + 1, N, K)``.
        """
        if not hasattr(self, "stages_"):
            raise RuntimeError("call fit before predicting")
        x = self._as_x(X)
        act = _ACTIVATIONS[self.activation]
        f = self.f0_.expand(x.shape[0], -1).clone()
        outs = [f]
        for s in self.stages_:
            f = f + s(x, act)
            outs.append(f)
        return torch.stack(outs)

    @property
    def n_hidden_(self) -> int:
        return int(self.network_.hidden.out_features)

    def switch_off(self, n_last: int) -> _GBNNBase:
        """A copy whose merged network drops its last ``n_last`` hidden units (those trained
        last), for cheaper inference."""
        if isinstance(n_last, bool) or not isinstance(n_last, int) or n_last < 0:
            raise ValueError(f"n_last must be an int >= 0, got {n_last!r}")
        if n_last >= self.n_hidden_:
            raise ValueError(f"n_last must be < the {self.n_hidden_} hidden units, got {n_last}")
        new = copy.deepcopy(self)
        keep = self.n_hidden_ - n_last
        net = self.network_
        # stages whose units are all gone take their output bias with them, so cutting whole
        # stages is exactly truncated boosting
        kept_stages = -(-keep // self.units_per_step)
        bias = self.f0_ + sum(
            (s.b2 for s in self.stages_[:kept_stages]), torch.zeros_like(self.f0_)
        )
        new.network_ = MergedNetwork(
            net.hidden.weight[:keep].detach(),
            net.hidden.bias[:keep].detach(),
            net.out.weight[:, :keep].detach(),
            bias,
            self.activation,
        )
        return new


class GBNNRegressor(_GBNNBase):
    """GB-NN for squared loss ``L = ½ Σ (y − F)²``: ``F₀ = mean(y)``, residuals ``y − F``.

    ``device`` (default ``None``) sets where fitting and prediction run: that device, else the
    device of a tensor ``X`` given to ``fit``, else the CPU; outputs are returned on ``device_``.

    >>> model = GBNNRegressor(n_steps=20, units_per_step=2).fit(X, y)   # X (N, D), y (N,)
    >>> model.predict(X).shape
    (N,)
    """

    def _encode(self, y: Any) -> torch.Tensor:
        t = _as_tensor(y)
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"y must hold numbers, got dtype {t.dtype}")
        if t.dim() not in (1, 2):
            raise ValueError(f"y must have shape (N,) or (N, K), got {tuple(t.shape)}")
        self._y_1d = t.dim() == 1
        t = t.to(device=self._device(), dtype=self.dtype)
        return t.unsqueeze(1) if t.dim() == 1 else t

    def _loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((y - f) ** 2).sum()

    def _init_constant(self, y: torch.Tensor) -> torch.Tensor:
        return y.mean(0)

    def pseudo_residuals(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y - f

    def predict(self, X: Any) -> torch.Tensor:
        """Predictions ``(N,)`` (or ``(N, K)`` when fitted on 2-D targets)."""
        out = self.decision_function(X)
        return out[:, 0] if self._y_1d else out

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R²."""
        yt = _as_tensor(y).to(device=self._device(), dtype=self.dtype).reshape(-1)
        p = self.predict(X).reshape(-1)
        return float(1 - ((yt - p) ** 2).sum() / ((yt - yt.mean()) ** 2).sum())


class GBNNClassifier(_GBNNBase):
    """GB-NN for multiclass softmax cross-entropy: ``F₀ = log class priors``,
    residuals ``onehot(y) − softmax(F)``. Labels are integers ``0..K−1`` of shape ``(N,)``.

    ``device`` (default ``None``) sets where fitting and prediction run: that device, else the
    device of a tensor ``X`` given to ``fit``, else the CPU; outputs are returned on ``device_``.
    """

    @staticmethod
    def _labels(y: Any) -> torch.Tensor:
        t = _as_tensor(y)
        if t.dim() != 1:
            raise ValueError(f"y must be class labels of shape (N,), got {tuple(t.shape)}")
        if t.is_floating_point():
            if not bool((t == t.round()).all()):
                raise ValueError(
                    "y must hold integer class labels; got non-integer floats "
                    "(use GBNNRegressor for real-valued targets)"
                )
        elif t.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
            raise TypeError(f"y must hold integer class labels, got dtype {t.dtype}")
        t = t.long()
        if t.numel() and int(t.min()) < 0:
            raise ValueError(f"class labels must be >= 0, got minimum {int(t.min())}")
        return t

    def _encode(self, y: Any) -> torch.Tensor:
        t = self._labels(y).to(self._device())
        return torch.nn.functional.one_hot(t, self.n_classes_).to(self.dtype)

    def fit(self, X: Any, y: Any) -> GBNNClassifier:
        self.n_classes_ = max(2, int(self._labels(y).max()) + 1)
        super().fit(X, y)
        return self

    def _loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -(y * torch.log_softmax(f, dim=1)).sum()

    def _init_constant(self, y: torch.Tensor) -> torch.Tensor:
        prior = y.mean(0).clamp_min(1e-12)
        return torch.log(prior) - torch.log(prior).mean()

    def pseudo_residuals(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y - torch.softmax(f, dim=1)

    def predict_proba(self, X: Any) -> torch.Tensor:
        """Class probabilities ``(N, K)`` on ``device_``."""
        return torch.softmax(self.decision_function(X), dim=1)

    def predict(self, X: Any) -> torch.Tensor:
        """Predicted labels ``(N,)`` (int64, on ``device_``)."""
        return self.decision_function(X).argmax(1)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy."""
        yt = _as_tensor(y).reshape(-1).to(self._device())
        return float((self.predict(X) == yt).double().mean())
