"""pytest plugin shared by every torchloom package (entry point ``pytest11``).

- ``device`` fixture: parametrised over ``TORCHLOOM_DEVICE`` or every available device.
- autouse seeding of Python, NumPy and torch before each test.
- hypothesis profiles ``ci`` (derandomised, few examples), ``dev`` (default) and ``thorough``;
  chosen by ``HYPOTHESIS_PROFILE``, else ``ci`` when ``CI`` is set, else ``dev``.
- markers ``slow`` and ``gpu``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from torchloom.core.recipes import seed_everything
from torchloom.core.testing import available_devices


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running test, excluded by default")
    config.addinivalue_line("markers", "gpu: needs CUDA")
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    common: dict[str, Any] = {
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    settings.register_profile("ci", max_examples=15, derandomize=True, print_blob=True, **common)
    settings.register_profile("dev", max_examples=30, **common)
    settings.register_profile("thorough", max_examples=500, **common)
    default = "ci" if os.environ.get("CI") else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", available_devices(), indirect=True)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """A ``torch.device`` to run the test on (one test per available device)."""
    name = getattr(request, "param", "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        # tensors report "cuda:0", and torch.device("cuda") != torch.device("cuda:0"): give
        # tests the indexed device so that `x.device == device` means what it says
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


@pytest.fixture(autouse=True)
def _torchloom_seed() -> Iterator[None]:
    seed_everything(0)
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
