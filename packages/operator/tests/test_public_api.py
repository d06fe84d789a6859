"""Every name in ``torchloom.operator.__all__`` exists and the version matches the metadata."""

import importlib
from importlib.metadata import version

import pytest

MOD = importlib.import_module("torchloom.operator")


def test_version_matches_metadata() -> None:
    assert MOD.__version__ == version("torchloom-operator")


@pytest.mark.parametrize("name", MOD.__all__)
def test_public_name_exists(name: str) -> None:
    assert getattr(MOD, name) is not None
