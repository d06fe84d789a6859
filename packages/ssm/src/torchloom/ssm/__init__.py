"""State-space layers: LSSL, Sparse Modular Activation (SeqBoat), Pointer Networks."""

from importlib.metadata import version as _version

from torchloom.ssm.discretize import (
    backward_euler as backward_euler,
    bilinear as bilinear,
    discretize as discretize,
    forward_euler as forward_euler,
    gbt as gbt,
    zoh as zoh,
)
from torchloom.ssm.hippo import (
    hippo as hippo,
    lagt as lagt,
    legendre_reconstruct as legendre_reconstruct,
    legs as legs,
    legs_online as legs_online,
    legt as legt,
)
from torchloom.ssm.lssl import (
    LSSL as LSSL,
    LSSLModel as LSSLModel,
    fft_conv as fft_conv,
    krylov as krylov,
)

__version__ = _version("torchloom-ssm")

__all__: list[str] = [
    "LSSL",
    "LSSLModel",
    "__version__",
    "backward_euler",
    "bilinear",
    "discretize",
    "fft_conv",
    "forward_euler",
    "gbt",
    "hippo",
    "krylov",
    "lagt",
    "legendre_reconstruct",
    "legs",
    "legs_online",
    "legt",
    "zoh",
]
