"""neurofm: pretraining and honest benchmarking of M/EEG foundation models."""

__version__ = "0.1.0"
