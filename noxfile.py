"""nox sessions for the torchloom workspace: one per concern. ``uv run nox -l`` lists them.

Sessions that need the whole workspace run in the project's own ``.venv`` through
``uv run --locked`` (``venv_backend="none"``), so torch is not reinstalled per session. Only
``isolated`` builds a fresh environment, because proving that a wheel installs alone is its
point. Arguments after ``--`` go to pytest (tests, slow, gpu, isolated) or to ``loom`` (repro).
Set ``UV_NO_SYNC=1`` to run against ``.venv`` as it is, without uv syncing it first.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

import nox

nox.needs_version = ">=2024.4"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["ci"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
UV = os.environ.get("UV", "uv")  # `uv run` puts its own binary here
PYTEST_DEFAULTS = ("-m", "not slow", "-n", "auto", "--timeout", "300")
ISOLATED_TOOLS = ("pytest", "hypothesis", "pytest-timeout")


def _load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ws = _load_tool("check_workspace")
PACKAGES = [p.name for p in ws.package_dirs(ROOT)]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # One torch thread per process: xdist already runs one worker per core.
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return {**env, **(extra or {})}


def _uv_run(
    session: nox.Session,
    *args: str,
    groups: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    success_codes: Iterable[int] | None = None,
) -> None:
    """Run ``args`` in the workspace's locked environment (plus dependency ``groups``)."""
    flags = [f for g in groups for f in ("--group", g)]
    session.run(UV, "run", "--locked", *flags, *args, env=_env(env), success_codes=success_codes)


# ------------------------------------------------------------------------------------- lint


def _lint(session: nox.Session) -> None:
    _uv_run(session, "ruff", "check", ".")
    _uv_run(session, "ruff", "format", "--check", ".")
    _uv_run(session, "python", "tools/check_workspace.py")


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and tools/check_workspace.py."""
    _lint(session)


def _typecheck(session: nox.Session) -> None:
    # Every src dir on MYPYPATH so the PEP 420 namespace `torchloom` resolves across packages;
    # core and cli are strict through the [[tool.mypy.overrides]] in pyproject.toml.
    srcs = [str(ROOT / "packages" / name / "src") for name in PACKAGES]
    mods = [f for name in PACKAGES for f in ("-p", f"torchloom.{name.replace('-', '_')}")]
    _uv_run(session, "mypy", *mods, env={"MYPYPATH": os.pathsep.join(srcs)})
    tools = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tools").glob("*.py"))
    _uv_run(session, "mypy", "noxfile.py", *tools, env={"MYPYPATH": str(ROOT / "tools")})


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """mypy over every package's src (strict for core and cli) and over tools/."""
    _typecheck(session)


# ------------------------------------------------------------------------------------ tests


@nox.session(venv_backend="none")
@nox.parametrize("package", [*PACKAGES, "tools"])
def tests(session: nox.Session, package: str) -> None:
    """One package's tests ('tools': tools/tests), not slow, parallel on every core."""
    path = "tools/tests" if package == "tools" else f"packages/{package}/tests"
    # the bench group holds the peer libraries that equivalence tests compare against
    _uv_run(session, "pytest", *PYTEST_DEFAULTS, path, *session.posargs, groups=["bench"])


