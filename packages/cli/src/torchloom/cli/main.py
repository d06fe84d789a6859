"""The ``loom`` command: list and run reproductions, run benchmarks, print versions.

Exit codes of ``loom repro``: 0 every checked claim held; 1 some claim did not hold; 2 bad usage
(unknown recipe, bad option); 3 a recipe raised an exception.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from importlib.metadata import distributions
from pathlib import Path

from rich.console import Console
from rich.table import Table

from torchloom.core.recipes import Recipe, Result, discover, run_recipe

EXIT_OK, EXIT_CLAIM_FAILED, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3


class UsageError(Exception):
    """Bad command-line input; the message is shown to the user."""


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _console() -> Console:
    # non-main ranks under torchrun print nothing
    return Console(quiet=_rank() != 0, highlight=False)


def resolve(names: Sequence[str], available: Mapping[str, Recipe]) -> list[Recipe]:
    """Map command-line names to recipes: exact names, ``all``, or a package name (``snn``)."""
    chosen: dict[str, Recipe] = {}
    for name in names:
        if name == "all":
            chosen.update(available)
            continue
        if name in available:
            chosen[name] = available[name]
            continue
        group = {k: r for k, r in available.items() if r.package == name}
        if group:
            chosen.update(group)
            continue
        close = difflib.get_close_matches(name, list(available), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = "" if close else f" (known: {', '.join(available) or 'none installed'})"
        raise UsageError(f"unknown recipe {name!r}{hint}{known}")
    return list(chosen.values())


def _claims_table(result: Result) -> Table:
    t = Table(title=f"{result.recipe}  ({result.seconds:.1f} s)")
    for col in ("claim", "paper", "measured", "holds"):
        t.add_column(col)
    for c in result.claims:
        measured = "not measured" if c.measured is None else f"{c.measured:.4g}"
        if not c.checked:
            holds = f"[dim]not checked ({c.why_unchecked or 'full mode only'})[/dim]"
        else:
            holds = "[green]yes[/green]" if c.holds else "[red]no[/red]"
        t.add_row(c.claim.describe(), c.claim.paper, measured, holds)
    return t


def cmd_list(available: Mapping[str, Recipe], console: Console) -> int:
    t = Table(title="torchloom recipes")
    for col in ("recipe", "package", "papers", "claims"):
        t.add_column(col)
    for r in available.values():
        claims = "; ".join(c.describe() for c in r.claims)
        t.add_row(r.name, r.package, ", ".join(map(str, r.papers)), claims)
    console.print(t)
    if not available:
        console.print("no recipes installed (pip install 'torchloom[all]')", markup=False)
    return EXIT_OK


def cmd_repro(args: argparse.Namespace, available: Mapping[str, Recipe], console: Console) -> int:
    chosen = resolve(args.names, available)
    if not chosen:
        raise UsageError("no recipes to run")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        not_dist = [r.name for r in chosen if not r.distributed]
        if not_dist:
            raise UsageError(
                f"recipes {not_dist} are not marked distributed=True; run them without torchrun"
            )
        from torchloom.core.distributed import init_from_env

        info = init_from_env()
        if args.device.startswith("cuda"):
            args.device = str(info.device)  # one GPU per rank: cuda:LOCAL_RANK
    os.environ.setdefault("MPLBACKEND", "Agg")
    code = EXIT_OK
    summary = Table(title="summary")
    for col in ("recipe", "claims held", "seconds", "result"):
        summary.add_column(col)
    for r in chosen:
        console.rule(f"{r.name}: {r.description}")
        try:
            result = run_recipe(
                r,
                quick=args.quick,
                device=args.device,
                seed=args.seed,
                out_dir=args.out,
                show_progress=not args.no_progress,
                log=console.print,
            )
        except Exception:
            console.print(f"[red]{r.name} crashed[/red]")
            console.print(traceback.format_exc())
            summary.add_row(r.name, "[red]crashed[/red]", "-", "-")
            code = max(code, EXIT_CRASH)
            continue
        console.print(_claims_table(result))
        checked = [c for c in result.claims if c.checked]
        held = sum(c.holds for c in checked)
        path = Path(args.out) / r.name / "result.json"
        summary.add_row(r.name, f"{held}/{len(checked)}", f"{result.seconds:.1f}", str(path))
        if not result.ok:
            code = max(code, EXIT_CLAIM_FAILED)
    if len(chosen) > 1:
        console.print(summary)
    if world > 1:
        from torchloom.core.distributed import cleanup

        cleanup()
    return code


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    root = Path(args.root)
    bench_dir = root / "packages" / args.package / "benchmarks"
    scripts = sorted(bench_dir.glob("bench_*.py"))
    if not bench_dir.is_dir():
        raise UsageError(
            f"no benchmarks folder {bench_dir}; benchmarks live in the source "
            "checkout (run from the repository root or pass --root)"
        )
    if not scripts:
        console.print(f"package {args.package} has no benchmarks yet")
        return EXIT_OK
    code = EXIT_OK
    for script in scripts:
        console.rule(str(script))
        cmd = [sys.executable, str(script), "--out", args.out] + (["--quick"] if args.quick else [])
        rc = subprocess.call(cmd)
        if rc != 0:
            console.print(f"[red]{script.name} exited with {rc}[/red]")
            code = EXIT_CRASH
    return code


def cmd_info(available: Mapping[str, Recipe], console: Console) -> int:
    import torch

    t = Table(title="torchloom")
    t.add_column("distribution")
    t.add_column("version")
    dists = sorted(
        {
            (d.metadata["Name"], d.version)
            for d in distributions()
            if (d.metadata["Name"] or "").lower().startswith("torchloom")
        }
    )
    for name, ver in dists:
        t.add_row(name, ver)
    t.add_row("torch", torch.__version__)
    console.print(t)
    devices = ["cpu"] + [
        f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
    ]
    console.print(f"devices: {', '.join(devices)}")
    console.print(f"recipes installed: {len(available)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loom", description="torchloom reproductions and benchmarks")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of every installed recipe")
    r = sub.add_parser("repro", help="run recipes and check their claims")
    r.add_argument("names", nargs="+", help="recipe names, package names, or 'all'")
    r.add_argument("--quick", action="store_true", help="seconds-long mode on embedded data")
    r.add_argument("--device", default="cpu")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="runs", help="output folder (default: runs)")
    r.add_argument("--no-progress", action="store_true")
    b = sub.add_parser("bench", help="run a package's benchmarks (from the source checkout)")
    b.add_argument("package")
    b.add_argument("--quick", action="store_true")
    b.add_argument("--out", default="benchmarks/results")
    b.add_argument("--root", default=".", help="repository root (default: .)")
    sub.add_parser("info", help="versions and devices")
    return p


def main(argv: Sequence[str] | None = None, recipes: Mapping[str, Recipe] | None = None) -> int:
    """Entry point of ``loom``. ``recipes`` replaces entry-point discovery (used by tests)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 on --help
        return int(e.code or 0)
    console = _console()
    try:
        available = dict(recipes) if recipes is not None else discover()
        if args.command == "list":
            return cmd_list(available, console)
        if args.command == "repro":
            if args.device.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    raise UsageError(f"--device {args.device}: CUDA is not available here")
            return cmd_repro(args, available, console)
        if args.command == "bench":
            return cmd_bench(args, console)
        return cmd_info(available, console)
    except UsageError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
