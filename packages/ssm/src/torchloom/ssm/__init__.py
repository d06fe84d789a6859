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
    krylov_kernel as krylov_kernel,
)
from torchloom.ssm.pointer import (
    PointerAttention as PointerAttention,
    PointerNetwork as PointerNetwork,
)
from torchloom.ssm.sma import (
    GatedAttentionUnit as GatedAttentionUnit,
    LatentConfigurator as LatentConfigurator,
    SeqBoat as SeqBoat,
    SeqBoatLayer as SeqBoatLayer,
    compress_tokens as compress_tokens,
    expand_tokens as expand_tokens,
    local_attention as local_attention,
)
from torchloom.ssm.tasks import (
    convex_hull_batched as convex_hull_batched,
    convex_hull_targets as convex_hull_targets,
    delaunay_targets as delaunay_targets,
    hull_area_coverage as hull_area_coverage,
    random_points as random_points,
    tour_length as tour_length,
    tsp_brute_force as tsp_brute_force,
    tsp_held_karp as tsp_held_karp,
)

__version__ = _version("torchloom-ssm")

__all__: list[str] = [
    "LSSL",
    "GatedAttentionUnit",
    "LSSLModel",
    "LatentConfigurator",
    "PointerAttention",
    "PointerNetwork",
    "SeqBoat",
    "SeqBoatLayer",
    "__version__",
    "backward_euler",
    "bilinear",
    "compress_tokens",
    "convex_hull_batched",
    "convex_hull_targets",
    "delaunay_targets",
    "discretize",
    "expand_tokens",
    "fft_conv",
    "forward_euler",
    "gbt",
    "hippo",
    "hull_area_coverage",
    "krylov",
    "krylov_kernel",
    "lagt",
    "legendre_reconstruct",
    "legs",
    "legs_online",
    "legt",
    "local_attention",
    "random_points",
    "tour_length",
    "tsp_brute_force",
    "tsp_held_karp",
    "zoh",
]
