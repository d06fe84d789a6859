"""Graph networks on PyTorch Geometric. Implemented so far: ForwardGNN (forward learning
without backprop across layers) and a citation-like graph generator; STABLE, LPGNAS and Neural
Snowflakes are planned."""

from importlib.metadata import version as _version

from torchloom.gnn.data import citation_graph as citation_graph, split_masks as split_masks
from torchloom.gnn.forward import (
    ForwardGNN as ForwardGNN,
    add_virtual_nodes as add_virtual_nodes,
    check_graph as check_graph,
)

__version__ = _version("torchloom-gnn")

__all__ = [
    "ForwardGNN",
    "__version__",
    "add_virtual_nodes",
    "check_graph",
    "citation_graph",
    "split_masks",
]
