"""Differentiable Digital Signal Processing (DDSP) in PyTorch (Engel et al., ICLR 2020)."""

from importlib.metadata import version as _version

from torchloom.dsp.autoencoder import (
    Autoencoder as Autoencoder,
    Decoder as Decoder,
    ZEncoder as ZEncoder,
    hz_to_midi as hz_to_midi,
)
from torchloom.dsp.core import (
    amplitude_to_db as amplitude_to_db,
    db_to_amplitude as db_to_amplitude,
    db_to_power as db_to_power,
    exp_sigmoid as exp_sigmoid,
    power_to_db as power_to_db,
    resample as resample,
    safe_divide as safe_divide,
    safe_log as safe_log,
    upsample_with_windows as upsample_with_windows,
)
from torchloom.dsp.features import (
    a_weighting as a_weighting,
    compute_loudness as compute_loudness,
    mel_filterbank as mel_filterbank,
    mfcc as mfcc,
    yin as yin,
)
from torchloom.dsp.io import read_wav as read_wav, write_wav as write_wav
from torchloom.dsp.losses import (
    MultiScaleSpectralLoss as MultiScaleSpectralLoss,
    multiscale_spectral_loss as multiscale_spectral_loss,
    stft_magnitude as stft_magnitude,
)
from torchloom.dsp.noise import (
    FilteredNoise as FilteredNoise,
    fft_convolve as fft_convolve,
    filtered_noise as filtered_noise,
    frequency_impulse_response as frequency_impulse_response,
)
from torchloom.dsp.reverb import (
    ExpDecayReverb as ExpDecayReverb,
    Reverb as Reverb,
)
from torchloom.dsp.synth import (
    Harmonic as Harmonic,
    Wavetable as Wavetable,
    harmonic_frequencies as harmonic_frequencies,
    harmonic_synth as harmonic_synth,
    normalize_harmonics as normalize_harmonics,
    oscillator_bank as oscillator_bank,
    remove_above_nyquist as remove_above_nyquist,
    wavetable_synth as wavetable_synth,
)

__version__ = _version("torchloom-dsp")

__all__: list[str] = [
    "Autoencoder",
    "Decoder",
    "ExpDecayReverb",
    "FilteredNoise",
    "Harmonic",
    "MultiScaleSpectralLoss",
    "Reverb",
    "Wavetable",
    "ZEncoder",
    "__version__",
    "a_weighting",
    "amplitude_to_db",
    "compute_loudness",
    "db_to_amplitude",
    "db_to_power",
    "exp_sigmoid",
    "fft_convolve",
    "filtered_noise",
    "frequency_impulse_response",
    "harmonic_frequencies",
    "harmonic_synth",
    "hz_to_midi",
    "mel_filterbank",
    "mfcc",
    "multiscale_spectral_loss",
    "normalize_harmonics",
    "oscillator_bank",
    "power_to_db",
    "read_wav",
    "remove_above_nyquist",
    "resample",
    "safe_divide",
    "safe_log",
    "stft_magnitude",
    "upsample_with_windows",
    "wavetable_synth",
    "write_wav",
    "yin",
]
