"""Structure-preserving neural vector fields: HNN and GENERIC NN (paper §2)."""

from ._gnn import GNN as GNN
from ._hnn import HNN as HNN
