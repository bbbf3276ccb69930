"""Plumbing a student can skip: errors and argument checks, atomic file writes, checkpoint files and resuming,
the divergence guard, input handling (arrays, tensors, DataLoaders), the thread policy, fingerprints, plots, the tutorials' helpers and the C++ op's build lock and flags.

Nothing here is an equation of the papers; the modules above it (``ebm_ood/*.py`` and the concept
subpackages) import these, never the other way round (README, Layout)."""
