#!/usr/bin/env python3
"""Release one package: bump its version, close its CHANGELOG section, commit and tag.

    python tools/release.py NAME {major,minor,patch} [--dry-run] [--no-git] [--root DIR]

NAME is the directory under ``packages/`` (``core``, ``snn``, ``cli``, ...). The release

1. refuses (exit 2) when a sibling's dependency range on the package would not admit the new
   version — widen that range first, or release the siblings together;
2. sets ``version`` in ``packages/NAME/pyproject.toml``;
3. moves the CHANGELOG's ``## Unreleased`` notes under a new ``## X.Y.Z`` heading, leaving an
   empty ``Unreleased`` section;
4. regenerates the package table in README.md;
5. commits exactly those files and creates the tag ``torchloom-NAME-vX.Y.Z`` (printed).

``--dry-run`` prints the diff and the tag and writes nothing; ``--no-git`` writes the files but
neither commits nor tags.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

# tools/ is not a package: as a script, this directory is already on sys.path
import check_workspace as ws

PARTS = ("major", "minor", "patch")


class ReleaseError(Exception):
    """The release cannot proceed; the message says why."""


def bump(version: str, part: str) -> str:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ReleaseError(f"version {version!r} is not X.Y.Z; fix it by hand first")
    major, minor, patch = (int(x) for x in m.groups())
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ReleaseError(f"part must be one of {PARTS}, got {part!r}")


def tag_name(name: str, version: str) -> str:
    return f"torchloom-{name}-v{version}"


def set_version(pyproject: str, new: str) -> str:
    """``pyproject`` text with the [project] table's ``version`` set to ``new``."""
    m = re.search(r"(?ms)^\[project\]\s*$(.*?)(?=^\[|\Z)", pyproject)
    if not m:
        raise ReleaseError("pyproject.toml has no [project] table")
    body, n = re.subn(
        r'(?m)^(version\s*=\s*)(["\'])[^"\']*\2', rf"\g<1>\g<2>{new}\g<2>", m.group(1), count=1
    )
    if n == 0:
        raise ReleaseError("pyproject.toml has no static version in [project]")
    return pyproject[: m.start(1)] + body + pyproject[m.end(1) :]


def close_changelog(text: str, new: str) -> tuple[str, bool]:
    """Move the Unreleased notes under ``## new``; also say whether there were any notes."""
    m = re.search(r"(?m)^## \[?Unreleased\]?[^\n]*\n", text)
    if not m:
        raise ReleaseError("CHANGELOG.md has no '## Unreleased' section")
    if re.search(rf"(?m)^##\s+\[?{re.escape(new)}\]?(\s|$)", text):
        raise ReleaseError(f"CHANGELOG.md already has a '## {new}' section")
    nxt = re.search(r"(?m)^## ", text[m.end() :])
    end = m.end() + nxt.start() if nxt else len(text)
    notes = text[m.end() : end].strip("\n")
    had_notes = bool(notes.strip())
    if not had_notes:
        notes = "- No changes recorded."
    section = f"## Unreleased\n\n## {new}\n\n{notes}\n"
    rest = text[end:]
    return text[: m.start()] + section + ("\n" + rest if rest else ""), had_notes


def blocking_ranges(root: Path, name: str, new: str) -> list[str]:
    """Sibling requirements on package ``name`` that would not admit version ``new``."""
    pkgs = {p.name: p for p in ws.load_packages(root)}
    target = ws.normalize(pkgs[name].dist)
    out = []
    for other in pkgs.values():
        if other.name == name:
            continue
        for where, text in other.requirements():
            try:
                req = ws.parse_requirement(text)
            except Exception:  # an unparsable line is check_workspace's to report
                continue
            if req.name == target and not req.admits(new):
                out.append(f"packages/{other.name} ({where}) requires {text!r}")
    return out


def plan(root: Path, name: str, part: str) -> tuple[str, str, dict[Path, tuple[str, str]]]:
    """``(old, new, {path: (old text, new text)})`` for the release; raises ReleaseError."""
    pkgs = {p.name: p for p in ws.load_packages(root)}
    if name not in pkgs:
        raise ReleaseError(f"no package {name!r}; packages: {', '.join(pkgs)}")
    pkg = pkgs[name]
    if pkg.version is None:
        raise ReleaseError(f"packages/{name} has no static version")
    old, new = pkg.version, bump(pkg.version, part)
    blocked = blocking_ranges(root, name, new)
    if blocked:
        raise ReleaseError(
            f"refusing to release {pkg.dist} {new}: these ranges would not admit it:\n  "
            + "\n  ".join(blocked)
            + "\nwiden them first (and release those packages), then retry"
        )
    changes: dict[Path, tuple[str, str]] = {}
    pp = pkg.path / "pyproject.toml"
    changes[pp] = (pp.read_text(), set_version(pp.read_text(), new))
    cl = pkg.path / "CHANGELOG.md"
    if not cl.is_file():
        raise ReleaseError(f"packages/{name}/CHANGELOG.md is missing")
    new_cl, had_notes = close_changelog(cl.read_text(), new)
    if not had_notes:
        print(f"warning: packages/{name}/CHANGELOG.md has no Unreleased notes", file=sys.stderr)
    changes[cl] = (cl.read_text(), new_cl)
    readme = root / "README.md"
    if readme.is_file():
        before = readme.read_text()
        try:
            after = ws.readme_with_table(root, versions={name: new})
        except ValueError:  # no table markers: nothing to regenerate
            after = before
        changes[readme] = (before, after)
    return old, new, {p: c for p, c in changes.items() if c[0] != c[1]}


def _git(root: Path, *args: str) -> str:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if r.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def release(root: Path, name: str, part: str, dry_run: bool = False, git: bool = True) -> str:
    """Run the release and return the tag (see the module docstring)."""
    old, new, changes = plan(root, name, part)
    tag = tag_name(name, new)
    if git and not dry_run and _git(root, "tag", "--list", tag).strip():
        raise ReleaseError(f"tag {tag} already exists")
    for path, (before, after) in changes.items():
        if dry_run:
            rel = path.relative_to(root).as_posix()
            sys.stdout.writelines(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    after.splitlines(keepends=True),
                    f"a/{rel}",
                    f"b/{rel}",
                )
            )
        else:
            path.write_text(after)
    verb = "would release" if dry_run else "released"
    print(f"{verb} {name} {old} -> {new}")
    if git and not dry_run:
        paths = [p.relative_to(root).as_posix() for p in changes]
        _git(root, "add", "--", *paths)
        # Commit only these paths, so whatever else is staged stays out of the release commit.
        _git(root, "commit", "-m", f"Release {tag}", "--", *paths)
        _git(root, "tag", "-a", tag, "-m", f"Release {tag}")
        print(f"created tag {tag} (push it with: git push origin {tag})")
    print(f"tag: {tag}")
    return tag


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="package directory under packages/, e.g. core or snn")
    ap.add_argument("part", choices=PARTS)
    ap.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    ap.add_argument("--no-git", action="store_true", help="write the files; no commit or tag")
    ap.add_argument("--root", type=Path, default=ws.ROOT)
    a = ap.parse_args(list(argv) if argv is not None else None)
    try:
        release(a.root.resolve(), a.name, a.part, dry_run=a.dry_run, git=not a.no_git)
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
