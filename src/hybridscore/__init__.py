"""hybridscore: human + synthetic data → teacher → distilled student, as a DVC pipeline."""

__version__ = "0.1.0"
