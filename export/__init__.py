"""Model export entry points (``python -m export.detector``)."""
