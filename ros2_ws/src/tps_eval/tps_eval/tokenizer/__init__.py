"""Offline tokenizer tools: per-frame records of the frozen detector (``samples``) and the
``tps-eval tokenizer`` verb (``evaluate``). The onboard tokenizer itself is ``tps_perception``."""
