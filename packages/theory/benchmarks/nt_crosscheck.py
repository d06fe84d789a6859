"""Two-process cross-check of ``torchloom.theory`` kernels against neural-tangents.

neural-tangents (JAX + TensorFlow) cannot be imported next to torch in one process, so
:func:`run_reference` runs ``neural_tangents_reference.py`` in a subprocess -- with
``$TORCHLOOM_NT_PYTHON`` (a python that has neural-tangents) or with ``uv run --script`` (an
isolated env from the script's inline metadata) -- and exchanges JSON files with it.
Used by ``bench_ntk.py`` and ``tests/test_neural_tangents_crosscheck.py``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchloom.core.bench import median_time
from torchloom.theory import NTKMLP, empirical_ntk, infinite_width_kernels

REFERENCE_SCRIPT = Path(__file__).resolve().with_name("neural_tangents_reference.py")
ENV_VAR = "TORCHLOOM_NT_PYTHON"

__all__ = [
    "ENV_VAR",
    "REFERENCE_SCRIPT",
    "analytic_cases",
    "compare_analytic",
    "compare_empirical",
    "crosscheck",
    "crosscheck_inputs",
    "empirical_request",
    "find_runner",
    "identical_pairs",
    "rel_diff",
    "run_reference",
]


def find_runner(allow_uv: bool = True) -> list[str] | None:
    """Command prefix that runs the reference script, or ``None`` when neither is available.

    ``$TORCHLOOM_NT_PYTHON=skip`` (or ``0``/``off``) disables the cross-check.

    Args:
        allow_uv: fall back to ``uv run --script`` when ``$TORCHLOOM_NT_PYTHON`` is unset (the
            first run downloads jax and TensorFlow into uv's cache).

    Returns:
        ``[python, script]`` or ``["uv", "run", "--script", script]``, or ``None``.
    """
    py = os.environ.get(ENV_VAR, "")
    if py.lower() in ("skip", "0", "none", "off"):
        return None
    if py:
        return [py, str(REFERENCE_SCRIPT)]
    uv = shutil.which("uv") if allow_uv else None
    if uv:
        return [uv, "run", "--quiet", "--script", str(REFERENCE_SCRIPT)]
    return None


def run_reference(
    request: dict[str, Any], runner: list[str], timeout: float = 1800.0
) -> dict[str, Any]:
    """Write ``request`` to JSON, run the reference script on it, return its JSON answer.

    Args:
        request: the request described in ``neural_tangents_reference.py``.
        runner: the command prefix from :func:`find_runner`.
        timeout: seconds before the subprocess is killed.

    Returns:
        The answer dict (kernels as nested lists, timings in seconds).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("JAX_PLATFORMS", "cpu")
    with tempfile.TemporaryDirectory(prefix="torchloom-nt-") as tmp:
        src, dst = Path(tmp) / "request.json", Path(tmp) / "answer.json"
        src.write_text(json.dumps(request))
        proc = subprocess.run(
            [*runner, str(src), str(dst)],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not dst.exists():
            raise RuntimeError(
                f"neural-tangents reference failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        answer: dict[str, Any] = json.loads(dst.read_text())
    return answer


def crosscheck_inputs(n: int = 10, d: int = 16, seed: int = 0) -> np.ndarray:
    """``(n, d)`` float64 Gaussian inputs with the arc-cosine edge cases built in.

    Row 1 is ``3 * x0`` (angle 0, different norm), row 2 is ``-x0`` (angle pi) and row 3 is
    ``x0`` again (a duplicate), so the kernels are probed at ``cos = +-1``.
    """
    x = np.random.default_rng(seed).standard_normal((n, d))
    if n >= 4:
        x[1], x[2], x[3] = 3.0 * x[0], -x[0], x[0]
    return x


def analytic_cases(
    depths: tuple[int, ...] = (1, 2, 3, 4),
    activations: tuple[str, ...] = ("relu", "erf"),
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.1,
) -> list[dict[str, Any]]:
    """One request case per ``(activation, depth)``, with biases."""
    return [
        {
            "name": f"{act} depth {depth}",
            "activation": act,
            "depth": depth,
            "sigma_w2": sigma_w2 if act == "relu" else 1.5,
            "sigma_b2": sigma_b2,
        }
        for act in activations
        for depth in depths
    ]


def rel_diff(ours: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``max |ours - ref| / max |ref|`` (normwise relative difference), over ``mask`` if given."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape mismatch: ours {ours.shape} vs reference {ref.shape}")
    diff = np.abs(ours - ref)
    return float((diff if mask is None else diff[mask]).max() / np.abs(ref).max())


def identical_pairs(x: np.ndarray) -> np.ndarray:
    """``(N, N)`` bool: ``x_i == x_j`` (the diagonal and duplicated rows).

    There the ReLU NTK needs ``arccos(rho)`` at ``rho = 1``, where a rounding error ``eps`` in
    ``rho`` moves the angle by ``sqrt(2 eps) ~ 2e-8``: both libraries are ~1e-8 off the exact
    value on these entries, and agree to ~1e-16 everywhere else.
    """
    return np.all(x[:, None, :] == x[None, :, :], axis=-1)


def compare_analytic(
    x: np.ndarray, cases: list[dict[str, Any]], answer: dict[str, Any], repeats: int = 3
) -> list[dict[str, Any]]:
    """Our float64 analytic kernels vs the reference answer, one row per case and kernel.

    Returns:
        Rows ``{"case", "kind", "rel_diff", "rel_diff_distinct", "ours_s", "peer_s"}``;
        ``rel_diff_distinct`` leaves out pairs of identical inputs (see :func:`identical_pairs`).
    """
    xt = torch.from_numpy(x)
    distinct = ~identical_pairs(x)
    rows = []
    for case, ref in zip(cases, answer["cases"], strict=True):
        kw: dict[str, Any] = {k: case[k] for k in ("depth", "activation", "sigma_w2", "sigma_b2")}

        def kernels(kw: dict[str, Any] = kw) -> Any:
            return infinite_width_kernels(xt, **kw)

        ours = kernels()
        sec = median_time(kernels, repeats)
        for kind in ("nngp", "ntk"):
            rows.append(
                {
                    "case": case["name"],
                    "kind": kind,
                    "rel_diff": rel_diff(getattr(ours, kind).numpy(), np.asarray(ref[kind])),
                    "rel_diff_distinct": rel_diff(
                        getattr(ours, kind).numpy(), np.asarray(ref[kind]), distinct
                    ),
                    "ours_s": sec,
                    "peer_s": float(ref["seconds"]),
                }
            )
    return rows


def empirical_request(
    x: np.ndarray,
    width: int,
    depth: int,
    activation: str = "relu",
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.1,
    repeats: int = 5,
    seed: int = 0,
) -> tuple[dict[str, Any], NTKMLP]:
    """A float64 :class:`NTKMLP` and the request that rebuilds it (same weights) in stax."""
    mlp = NTKMLP(
        x.shape[1],
        width,
        depth,
        1,
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        dtype=torch.float64,
    )
    mlp.reset_parameters(torch.Generator().manual_seed(seed))
    req = {
        "x": x.tolist(),
        "activation": activation,
        "sigma_w2": sigma_w2,
        "sigma_b2": sigma_b2,
        "weights": [p.detach().tolist() for n, p in mlp.named_parameters() if "weight" in n],
        "biases": [p.detach().tolist() for n, p in mlp.named_parameters() if "bias" in n],
        "repeats": repeats,
    }
    return req, mlp


def compare_empirical(
    x: np.ndarray, mlp: NTKMLP, answer: dict[str, Any], repeats: int = 5
) -> dict[str, float]:
    """Empirical NTK of the same weights in both libraries: float64 agreement, float32 time.

    Returns:
        ``{"rel_diff", "ours_s" (mode="jacobian"), "ours_vp_s" (mode="ntk_vp"), "peer_s",
        "peer_compile_s"}`` with times of the float32 ``(N, N, 1, 1)`` kernel.
    """
    xt = torch.from_numpy(x)
    ours64 = empirical_ntk(mlp, xt).numpy()
    mlp32 = copy.deepcopy(mlp).float()
    x32 = xt.float()
    ours_s = median_time(lambda: empirical_ntk(mlp32, x32), repeats)
    ours_vp = median_time(lambda: empirical_ntk(mlp32, x32, mode="ntk_vp"), repeats)
    emp = answer["empirical"]
    return {
        "rel_diff": rel_diff(ours64, np.asarray(emp["ntk"])),
        "ours_s": ours_s,
        "ours_vp_s": ours_vp,
        "peer_s": float(emp["seconds"]),
        "peer_compile_s": float(emp["compile_seconds"]),
    }


def crosscheck(
    runner: list[str],
    n: int = 10,
    width: int = 512,
    emp_depth: int = 3,
    emp_n: int | None = None,
    repeats: int = 3,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    """Run the full cross-check: analytic NNGP/NTK (ReLU, erf; depths 1-4; biases) and the
    empirical NTK of one MLP.

    Args:
        runner: command prefix from :func:`find_runner`.
        n: number of inputs for the analytic kernels (``(n, 16)``).
        width: hidden width of the empirical-NTK MLP.
        emp_depth: hidden layers of the empirical-NTK MLP.
        emp_n: inputs for the empirical NTK (defaults to ``n``).
        repeats: timing repeats.

    Returns:
        ``(analytic_rows, empirical_row, versions)``.
    """
    x = crosscheck_inputs(n)
    xe = crosscheck_inputs(emp_n or n, seed=1)
    cases = analytic_cases()
    emp_req, mlp = empirical_request(xe, width, emp_depth, repeats=repeats)
    request = {"x1": x.tolist(), "x2": None, "cases": cases, "repeats": repeats}
    request["empirical"] = emp_req
    answer = run_reference(request, runner)
    analytic = compare_analytic(x, cases, answer, repeats)
    empirical = compare_empirical(xe, mlp, answer, repeats)
    return analytic, empirical, answer["versions"]


if __name__ == "__main__":  # pragma: no cover - manual use
    r = find_runner()
    if r is None:
        sys.exit(f"neither ${ENV_VAR} nor uv is available")
    rows, emp, versions = crosscheck(r)
    print(versions)
    for row in rows:
        print(
            f"{row['case']:>12} {row['kind']:>4}  rel diff {row['rel_diff']:.2e} "
            f"(distinct inputs {row['rel_diff_distinct']:.2e})"
        )
    print(emp)
