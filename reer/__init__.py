"""reer: REverse-Engineered Reasoning data synthesis for open-ended writing."""

__version__ = "0.1.0"
