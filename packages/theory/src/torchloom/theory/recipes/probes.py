"""Recipes: probes (see the package docstring of ``torchloom.theory.recipes``)."""

from __future__ import annotations

__all__: list[str] = []
