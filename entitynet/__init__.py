"""EntityNet: harvest image-text data for knowledge-graph entities and train a CLIP on it."""

__version__ = "0.1.0"
