"""Recipes: hardware (see the package docstring of ``torchloom.nas.recipes``)."""

from __future__ import annotations

__all__: list[str] = []
