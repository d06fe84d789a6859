"""The same physics-informed problems solved with DeepXDE (Lu et al.), the issue's peer library.

DeepXDE is optional: :func:`import_deepxde` imports it with the PyTorch backend and undoes the
global state its import changes (it makes CUDA the default device when a GPU is present);
:func:`deepxde_soft_pinn` trains DeepXDE's own PINN (its ``TimePDE`` data, ``FNN``, ``Model``
and automatic-differentiation residuals) on one of the problems of :mod:`torchloom.pinn.moe`
with the same network, loss weights, point counts, optimiser and steps as this package's
soft-constraint PINN, so their accuracies can be compared side by side.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from torchloom.core.checks import check_int, check_positive
from torchloom.pinn.moe import Problem

__all__ = ["DeepXDEResult", "deepxde_soft_pinn", "import_deepxde"]


@contextlib.contextmanager
def _torch_defaults() -> Iterator[None]:
    """Restore torch's default dtype and device on exit (DeepXDE changes both globally)."""
    dtype = torch.get_default_dtype()
    device = torch.get_default_device()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_default_device(device)


def import_deepxde() -> ModuleType:
    """Import DeepXDE with the PyTorch backend, leaving torch's global defaults as they were.

    Returns:
        The ``deepxde`` module.

    Raises:
        ImportError: DeepXDE is not installed, or was already imported with another backend.
    """
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    with _torch_defaults():
        import deepxde

    if deepxde.backend.backend_name != "pytorch":
        raise ImportError(
            f"deepxde was imported with the {deepxde.backend.backend_name!r} backend; "
            "set DDE_BACKEND=pytorch before it is first imported"
        )
    return deepxde


@dataclass
class DeepXDEResult:
    """A trained DeepXDE PINN.

    Attributes:
        predict: ``predict(pts)``: ``(P, 2)`` points ``(x, t)`` → ``(P,)`` values (float64).
        seconds: training wall time.
        final_loss: DeepXDE's last weighted training loss.
    """

    predict: Any
    seconds: float
    final_loss: float


def deepxde_soft_pinn(
    problem: Problem,
    *,
    steps: int,
    n_domain: int = 256,
    n_initial: int = 64,
    n_boundary: int = 64,
    width: int = 32,
    depth: int = 3,
    lr: float = 3e-3,
    weights: tuple[float, float] = (10.0, 10.0),
    seed: int = 0,
    float64: bool = True,
    verbose: bool = False,
) -> DeepXDEResult:
    """Train DeepXDE's soft-constraint PINN on a :mod:`torchloom.pinn.moe` problem.

    The setup mirrors ``torchloom.pinn.recipes``' soft PINN: a ``tanh`` network of ``depth``
    hidden layers of ``width`` on inputs rescaled to ``[−1, 1]²`` (DeepXDE's
    ``apply_feature_transform``), loss = PDE mean square + ``weights[0]`` × initial-condition
    mean square + ``weights[1]`` × each boundary mean square (periodic: ``u`` and ``u_x``
    across the ends; Dirichlet: ``u = 0`` at both ends), Adam at ``lr``, PDE points resampled
    every step (``PDEPointResampler(period=1)``). DeepXDE sets global random seeds; torch's
    default dtype and device are restored afterwards.

    Args:
        problem: :class:`~torchloom.pinn.moe.ReactionDiffusion` or
            :class:`~torchloom.pinn.moe.Burgers`.
        steps: Adam iterations.
        n_domain: interior points (resampled every step).
        n_initial: ``t = 0`` points.
        n_boundary: boundary points.
        width: hidden width.
        depth: hidden layers.
        lr: Adam learning rate.
        weights: loss weights of the initial and boundary terms.
        seed: DeepXDE's random seed.
        float64: train in float64 (as this package's recipes do) instead of DeepXDE's float32.
        verbose: let DeepXDE print its training table.

    Returns:
        A :class:`DeepXDEResult`.
    """
    check_int(steps, "steps")
    for name, v in (("n_domain", n_domain), ("n_initial", n_initial), ("n_boundary", n_boundary)):
        check_int(v, name)
    check_positive(lr, "lr")
    dde = import_deepxde()
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with _torch_defaults(), quiet:
        dde.config.set_default_float("float64" if float64 else "float32")
        dde.config.set_random_seed(seed)
        lo, hi = problem.lower, problem.upper
        geom = dde.geometry.GeometryXTime(
            dde.geometry.Interval(lo[0], hi[0]), dde.geometry.TimeDomain(lo[1], hi[1])
        )

        def pde(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            u_x = dde.grad.jacobian(y, x, i=0, j=0)
            u_t = dde.grad.jacobian(y, x, i=0, j=1)
            u_xx = dde.grad.hessian(y, x, i=0, j=0)
            out: torch.Tensor = problem.pde(y, u_t, u_x, u_xx)
            return out

        def on_boundary(_: np.ndarray, on: bool) -> bool:
            return on

        def on_initial(_: np.ndarray, on: bool) -> bool:
            return on

        def initial(x: np.ndarray) -> np.ndarray:
            u0 = problem.initial(torch.from_numpy(np.asarray(x[:, :1], dtype=np.float64)))
            return u0.numpy()

        if problem.boundary == "periodic":
            bcs = [
                dde.icbc.PeriodicBC(geom, 0, on_boundary, derivative_order=0),
                dde.icbc.PeriodicBC(geom, 0, on_boundary, derivative_order=1),
            ]
        else:
            bcs = [dde.icbc.DirichletBC(geom, lambda x: np.zeros((len(x), 1)), on_boundary)]
        ic = dde.icbc.IC(geom, initial, on_initial)
        data = dde.data.TimePDE(
            geom,
            pde,
            [*bcs, ic],
            num_domain=n_domain,
            num_boundary=n_boundary,
            num_initial=n_initial,
            train_distribution="pseudo",
        )
        net = dde.nn.FNN([2] + [width] * depth + [1], "tanh", "Glorot normal")
        lo_t = torch.tensor(lo, dtype=torch.get_default_dtype())
        hi_t = torch.tensor(hi, dtype=torch.get_default_dtype())
        net.apply_feature_transform(lambda x: 2.0 * (x - lo_t) / (hi_t - lo_t) - 1.0)
        model = dde.Model(data, net)
        model.compile("adam", lr=lr, loss_weights=[1.0] + [weights[1]] * len(bcs) + [weights[0]])
        resampler = dde.callbacks.PDEPointResampler(period=1)
        t0 = time.perf_counter()
        hist, _ = model.train(iterations=steps, display_every=max(steps, 1), callbacks=[resampler])
        seconds = time.perf_counter() - t0
        final = float(np.sum(hist.loss_train[-1]))

    def predict(pts: torch.Tensor) -> torch.Tensor:
        with _torch_defaults():
            out = model.predict(np.asarray(pts.detach().cpu(), dtype=np.float64))
        return torch.from_numpy(np.asarray(out, dtype=np.float64)).reshape(-1)

    return DeepXDEResult(predict=predict, seconds=seconds, final_loss=final)
