"""Model export: ``python -m export all`` (every model, every format, staged; export/README.md),
``python -m export.detector`` and ``python -m export.tokenizer`` (one model each)."""
