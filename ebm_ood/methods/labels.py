"""The class labels an Elflein EBM trains with (Elflein §4.2: the supervision weight γ of CD, SSM and VERA)."""


def labels_for_gamma(method: str, gamma: float, y):
    """The labels a JEM-style EBM trains with under supervision weight ``gamma`` (Elflein §4.2):
    ``gamma > 0`` (the "-S" variant) needs ``y``; ``gamma == 0`` drops them, so the model is the
    unsupervised one bit for bit."""
    if gamma > 0 and y is None:
        raise ValueError(f"y: {method} with gamma > 0 (supervised {method}-S) needs class labels")
    return y if gamma > 0 else None
