"""The reproduction API: ``@recipe`` functions, their claims, run context and results.

A recipe is a function ``(ctx: RunContext) -> Result`` decorated with :func:`recipe`. It
*measures* metrics; whether each declared :class:`Claim` holds is decided here, by the runner,
from the measured value, never by the recipe itself. Packages expose recipes through the
entry-point group ``torchloom.recipes`` (the value is a module; every :class:`Recipe` object at
its top level is discovered).

Example::

    @recipe(name="snn.sltt", papers=(7,),
            claims=[Claim("memory_ratio", "<=", 0.5, paper="SLTT/BPTT memory 0.3 (Tab. 2)")])
    def sltt(ctx: RunContext) -> Result:
        ...
        return Result(metrics={"memory_ratio": ratio})
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

__all__ = [
    "Claim",
    "ClaimOutcome",
    "Recipe",
    "RecipeError",
    "Result",
    "RunContext",
    "discover",
    "pyplot",
    "recipe",
    "run_recipe",
    "seed_everything",
]

ENTRY_POINT_GROUP = "torchloom.recipes"
Op = Literal["<=", "<", ">=", ">", "=="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
    "==": lambda v, t: v == t,
}
T = TypeVar("T")


class RecipeError(RuntimeError):
    """A recipe is malformed or could not be found."""


@dataclass(frozen=True)
class Claim:
    """What a recipe must show: ``metrics[metric] <op> threshold``.

    ``paper`` says what the paper reports (figure/table and its number) so the claims table
    can print the paper's figure beside the measured one. ``quick=False`` claims are checked in
    full runs only; a claim that ``requires`` an optional peer module (e.g. ``"neuralop"``) is
    reported but not checked where that module is not installed.
    """

    metric: str
    op: Op
    threshold: float
    paper: str = ""
    quick: bool = True
    requires: str | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {self.op!r}")
        if not self.metric:
            raise ValueError("metric must be a non-empty name")

    def check(self, value: float | None) -> bool:
        """True when ``value`` is measured, finite and satisfies the comparison."""
        if value is None or not math.isfinite(value):
            return False
        return _OPS[self.op](float(value), float(self.threshold))

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class ClaimOutcome:
    """A claim next to the value measured for it."""

    claim: Claim
    measured: float | None
    holds: bool
    checked: bool = True
    why_unchecked: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.claim.metric,
            "op": self.claim.op,
            "threshold": self.claim.threshold,
            "paper": self.claim.paper,
            "measured": self.measured,
            "holds": self.holds,
            "checked": self.checked,
            "why_unchecked": self.why_unchecked,
        }


@dataclass
class Result:
    """What a recipe returns: measured ``metrics``, saved ``figures`` and optional ``tables``.

    The runner fills ``claims`` (one :class:`ClaimOutcome` per declared claim), ``recipe``,
    ``seconds`` and ``config``.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    claims: list[ClaimOutcome] = field(default_factory=list)
    recipe: str = ""
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every checked claim holds."""
        return all(c.holds for c in self.claims if c.checked)

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "ok": self.ok,
            "metrics": {k: _jsonable(v) for k, v in self.metrics.items()},
            "claims": [c.to_json() for c in self.claims],
            "figures": [str(p) for p in self.figures],
            "tables": self.tables,
            "notes": self.notes,
            "seconds": self.seconds,
            "config": self.config,
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))
        return path


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class RunContext:
    """Everything a recipe needs to run: mode, device, seed, randomness, output and progress.

    Attributes:
        quick: seconds-long mode used by the tests; full mode runs the real experiment.
        device: where tensors should live (``torch.device``).
        seed: the run's seed; ``generator`` is a CPU ``torch.Generator`` seeded with it.
        out_dir: where figures and ``result.json`` go.
    """

    def __init__(
        self,
        *,
        quick: bool = True,
        device: str | torch.device = "cpu",
        seed: int = 0,
        out_dir: str | Path = "runs",
        show_progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.quick = quick
        self.device = torch.device(device)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.out_dir = Path(out_dir)
        self.show_progress = show_progress and _is_main_process()
        self._log = log

    def pick(self, quick: T, full: T) -> T:
        """``quick`` in quick mode, else ``full`` (sizes, epochs, …)."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        """Print a line on the main process only."""
        if not _is_main_process():
            return
        if self._log is not None:
            self._log(message)
        else:
            from rich.console import Console

            Console(stderr=True).print(message)

    def progress(
        self, iterable: Iterable[T], total: int | None = None, description: str = ""
    ) -> Iterator[T]:
        """Iterate with a rich progress bar (silent on non-main ranks or when disabled)."""
        if not self.show_progress:
            yield from iterable
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            for item in iterable:
                yield item
                bar.advance(task)

    def pyplot(self) -> Any:
        """``matplotlib.pyplot`` on the headless Agg backend (see :func:`pyplot`)."""
        return pyplot()

    def figure_path(self, name: str) -> Path:
        """Path for a figure file ``name`` inside ``out_dir`` (created)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure under ``out_dir`` and close it; returns the path."""
        import matplotlib.pyplot as plt

        path = self.figure_path(name)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend: recipes and plotting helpers draw on machines
    without a display (CI, clusters), and importing matplotlib stays lazy for library users."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@dataclass(frozen=True)
class Recipe:
    """A registered reproduction. Call :func:`run_recipe` to run it."""

    name: str
    fn: Callable[[RunContext], Result]
    papers: tuple[int, ...]
    claims: tuple[Claim, ...]
    distributed: bool = False
    description: str = ""
    package: str = ""

    def __call__(self, ctx: RunContext) -> Result:
        return self.fn(ctx)


def recipe(
    *,
    name: str,
    papers: Sequence[int],
    claims: Sequence[Claim],
    distributed: bool = False,
    description: str | None = None,
) -> Callable[[Callable[[RunContext], Result]], Recipe]:
    """Declare a reproduction: its dotted ``name`` (``package.method``), the paper numbers from
    PAPERS.md, and the claims it must show."""
    if "." not in name:
        raise ValueError(f"recipe name must be 'package.method', got {name!r}")
    if not papers:
        raise ValueError(f"recipe {name!r} must cite at least one paper number")
    if not claims:
        raise ValueError(f"recipe {name!r} must declare at least one claim")
    for c in claims:
        if not isinstance(c, Claim):
            raise TypeError(f"claims must be Claim objects, got {type(c).__name__}")

    def wrap(fn: Callable[[RunContext], Result]) -> Recipe:
        doc = description if description is not None else (fn.__doc__ or "").strip()
        return Recipe(
            name=name,
            fn=fn,
            papers=tuple(int(p) for p in papers),
            claims=tuple(claims),
            distributed=distributed,
            description=doc.splitlines()[0] if doc else "",
            package=name.split(".", 1)[0],
        )

    return wrap


def recipes_in(module: Any) -> dict[str, Recipe]:
    """Every :class:`Recipe` at the top level of ``module``."""
    return {r.name: r for r in vars(module).values() if isinstance(r, Recipe)}


def discover(group: str = ENTRY_POINT_GROUP) -> dict[str, Recipe]:
    """Load every installed package's recipes through entry points, sorted by name."""
    found: dict[str, Recipe] = {}
    for ep in entry_points(group=group):
        module = ep.load()
        for name, r in recipes_in(module).items():
            if name in found and found[name] is not r:
                raise RecipeError(f"recipe {name!r} is registered twice (entry point {ep.name})")
            found[name] = r
    return dict(sorted(found.items()))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - legacy global RNG is what users' code reads
    torch.manual_seed(seed)


