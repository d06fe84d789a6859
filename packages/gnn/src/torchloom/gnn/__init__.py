"""Graph networks on PyTorch Geometric. Implemented so far: ForwardGNN (forward learning
without backprop across layers), Neural Snowflakes (trainable latent metrics for graph-metric
embedding) and a citation-like graph generator; STABLE and LPGNAS are planned."""

from importlib.metadata import version as _version

from torchloom.gnn.data import citation_graph as citation_graph, split_masks as split_masks
from torchloom.gnn.forward import (
    ForwardGNN as ForwardGNN,
    add_virtual_nodes as add_virtual_nodes,
    check_graph as check_graph,
)
from torchloom.gnn.snowflake import (
    EmbeddingFit as EmbeddingFit,
    SnowflakeEmbedding as SnowflakeEmbedding,
    SnowflakeMetric as SnowflakeMetric,
    embedding_distortion as embedding_distortion,
    fit_graph_embedding as fit_graph_embedding,
    graph_distances as graph_distances,
)

__version__ = _version("torchloom-gnn")

__all__ = [
    "EmbeddingFit",
    "ForwardGNN",
    "SnowflakeEmbedding",
    "SnowflakeMetric",
    "__version__",
    "add_virtual_nodes",
    "check_graph",
    "citation_graph",
    "embedding_distortion",
    "fit_graph_embedding",
    "graph_distances",
    "split_masks",
]
