"""recdistill: distill large recommendation models into small, fast serving models."""

__version__ = "0.1.0"