@nox.session(venv_backend="none")
def slow(session: nox.Session) -> None:
    """Only the tests marked slow, every package."""
    args = ("-m", "slow", "-n", "auto", "--timeout", "1800", *session.posargs)
    # pytest exits 5 when nothing is collected: no slow tests yet is not a failure.
    _uv_run(session, "pytest", *args, success_codes=[0, 5])


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The tests on CUDA (TORCHLOOM_DEVICE=cuda); skips where CUDA is absent."""
    probe = "import torch; print('cuda' if torch.cuda.is_available() else 'none')"
    out = session.run(UV, "run", "--locked", "python", "-c", probe, silent=True, env=_env())
    if not isinstance(out, str) or out.strip().splitlines()[-1:] != ["cuda"]:
        session.skip(
            "CUDA is not available here (torch.cuda.is_available() is False); the gpu "
            "session runs the tests with TORCHLOOM_DEVICE=cuda on a CUDA machine"
        )
    args = ("-m", "not slow", "-n", "4", "--timeout", "600", *session.posargs)
    _uv_run(session, "pytest", *args, env={"TORCHLOOM_DEVICE": "cuda"})


# ---------------------------------------------------------------------------------- isolated


def _closure(name: str) -> list[str]:
    """``name`` and every workspace package it needs to install (runtime dependencies)."""
    pkgs = {p.name: p for p in ws.load_packages(ROOT)}
    by_dist = {ws.normalize(p.dist): p.name for p in pkgs.values()}
    order, todo = [], [name]
    while todo:
        n = todo.pop()
        if n in order:
            continue
        order.append(n)
        for text in pkgs[n].project.get("dependencies", []):
            dep = by_dist.get(ws.parse_requirement(text).name)
            if dep is not None:
                todo.append(dep)
    return order


def _pytest_ini(dest: Path) -> None:
    """The root's [tool.pytest.ini_options] as a pytest.ini, without testpaths."""
    opts = ws.tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    lines = ["[pytest]"]
    for key, value in opts["ini_options"].items():
        if key == "testpaths":
            continue
        if isinstance(value, list):
            lines.append(f"{key} =" + "".join(f"\n    {v}" for v in value))
        else:
            lines.append(f"{key} = {value}")
    dest.write_text("\n".join(lines) + "\n")


def _isolated(session: nox.Session, name: str, pytest_args: Iterable[str] = ()) -> None:
    if name not in PACKAGES:
        session.error(f"no package {name!r}; packages: {', '.join(PACKAGES)}")
    pkgs = {p.name: p for p in ws.load_packages(ROOT)}
    pkg = pkgs[name]
    tmp = Path(session.create_tmp()).resolve() / f"isolated-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    wheels, venv, run = tmp / "wheels", tmp / "venv", tmp / "run"
    run.mkdir(parents=True)

    # Wheels of the package and of the siblings it depends on, built as published (no sources).
    needed = _closure(name)
    for dep in needed:
        session.run(
            UV, "build", "--package", pkgs[dep].dist, "--no-sources", "--out-dir", str(wheels)
        )
    built = [str(w) for w in sorted(wheels.glob("*.whl"))]

    # Third-party versions pinned to uv.lock (so torch comes from uv's cache, and the result
    # matches the workspace), but nothing installed that the package does not ask for.
    constraints = tmp / "constraints.txt"
    session.run(
        UV,
        "export",
        "--locked",
        "--no-hashes",
        "--no-emit-workspace",
        "--format",
        "requirements-txt",
        "--output-file",
        str(constraints),
        silent=True,
    )
    python = os.environ.get("UV_PYTHON") or f"{sys.version_info[0]}.{sys.version_info[1]}"
    session.run(UV, "venv", "--quiet", "--python", python, str(venv))
    vpy = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    test_deps = [
        d for d in pkg.pyproject.get("dependency-groups", {}).get("test", []) if isinstance(d, str)
    ]
    session.run(
        UV,
        "pip",
        "install",
        "--python",
        vpy,
        "--find-links",
        str(wheels),
        "--constraint",
        str(constraints),
        *built,
        *ISOLATED_TOOLS,
        *test_deps,
    )

    # Outside the tree, with no PYTHONPATH: only what the wheels installed is importable.
    iso_env = {"PYTHONPATH": None, "VIRTUAL_ENV": str(venv), "OMP_NUM_THREADS": "1"}
    imp = f"torchloom.{pkg.imp}"
    probe = (
        f"import importlib; m = importlib.import_module({imp!r}); "
        "missing = [n for n in m.__all__ if not hasattr(m, n)]; "
        "assert not missing, f'__all__ names missing: {missing}'; "
        f"assert {str(venv)!r} in m.__file__, f'imported from {{m.__file__}}'; "
        "print(m.__name__, m.__version__, len(m.__all__), 'public names from', m.__file__)"
    )
    shutil.copytree(ROOT / "packages" / name / "tests", run / "tests")
    _pytest_ini(run / "pytest.ini")
    with session.chdir(run):
        session.run(vpy, "-c", probe, env=iso_env, external=True)
        session.run(
            vpy,
            "-m",
            "pytest",
            "-c",
            "pytest.ini",
            "--rootdir",
            ".",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            "tests",
            *pytest_args,
            env=iso_env,
            external=True,
        )


