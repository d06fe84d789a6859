"""GB-NN fits and predicts on the test device with the CPU's values.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, ``.numpy()`` on device
tensors).
"""

from __future__ import annotations

import pytest
import torch

from torchloom.boost.gbnn import GBNNClassifier, GBNNRegressor
from torchloom.core.testing import assert_matches_cpu


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 3, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 - x[:, 2]
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y, labels


def test_regressor_fit_matches_cpu(device: torch.device) -> None:
    x, y, _ = _data()

    def fit(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        # device=None: the fit follows X's device
        model = GBNNRegressor(n_steps=4, units_per_step=2, epochs=15)
        model.fit(x, y)
        cut = model.switch_off(2)
        assert isinstance(cut, GBNNRegressor)
        assert model.device_.type == x.device.type
        score = torch.tensor(model.score(x, y), dtype=torch.float64, device=x.device)
        return [
            model.predict(x),
            model.predict(x.cpu().numpy()),  # host input, moved to the model's device
            model.staged_decision_function(x),
            cut.predict(x),
            score,
        ]

    assert_matches_cpu(fit, (x, y), device, grad=False)


def test_classifier_fit_matches_cpu(device: torch.device) -> None:
    x, _, labels = _data()

    def fit(x: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        # explicit device with NumPy inputs: everything is moved to ``device``
        model = GBNNClassifier(n_steps=4, units_per_step=2, epochs=15, device=x.device)
        model.fit(x.cpu().numpy(), labels.cpu().numpy())
        acc = torch.tensor(model.score(x, labels), dtype=torch.float64, device=x.device)
        return [model.predict_proba(x), model.predict(x), acc]

    assert_matches_cpu(fit, (x, labels), device, grad=False)


def test_merged_network_is_stage_sum_on_device(device: torch.device) -> None:
    x, y, _ = _data()
    model = GBNNRegressor(n_steps=5, units_per_step=2, epochs=10, device=device).fit(x, y)
    net = model.network_
    assert all(p.device.type == device.type for p in net.parameters())
    assert len(model.stages_) == 5
    xd = x.to(device)
    with torch.no_grad():
        merged = net(xd)
    boosted = model.staged_decision_function(xd)[-1]
    assert merged.device.type == device.type
    torch.testing.assert_close(merged, boosted, atol=1e-10, rtol=1e-10)
    # the fit on this device gives the CPU fit's network
    cpu = GBNNRegressor(n_steps=5, units_per_step=2, epochs=10).fit(x, y)
    torch.testing.assert_close(merged.cpu(), cpu.decision_function(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ("not-a-device", ValueError, "device must name a torch device"),
        (3, TypeError, "device must be None, a str or a torch.device"),
        (torch.float64, TypeError, "device must be None"),
    ],
)
def test_bad_device_argument(bad: object, error: type[Exception], match: str) -> None:
    for cls in (GBNNRegressor, GBNNClassifier):
        with pytest.raises(error, match=match):
            cls(device=bad)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        GBNNRegressor(device="cuda")
