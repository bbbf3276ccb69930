"""HEAT (Lafon et al. 2023): prior energies (``priors``), the hybrid EBM and its training (``hybrid``),
and the energy composition (``compose``), all on feature vectors of a trained backbone."""