@nox.session(venv_backend="none")
@nox.parametrize("package", PACKAGES)
def isolated(session: nox.Session, package: str) -> None:
    """Build the wheel(s), install into a fresh venv alone, import the API, run its tests."""
    _isolated(session, package, session.posargs)


# ----------------------------------------------------------------------- repro, bench, docs


def _repro(session: nox.Session, args: Iterable[str] = ()) -> None:
    args = list(args)
    mode = [] if "--full" in args else ["--quick"]  # full mode is loom's default
    # leading non-option arguments are recipe names (default: all); the rest go to loom
    k = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    names, rest = args[:k] or ["all"], [a for a in args[k:] if a != "--full"]
    _uv_run(session, "loom", "repro", *names, *mode, *rest)


@nox.session(venv_backend="none")
def repro(session: nox.Session) -> None:
    """Every recipe: loom repro all --quick (`-- --full` for full mode; other args to loom)."""
    _repro(session, session.posargs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Every packages/*/benchmarks/bench_*.py with the bench group; JSON + markdown summary."""
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    scripts = sorted(ROOT.glob("packages/*/benchmarks/bench_*.py"))
    if session.posargs:  # e.g. `nox -s bench -- snn` runs that package's benchmarks only
        scripts = [s for s in scripts if s.parts[-3] in session.posargs]
    if not scripts:
        session.log("no benchmarks (packages/*/benchmarks/bench_*.py) yet")
    for script in scripts:
        _uv_run(
            session,
            "python",
            str(script.relative_to(ROOT)),
            groups=["bench"],
            env={"TORCHLOOM_BENCH_DIR": str(out)},
        )
    _uv_run(session, "python", "tools/gen_docs.py", "--bench")


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """Check the generated pages are current, then mkdocs build --strict."""
    _uv_run(session, "python", "tools/gen_docs.py", "--check", groups=["docs"])
    quiet = {"NO_MKDOCS_2_WARNING": "1"}  # material's end-of-life banner, not a build problem
    _uv_run(session, "mkdocs", "build", "--strict", groups=["docs"], env=quiet)


# ---------------------------------------------------------------------------------------- ci


@nox.session(venv_backend="none")
def ci(session: nox.Session) -> None:
    """What CI runs: lint, typecheck, all tests in one pytest run, isolated core + cli, repro.

    Arguments after ``--`` go to the main pytest run only.
    """
    # Derandomised, few-example hypothesis profile (core's pytest plugin) for every pytest run.
    session.env.setdefault("HYPOTHESIS_PROFILE", os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    _lint(session)
    _typecheck(session)
    # One pytest call for the whole suite: one xdist pool, no per-package startup cost.
    _uv_run(session, "pytest", *PYTEST_DEFAULTS, *session.posargs, groups=["bench"])
    for name in ("core", "cli"):
        _isolated(session, name)
    # The CLI end to end on two fast recipes; every recipe's quick mode is already checked by
    # the pytest run above (recipes_of + assert_recipe_holds), the heavy ones by `nox -s slow`,
    # and `nox -s repro` runs `loom repro all --quick`.
    _uv_run(session, "loom", "list")
    _repro(session, ["theory.it-bounds", "theory.wide-deep"])
