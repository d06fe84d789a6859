"""tools/gen_docs.py: package pages, papers page and nav are generated and checked; benchmark
JSON becomes markdown tables."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

MKDOCS = """site_name: ws
nav:
  - Home: index.md
# nav:packages:start
# nav:packages:end
  - Benchmarks: benchmarks.md
"""

PAPERS = """| # | paper | package / module | claim | peer |
|---|---|---|---|---|
| 7 | SLTT | snn / sltt.py | memory flat in T | snnTorch |
"""


@pytest.fixture
def docs_ws(workspace: Path) -> Path:
    (workspace / "mkdocs.yml").write_text(MKDOCS)
    (workspace / "docs").mkdir()
    (workspace / "docs" / "benchmarks.md").write_text(
        "# B\n\n<!-- bench:start -->\n<!-- bench:end -->\n"
    )
    papers = workspace.parent / "shared" / "PAPERS.md"
    papers.parent.mkdir()
    papers.write_text(PAPERS)
    (workspace / "packages/snn/src/torchloom/snn/recipes.py").write_text(
        '@recipe(name="snn.sltt", papers=(7,), claims=[])\ndef sltt(ctx): ...\n'
    )
    return workspace


def test_generate_then_check(gen_docs: ModuleType, docs_ws: Path) -> None:
    root = ["--root", str(docs_ws)]
    assert gen_docs.main([*root, "--check"]) == 1
    assert gen_docs.main(root) == 0
    assert gen_docs.main([*root, "--check"]) == 0
    snn = (docs_ws / "docs/packages/snn.md").read_text()
    assert "::: torchloom.snn" in snn
    assert "| 7 | SLTT | `sltt.py` | `snn.sltt` |" in snn
    papers = (docs_ws / "docs/papers.md").read_text()
    assert "| 7 | SLTT | [torchloom-snn](packages/snn.md) | `sltt.py` | `snn.sltt` |" in papers
    assert "      - torchloom-core: packages/core.md\n" in (docs_ws / "mkdocs.yml").read_text()
    # A page for a package that no longer exists is stale too.
    (docs_ws / "docs/packages/gone.md").write_text("# gone\n")
    assert gen_docs.main([*root, "--check"]) == 1


def test_without_papers_md_the_committed_pages_stay(gen_docs: ModuleType, docs_ws: Path) -> None:
    assert gen_docs.main(["--root", str(docs_ws)]) == 0
    (docs_ws.parent / "shared" / "PAPERS.md").unlink()
    assert gen_docs.main(["--root", str(docs_ws), "--check"]) == 0


def test_bench_tables(gen_docs: ModuleType, docs_ws: Path) -> None:
    results = docs_ws / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "snn.lif.json").write_text(
        json.dumps(
            {
                "title": "multi-step LIF",
                "peer": "snnTorch",
                "rows": [{"T": 8, "ratio": 0.51234}, {"T": 16, "ratio": 0.4, "note": "x|y"}],
            }
        )
    )
    (results / "flat.json").write_text(json.dumps({"speedup": 2.0, "device": "cpu"}))
    assert gen_docs.main(["--root", str(docs_ws), "--bench"]) == 0
    page = (docs_ws / "docs/benchmarks.md").read_text()
    assert "### multi-step LIF" in page and "peer: snnTorch" in page
    assert "| T | ratio | note |" in page
    assert "| 8 | 0.512 |  |" in page and "| 16 | 0.4 | x\\|y |" in page
    assert "| speedup | 2 |" in page
    assert "### multi-step LIF" in (results / "summary.md").read_text()
