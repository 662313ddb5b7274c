"""Fixtures of the inference tests (see inference_models.py)."""

from inference_models import models_dir  # noqa: F401 -- pytest fixture
