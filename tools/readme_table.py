#!/usr/bin/env python3
"""Generate the package table in README.md (between the ``packages:start/end`` markers).

    python tools/readme_table.py [--write] [--root DIR] [--papers PAPERS.md]

Columns: package (dist), version, papers, recipes. Papers are the numbers every ``@recipe(...,
papers=(...))`` of the package cites plus the rows PAPERS.md (``../shared/PAPERS.md`` beside the
clone) assigns to it; without PAPERS.md only the recipes' papers are known. Recipes are the
``name=`` of each ``@recipe``. Without ``--write`` it only checks and exits 1 when the table is
stale; ``check_workspace.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

# tools/ is not a package: as a script, this directory is already on sys.path
import check_workspace as ws


def write(root: Path, papers_file: Path | None = None) -> bool:
    """Rewrite the table in ``root/README.md``; True when the file changed."""
    readme = root / "README.md"
    old = readme.read_text()
    new = ws.readme_with_table(root, papers_file)
    if new != old:
        readme.write_text(new)
    return new != old


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite README.md (default: check)")
    ap.add_argument("--root", type=Path, default=ws.ROOT)
    ap.add_argument("--papers", type=Path, default=None, help="PAPERS.md (default ../shared)")
    a = ap.parse_args(list(argv) if argv is not None else None)
    root = a.root.resolve()
    if a.write:
        try:
            changed = write(root, a.papers)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("README.md: table updated" if changed else "README.md: table already current")
        return 0
    problems = ws.readme_problems(root, a.papers)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
