"""synergy_jax: Integrated Information Decomposition of attention heads in JAX.

Subpackages follow the data's path: ``models`` (generate and capture per-head activity),
``phiid`` (all-pairs ΦID), ``analysis`` (ranks, nulls, graphs, transitions),
``interventions`` (head masks, noise, divergence), ``tasks`` and ``training``.
"""

__version__ = "0.1.0"
