"""Plumbing a student can skip: errors and argument checks, atomic file writes, checkpoint files and resuming,
the divergence guard, input handling (arrays, tensors, DataLoaders), the thread policy, fingerprints, plots,
the tutorials' helpers and the C++ op's build lock and flags.

Nothing here is an equation of the papers. It is the bottom of the layering: its modules import only each
other (README, Layout)."""
