"""The project's own exception types (each also a standard one, so ``except ValueError`` still works)."""


class NotFittedError(RuntimeError):
    """A detector was asked to score before ``fit`` was called."""


class NonFiniteError(ValueError):
    """An array holds NaN or Inf values, or (raised by a detector) finite inputs so far outside the data's
    range that the detector's float32 arithmetic overflowed."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or exploding energies.

    Attributes: ``method`` (name), ``step`` (0-based optimisation step), ``last_finite`` (dict of the last
    finite logged values).
    """

    def __init__(self, method: str, step: int, reason: str, last_finite: dict | None = None):
        self.method, self.step, self.reason = method, step, reason
        self.last_finite = dict(last_finite or {})
        vals = ", ".join(f"{k}={v:.4g}" for k, v in self.last_finite.items()) or "none"
        super().__init__(
            f"{method} diverged at step {step}: {reason}. Last finite values: {vals}. "
            "The model was restored to its last good weights; try a smaller learning rate or step size."
        )


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, or not one of ours."""


class FormatError(ValueError):
    """A file does not hold what its format promises: a raw dataset file, an ``.npz`` of a data folder, or a
    prepared split. The message names the file and, for an array, its key."""


class ForeignFilesError(FileExistsError):
    """A folder that would be written or replaced holds entries that we did not write; nothing was removed."""
