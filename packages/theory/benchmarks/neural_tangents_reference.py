# /// script
# requires-python = ">=3.10,<3.13"
# dependencies = [
#     "neural-tangents==0.6.5",
#     "jax[cpu]==0.4.30",
#     "tf2jax==0.3.6",
#     "numpy<2",
# ]
# ///
"""Reference kernels from Google's neural-tangents (JAX), run in its own process.

    uv run --script packages/theory/benchmarks/neural_tangents_reference.py REQUEST.json OUT.json

neural-tangents 0.6.5 needs ``jax==0.4.30`` and ``tf2jax`` (hence TensorFlow), which cannot
share an environment -- or a process: both bundle LLVM -- with the torchloom workspace. This
script therefore has no torchloom import; ``bench_ntk.py`` and
``tests/test_neural_tangents_crosscheck.py`` write a request, run it with ``uv run --script``
(an isolated, cached env built from the metadata above) or with ``$TORCHLOOM_NT_PYTHON``, and
compare the answer with ``torchloom.theory``.

Request (JSON)::

    {"x1": [[...]] (N1, D), "x2": [[...]] (N2, D) or null,
     "cases": [{"name": str, "activation": "relu" | "erf", "depth": int,
                "sigma_w2": float, "sigma_b2": float}],
     "kernels": ["nngp", "ntk"],
     "repeats": int,                       # timing repeats (median)
     "empirical": null | {"x": [[...]] (N, D), "activation": ..., "sigma_w2": ...,
                          "sigma_b2": ..., "weights": [[[...]] (out, in), ...],
                          "biases": [[...] (out), ...], "repeats": int}}

``weights``/``biases`` are the layers of a torchloom ``NTKMLP`` (NTK parameterisation,
``W, b ~ N(0, 1)``, ``y = sqrt(sigma_w2 / n_in) x W^T + sqrt(sigma_b2) b``), which is exactly
``stax.Dense(parameterization="ntk")``; the network is ``Dense -> phi -> ... -> Dense``.

Answer (JSON; floats are written with ``repr`` so float64 values round-trip exactly)::

    {"versions": {...}, "cases": [{"name", "nngp": [[...]], "ntk": [[...]], "seconds"}],
     "empirical": {"ntk": [[[[...]]]] (N, N, O, O) float64 with the given weights,
                   "seconds": median float32 time of the jitted empirical NTK (compile
                   excluded), "times": [...], "compile_seconds": float}}
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any


def _stax_mlp(stax: Any, depth: int, activation: str, sw2: float, sb2: float, width: int) -> Any:
    """``stax.serial`` of ``depth`` hidden ``Dense -> phi`` blocks and a ``Dense(1)`` read-out."""
    acts = {"relu": stax.Relu, "erf": stax.Erf}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
    layers: list[Any] = []
    for _ in range(depth):
        layers += [
            stax.Dense(width, W_std=sw2**0.5, b_std=sb2**0.5, parameterization="ntk"),
            acts[activation](),
        ]
    layers.append(stax.Dense(1, W_std=sw2**0.5, b_std=sb2**0.5, parameterization="ntk"))
    return stax.serial(*layers)


def _median_time(fn: Any, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up (and compilation, for jitted functions)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} REQUEST.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        req = json.load(f)

    import jax

    jax.config.update("jax_enable_x64", True)  # analytic kernels in float64
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    x1 = jnp.asarray(np.asarray(req["x1"], dtype=np.float64))
    x2 = None if req.get("x2") is None else jnp.asarray(np.asarray(req["x2"], dtype=np.float64))
    kinds = tuple(req.get("kernels", ("nngp", "ntk")))
    repeats = int(req.get("repeats", 3))
    answer: dict[str, Any] = {
        "versions": {
            "neural_tangents": getattr(nt, "__version__", "?"),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "cases": [],
    }
    for case in req["cases"]:
        _, _, kernel_fn = _stax_mlp(
            stax,
            int(case["depth"]),
            case["activation"],
            float(case["sigma_w2"]),
            float(case["sigma_b2"]),
            width=512,  # irrelevant to the analytic kernels
        )
        kfn = jax.jit(kernel_fn, static_argnames="get")
        out = kfn(x1, x2, get=kinds)
        row: dict[str, Any] = {"name": case["name"]}
        for kind in kinds:
            row[kind] = np.asarray(getattr(out, kind), dtype=np.float64).tolist()
        row["seconds"], _ = _median_time(
            lambda f=kfn: jax.block_until_ready(f(x1, x2, get=kinds)), repeats
        )
        answer["cases"].append(row)

    emp = req.get("empirical")
    if emp is not None:
        ws = [np.asarray(w, dtype=np.float64) for w in emp["weights"]]
        bs = [np.asarray(b, dtype=np.float64) for b in emp["biases"]]
        depth = len(ws) - 1
        width = ws[0].shape[0] if depth > 0 else 1
        init_fn, apply_fn, _ = _stax_mlp(
            stax,
            depth,
            emp["activation"],
            float(emp["sigma_w2"]),
            float(emp["sigma_b2"]),
            width=width,
        )
        if ws[-1].shape[0] != 1:
            raise ValueError("empirical case: the read-out must have one output")
        x = np.asarray(emp["x"], dtype=np.float64)
        _, shapes = init_fn(jax.random.PRNGKey(0), x.shape)
        # stax.serial params: one (W (in, out), b (out,)) per Dense, () per activation.
        dense = iter(zip(ws, bs))
        params64: list[Any] = []
        for p in shapes:
            if p == ():
                params64.append(())
                continue
            w, b = next(dense)
            if p[0].shape != w.T.shape or int(np.prod(p[1].shape)) != b.size:
                raise ValueError(
                    f"weight shapes {w.T.shape}, {b.shape} != stax {p[0].shape}, {p[1].shape}"
                )
            params64.append((jnp.asarray(w.T), jnp.asarray(b.reshape(p[1].shape))))
        ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0))
        k64 = ntk_fn(jnp.asarray(x), None, params64)
        params32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params64)
        x32 = jnp.asarray(x, dtype=jnp.float32)
        start = time.perf_counter()
        jax.block_until_ready(ntk_fn(x32, None, params32))
        compile_s = time.perf_counter() - start
        sec, times = _median_time(
            lambda: jax.block_until_ready(ntk_fn(x32, None, params32)),
            int(emp.get("repeats", repeats)),
        )
        answer["empirical"] = {
            "ntk": np.asarray(k64, dtype=np.float64).tolist(),
            "seconds": sec,
            "times": times,
            "compile_seconds": compile_s,
        }
    with open(argv[2], "w") as f:
        json.dump(answer, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