def run_recipe(
    r: Recipe,
    *,
    quick: bool = True,
    device: str | torch.device = "cpu",
    seed: int = 0,
    out_dir: str | Path = "runs",
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Result:
    """Run ``r``, judge its claims from the measured metrics and write ``result.json``.

    In quick mode, claims declared with ``quick=False`` are reported but not checked.
    Exceptions from the recipe propagate to the caller.
    """
    out = Path(out_dir) / r.name
    ctx = RunContext(
        quick=quick, device=device, seed=seed, out_dir=out, show_progress=show_progress, log=log
    )
    seed_everything(seed)
    start = time.perf_counter()
    result = r.fn(ctx)
    if not isinstance(result, Result):
        raise RecipeError(f"recipe {r.name!r} returned {type(result).__name__}, not Result")
    result.seconds = time.perf_counter() - start
    result.recipe = r.name
    result.config = {
        "quick": quick,
        "device": str(ctx.device),
        "seed": seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "papers": list(r.papers),
    }
    result.claims = [_judge(c, result.metrics, quick) for c in r.claims]
    if _is_main_process():
        result.save(out / "result.json")
    return result


def _judge(c: Claim, metrics: Mapping[str, Any], quick: bool) -> ClaimOutcome:
    raw = metrics.get(c.metric)
    value = None if raw is None else float(raw)
    why = ""
    if quick and not c.quick:
        why = "full mode only"
    elif c.requires is not None and importlib.util.find_spec(c.requires) is None:
        why = f"needs {c.requires}, not installed"
    return ClaimOutcome(c, value, c.check(value), not why, why)
