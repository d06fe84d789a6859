"""tools/release.py: bumps one package, closes its changelog, refreshes the README table, tags;
refuses when a sibling's range would not admit the new version; a dry run writes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest

CHANGELOG = """# Changelog — torchloom-snn

## Unreleased

- Added SLTT.
- Fixed a leak.

## 0.1.0

- First version.
"""


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def git_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{var}_NAME", "Test")
        monkeypatch.setenv(f"{var}_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")  # no user hooks or signing
    _git(workspace, "init", "-q")
    _git(workspace, "add", ".")
    _git(workspace, "commit", "-q", "-m", "init")
    return workspace


@pytest.mark.parametrize(
    ("version", "part", "new"),
    [
        ("0.1.0", "patch", "0.1.1"),
        ("0.1.7", "minor", "0.2.0"),
        ("0.9.3", "major", "1.0.0"),
        ("1.2.3", "minor", "1.3.0"),
    ],
)
def test_bump(release: ModuleType, version: str, part: str, new: str) -> None:
    assert release.bump(version, part) == new


def test_bump_rejects_non_xyz(release: ModuleType) -> None:
    with pytest.raises(release.ReleaseError, match=r"not X\.Y\.Z"):
        release.bump("0.1.0rc1", "patch")


def test_patch_release_without_git(
    cw: ModuleType, release: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snn = workspace / "packages" / "snn"
    (snn / "CHANGELOG.md").write_text(CHANGELOG)
    assert release.main(["snn", "patch", "--no-git", "--root", str(workspace)]) == 0
    assert 'version = "0.1.1"' in (snn / "pyproject.toml").read_text()
    assert (snn / "CHANGELOG.md").read_text() == CHANGELOG.replace(
        "## Unreleased\n\n", "## Unreleased\n\n## 0.1.1\n\n"
    )
    assert "| [torchloom-snn](packages/snn) | 0.1.1 |" in (workspace / "README.md").read_text()
    assert "tag: torchloom-snn-v0.1.1" in capsys.readouterr().out
    assert cw.check(workspace) == []  # the released workspace is consistent


def test_release_commits_and_tags(
    cw: ModuleType, release: ModuleType, git_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = git_workspace
    (root / "unrelated.txt").write_text("someone else's work\n")
    _git(root, "add", "unrelated.txt")  # staged, but not part of the release
    assert release.main(["core", "patch", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "created tag torchloom-core-v0.1.1" in out
    assert _git(root, "tag", "--list").split() == ["torchloom-core-v0.1.1"]
    files = _git(root, "log", "-1", "--name-only", "--format=%s", "torchloom-core-v0.1.1").split()
    assert files[:3] == ["Release", "torchloom-core-v0.1.1", "README.md"]
    assert sorted(files[3:]) == ["packages/core/CHANGELOG.md", "packages/core/pyproject.toml"]
    assert "A  unrelated.txt" in _git(root, "status", "--short")  # still staged, uncommitted
    # The same release twice is refused by the existing tag / changelog section.
    _git(root, "reset", "-q", "--hard", "HEAD~1")
    assert release.main(["core", "patch", "--root", str(root)]) == 2
    assert "tag torchloom-core-v0.1.1 already exists" in capsys.readouterr().err


def test_refuses_when_a_sibling_range_would_not_admit(
    release: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(workspace)
    assert release.main(["core", "minor", "--no-git", "--root", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert "refusing to release torchloom-core 0.2.0" in err
    assert "packages/snn (dependencies) requires 'torchloom-core>=0.1,<0.2'" in err
    assert "packages/cli (dependencies)" in err
    assert _snapshot(workspace) == before


def test_refuses_on_an_optional_dependency_range(
    release: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert release.main(["snn", "major", "--dry-run", "--root", str(workspace)]) == 2
    assert "packages/cli (optional-dependencies.all)" in capsys.readouterr().err


def test_dry_run_writes_nothing(
    release: ModuleType, git_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = git_workspace
    snn = root / "packages" / "snn"
    (snn / "CHANGELOG.md").write_text(CHANGELOG)
    before = _snapshot(root)
    assert release.main(["snn", "patch", "--dry-run", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert _snapshot(root) == before
    assert _git(root, "tag", "--list") == ""
    assert '-version = "0.1.0"\n+version = "0.1.1"' in out
    assert "+## 0.1.1" in out
    assert "+| [torchloom-snn](packages/snn) | 0.1.1 |" in out
    assert "would release snn 0.1.0 -> 0.1.1" in out
    assert "tag: torchloom-snn-v0.1.1" in out


def test_empty_unreleased_gets_a_placeholder(
    release: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert release.main(["snn", "patch", "--no-git", "--root", str(workspace)]) == 0
    text = (workspace / "packages/snn/CHANGELOG.md").read_text()
    assert "## Unreleased\n\n## 0.1.1\n\n- No changes recorded.\n\n## 0.1.0" in text
    assert "no Unreleased notes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "patch"], "no package 'nope'"),
        (["snn", "patch"], "CHANGELOG.md has no '## Unreleased' section"),
    ],
)
def test_errors(
    release: ModuleType,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    cl = workspace / "packages/snn/CHANGELOG.md"
    cl.write_text(cl.read_text().replace("## Unreleased\n", ""))
    assert release.main([*args, "--no-git", "--root", str(workspace)]) == 2
    assert message in capsys.readouterr().err


def test_set_version_touches_only_the_project_table(release: ModuleType) -> None:
    text = (
        '[tool.x]\nversion = "9"\n\n[project]\nname = "a"\nversion = "0.1.0"\n\n'
        '[b]\nversion = "1"\n'
    )
    assert release.set_version(text, "0.2.0") == text.replace('"0.1.0"', '"0.2.0"')
