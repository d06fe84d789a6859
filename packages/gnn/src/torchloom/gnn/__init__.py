"""Graph networks on PyTorch Geometric. Implemented so far: ForwardGNN (forward learning
without backprop across layers), Neural Snowflakes (trainable latent metrics for graph-metric
embedding), STABLE (unsupervised structure refinement against poisoning, with DICE/random/
meta-gradient PGD attacks), LPGNAS (joint architecture and bit-width search) and a
citation-like graph generator."""

from importlib.metadata import version as _version

from torchloom.gnn.data import citation_graph as citation_graph, split_masks as split_masks
from torchloom.gnn.forward import (
    ForwardGNN as ForwardGNN,
    add_virtual_nodes as add_virtual_nodes,
    check_graph as check_graph,
)
from torchloom.gnn.lpgnas import (
    LPGNAS as LPGNAS,
    LayerChoice as LayerChoice,
    QuantGNN as QuantGNN,
    QuantGNNLayer as QuantGNNLayer,
    SearchSpace as SearchSpace,
    propagate as propagate,
    quantize_bits as quantize_bits,
)
from torchloom.gnn.peers import (
    deeprobust_dice as deeprobust_dice,
    deeprobust_metattack as deeprobust_metattack,
    load_deeprobust as load_deeprobust,
)
from torchloom.gnn.snowflake import (
    EmbeddingFit as EmbeddingFit,
    LatentGraph as LatentGraph,
    LatentGraphGNN as LatentGraphGNN,
    SnowflakeEmbedding as SnowflakeEmbedding,
    SnowflakeMetric as SnowflakeMetric,
    embedding_distortion as embedding_distortion,
    fit_graph_embedding as fit_graph_embedding,
    fit_latent_graph as fit_latent_graph,
    graph_distances as graph_distances,
)
from torchloom.gnn.stable import (
    STABLE as STABLE,
    AdvancedGCN as AdvancedGCN,
    AdvancedGCNConv as AdvancedGCNConv,
    STABLEEncoder as STABLEEncoder,
    advanced_gcn_norm as advanced_gcn_norm,
    contrastive_embeddings as contrastive_embeddings,
    dice_attack as dice_attack,
    jaccard_prune as jaccard_prune,
    jaccard_similarity as jaccard_similarity,
    pgd_attack as pgd_attack,
    random_attack as random_attack,
    recover_edges as recover_edges,
    refine_graph as refine_graph,
)
from torchloom.gnn.training import (
    fit_best_val as fit_best_val,
    train_node_classifier as train_node_classifier,
)

__version__ = _version("torchloom-gnn")

__all__ = [
    "LPGNAS",
    "STABLE",
    "AdvancedGCN",
    "AdvancedGCNConv",
    "EmbeddingFit",
    "ForwardGNN",
    "LatentGraph",
    "LatentGraphGNN",
    "LayerChoice",
    "QuantGNN",
    "QuantGNNLayer",
    "STABLEEncoder",
    "SearchSpace",
    "SnowflakeEmbedding",
    "SnowflakeMetric",
    "__version__",
    "add_virtual_nodes",
    "advanced_gcn_norm",
    "check_graph",
    "citation_graph",
    "contrastive_embeddings",
    "deeprobust_dice",
    "deeprobust_metattack",
    "dice_attack",
    "embedding_distortion",
    "fit_best_val",
    "fit_graph_embedding",
    "fit_latent_graph",
    "graph_distances",
    "jaccard_prune",
    "jaccard_similarity",
    "load_deeprobust",
    "pgd_attack",
    "propagate",
    "quantize_bits",
    "random_attack",
    "recover_edges",
    "refine_graph",
    "split_masks",
    "train_node_classifier",
]
