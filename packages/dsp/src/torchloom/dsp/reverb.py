"""DDSP reverb: a learned impulse response, or exponentially decaying noise with learned decay
and gain, applied by FFT convolution (Engel et al., ICLR 2020, §3.4). Audio ``(B, N)``.
"""

from __future__ import annotations

import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_ndim
from torchloom.dsp.core import exp_sigmoid
from torchloom.dsp.noise import fft_convolve

__all__ = ["ExpDecayReverb", "Reverb"]


def _apply_reverb(audio: torch.Tensor, ir: torch.Tensor, add_dry: bool) -> torch.Tensor:
    # Index 0 of the response is the direct path; it is masked so the dry signal is carried
    # only by ``add_dry`` and the learned response stays a pure room tail.
    ir = torch.cat([torch.zeros_like(ir[:, :1]), ir[:, 1:]], dim=1)
    wet = fft_convolve(audio, ir, padding="same", delay_compensation=0)
    return wet + audio if add_dry else wet


class Reverb(nn.Module):
    """Convolution reverb with a learned impulse response (DDSP §3.4, "Reverb").

    ``y = x + h * x`` with ``h`` a free parameter of ``ir_length`` taps (first tap masked).
    Passing ``ir`` to ``forward`` uses that response instead (e.g. predicted by a network).

    Shapes: audio ``(B, N)``, optional ``ir`` ``(B, L)`` -> ``(B, N)``.
    """

    def __init__(
        self,
        ir_length: int,
        add_dry: bool = True,
        init_std: float = 1e-6,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_int(ir_length, "ir_length", 2)
        self.add_dry = add_dry
        self.ir = nn.Parameter(torch.randn(ir_length, generator=generator) * init_std)

    def forward(self, audio: torch.Tensor, ir: torch.Tensor | None = None) -> torch.Tensor:
        check_floating(audio, "audio")
        check_ndim(audio, "audio", 2, "(B, N)")
        if ir is None:
            ir = self.ir.unsqueeze(0)
        else:
            check_floating(ir, "ir")
            check_ndim(ir, "ir", 2, "(B, L)")
        return _apply_reverb(audio, ir.to(audio.dtype), self.add_dry)


class ExpDecayReverb(nn.Module):
    """Reverb whose impulse response is exponentially decaying noise with learned level and decay.

    ``h(t) = exp_sigmoid(gain) * exp(-(2 + exp(decay)) t) * u(t)``, ``t`` in ``[0, 1]`` over the
    response, ``u`` a fixed uniform noise buffer in ``[-1, 1]``; ``y = x + h * x`` (the gain sets
    the wet/dry balance). Two parameters instead of ``ir_length``: the blind-dereverberation
    setting of the paper's §5.3 with a strong prior.

    Shapes: ``(B, N)`` -> ``(B, N)``.
    """

    def __init__(
        self,
        ir_length: int,
        initial_gain: float = 0.0,
        initial_decay: float = 2.0,
        add_dry: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_int(ir_length, "ir_length", 2)
        self.add_dry = add_dry
        self.gain = nn.Parameter(torch.tensor(float(initial_gain)))
        self.decay = nn.Parameter(torch.tensor(float(initial_decay)))
        self.register_buffer("noise", torch.rand(ir_length, generator=generator) * 2.0 - 1.0)

    def impulse_response(self) -> torch.Tensor:
        """The current response ``(L,)``."""
        noise = self.get_buffer("noise")
        t = torch.linspace(0.0, 1.0, noise.shape[0], device=noise.device, dtype=noise.dtype)
        return exp_sigmoid(self.gain) * torch.exp(-(2.0 + torch.exp(self.decay)) * t) * noise

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        check_floating(audio, "audio")
        check_ndim(audio, "audio", 2, "(B, N)")
        ir = self.impulse_response().to(audio.dtype).unsqueeze(0)
        return _apply_reverb(audio, ir, self.add_dry)
