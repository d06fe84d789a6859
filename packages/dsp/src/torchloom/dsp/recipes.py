"""Reproductions of this package's papers, registered under ``torchloom.recipes``."""

from __future__ import annotations

__all__: list[str] = []
