"""ebm_ood: out-of-distribution detection with energy-based models, from first principles.

Data flows one way:
data -> networks / energies -> sampler -> training methods -> detectors -> metrics -> benchmark / CLI.
"""
__version__ = "0.1.0"
