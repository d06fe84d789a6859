"""Per-operation latency lookup tables for hardware-aware search (ProxylessNAS, FBNet).

FBNet (Wu et al. 2019, Sec. 3.2) and ProxylessNAS (Cai et al. 2019, Sec. 3.3) both model the
latency of a network as the sum of the latencies of its layers, each measured once, on the
target device, for every candidate operation at that layer's input shape. The differentiable
search then uses the *expected* latency

    E[LAT] = Σ_edges Σ_ops w_{e,op} · LAT_{e,op}

with ``w`` the architecture distribution (ProxylessNAS: ``softmax(α)``) or the Gumbel-softmax
mask (FBNet). :func:`measure_latency_table` builds the table on the current device,
:class:`LatencyTable` stores it (JSON round-trip), and :meth:`LatencyTable.expected` /
:func:`expected_latency` compute the differentiable expectation. Latencies are in microseconds.

Measurement (:func:`torchloom.core.bench.times`): the lookup table is meant to hold each
op's intrinsic cost on the target device, measured carefully once. On a shared machine other
processes only ever *add* time to a run, so the default estimator is the minimum over repeats
(the standard estimator of a kernel's cost under interference; the median drifts with the
load), the candidates of an edge are timed round-robin so a burst of load hits all of them
alike, and the runs are single-threaded by default (a phone-like target, and no contention
between the intra-op threads and the other processes) and then timed on the thread's CPU
clock (time the scheduler gives to other processes is not the op's).

A *search edge* is any module with a ``ModuleList`` attribute ``ops`` and a matching sequence of
names ``op_names`` (the DARTS :class:`~torchloom.nas.space.MixedEdge` and the layer-wise
:class:`~torchloom.nas.blocks.MixedLayer`); edges are keyed by their qualified module name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchloom.core import rng
from torchloom.core.bench import CLOCKS, STATISTICS, times
from torchloom.core.checks import check_floating, check_int

__all__ = [
    "LatencyTable",
    "arch_latency_matrices",
    "expected_latency",
    "measure_latency_table",
    "search_edges",
]


@dataclass
class LatencyTable:
    """Latency (µs) of each candidate op on each search edge, measured on one device.

    Attributes:
        entries: ``{edge: {op: latency_us}}``.
        input_shapes: ``{edge: input shape}`` the latencies were measured at.
        device: the device string the table was measured on.
        unit: always ``"us"`` (microseconds).
    """

    entries: dict[str, dict[str, float]]
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    device: str = "cpu"
    unit: str = "us"

    def __post_init__(self) -> None:
        if not isinstance(self.entries, Mapping):
            raise TypeError(f"entries must be a mapping edge -> op -> µs, got {self.entries!r}")
        for edge, ops in self.entries.items():
            for op, value in ops.items():
                v = float(value)
                if not v >= 0.0 or v == float("inf"):
                    raise ValueError(
                        f"latency of op {op!r} on edge {edge!r} must be finite and >= 0, "
                        f"got {value}"
                    )

    @property
    def edges(self) -> list[str]:
        """The edge keys, in insertion order."""
        return list(self.entries)

    def lookup(self, edge: str, op: str) -> float:
        """Latency of ``op`` on ``edge``.

        Args:
            edge: edge key (qualified module name, ``""`` for a single edge).
            op: op name.

        Returns:
            The latency in µs.

        Raises:
            ValueError: when the table has no such edge or op (the message lists what it has).
        """
        if edge not in self.entries:
            raise ValueError(
                f"latency table has no edge {edge!r}; it has {self.edges} "
                "(measure it with measure_latency_table)"
            )
        ops = self.entries[edge]
        if op not in ops:
            raise ValueError(
                f"latency table lacks op {op!r} on edge {edge!r}; it has {sorted(ops)} "
                "(re-measure the table with this op in the search space)"
            )
        return float(ops[op])

    def vector(
        self,
        edge: str,
        ops: Sequence[str],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Latencies of ``ops`` on ``edge`` as a tensor.

        Args:
            edge: edge key.
            ops: op names, in the order of the architecture logits.
            device: device of the result.
            dtype: dtype of the result.

        Returns:
            ``(N,)`` latencies in µs.
        """
        return torch.tensor([self.lookup(edge, o) for o in ops], device=device, dtype=dtype)

    def matrix(
        self,
        edges: Sequence[str],
        ops: Sequence[str],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Latencies of ``ops`` on each of ``edges``.

        Args:
            edges: edge keys (one per row of the architecture logits).
            ops: op names (one per column).
            device: device of the result.
            dtype: dtype of the result.

        Returns:
            ``(E, N)`` latencies in µs.
        """
        rows = [[self.lookup(e, o) for o in ops] for e in edges]
        return torch.tensor(rows, device=device, dtype=dtype).reshape(len(edges), len(ops))

    def expected(
        self, weights: torch.Tensor, edges: Sequence[str], ops: Sequence[str]
    ) -> torch.Tensor:
        """Expected latency ``Σ_e Σ_i weights[e, i] · LAT[e, i]`` (differentiable in ``weights``).

        Args:
            weights: ``(E, N)`` op probabilities or (Gumbel) masks per edge.
            edges: the ``E`` edge keys.
            ops: the ``N`` op names.

        Returns:
            Scalar expected latency in µs, dtype and device of ``weights``.
        """
        check_floating(weights, "weights")
        lat = self.matrix(edges, ops, device=weights.device, dtype=weights.dtype)
        return expected_latency(weights, lat)

    def total(self, choice: Mapping[str, str]) -> float:
        """Latency of a discrete architecture: the sum of the chosen op's latency per edge.

        Args:
            choice: ``{edge: op}``.

        Returns:
            Total latency in µs.
        """
        return float(sum(self.lookup(e, o) for e, o in choice.items()))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (see :meth:`from_json`).

        Returns:
            ``{"unit", "device", "entries", "input_shapes"}``.
        """
        return {
            "unit": self.unit,
            "device": self.device,
            "entries": {e: dict(ops) for e, ops in self.entries.items()},
            "input_shapes": {e: list(s) for e, s in self.input_shapes.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyTable:
        """Rebuild a table from :meth:`to_json` output.

        Args:
            data: the dict.

        Returns:
            The table.
        """
        if not isinstance(data, Mapping) or "entries" not in data:
            raise ValueError("data must be a dict with an 'entries' field (see to_json)")
        unit = data.get("unit", "us")
        if unit != "us":
            raise ValueError(f"latency table unit must be 'us', got {unit!r}")
        return cls(
            entries={
                str(e): {str(o): float(v) for o, v in ops.items()}
                for e, ops in data["entries"].items()
            },
            input_shapes={
                str(e): tuple(int(d) for d in s) for e, s in data.get("input_shapes", {}).items()
            },
            device=str(data.get("device", "cpu")),
        )

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON.

        Args:
            path: file to write.

        Returns:
            The path.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save`.

        Args:
            path: JSON file.

        Returns:
            The table.
        """
        return cls.from_json(json.loads(Path(path).read_text()))


def expected_latency(weights: torch.Tensor, latency: torch.Tensor) -> torch.Tensor:
    """``E[LAT] = Σ_e Σ_i weights[e, i] · latency[e, i]``.

    Args:
        weights: ``(E, N)`` (or ``(N,)``) probabilities or masks.
        latency: same shape, per-op latencies.

    Returns:
        Scalar tensor; its gradient with respect to ``weights`` is ``latency``.
    """
    check_floating(weights, "weights")
    check_floating(latency, "latency")
    if weights.shape != latency.shape:
        raise ValueError(
            f"weights and latency must have the same shape (E, N), got {tuple(weights.shape)} "
            f"and {tuple(latency.shape)}"
        )
    return (weights * latency).sum()


def _is_edge(m: nn.Module) -> bool:
    ops = getattr(m, "ops", None)
    names = getattr(m, "op_names", None)
    return isinstance(ops, nn.ModuleList) and isinstance(names, Sequence) and len(ops) == len(names)


def _op_names(m: nn.Module) -> list[str]:
    names: Any = getattr(m, "op_names", None)
    if names is None:
        raise TypeError(f"{type(m).__name__} has no op_names")
    return [str(n) for n in names]


def _ops_list(m: nn.Module, attr: str) -> nn.ModuleList:
    ops = getattr(m, attr, None)
    if not isinstance(ops, nn.ModuleList):
        raise TypeError(f"{type(m).__name__}.{attr} must be an nn.ModuleList")
    return ops


def _ops(m: nn.Module) -> nn.ModuleList:
    return _ops_list(m, "ops")


def search_edges(space: nn.Module) -> dict[str, nn.Module]:
    """The search edges of a supernet (modules with ``ops`` and ``op_names``), in module order.

    Args:
        space: a supernet.

    Returns:
        ``{qualified_name: edge}``.
    """
    return {name: m for name, m in space.named_modules() if _is_edge(m)}


def _time_ops(
    ops: Mapping[str, nn.Module],
    x: torch.Tensor,
    repeats: int,
    warmup: int,
    statistic: str,
    threads: int | None,
    clock: str,
) -> dict[str, float]:
    modes = {name: op.training for name, op in ops.items()}
    for op in ops.values():
        op.eval()
    try:
        with torch.no_grad():
            fns = {name: (lambda op=op: op(x)) for name, op in ops.items()}
            secs = times(fns, repeats, warmup, statistic=statistic, threads=threads, clock=clock)
            return {name: t * 1e6 for name, t in secs.items()}
    finally:
        for name, op in ops.items():
            op.train(modes[name])


def measure_latency_table(
    ops_or_space: Mapping[str, nn.Module] | nn.Module,
    input_shape: Sequence[int],
    device: torch.device | str | None = None,
    repeats: int = 20,
    warmup: int = 3,
    *,
    edge: str = "",
    generator: torch.Generator | None = None,
    statistic: str = "min",
    threads: int | None = 1,
    clock: str | None = None,
) -> LatencyTable:
    """Measure the inference latency of every candidate op on the current device.

    Each op runs in eval mode under ``torch.no_grad`` on a random input of its edge's input
    shape; the candidates of an edge are timed round-robin by :func:`torchloom.core.bench.times`
    (``warmup`` untimed runs each, then the minimum, or median, of ``repeats`` timed runs,
    single-threaded by default; CUDA is synchronised around each run). A single-threaded
    CPU table is timed on the thread's CPU clock by default: the op's latency on a dedicated
    core, as on the paper's phone, without the time the scheduler gives other processes.

    Args:
        ops_or_space: either ``{op_name: module}`` (one edge, measured at ``input_shape``, keyed
            ``edge``) or a supernet whose search edges (modules with ``ops``/``op_names``) are
            found by :func:`search_edges`; one forward of the supernet at ``input_shape``
            records each edge's input shape. Modules are moved to ``device``.
        input_shape: ``(B, ...)`` the input shape of the ops, or of the supernet.
        device: where to measure (default: the device of the modules' first parameter, else
            CPU).
        repeats: timed runs per op.
        warmup: untimed runs per op first.
        edge: key of the single edge when ``ops_or_space`` is a mapping.
        generator: randomness for the probe inputs.
        statistic: ``"min"`` (default: the intrinsic cost under interference from other
            processes) or ``"median"`` over the repeats.
        threads: intra-op threads while timing (default 1; ``None``: leave the setting).
        clock: ``"wall"`` or ``"cpu"``; ``None`` (default) picks ``"cpu"`` for a
            single-threaded table on the CPU and ``"wall"`` otherwise.

    Returns:
        A :class:`LatencyTable` (µs).

    Raises:
        ValueError: on an empty op set, a supernet without search edges, or bad sizes.
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of sizes >= 1, got {input_shape}")
    check_int(repeats, "repeats")
    check_int(warmup, "warmup", minimum=0)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    if clock is not None and clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    modules = list(ops_or_space.values()) if isinstance(ops_or_space, Mapping) else [ops_or_space]
    if device is None:
        first = next((p for m in modules for p in m.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    dev = torch.device(device)
    if clock is None:
        clock = "cpu" if dev.type == "cpu" and threads == 1 else "wall"

    def probe(s: Sequence[int]) -> torch.Tensor:
        return rng.randn(tuple(s), generator=generator, device=dev)

    entries: dict[str, dict[str, float]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    if isinstance(ops_or_space, Mapping):
        if not ops_or_space:
            raise ValueError("ops_or_space must hold at least one op, got an empty mapping")
        x = probe(shape)
        for name, op in ops_or_space.items():
            if not isinstance(op, nn.Module):
                raise TypeError(f"op {name!r} must be an nn.Module, got {type(op).__name__}")
            op.to(dev)
        named = {str(name): op for name, op in ops_or_space.items()}
        entries[edge] = _time_ops(named, x, repeats, warmup, statistic, threads, clock)
        shapes[edge] = shape
        return LatencyTable(entries, shapes, str(dev))

    if not isinstance(ops_or_space, nn.Module):
        raise TypeError(
            "ops_or_space must be a mapping op name -> nn.Module or a supernet nn.Module, "
            f"got {type(ops_or_space).__name__}"
        )
    space = ops_or_space.to(dev)
    edges = search_edges(space)
    if not edges:
        raise ValueError(
            "ops_or_space has no search edges (modules with `ops` and `op_names`); pass a "
            "mapping op name -> module instead"
        )
    seen: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, m in edges.items():

        def hook(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if name not in seen and args and isinstance(args[0], torch.Tensor):
                seen[name] = tuple(args[0].shape)

        handles.append(m.register_forward_pre_hook(hook))
    was_training = space.training
    space.eval()
    try:
        with torch.no_grad():
            space(probe(shape))
    finally:
        for h in handles:
            h.remove()
        space.train(was_training)
    for name, m in edges.items():
        if name not in seen:
            raise ValueError(f"search edge {name!r} was not reached by a forward pass")
        x = probe(seen[name])
        named = {str(op_name): op for op_name, op in zip(_op_names(m), _ops(m))}
        entries[name] = _time_ops(named, x, repeats, warmup, statistic, threads, clock)
        shapes[name] = seen[name]
    return LatencyTable(entries, shapes, str(dev))


def arch_latency_matrices(space: nn.Module, table: LatencyTable) -> dict[str, torch.Tensor]:
    """Per architecture-parameter group, the ``(E, N)`` latency matrix ``M`` such that
    ``E[LAT] = Σ_key Σ (softmax(α_key) · M_key)``.

    A layer-wise supernet (with ``edge_names()``) maps row ``l`` of its logits to edge ``l``. A
    DARTS supernet (with ``cells`` sharing ``alpha_normal``/``alpha_reduce``) sums, per cell
    type, the rows of every cell of that type (``cells.{c}.edges.{e}``), since the expectation
    is linear.

    Args:
        space: the supernet the table was measured on.
        table: its latency table.

    Returns:
        ``{key: (E, N)}`` with the keys of ``space.alphas()``, float32 on CPU.

    Raises:
        ValueError: when the table lacks an edge or op of the space.
    """
    ops = _op_names(space)
    edge_names = getattr(space, "edge_names", None)
    if callable(edge_names):
        return {"layers": table.matrix(list(edge_names()), ops)}
    cells = getattr(space, "cells", None)
    if isinstance(cells, nn.ModuleList):
        out: dict[str, torch.Tensor] = {}
        for c, cell in enumerate(cells):
            kind = "reduce" if getattr(cell, "reduction", False) else "normal"
            edges = [f"cells.{c}.edges.{e}" for e in range(len(_ops_list(cell, "edges")))]
            m = table.matrix(edges, ops)
            out[kind] = out[kind] + m if kind in out else m
        return out
    raise TypeError(
        "space must be a layer-wise supernet (with edge_names()) or a DARTS supernet (with "
        f"cells), got {type(space).__name__}"
    )
