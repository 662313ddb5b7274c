"""Training entry points (``python -m training.detector``)."""
